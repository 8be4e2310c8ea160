"""Rule tokenize: one training set as Arrow files for every model with this tokenizer."""

from pathlib import Path

from apipack.rulelog import logged
from apipack.tokenized import build

if __name__ == "__main__":  # the worker processes of datasets import this file again
    with logged(snakemake):
        n = build(
            snakemake.input.train,
            snakemake.input.tokenizer,
            snakemake.params.cutoff_len,
            snakemake.params.trust_remote_code,
            Path(snakemake.output[0]),
            snakemake.threads,
        )
        print(f"{n} sequences tokenized with {snakemake.threads} worker(s)")
