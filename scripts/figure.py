"""Rules figure and figure_paper: one figure family, from our metrics table or the paper's."""

import pandas as pd

from apipack.figures import family_figure, load_reference
from apipack.rulelog import logged

with logged(snakemake):
    inp, out, p = snakemake.input, snakemake.output, snakemake.params
    cells = inp.get("cells")  # rule figure_paper: none, the published numbers only
    done = family_figure(
        snakemake.wildcards.family,
        load_reference(inp.reference),
        pd.read_csv(cells) if cells else None,
        p.get("figures"),
        p.get("languages"),
        (out.png, out.pdf, out.data),
    )
    print(done)
