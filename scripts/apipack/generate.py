"""Generation engines: batched HF ``generate`` (default), vLLM, or an OpenAI-compatible server.

Greedy by default; sampling (the paper's temperature 0.7) is seeded. Batches are planned once per
cell (``plan_batches``: longest prompts first, at most ``batch_size`` prompts and, for local models,
``batch_tokens`` padded tokens), so the same items share a batch in every run. Items are appended
to an undeclared ``.partial`` file as batches finish, so an interrupted run resumes where it
stopped; the declared output is written at the end, atomically. Generation of an item stops as
soon as its answer is complete (after the ``**lang**:`` line) or its own token budget is spent.
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
from .settings import ApiRequest, GenerationSettings, ModelSource

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
    """A StoppingCriteria: per sequence, stop when its answer is complete or its own token budget
    (``caps``, one per sequence) is spent."""

    def __init__(self, tok, prompt_len: int, caps: Sequence[int]):
        self.tok, self.prompt_len, self.caps = tok, prompt_len, list(caps)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        new = input_ids[:, self.prompt_len :]
        texts = self.tok.batch_decode(new, skip_special_tokens=True)
        spent = new.shape[1]
        done = [complete_answer(t) or spent >= cap for t, cap in zip(texts, self.caps)]
        return torch.tensor(done, device=input_ids.device)


TOP_K, TOP_P = 50, 1.0  # sampling's nucleus: transformers' generate defaults, as the reference samples


@dataclass(frozen=True)
class Sampling:
    """What both local engines are asked for one prompt, each in its own terms (greedy: no
    temperature, top-k, top-p). Both stop at EOS; the answer is then cut by ``trim_answer``."""

    temperature: float | None
    top_k: int | None
    top_p: float | None
    seed: int
    max_new_tokens: int

    @classmethod
    def of(cls, gen: GenerationSettings, seed: int, prompt_tokens: int) -> Sampling:
        """The prompt's values: its token budget from its own length (``new_token_budget``), as the
        reference's ``max_length`` gives each prompt (batch size 1), whichever batch it is in."""
        sample = gen.do_sample
        return cls(
            temperature=gen.temperature if sample else None,
            top_k=TOP_K if sample else None,
            top_p=TOP_P if sample else None,
            seed=seed,
            max_new_tokens=new_token_budget(gen, prompt_tokens),
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

    def sizes(self, prompts: Sequence[str]) -> list[tuple[int, int]]:
        """Per prompt: its tokens as generated from, and its new-token budget."""
        return [(len(x), new_token_budget(self.gen, len(x))) for x in self.prompt_ids(prompts)]

    def requests(self, prompts: Sequence[str], seed: int) -> tuple[list[list[int]], list[Sampling]]:
        """The prompt ids and, per prompt, what it is sampled with."""
        ids = self.prompt_ids(prompts)
        return ids, [Sampling.of(self.gen, seed, len(x)) for x in ids]


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
        return self.pad(self.prompt_ids(prompts))

    def pad(self, ids: list[list[int]]):
        return self.tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")

    def __call__(self, prompts: Sequence[str], seed: int) -> list[str]:
        import torch
        from transformers import StoppingCriteriaList

        ids, samplings = self.requests(prompts, seed)
        s, caps = samplings[0], [x.max_new_tokens for x in samplings]  # all alike but the budget
        batch = self.pad(ids).to(self.device)
        n = batch["input_ids"].shape[1]
        torch.manual_seed(s.seed)
        with torch.no_grad():
            out = self.model.generate(
                **batch,
                max_new_tokens=max(caps),
                do_sample=s.temperature is not None,
                temperature=s.temperature,
                top_p=s.top_p,
                top_k=s.top_k,
                pad_token_id=self.tok.pad_token_id,
                stopping_criteria=StoppingCriteriaList([AnswerComplete(self.tok, n, caps)]),
            )
        return self.tok.batch_decode([row[n : n + cap] for row, cap in zip(out, caps)], skip_special_tokens=True)


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

        ids, samplings = self.requests(prompts, seed)
        params = [self.params(s) for s in samplings]
        lora = LoRARequest("adapter", 1, self.adapter) if self.adapter else None
        requests = [{"prompt_token_ids": x} for x in ids]
        outs = self.llm.generate(requests, params, lora_request=lora, use_tqdm=False)
        return self.tok.batch_decode([o.outputs[0].token_ids for o in outs], skip_special_tokens=True)


class UnknownModel(RuntimeError):
    """The server answered 404: it does not know the model (or the base_url is not its API)."""


class OpenAIEngine:
    """Chat completions from an OpenAI-compatible server, for a model entry with source
    ``openai`` (base_url, api_model, api_key_env; ``name``: the entry, for messages). The key
    comes from the environment only. Up to ``max_concurrency`` requests are in flight; the client
    retries failed requests (connection errors, 408/409/429/5xx) ``retries`` times with
    exponential backoff. Any other failure stops the batch at once: no request is sent after it."""

    def __init__(self, spec: dict, max_new_tokens: int, temperature: float):
        from openai import OpenAI

        key = os.environ.get(spec["api_key_env"], "")
        if not key and spec.get("require_key", True):
            raise RuntimeError(f"set the environment variable {spec['api_key_env']} for the API model")
        self.client = OpenAI(
            base_url=spec["base_url"], api_key=key or "none", max_retries=spec.get("retries", 5)
        )
        self.model, self.url, self.name = spec["api_model"], spec["base_url"], spec.get("name", "")
        self.workers = spec.get("max_concurrency", 8)
        self.max_new_tokens, self.temperature = max_new_tokens, temperature  # 0.0: greedy

    def complete(self, prompt: str, seed: int) -> str:
        from openai import NotFoundError

        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=self.max_new_tokens,
                temperature=self.temperature,
                seed=seed,
            )
        except NotFoundError as e:
            entry = f"models.{self.name}: " if self.name else ""
            raise UnknownModel(
                f"{entry}the server {self.url} does not know the API model {self.model!r} (HTTP 404: {e.message}). "
                "Providers retire dated models: set api_model to a current one (configs/paper.yaml), "
                "or check base_url"
            ) from None
        return resp.choices[0].message.content or ""

    def __call__(self, prompts: Sequence[str], seed: int) -> list[str]:
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        pool = ThreadPoolExecutor(max_workers=self.workers)
        futures = [pool.submit(self.complete, p, seed) for p in prompts]
        wait(futures, return_when=FIRST_EXCEPTION)
        pool.shutdown(cancel_futures=True)  # after a failure, the requests not yet sent are dropped
        # requests start in order, so a failed one comes before any dropped one
        return [f.result() for f in futures]


def make_engine(base: str, finetuned: str | None, gen: GenerationSettings, gpus: int = 0) -> Callable:
    """``generation.engine`` on a local base model, with the fine-tuned adapter or full model if
    there is one (API models: ``OpenAIEngine``)."""
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


def plan_batches(sizes: Sequence[tuple[int, int]], batch_size: int, batch_tokens: int | None = None) -> list[list[int]]:
    """Indices of the items, in batches: longest prompt first (ties in file order), so that a
    batch wastes little padding; at most ``batch_size`` items, and at most ``batch_tokens`` padded
    tokens (items x (longest prompt + largest new-token budget): the KV cache the batch can grow
    to). ``sizes``: (prompt tokens, new-token budget) per item. An item over the budget alone
    is a batch of its own. The same sizes give the same batches."""

    def fits(batch: list[int]) -> bool:
        padded = len(batch) * (max(sizes[j][0] for j in batch) + max(sizes[j][1] for j in batch))
        return len(batch) <= batch_size and (batch_tokens is None or padded <= batch_tokens)

    batches: list[list[int]] = []
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i][0]):
        if batches and fits([*batches[-1], i]):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def prompt_sizes(engine: Callable, prompts: Sequence[str]) -> list[tuple[int, int]]:
    """(prompt tokens, new-token budget) per prompt for a local engine; for others (an API)
    the prompt's characters and no budget."""
    if isinstance(engine, LocalEngine):
        return engine.sizes(prompts)
    return [(len(p), 0) for p in prompts]


def generate_file(
    prompts_file: str,
    out: str,
    engine: Callable,
    batch_size: int,
    seed: int,
    key: str | None = None,
    batch_tokens: int | None = None,
) -> dict:
    """Generate for every prompt row in the batches of ``plan_batches``, resuming from
    ``{out}.partial`` (if its ``key``, the run's fingerprint, matches): a batch with an item
    missing there is generated whole again, so its items keep their batch. Returns timing stats."""
    rows = read_jsonl(prompts_file)
    partial = Path(out + ".partial")
    done = {r["unique_id"]: r for r in read_partial(partial, key)}
    plan = plan_batches(prompt_sizes(engine, [r["prompt"] for r in rows]), batch_size, batch_tokens)
    todo = [[rows[i] for i in b] for b in plan if any(rows[i]["unique_id"] not in done for i in b)]
    start = time.time()
    with open(partial, "a", encoding="utf-8") as fh, tqdm(
        total=len(rows), initial=len(rows) - sum(map(len, todo)), desc=Path(out).name, mininterval=5
    ) as bar:
        for batch in todo:
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
    return {"items": sum(map(len, todo)), "batches": len(todo), "seconds": seconds}


def generate_cell(
    prompts_file: str,
    out: str,
    model: ModelSource,
    models: tuple[str, str | None],
    gen: GenerationSettings,
    seed: int,
    gpus: int,
) -> dict:
    """Answers of a local model (``model``: what its answers depend on; ``models``: its base and
    fine-tuned folders) to one cell's prompts with one seed, resumable (the partial file's key:
    ``cell_key``)."""
    key = cell_key(prompts_file, model, models, gen, seed)
    engine = make_engine(*models, gen, gpus)
    return generate_file(prompts_file, out, engine, gen.batch_size, seed, key, gen.batch_tokens)


def cell_key(
    prompts_file: str, model: ModelSource, models: tuple[str | None, str | None], gen: GenerationSettings, seed: int
) -> str:
    """The fingerprint of a cell's answers: the prompts, the model files and everything that
    changes the answers (the key of its partial file)."""
    answers = {**gen.param(), "model": model.param(), "seed": seed}
    return fingerprint(answers, [prompts_file, *(path for path in models if path)])


def generate_api_cell(
    prompts_file: str, out: str, model: ModelSource, server: dict, request: ApiRequest, seed: int, name: str
) -> dict:
    """Answers of an API model (``model``: source, base_url, api_model; ``server``: how it is
    reached, ``settings.connection``; ``name``: its entry) to one cell's prompts with one seed,
    resumable. Its key holds only what is sent: the prompts, the model, the request and the seed."""
    key = api_cell_key(prompts_file, model, request, seed)
    engine = OpenAIEngine({**model.param(), **server, "name": name}, request.max_tokens, request.temperature)
    # batches: how often the partial file is written, and the requests kept in flight
    return generate_file(prompts_file, out, engine, 4 * engine.workers, seed, key)


def api_cell_key(prompts_file: str, model: ModelSource, request: ApiRequest, seed: int) -> str:
    """The fingerprint of an API cell's answers: the prompts and everything sent with them."""
    return fingerprint({"request": request.param(), "model": model.param(), "seed": seed}, [prompts_file])
