"""Rule comparisons: the paper's claims tested on per-item outcomes (results/metrics/comparisons.csv)."""

from apipack.comparisons import comparisons_table
from apipack.files import atomic_open
from apipack.metrics import outcomes
from apipack.rulelog import logged

with logged(snakemake):
    p = snakemake.params
    table = comparisons_table(outcomes(snakemake.input), p.comparisons, p.bootstrap, p.seed)
    with atomic_open(snakemake.output[0]) as fh:
        table.to_csv(fh, index=False, float_format="%.4g")
    print(table.to_string(index=False))
