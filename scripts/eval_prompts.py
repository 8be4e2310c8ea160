"""Rule eval_prompts: the prompts of one test cell (language, level, prompt mode)."""

from apipack.eval_prompts import eval_prompts
from apipack.files import read_json, write_jsonl
from apipack.rulelog import logged
from apipack.settings import PromptSettings

with logged(snakemake):
    wc, inp = snakemake.wildcards, snakemake.input
    records = eval_prompts(
        read_json(inp.level),
        read_json(inp.total),
        (wc.lang, int(wc.level), wc.mode),
        PromptSettings.of(snakemake.params.prompts),
        inp.tokenizer,
        inp.get("embeddings"),
    )
    write_jsonl(snakemake.output[0], records)
    print(f"{len(records)} prompts")
