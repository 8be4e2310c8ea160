"""Rule generate: a local model's outputs for one test cell, resumable after an interruption. The
body runs under the main guard: vLLM starts its engine in a spawned process, which imports this
script again."""

from apipack.generate import generate_cell
from apipack.gpu_slots import claim
from apipack.rulelog import logged
from apipack.settings import GenerationSettings, ModelSource


def main(snakemake) -> None:
    with logged(snakemake):
        claim(snakemake.resources.gpu)  # workstation: free GPUs only, before CUDA starts
        inp = snakemake.input
        stats = generate_cell(
            inp.prompts,
            snakemake.output[0],
            ModelSource.of(snakemake.params.model),
            (inp.base, inp.finetuned or None),
            GenerationSettings.of(snakemake.params.generation),
            int(snakemake.wildcards.seed),
            snakemake.resources.gpu,
        )
        print(f"generated {stats['items']} items in {stats['batches']} batches in {stats['seconds']:.1f} s")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (Snakemake's script preamble defines it)
