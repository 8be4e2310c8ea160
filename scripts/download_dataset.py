"""Rule download_dataset: one published file at a pinned commit, through the hub cache."""

from pathlib import Path

import yaml

from apipack.download import Pin, check_manifest, download_file
from apipack.rulelog import logged

with logged(snakemake):
    dl = snakemake.params.download
    dest = Path(snakemake.output[0])
    print(f"downloading {dl['repo']}@{dl['revision']}/{dest.name}")
    download_file(Pin("data.download", dl["repo"], dl["revision"], "dataset"), dest.name, dest)
    if dl["manifest"]:
        check_manifest(dest, yaml.safe_load(Path(dl["manifest"]).read_text()).get(dest.name, {}))
