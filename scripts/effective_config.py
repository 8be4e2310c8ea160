"""Rule effective_config: write the config the workflow holds (files merged, schema defaults)."""

from apipack.config import write_config
from apipack.rulelog import logged

with logged(snakemake):
    write_config(snakemake.params.config, snakemake.output[0])
