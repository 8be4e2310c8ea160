"""Rule train_set: prompt/completion records of one training set (a {language: count} mixture)."""

from apipack.files import write_jsonl
from apipack.prompts import train_set_records
from apipack.rulelog import logged
from apipack.settings import PromptSettings

with logged(snakemake):
    spec = snakemake.params.spec
    records = train_set_records(
        spec["mixture"],
        spec["selection"],
        spec["formats"],
        snakemake.input.train,
        PromptSettings.of(snakemake.params.prompts),
        snakemake.input.tokenizer,
    )
    n = write_jsonl(snakemake.output[0], records)  # written as they are made
    print(f"{n} training records")
