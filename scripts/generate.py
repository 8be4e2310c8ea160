"""Rule generate: model outputs for one test cell, resumable after an interruption."""

from apipack.files import fingerprint
from apipack.generate import generate_file, make_engine
from apipack.gpu_slots import claim
from apipack.rulelog import logged

with logged(snakemake):
    claim(snakemake.resources.gpu)  # workstation: free GPUs only, before CUDA starts
    spec = snakemake.params.model
    gen = {**snakemake.params.generation, "trust_remote_code": spec.get("trust_remote_code", False)}
    base = snakemake.input.base or None
    finetuned = snakemake.input.finetuned or None
    engine = make_engine(spec, base, finetuned, gen)
    seed = int(snakemake.wildcards.seed)
    model_files = [path for path in (base, finetuned) if path]
    stats = generate_file(
        snakemake.input.prompts,
        snakemake.output[0],
        engine,
        gen["batch_size"],
        seed,
        key=fingerprint({**gen, "model": spec, "seed": seed}, [snakemake.input.prompts, *model_files]),
    )
    print(f"generated {stats['items']} items in {stats['seconds']:.1f} s")
