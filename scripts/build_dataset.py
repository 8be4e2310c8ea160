"""Rule build_dataset: snippets -> API DB -> instructions -> validation -> published format."""

import pandas as pd

from apipack.builder import build_from_snippets, llm_instructions, template_instructions
from apipack.rulelog import logged

with logged(snakemake):
    build, seed = snakemake.params.build, snakemake.params.seed
    if build["instructions"] == "template":
        writer = template_instructions(seed)
    else:
        from apipack import llm_instructions as llm

        cfg = build["llm"]
        if build["instructions"] == "hf":
            sample = llm.hf_sampler(
                snakemake.input.llm[0], cfg["candidates"], cfg["max_new_tokens"], cfg["temperature"]
            )
        else:
            sample = llm.openai_sampler(
                cfg["openai"], cfg["candidates"], cfg["max_new_tokens"], cfg["temperature"]
            )
        score = llm.LogProbScorer(snakemake.input.scorer[0], cfg["batch_size"])
        writer = llm_instructions(sample, score, seed, cfg["batch_size"])
    summary = build_from_snippets(
        snakemake.input.snippets,
        pd.read_csv(snakemake.input.rejects),
        snakemake.params.langs,
        writer,
        build["max_call_chars"],
        snakemake.output.data,
        snakemake.output.api_db,
        snakemake.output.summary,
    )
    print(summary.to_string(index=False))
