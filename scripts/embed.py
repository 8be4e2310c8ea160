"""Rule embed: embeddings of candidate instructions and test queries of one language, cached."""

import numpy as np

from apipack.files import atomic_open, read_json
from apipack.retrieval import Embedder
from apipack.rulelog import logged

with logged(snakemake):
    cfg = snakemake.params.retrieval
    items = [item for path in snakemake.input.levels for item in read_json(path)]
    apis = {item["api_name"] for item in items}
    keys = [inst for inst in read_json(snakemake.input.valid) if inst["api_name"] in apis]
    queries = {item["unique_id"]: item["instruction_test"] for item in items}
    path = snakemake.input.model[0] if snakemake.input.model else cfg["model_path"]
    embedder = Embedder(cfg["embedder"], path, cfg["batch_size"])
    print(f"embedding {len(keys)} instructions and {len(queries)} test queries")
    with atomic_open(snakemake.output[0], "wb") as fh:
        np.savez(
            fh,
            key_ids=np.array([k["unique_id"] for k in keys]),
            keys=embedder.encode([k["instruction"] for k in keys]),
            query_ids=np.array(list(queries)),
            queries=embedder.encode(list(queries.values())),
        )
