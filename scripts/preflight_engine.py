"""Rule preflight_engine: load time and items/s of one engine on the preflight model's prompts.
The body runs under the main guard: vLLM starts its engine in a spawned process."""

from apipack.engine_timing import time_engine
from apipack.files import write_json
from apipack.gpu_slots import claim
from apipack.rulelog import logged


def main(snakemake) -> None:
    with logged(snakemake):
        claim(snakemake.resources.gpu)
        inp = snakemake.input
        base, finetuned = inp.get("base"), inp.get("finetuned")
        timing = time_engine(
            snakemake.config, snakemake.wildcards.engine, list(inp.prompts), base, finetuned, snakemake.resources.gpu
        )
        print(timing)
        write_json(snakemake.output[0], timing)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (Snakemake's script preamble defines it)
