"""Rule preflight_report: measured figures and the grid's projected cost (results/preflight/)."""

from pathlib import Path

from apipack.files import atomic_open, read_json, write_json
from apipack.projection import markdown, report
from apipack.rulelog import logged


def main(snakemake) -> None:
    with logged(snakemake):
        inp = snakemake.input
        engines = {Path(f).stem: read_json(f) for f in inp.engines}
        rep = report(
            snakemake.config, snakemake.params.grid, inp.grid, Path("results"), read_json(inp.peak), engines, inp.curve,
            snakemake.params.benchmark,
        )
        write_json(snakemake.output.json, rep)
        with atomic_open(snakemake.output.md) as fh:
            fh.write(markdown(rep))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (Snakemake's script preamble defines it)
