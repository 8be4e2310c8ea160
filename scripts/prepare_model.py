"""Rule prepare_model: any model source -> a plain transformers folder."""

from pathlib import Path

from apipack.models import prepare_model
from apipack.rulelog import logged
from apipack.settings import ModelSource

with logged(snakemake):
    source, out = ModelSource.of(snakemake.params.source), Path(snakemake.output[0])
    prepare_model(source, out, snakemake.input.corpus, f"models.{snakemake.wildcards.model}")
    print(f"model {snakemake.wildcards.model} ({source.source}) ready in {out}")
