"""Rule prepare_model: any model source -> a plain transformers folder."""

from pathlib import Path

from apipack import models
from apipack.data import load_instances
from apipack.download import download_snapshot
from apipack.rulelog import logged

with logged(snakemake):
    spec, out = snakemake.params.spec, Path(snakemake.output[0])
    source = spec["source"]
    if source == "smollm2_wheel":
        models.convert_smollm2(out)
    elif source == "hub":
        download_snapshot(spec["repo"], spec["revision"], out)
    elif source == "local":
        models.copy_local(Path(spec["path"]), out)
    else:  # tiny stand-ins: tokenizers trained on the dataset
        texts = [
            text
            for path in snakemake.input.corpus
            for inst in load_instances(path, on_bad_record="skip").instances
            for text in (inst["instruction"], inst["output"], inst["api_description"][:500])
        ]
        build = models.build_tiny_encoder if source == "tiny_encoder" else models.build_tiny
        build(out, texts, snakemake.params.seed)
    print(f"model {snakemake.wildcards.model} ({source}) ready in {out}")
