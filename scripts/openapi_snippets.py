"""Rule openapi_snippets: openapi-snippet on each chosen spec, bounded per spec; rejects.csv
lists every spec rejected at selection or here, with the reason."""

import pandas as pd

from apipack.files import atomic_open, read_json
from apipack.rulelog import logged
from apipack.settings import SpecLimits
from apipack.snippets import generate_snippets

with logged(snakemake):
    out = snakemake.output
    manifest = read_json(snakemake.input.manifest)
    failed = generate_snippets(
        manifest["chosen"], snakemake.params.targets, out.snippets, SpecLimits.of(snakemake.params.limits)
    )
    for r in failed:
        print(f"rejected {r['spec']}: {r['reason']}")
    with atomic_open(out.rejects) as fh:
        pd.DataFrame(manifest["rejected"] + failed, columns=["spec", "stage", "reason"]).to_csv(fh, index=False)
    print(f"snippets for {len(manifest['chosen']) - len(failed)} specs; rejected {len(failed)}")
