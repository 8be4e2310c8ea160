"""Rule split_statistics: one table of APIs and instances per split and language."""

import pandas as pd

from apipack.files import atomic_open
from apipack.rulelog import logged
from apipack.splits import with_reference_counts

with logged(snakemake):
    table = with_reference_counts(pd.concat(pd.read_csv(p) for p in snakemake.input))
    with atomic_open(snakemake.output[0]) as fh:
        table.to_csv(fh, index=False)
    print(table.to_string(index=False))
