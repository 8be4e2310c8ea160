"""Rule train_set: prompt/completion records of one training set (a {language: count} mixture)."""

from apipack.files import read_json, write_jsonl
from apipack.prompts import group_by, make_truncator, select_subset, training_records
from apipack.rulelog import logged

with logged(snakemake):
    spec, cfg, seed = snakemake.params.spec, snakemake.params.prompts, snakemake.params.seed
    trunc = make_truncator(snakemake.input.tokenizer)
    records = []
    for lang, path in zip(spec["mixture"], snakemake.input.train):
        train = read_json(path)
        subset = select_subset(train, spec["mixture"][lang], spec["selection"], seed)
        records += training_records(
            subset,
            group_by(train, "api_description"),
            spec["formats"],
            trunc,
            cfg["description_tokens"],
            cfg["fewshot_tokens"],
            cfg["k"],
            seed,
        )
        print(f"{lang}: {len(subset)} instances of {len(train)}")
    write_jsonl(snakemake.output[0], records)
    print(f"{len(records)} training records")
