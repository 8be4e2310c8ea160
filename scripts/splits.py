"""Rule splits: validate one language's data, then level 1-3 test sets and the training split."""

import pandas as pd

from apipack.data import load_instances
from apipack.files import atomic_open, write_json
from apipack.rulelog import logged
from apipack.splits import SplitParams, make_splits, manifest, order_instances, statistics

with logged(snakemake):
    lang, out = snakemake.wildcards.lang, snakemake.output
    loaded = load_instances(
        snakemake.input[0], lang, snakemake.params.policy, snakemake.params.max_chars
    )
    with atomic_open(out.rejects) as fh:
        pd.DataFrame(
            [vars(r) for r in loaded.rejects],
            columns=["file", "record", "field", "reason", "unique_id"],
        ).to_csv(fh, index=False)
    if loaded.rejects:
        print(f"skipped {len(loaded.rejects)} bad records; reasons in {out.rejects}")
    params = SplitParams.of(snakemake.params.splits)
    total = order_instances(loaded.instances, params.order, params.seed)
    splits = make_splits(total, params)
    write_json(out.valid, total, indent=None)
    write_json(out.train, splits.train, indent=None)
    for level, path in zip((1, 2, 3), out.levels):
        write_json(path, splits.levels[level], indent=None)
    write_json(out.manifest, manifest(splits))
    stats = pd.DataFrame(statistics(lang, splits))
    stats["rejected_records"] = len(loaded.rejects)
    with atomic_open(out.stats) as fh:
        stats.to_csv(fh, index=False)
    print(stats.to_string(index=False))
