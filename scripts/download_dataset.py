"""Rule download_dataset: one published file, resumable and verified against the manifest."""

from pathlib import Path

import yaml

from apipack.download import dataset_url, download
from apipack.rulelog import logged

with logged(snakemake):
    dl = snakemake.params.download
    dest = Path(snakemake.output[0])
    entry = {}
    if dl["manifest"]:
        entry = yaml.safe_load(Path(dl["manifest"]).read_text()).get(dest.name, {})
    url = dataset_url(dl["endpoint"], dl["repo"], dl["revision"], dest.name)
    print(f"downloading {url}")
    download(url, dest, entry.get("size"), entry.get("sha256"), retries=dl["retries"])
