"""Rule embed: embeddings of candidate instructions and test queries of one language, cached;
with a reranker configured, also its choice of examples for each test query (rerank_3shot)."""

import numpy as np

from apipack.files import atomic_open, read_json
from apipack.retrieval import embedding_arrays
from apipack.rulelog import logged
from apipack.settings import RetrievalSettings

with logged(snakemake):
    inp = snakemake.input
    arrays = embedding_arrays(
        [item for path in inp.levels for item in read_json(path)],
        read_json(inp.valid),
        RetrievalSettings.of(snakemake.params.retrieval),
        inp.get("model"),
        inp.get("reranker"),
    )
    with atomic_open(snakemake.output[0], "wb") as fh:
        np.savez(fh, **arrays)
