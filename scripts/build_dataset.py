"""Rule build_dataset: snippets -> API DB -> instructions -> validation -> published format."""

import pandas as pd

from apipack.builder import build_from_snippets
from apipack.rulelog import logged

with logged(snakemake):
    summary = build_from_snippets(
        snakemake.input.snippets,
        pd.read_csv(snakemake.input.rejects),
        snakemake.params.langs,
        snakemake.params.seed,
        snakemake.params.max_call_chars,
        snakemake.output.data,
        snakemake.output.api_db,
        snakemake.output.summary,
    )
    print(summary.to_string(index=False))
