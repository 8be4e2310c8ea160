"""Rule generate: model outputs for one test cell, resumable after an interruption."""

from apipack.files import fingerprint
from apipack.generate import generate_file, make_engine
from apipack.gpu_slots import claim
from apipack.rulelog import logged

with logged(snakemake):
    claim(snakemake.resources.gpu)  # workstation: free GPUs only, before CUDA starts
    gen = {**snakemake.params.generation, "trust_remote_code": snakemake.params.trust_remote_code}
    adapter = snakemake.input.adapter or None
    engine = make_engine(gen["engine"], snakemake.input.base, adapter, gen)
    seed = int(snakemake.wildcards.seed)
    model_files = [snakemake.input.base, *([adapter] if adapter else [])]
    stats = generate_file(
        snakemake.input.prompts,
        snakemake.output[0],
        engine,
        gen["batch_size"],
        seed,
        key=fingerprint({**gen, "seed": seed}, [snakemake.input.prompts, *model_files]),
    )
    print(f"generated {stats['items']} items in {stats['seconds']:.1f} s")
