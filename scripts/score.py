"""Rule score: paper metric and structural metric for every generated item of a cell."""

from apipack.files import read_json, read_jsonl, write_jsonl
from apipack.rulelog import logged
from apipack.score import api_paths, score_rows

with logged(snakemake):
    rows = read_jsonl(snakemake.input.generations)
    paths = api_paths(read_json(snakemake.input.valid))
    scored = score_rows(rows, snakemake.params.mode, paths, snakemake.input.generations)
    write_jsonl(snakemake.output[0], scored)
    n = max(len(scored), 1)
    print(
        f"{len(scored)} items; endpoint {sum(r['endpoint_match'] for r in scored) / n:.3f}; "
        f"api_call {sum(r['api_call_match'] for r in scored) / n:.3f}"
    )
