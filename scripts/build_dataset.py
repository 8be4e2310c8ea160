"""Rule build_dataset: snippets -> API DB -> instructions -> validation -> published format."""

import pandas as pd

from apipack.builder import build_from_snippets, instruction_writer
from apipack.rulelog import logged
from apipack.settings import BuildSettings, connection

with logged(snakemake):
    inp, out = snakemake.input, snakemake.output
    build = BuildSettings.of(snakemake.params.build)
    server = connection(snakemake.config["data"]["build"]["llm"]["openai"])  # how it is reached
    summary = build_from_snippets(
        inp.snippets,
        pd.read_csv(inp.rejects),
        snakemake.params.langs,
        instruction_writer(build, server, inp.llm, inp.scorer),
        build.max_call_chars,
        out.data,
        out.api_db,
        out.summary,
    )
    print(summary.to_string(index=False))
