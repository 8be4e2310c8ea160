"""Generation engines: batched HF ``generate`` (default), vLLM, or an OpenAI-compatible server.

Greedy by default; sampling (the paper's temperature 0.7) is seeded. Items are appended to an
undeclared ``.partial`` file as batches finish, so an interrupted run resumes where it stopped;
the declared output is written at the end, atomically. Generation of an item stops as soon as
its answer is complete: after the ``**lang**:`` line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .files import dumps, fingerprint, read_jsonl, reset_unless_stamped, write_jsonl
from .settings import GenerationSettings, ModelSource

ANSWER_END = "**lang**:"


def complete_answer(text: str) -> bool:
    """True once the text holds a ``**lang**:`` value followed by a line break."""
    i = text.find(ANSWER_END)
    return i >= 0 and "\n" in text[i + len(ANSWER_END) :]


def trim_answer(text: str) -> str:
    """Cut anything after the line that completes the answer."""
    i = text.find(ANSWER_END)
    if i < 0:
        return text.strip()
    j = text.find("\n", i + len(ANSWER_END))
    return (text if j < 0 else text[:j]).strip()


class AnswerComplete:
    """A StoppingCriteria: per sequence, stop when its answer is complete."""

    def __init__(self, tok, prompt_len: int):
        self.tok, self.prompt_len = tok, prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tok.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        return torch.tensor([complete_answer(t) for t in texts], device=input_ids.device)


TOP_K, TOP_P = 50, 1.0  # sampling's nucleus: transformers' generate defaults, as the reference samples


@dataclass(frozen=True)
class Sampling:
    """What both local engines are asked for one batch, each in its own terms (greedy: no
    temperature, top-k, top-p). Both stop at EOS; the answer is then cut by ``trim_answer``."""

    temperature: float | None
    top_k: int | None
    top_p: float | None
    seed: int
    max_new_tokens: int

    @classmethod
    def of(cls, gen: GenerationSettings, seed: int, longest_prompt: int) -> Sampling:
        """The batch's values: its token budget from its longest prompt (``new_token_budget``)."""
        sample = gen.do_sample
        return cls(
            temperature=gen.temperature if sample else None,
            top_k=TOP_K if sample else None,
            top_p=TOP_P if sample else None,
            seed=seed,
            max_new_tokens=new_token_budget(gen, longest_prompt),
        )


class LocalEngine:
    """A local model's tokenizer and the prompt ids both engines generate from: as at training
    (BOS, then the text; models.prompt_ids), cut on the left (the task is at the end) to
    ``max_prompt_tokens``. ``finetuned``: an adapter folder or a full fine-tuned model."""

    def __init__(self, base: str, finetuned: str | None, gen: GenerationSettings):
        from .models import bos_prefix, load_tokenizer, tokenizer_folder

        self.gen = gen
        self.tok = load_tokenizer(tokenizer_folder(base, finetuned), gen.trust_remote_code)
        self.prefix = bos_prefix(self.tok)

    def prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        from .models import token_ids

        keep = self.gen.max_prompt_tokens - len(self.prefix)
        return [self.prefix + t[-keep:] for t in token_ids(self.tok, list(prompts))]


class HFEngine(LocalEngine):
    """Batched ``generate`` with left padding. An adapter is applied to the base model and merged;
    a full fine-tuned model is loaded instead of the base."""

    def __init__(self, base: str, finetuned: str | None, gen: GenerationSettings):
        import torch

        from .models import is_adapter, load_causal_lm

        super().__init__(base, finetuned, gen)
        self.tok.padding_side = "left"
        full = finetuned is not None and not is_adapter(finetuned)
        model = load_causal_lm(finetuned if full else base, gen.dtype, gen.trust_remote_code)
        if finetuned and not full:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, finetuned).merge_and_unload()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = model.to(self.device).eval()

    def encode(self, prompts: Sequence[str]):
        """``prompt_ids`` left-padded into one batch."""
        return self.tok.pad({"input_ids": self.prompt_ids(prompts)}, padding=True, return_tensors="pt")

    def __call__(self, prompts: Sequence[str], seed: int) -> list[str]:
        import torch
        from transformers import StoppingCriteriaList

        batch = self.encode(prompts).to(self.device)
        n = batch["input_ids"].shape[1]
        s = Sampling.of(self.gen, seed, n)
        torch.manual_seed(s.seed)
        with torch.no_grad():
            out = self.model.generate(
                **batch,
                max_new_tokens=s.max_new_tokens,
                do_sample=s.temperature is not None,
                temperature=s.temperature,
                top_p=s.top_p,
                top_k=s.top_k,
                pad_token_id=self.tok.pad_token_id,
                stopping_criteria=StoppingCriteriaList([AnswerComplete(self.tok, n)]),
            )
        return self.tok.batch_decode(out[:, n:], skip_special_tokens=True)


def new_token_budget(gen: GenerationSettings, prompt_tokens: int) -> int:
    """``max_new_tokens``, capped so that prompt plus answer fit ``max_total_tokens`` (the
    reference's ``max_length=4096``), and at least one token."""
    if gen.max_total_tokens is None:
        return gen.max_new_tokens
    return max(1, min(gen.max_new_tokens, gen.max_total_tokens - prompt_tokens))


class VLLMEngine(LocalEngine):
    """vLLM over ``gpus`` GPUs (tensor parallel; generation.gpus), or its CPU build for 0 GPUs. A
    LoRA adapter is served on the base model; a fine-tuned folder without ``adapter_config.json``
    (full fine-tuning) is the model. It gets HFEngine's prompt ids, sampling values and token
    budget, and its answer ids are decoded by the same tokenizer. On GPUs vLLM starts its engine in
    spawned processes: a script that builds this engine runs under ``if __name__ == "__main__":``."""

    LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts

    def __init__(self, base: str, adapter: str | None, gen: GenerationSettings, gpus: int):
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")  # no network at run time
        if gpus == 0:  # the CPU build: engine and model in this process, which starts in seconds, not a minute
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            # a KV cache of 4 GiB (the rule asks for 8 GB), not its default of 92 % of the machine's memory
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
        from vllm import LLM

        super().__init__(base, adapter, gen)
        config = Path(adapter, "adapter_config.json") if adapter else None
        lora = json.loads(config.read_text()) if config and config.is_file() else None
        self.adapter = adapter if lora else None
        extra = {}
        if lora:
            rank = next((r for r in self.LORA_RANKS if r >= lora["r"]), lora["r"])
            extra = {"enable_lora": True, "max_loras": 1, "max_lora_rank": rank}
        total = gen.max_total_tokens
        self.llm = LLM(
            model=adapter if adapter and not lora else base,
            tensor_parallel_size=max(1, gpus),
            seed=0,
            dtype=gen.dtype,
            trust_remote_code=gen.trust_remote_code,
            # prompt + answer; new_token_budget keeps to max_total_tokens, as in HFEngine
            max_model_len=None if total is None else max(total, gen.max_prompt_tokens + 1),
            enforce_eager=gpus == 0,  # CPU: no graph compilation, which costs more than it saves here
            distributed_executor_backend="uni" if gpus == 0 else None,
            **extra,
        )

    def params(self, s: Sampling):
        """vLLM's SamplingParams for ``s`` (greedy: temperature 0); ids only, decoded here."""
        from vllm import SamplingParams

        return SamplingParams(
            temperature=s.temperature or 0.0,
            top_k=s.top_k or 0,  # 0: all tokens
            top_p=s.top_p or 1.0,
            seed=s.seed,
            max_tokens=s.max_new_tokens,
            detokenize=False,
        )

    def __call__(self, prompts: Sequence[str], seed: int) -> list[str]:
        from vllm.lora.request import LoRARequest

        ids = self.prompt_ids(prompts)
        params = self.params(Sampling.of(self.gen, seed, max(map(len, ids))))
        lora = LoRARequest("adapter", 1, self.adapter) if self.adapter else None
        requests = [{"prompt_token_ids": x} for x in ids]
        outs = self.llm.generate(requests, params, lora_request=lora, use_tqdm=False)
        return self.tok.batch_decode([o.outputs[0].token_ids for o in outs], skip_special_tokens=True)


class OpenAIEngine:
    """Chat completions from an OpenAI-compatible server, for a model entry with source
    ``openai`` (base_url, api_model, api_key_env). The key comes from the environment only.
    Up to ``max_concurrency`` requests are in flight; the client retries failed requests
    (connection errors, 408/409/429/5xx) ``retries`` times with exponential backoff."""

    def __init__(self, spec: dict, max_new_tokens: int, temperature: float):
        from openai import OpenAI

        key = os.environ.get(spec["api_key_env"], "")
        if not key and spec.get("require_key", True):
            raise RuntimeError(f"set the environment variable {spec['api_key_env']} for the API model")
        self.client = OpenAI(
            base_url=spec["base_url"], api_key=key or "none", max_retries=spec.get("retries", 5)
        )
        self.model = spec["api_model"]
        self.workers = spec.get("max_concurrency", 8)
        self.max_new_tokens, self.temperature = max_new_tokens, temperature  # 0.0: greedy

    def complete(self, prompt: str, seed: int) -> str:
        resp = self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=self.max_new_tokens,
            temperature=self.temperature,
            seed=seed,
        )
        return resp.choices[0].message.content or ""

    def __call__(self, prompts: Sequence[str], seed: int) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda p: self.complete(p, seed), prompts))


def make_engine(
    spec: dict, base: str | None, finetuned: str | None, gen: GenerationSettings, gpus: int = 0
) -> Callable:
    """The engine of a model entry: its API for source ``openai``, else ``generation.engine``
    on the base model, with the fine-tuned adapter or full model if there is one."""
    if spec["source"] == "openai":
        return OpenAIEngine(spec, gen.max_new_tokens, gen.temperature if gen.do_sample else 0.0)
    if gen.engine == "hf":
        return HFEngine(base, finetuned, gen)
    if gen.engine == "vllm":
        return VLLMEngine(base, finetuned, gen, gpus)
    raise ValueError(f"generation.engine: unknown engine {gen.engine!r}; allowed: hf, vllm")


def _stamp(partial: Path) -> Path:
    """The file holding the fingerprint of the run that wrote ``partial``."""
    return partial.with_name(partial.name + ".key")


def read_partial(path: Path, key: str | None = None) -> list[dict]:
    """Items finished before an interruption; a line torn by a kill is cut off and redone.

    With a ``key`` (the run's fingerprint), items of a run with other prompts, settings or
    model (another key in ``{path}.key``, or none) are discarded, not reused.
    """

    def discard() -> None:
        if path.exists():
            print(f"{path}: discarding the items of a run with other prompts, settings or model")
            path.unlink()

    if key is not None:
        reset_unless_stamped(_stamp(path), key, discard)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    if complete != text:
        print(f"{path}: dropping a torn last line; its item is generated again")
        path.write_text(complete, encoding="utf-8")
    rows = [json.loads(line) for line in complete.splitlines() if line.strip()]
    if rows:
        print(f"{path}: resuming after {len(rows)} finished items")
    return rows


def generate_file(
    prompts_file: str,
    out: str,
    engine: Callable,
    batch_size: int,
    seed: int,
    key: str | None = None,
) -> dict:
    """Generate for every prompt row, resuming from ``{out}.partial`` (if its ``key``, the
    run's fingerprint, matches); returns timing stats."""
    rows = read_jsonl(prompts_file)
    partial = Path(out + ".partial")
    done = {r["unique_id"]: r for r in read_partial(partial, key)}
    todo = [r for r in rows if r["unique_id"] not in done]
    # Longest prompts first: batches of similar length waste less padding.
    todo.sort(key=lambda r: -len(r["prompt"]))
    start = time.time()
    with open(partial, "a", encoding="utf-8") as fh, tqdm(
        total=len(rows), initial=len(done), desc=Path(out).name, mininterval=5
    ) as bar:
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            texts = engine([r["prompt"] for r in batch], seed)
            for row, text in zip(batch, texts):
                rec = {k: v for k, v in row.items() if k != "prompt"}
                rec["output"] = trim_answer(text)
                done[row["unique_id"]] = rec
                fh.write(dumps(rec) + "\n")
            fh.flush()
            bar.update(len(batch))
    write_jsonl(out, (done[r["unique_id"]] for r in rows))
    partial.unlink()
    _stamp(partial).unlink(missing_ok=True)
    seconds = time.time() - start
    return {"items": len(todo), "seconds": seconds}


def generate_cell(
    prompts_file: str,
    out: str,
    model: ModelSource,
    server: dict,
    models: tuple[str | None, str | None],
    gen: GenerationSettings,
    seed: int,
    gpus: int,
) -> dict:
    """Answers of a model (``model``: what its answers depend on; ``server``: how an API model is
    reached, ``settings.connection``; ``models``: its base and fine-tuned folders, if any) to one
    cell's prompts with one seed, resumable (the partial file's key: ``cell_key``)."""
    key = cell_key(prompts_file, model, models, gen, seed)
    engine = make_engine({**model.param(), **server}, *models, gen, gpus)
    return generate_file(prompts_file, out, engine, gen.batch_size, seed, key)


def cell_key(
    prompts_file: str, model: ModelSource, models: tuple[str | None, str | None], gen: GenerationSettings, seed: int
) -> str:
    """The fingerprint of a cell's answers: the prompts, the model files and everything that
    changes the answers (the key of its partial file)."""
    answers = {**gen.param(), "model": model.param(), "seed": seed}
    return fingerprint(answers, [prompts_file, *(path for path in models if path)])
