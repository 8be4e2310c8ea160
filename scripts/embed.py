"""Rule embed: embeddings of candidate instructions and test queries of one language, cached;
with a reranker configured, also its choice of examples for each test query (rerank_3shot)."""

import numpy as np

from apipack.files import atomic_open, read_json
from apipack.prompts import group_by
from apipack.retrieval import Embedder, Reranker, reranked_ids
from apipack.rulelog import logged

with logged(snakemake):
    cfg, k = snakemake.params.retrieval, snakemake.params.k
    items = [item for path in snakemake.input.levels for item in read_json(path)]
    valid = read_json(snakemake.input.valid)
    apis = {item["api_name"] for item in items}
    keys = [inst for inst in valid if inst["api_name"] in apis]
    queries = {item["unique_id"]: item for item in items}
    embedder = Embedder(cfg["embedder"], snakemake.input.get("model") or cfg["model_path"], cfg["batch_size"])
    print(f"embedding {len(keys)} instructions and {len(queries)} test queries")
    arrays = {
        "key_ids": np.array([x["unique_id"] for x in keys]),
        "keys": embedder.encode([x["instruction"] for x in keys]),
        "query_ids": np.array(list(queries)),
        "queries": embedder.encode([x["instruction_test"] for x in queries.values()]),
    }
    rerank = cfg["reranker"]
    reranker_path = snakemake.input.get("reranker") or rerank["model_path"]
    if reranker_path:
        print(f"reranking the top {rerank['top']} hits of each query with {reranker_path}")
        reranker = Reranker(reranker_path, cfg["batch_size"])
        arrays["rerank_query_ids"] = arrays["query_ids"]
        arrays["reranked"] = reranked_ids(
            list(queries.values()), group_by(valid, "api_name"), arrays, reranker, rerank["top"], k
        )
    with atomic_open(snakemake.output[0], "wb") as fh:
        np.savez(fh, **arrays)
