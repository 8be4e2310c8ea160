"""Rule generate_api: an API model's outputs for one test cell, resumable after an interruption."""

from apipack.generate import generate_api_cell
from apipack.rulelog import logged
from apipack.settings import ApiRequest, ModelSource, connection

with logged(snakemake):
    wc = snakemake.wildcards
    stats = generate_api_cell(
        snakemake.input.prompts,
        snakemake.output[0],
        ModelSource.of(snakemake.params.model),
        connection(snakemake.config["models"][wc.model]),  # how it is reached: no part of its answers
        ApiRequest.of(snakemake.params.request),
        int(wc.seed),
        wc.model,
    )
    print(f"generated {stats['items']} items in {stats['seconds']:.1f} s")
