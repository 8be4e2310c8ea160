"""Rule leakage: shares of evaluated test items seen in each training set (results/metrics/leakage.csv)."""

import re

from apipack.files import atomic_open, iter_jsonl, read_json
from apipack.leakage import leakage_table
from apipack.prompts import sample_items
from apipack.rulelog import logged

with logged(snakemake):
    p = snakemake.params
    tests = {}
    for path in snakemake.input.levels:
        lang, level = re.search(r"splits/([^/]+)/level(\d)\.json$", path).groups()
        tests[(lang, int(level))] = sample_items(read_json(path), p.max_items, p.seed, lang, level)
    trains = {re.search(r"([^/]+)\.jsonl$", t).group(1): iter_jsonl(t) for t in snakemake.input.train}  # read in turn
    table = leakage_table(tests, trains)
    with atomic_open(snakemake.output[0]) as fh:
        table.to_csv(fh, index=False, float_format="%.4f")
    print(table.to_string(index=False))
