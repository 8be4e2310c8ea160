"""Rule metrics: one row per model, train set, language, level, prompt mode and seed."""

from apipack.files import atomic_open
from apipack.metrics import metrics_table
from apipack.rulelog import logged

with logged(snakemake):
    table = metrics_table(snakemake.input, snakemake.params.bootstrap, snakemake.params.seed)
    with atomic_open(snakemake.output[0]) as fh:
        table.to_csv(fh, index=False, float_format="%.4f")
    print(table.to_string(index=False))
