"""Rule select_specs: choose OpenAPI specs (seeded draw, or a folder read under bounds); the
manifest lists the chosen specs and the rejected ones with reasons."""

from pathlib import Path

from apipack.builder import select_specs
from apipack.files import write_json
from apipack.rulelog import logged
from apipack.settings import SpecSelection

with logged(snakemake):
    out = snakemake.output
    selection = SpecSelection.of(snakemake.params.selection)
    chosen, rejects = select_specs(selection, snakemake.input.index, Path(out.staging))
    write_json(out.manifest, {"chosen": [{"id": s["id"], "file": s["file"]} for s in chosen], "rejected": rejects})
    for r in rejects:
        print(f"rejected {r['spec']}: {r['reason']}")
    print(f"selected {len(chosen)} specs; rejected {len(rejects)}")
