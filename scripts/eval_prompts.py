"""Rule test_prompts: the prompts of one test cell (language, level, prompt mode)."""

from apipack.files import read_json, write_jsonl
from apipack.prompts import group_by, make_truncator, random_examples, sample_items, test_records
from apipack.retrieval import example_picker
from apipack.rulelog import logged

with logged(snakemake):
    wc, cfg, seed = snakemake.wildcards, snakemake.params.prompts, snakemake.params.seed
    level = int(wc.level)
    items = sample_items(
        read_json(snakemake.input.level), snakemake.params.max_items, seed, wc.lang, wc.level
    )
    by_api = group_by(read_json(snakemake.input.total), "api_name")
    k = cfg["k"]
    if wc.mode == "random_3shot":
        examples = lambda item: random_examples(  # noqa: E731
            item, by_api[item["api_name"]], k, seed, lambda c: c["output"] != item["output"]
        )
    elif wc.mode in ("retrieval_3shot", "rerank_3shot"):
        examples = example_picker(by_api, k, snakemake.input.get("embeddings"), wc.mode)
    else:
        examples = None
    records = test_records(
        items,
        wc.mode,
        examples,
        make_truncator(snakemake.input.tokenizer),
        cfg["description_tokens"],
        cfg["fewshot_tokens"],
        wc.lang,
        level,
    )
    write_jsonl(snakemake.output[0], records)
    print(f"{len(records)} prompts")
