"""Training FLOPs, model FLOPs utilisation and the projected cost of a grid: pure arithmetic.

FLOPs per trained token (PaLM's convention, Chowdhery et al. 2022, appendix B):
``6 N + 12 L d T``, with N the parameters that take part in matrix products (all but the input
embedding, unless it is tied to the output layer), L layers, d hidden size and T the sequence
length. Recomputation by gradient checkpointing is not counted (MFU, not hardware utilisation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

FORMULAS = {
    "flops_per_token": "F = 6 N + 12 L d T (N: matmul parameters, L: layers, d: hidden size, T: mean sequence tokens)",
    "mfu": "MFU = (tokens/s per GPU) x F / peak FLOP/s of one GPU (measured matmul)",
    "train_tokens": "training tokens = sequences x mean tokens per sequence x epochs",
    "gpu_hours": "GPU-hours = training tokens x F(model) / (MFU x peak) / 3600",
    "wall_hours": "wall hours = GPU-hours / (GPUs per node x nodes)",
    "node_hours": "node-hours = wall hours x nodes = GPU-hours / GPUs per node",
    "generation_hours": "generation GPU-hours = items / (items/s measured x N(preflight) / N(model)) x GPUs / 3600",
    "disk": "disk = N x bytes per parameter (final model; + kept checkpoints) + tokens x bytes per token",
}


@dataclass(frozen=True)
class Shape:
    """What the FLOPs of a decoder depend on, from its config.json."""

    params: int  # every parameter
    matmul_params: int  # N: those in matrix products
    layers: int
    hidden: int

    def flops_per_token(self, seq_tokens: float) -> float:
        return 6 * self.matmul_params + 12 * self.layers * self.hidden * seq_tokens


def llama_shape(cfg: dict) -> Shape:
    """Parameters of a Llama-architecture decoder (Llama, CodeLlama, Mistral, SmolLM2) from its
    config.json: embeddings, attention (grouped KV heads), gated MLP and RMS norms."""
    for key in ("hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size", "num_attention_heads"):
        if key not in cfg:
            raise ValueError(f"model config: no {key!r} (a Llama-architecture config.json is needed)")
    d, layers, ff, vocab = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or d // heads
    attention = d * heads * head_dim * 2 + d * kv * head_dim * 2
    per_layer = attention + 3 * d * ff + 2 * d
    tied = cfg.get("tie_word_embeddings", False)
    body = layers * per_layer + d  # + the final norm
    embeddings = vocab * d * (1 if tied else 2)
    return Shape(params=body + embeddings, matmul_params=body + vocab * d, layers=layers, hidden=d)


def mfu(tokens_per_s_per_gpu: float, flops_per_token: float, peak_flops: float) -> float:
    return tokens_per_s_per_gpu * flops_per_token / peak_flops


@dataclass(frozen=True)
class TrainJob:
    """One training job of the grid and where its token count comes from."""

    model: str
    train_set: str
    sequences: int
    tokens: float  # one epoch
    source: str  # "tokenized set" (measured) or "published statistics" (projected)


@dataclass(frozen=True)
class Hardware:
    """What the preflight measured on the user's GPUs."""

    peak_flops: float  # one GPU, FLOP/s
    mfu: float
    items_per_s: float  # generation, preflight model
    preflight_params: int
    model_bytes_per_param: float  # saved final model
    checkpoint_bytes_per_param: float  # one checkpoint (weights + optimizer state)
    bytes_per_token: float  # tokenized set on disk


def train_cost(job: TrainJob, shape: Shape, hw: Hardware, epochs: float, gpus: int, nodes: int,
               kept_checkpoints: int) -> dict:
    """GPU-hours, wall and node-hours, and disk of one training job (formulas in FORMULAS)."""
    seq_tokens = job.tokens / job.sequences
    tokens = job.tokens * epochs
    flops = shape.flops_per_token(seq_tokens)
    gpu_hours = tokens * flops / (hw.mfu * hw.peak_flops) / 3600
    model_bytes = shape.params * hw.model_bytes_per_param
    checkpoint_bytes = kept_checkpoints * shape.params * hw.checkpoint_bytes_per_param
    return {
        **asdict(job),
        "epochs": epochs,
        "train_tokens": tokens,
        "flops_per_token": flops,
        "gpu_hours": gpu_hours,
        "wall_hours": gpu_hours / (gpus * nodes),
        "node_hours": gpu_hours / gpus,
        "model_bytes": model_bytes,
        "checkpoint_bytes": checkpoint_bytes,
        "tokenized_bytes": job.tokens * hw.bytes_per_token,
        "disk_bytes": model_bytes + checkpoint_bytes + job.tokens * hw.bytes_per_token,
    }


def generation_cost(items: int, params: int, hw: Hardware, gpus: int) -> dict:
    """GPU-hours of generating ``items`` answers with a model of ``params`` parameters: decoding
    reads every weight for every token, so items/s scale with the inverse of the size."""
    rate = hw.items_per_s * hw.preflight_params / params
    return {"items": items, "items_per_s": rate, "gpu_hours": items / rate * gpus / 3600}


def totals(rows: list[dict], keys: tuple[str, ...]) -> dict:
    return {k: math.fsum(r[k] for r in rows) for k in keys}
