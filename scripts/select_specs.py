"""Rule select_specs: choose OpenAPI specs (seeded) and list rejected ones with reasons."""

from pathlib import Path

import pandas as pd

from apipack.builder import select_specs
from apipack.files import atomic_open, write_json
from apipack.rulelog import logged
from apipack.settings import SpecSelection

with logged(snakemake):
    out = snakemake.output
    selection = SpecSelection.of(snakemake.params.selection)
    chosen, rejects = select_specs(selection, snakemake.input.index, Path(out.staging))
    write_json(out.manifest, [{"id": s["id"], "file": s["file"]} for s in chosen])
    with atomic_open(out.rejects) as fh:
        pd.DataFrame(rejects, columns=["spec", "reason"]).to_csv(fh, index=False)
    print(f"selected {len(chosen)} specs; rejected {len(rejects)}")
