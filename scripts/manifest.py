"""Rule manifest: provenance of the run's numbers (results/metrics/manifest.json)."""

import json

from apipack.files import atomic_open
from apipack.manifest import manifest, model_labels
from apipack.rulelog import logged

with logged(snakemake):
    inp = snakemake.input
    models = model_labels(snakemake.params.config, [*inp.base, *inp.finetuned])
    doc = manifest(snakemake.params.root, snakemake.params.config, models, [*inp.splits, *inp.prompts, *inp.tables])
    with atomic_open(snakemake.output[0]) as fh:
        fh.write(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"{len(doc['models'])} models, {len(doc['files'])} files hashed; commit {doc['git']['commit']}")
