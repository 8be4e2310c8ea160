"""Rule metrics: accuracies per cell and seed (metrics.csv) and per cell over seeds (cells.csv)."""

from apipack.files import atomic_open
from apipack.metrics import cell_table, metrics_table
from apipack.rulelog import logged

with logged(snakemake):
    for table, out in ((metrics_table, snakemake.output.seeds), (cell_table, snakemake.output.cells)):
        df = table(snakemake.input)
        with atomic_open(out) as fh:
            df.to_csv(fh, index=False, float_format="%.4f")
        print(df.to_string(index=False))
