"""Fine-tuning with the transformers Trainer: LoRA (default), QLoRA or full, completion-only loss.

Run as a script under ``accelerate launch`` for multi-GPU/multi-node (FSDP or DeepSpeed configs
in ``configs/accelerate/``); the global batch comes from the config and the gradient
accumulation is derived from the number of processes. Checkpoints go to an undeclared folder,
so a killed job resumes from the latest one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from array import array
from collections import OrderedDict
from pathlib import Path

import pandas as pd

from .files import atomic_open, fingerprint, reset_unless_stamped
from .measure import write_timing
from .models import bos_prefix, load_causal_lm, load_tokenizer, token_ids
from .settings import RunSettings, TrainSettings

IGNORE = -100


class CompletionIds:
    """Token ids of completions, each text tokenized once while it may come again.

    A training set in both formats holds every completion twice: in its language's block of
    0-shot records and again in the block of few-shot records that follows. The ids of a text
    are kept (4 bytes a token) until their first reuse, at most ``limit`` texts at a time
    (the oldest go first), so memory stays bounded whatever the file holds.
    """

    def __init__(self, tok, limit: int = 200_000):
        self.tok, self.limit = tok, limit
        self.kept: OrderedDict[str, array] = OrderedDict()  # O(1) removal of the oldest
        self.reused = 0

    def __call__(self, texts: list[str]) -> list[list[int]]:
        new = list(dict.fromkeys(t for t in texts if t not in self.kept))
        fresh = dict(zip(new, token_ids(self.tok, new)))
        again = {t: self.kept.pop(t).tolist() for t in dict.fromkeys(texts) if t in self.kept}
        self.reused += len(again)
        for text in new:
            if len(self.kept) >= self.limit:
                self.kept.popitem(last=False)
            self.kept[text] = array("i", fresh[text])
        return [fresh[t] if t in fresh else again[t] for t in texts]


def encode(record: dict, tok, cutoff_len: int) -> dict:
    """Token ids of prompt + completion + EOS, labels -100 over the prompt (completion-only loss)."""
    return encode_batch([record["prompt"]], [record["completion"]], tok, cutoff_len)[0]


def encode_batch(
    prompts: list[str], completions: list[str], tok, cutoff_len: int, completion_ids: CompletionIds | None = None
) -> list[dict]:
    """``encode`` for many records: one batched (Rust, multi-threaded) call per field."""
    bos, eos = bos_prefix(tok), [tok.eos_token_id]  # BOS as generation feeds the prompt (models.prompt_ids)
    answers = completion_ids(completions) if completion_ids is not None else token_ids(tok, completions)
    rows = []
    for prompt, completion in zip(token_ids(tok, prompts), answers):
        n = len(bos) + len(prompt)
        rows.append({
            "input_ids": (bos + prompt + completion + eos)[:cutoff_len],
            "labels": ([IGNORE] * n + completion + eos)[:cutoff_len],
        })
    return rows


SHARD_BYTES = 32 << 20  # the training file is tokenized in byte ranges of about this size


def _features():
    """Arrow columns of the tokenized training set; ``length`` feeds group_by_length's sampler."""
    from datasets import Features, Sequence, Value

    ids = Sequence(Value("int32"))
    return Features({"input_ids": ids, "labels": ids, "length": Value("int32")})


def _tokenized_rows(
    shards: list[tuple[int, int]], train_file: str, base: str, cutoff_len: int, trust_remote_code: bool
):
    """Rows of the tokenized training set for byte ranges of the file, 1,000 records a batch."""
    tok = load_tokenizer(base, trust_remote_code)
    completion_ids = CompletionIds(tok)
    for start, end in shards:
        for prompts, completions in _record_batches(train_file, start, end, 1000):
            for row in encode_batch(prompts, completions, tok, cutoff_len, completion_ids):
                yield {**row, "length": len(row["input_ids"])}


def _record_batches(train_file: str, start: int, end: int, batch: int):
    """(prompts, completions) of the JSON lines that start in bytes [start, end) of the file."""
    prompts, completions = [], []
    with open(train_file, "rb") as fh:
        fh.seek(start)
        while fh.tell() < end and (line := fh.readline()):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                prompts.append(str(record["prompt"]))
                completions.append(str(record["completion"]))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(
                    f"{train_file}: the line ending at byte {fh.tell()} is not a prompt/completion "
                    f"record ({err!r})"
                ) from None
            if len(prompts) == batch:
                yield prompts, completions
                prompts, completions = [], []
    if prompts:
        yield prompts, completions


def line_shards(path: str, n: int) -> list[tuple[int, int]]:
    """``n`` byte ranges of about equal size that cut the file between lines."""
    size = Path(path).stat().st_size
    cuts = [0]
    with open(path, "rb") as fh:
        for k in range(1, n):
            fh.seek(max(k * size // n, cuts[-1]))
            if fh.tell():
                fh.readline()
            cuts.append(min(fh.tell(), size))
    return [(a, b) for a, b in zip(cuts, [*cuts[1:], size]) if b > a]


def training_data(train_file: str, base: str, cutoff_len: int, trust_remote_code: bool, cache: Path, state):
    """The tokenized training set as a memory-mapped Arrow dataset.

    The main process tokenizes once, in batches and with one worker per CPU core it may use,
    into ``cache/<fingerprint>/`` (training file, base model folder, cutoff); the other ranks
    wait (``main_process_first``) and map the same Arrow files, so no rank holds the set in
    memory. Caches of other fingerprints are removed.
    """
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    key = fingerprint({"cutoff_len": cutoff_len}, [train_file, base])[:16]
    shards = line_shards(train_file, min(64, 1 + Path(train_file).stat().st_size // SHARD_BYTES))
    if not shards:
        raise ValueError(f"{train_file}: no training records")
    kwargs = {
        "shards": shards,  # from the file alone, so that every rank finds the same cache
        "train_file": str(train_file),
        "base": str(base),
        "cutoff_len": cutoff_len,
        "trust_remote_code": trust_remote_code,
    }
    workers = min(len(shards), len(os.sched_getaffinity(0)))
    with state.main_process_first():
        if state.is_main_process and cache.is_dir():
            for stale in (p for p in cache.iterdir() if p.name != key):
                shutil.rmtree(stale, ignore_errors=True)
        try:
            data = Dataset.from_generator(
                _tokenized_rows,
                features=_features(),
                gen_kwargs=kwargs,
                cache_dir=str(cache / key),
                num_proc=workers if workers > 1 else None,
            )
        except DatasetGenerationError as err:  # say which record, not only that one failed
            raise (err.__cause__ or err) from None
    if len(data) == 0:
        raise ValueError(f"{train_file}: no training records")
    return data


def arrow_trainer():
    """The Trainer, with a length-grouped sampler that reads the ``length`` column in one go:
    indexing a memory-mapped column row by row (as transformers does) takes about 1 ms a row."""
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class ArrowTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, LengthGroupedSampler):
                data = train_dataset if train_dataset is not None else self.train_dataset
                sampler.lengths = data.data.column("length").to_pylist()
            return sampler

    return ArrowTrainer


def grad_accumulation(global_batch: int, per_device: int, world_size: int) -> int:
    """Accumulation steps so that the global batch does not depend on the GPU count."""
    steps, rest = divmod(global_batch, per_device * world_size)
    if rest or steps < 1:
        raise ValueError(
            f"finetune.global_batch={global_batch} is not a multiple of per_device_batch="
            f"{per_device} x {world_size} processes"
        )
    return steps


# torch dtype of each finetune.precision
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def build_model(base: str, ft: TrainSettings, gradient_checkpointing: bool = False):
    """The base model, wrapped with LoRA adapters unless ``method`` is ``full``.

    LoRA and QLoRA load the frozen base in ``precision`` (QLoRA also computes in it; peft keeps
    the adapters in fp32). Full fine-tuning keeps fp32 weights and trains with autocast.
    """
    method = ft.method
    dtype = DTYPES[ft.precision] if method != "full" else "float32"
    if method == "qlora":
        import torch
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=getattr(torch, dtype),
        )
        model = AutoModelForCausalLM.from_pretrained(
            base,
            quantization_config=quant,
            dtype=getattr(torch, dtype),
            use_safetensors=True,
            trust_remote_code=ft.trust_remote_code,
        )
        model = prepare_model_for_kbit_training(model, gradient_checkpointing)
    else:
        model = load_causal_lm(base, dtype, ft.trust_remote_code)
    if method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=ft.lora_r,
        lora_alpha=ft.lora_alpha,
        lora_dropout=ft.lora_dropout,
        target_modules=list(ft.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def training_args(ft: TrainSettings, job: RunSettings, checkpoint_dir: Path, world_size: int):
    from transformers import TrainingArguments

    precision = ft.precision
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=job.per_device_batch,
        gradient_accumulation_steps=grad_accumulation(ft.global_batch, job.per_device_batch, world_size),
        learning_rate=ft.learning_rate,
        num_train_epochs=ft.epochs,
        max_steps=ft.max_steps,
        warmup_steps=0,
        lr_scheduler_type=ft.lr_scheduler,
        optim=ft.optimizer,
        weight_decay=0.0,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        gradient_checkpointing=job.gradient_checkpointing,
        train_sampling_strategy="group_by_length" if ft.group_by_length else "random",
        logging_steps=job.logging_steps,
        save_strategy="steps",
        save_steps=job.save_steps,
        save_total_limit=2,
        seed=ft.seed,
        data_seed=ft.seed,
        report_to=list(job.report_to) or "none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        use_cpu=not _has_gpu(),
        remove_unused_columns=False,
    )


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def collator(tok, packing: bool):
    """Batches of the tokenized set; the ``length`` column (for the sampler) is dropped."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if packing:  # padding-free: one row of concatenated sequences, position_ids restart
        inner = DataCollatorWithFlattening()
    else:
        inner = DataCollatorForSeq2Seq(
            tok, padding=True, label_pad_token_id=IGNORE, pad_to_multiple_of=8
        )
    return lambda rows: inner([{k: v for k, v in r.items() if k != "length"} for r in rows])


def run(train_file: str, base: str, out: str, ft: TrainSettings, job: RunSettings, checkpoint_dir: str,
        log_csv: str) -> None:
    """Train, resuming from the newest checkpoint in ``checkpoint_dir`` if there is one (of the
    same data, base model and ``ft``, on any process count and with any ``job`` settings)."""
    from accelerate import PartialState
    from transformers import set_seed

    set_seed(ft.seed)
    # The Trainer's own state: on a CPU, use_cpu makes a multi-process launch one gloo group.
    state = PartialState(cpu=not _has_gpu())
    world_size = state.num_processes
    tok = load_tokenizer(base, ft.trust_remote_code)
    tok.padding_side = "right"  # training pads on the right; generation on the left
    ckpt_dir = Path(checkpoint_dir)
    data = training_data(train_file, base, ft.cutoff_len, ft.trust_remote_code, ckpt_dir / "dataset", state)
    with state.main_process_first():  # the others wait until stale checkpoints are gone
        if state.is_main_process:
            claim_checkpoints(ckpt_dir, fingerprint(ft.param(), [train_file, base]))
    last = latest_checkpoint(ckpt_dir)
    tokens_before = _tokens_seen(last)  # read now: checkpoint rotation may delete it
    load = time.time()
    model = build_model(base, ft, job.gradient_checkpointing)
    load = time.time() - load
    args = training_args(ft, job, ckpt_dir, world_size)
    args.warmup_steps = _warmup_steps(ft, len(data), args, world_size)
    trainer = arrow_trainer()(
        model=model, args=args, train_dataset=data, data_collator=collator(tok, ft.packing)
    )
    if state.is_main_process:
        print(
            f"{len(data)} sequences, {world_size} process(es), per-device batch "
            f"{args.per_device_train_batch_size}, gradient accumulation "
            f"{args.gradient_accumulation_steps}, global batch {ft.global_batch}",
            flush=True,
        )
    if last:
        print(f"resuming from {last}", flush=True)
    start = time.time()
    trainer.train(resume_from_checkpoint=last)
    print(f"trained on {world_size} process(es); saving to {out}", flush=True)
    save = time.time()
    save_final(trainer, tok, Path(out))
    save = time.time() - save
    if trainer.is_world_process_zero():
        write_log(trainer.state.log_history, log_csv, time.time() - start, tokens_before)
        write_timing(Path(log_csv).with_suffix(".timing.json"), world_size, load, save)


def claim_checkpoints(folder: Path, key: str) -> None:
    """Keep checkpoints only if they belong to this run; those of another run (other data,
    settings or base model) are deleted, so that a changed job never resumes stale weights."""

    def discard() -> None:
        stale = sorted(p for p in folder.glob("checkpoint-*") if p.is_dir())
        if stale:
            print(f"discarding {len(stale)} checkpoint(s) in {folder}: another run's", flush=True)
        for p in stale:
            shutil.rmtree(p)

    folder.mkdir(parents=True, exist_ok=True)
    reset_unless_stamped(folder / "fingerprint.txt", key, discard)


def _tokens_seen(checkpoint: str | None) -> int:
    """Input tokens already trained in the checkpoint a run resumes from (0 for a fresh run)."""
    if not checkpoint:
        return 0
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return int(state.get("num_input_tokens_seen", 0))


def latest_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint (its trainer_state.json is written last), if any."""
    done = [
        p
        for p in folder.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def _warmup_steps(ft: TrainSettings, n: int, args, world_size: int) -> int:
    if ft.max_steps > 0:
        total = ft.max_steps
    else:
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size
        total = math.ceil(n / per_step) * math.ceil(ft.epochs)
    return math.ceil(ft.warmup_ratio * total)


def save_final(trainer, tok, out: Path) -> None:
    """Write the adapter (or full model) to a temporary folder, then rename it into place.

    Called on every process: under FSDP or ZeRO-3 gathering the full weights is a collective,
    which ``Trainer.save_model`` runs on all ranks while only the main process writes."""
    tmp = out.with_name(out.name + ".part")
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        tok.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)


def write_log(history: list[dict], path: str, seconds: float, tokens_before: int = 0) -> None:
    """Loss curve table: step, loss, learning rate, tokens seen and tokens per second (of the
    tokens trained by this process: a resumed run does not count those of its checkpoint)."""
    rows = [h for h in history if "loss" in h]
    df = pd.DataFrame(rows)
    for col in ("step", "epoch", "loss", "learning_rate", "num_input_tokens_seen"):
        if col not in df:
            df[col] = pd.Series(dtype=float)
    df = df[["step", "epoch", "loss", "learning_rate", "num_input_tokens_seen"]]
    final = next((h for h in reversed(history) if "train_runtime" in h), {})
    runtime = final.get("train_runtime", seconds)
    tokens = (df["num_input_tokens_seen"].max() if len(df) else 0) - tokens_before
    df["tokens_per_second"] = (tokens / runtime) if runtime and tokens > 0 else float("nan")
    with atomic_open(path) as fh:
        df.to_csv(fh, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description="Fine-tune a causal LM on API Pack prompts")
    parser.add_argument("--train", required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--settings", required=True, help="JSON of TrainSettings (rule finetune_settings)")
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--log-csv", required=True)
    parser.add_argument("--per-device-batch", type=int, required=True)
    parser.add_argument("--logging-steps", type=int, required=True)
    parser.add_argument("--save-steps", type=int, required=True)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--report-to", action="append", default=[], choices=["tensorboard", "wandb"])
    a = parser.parse_args()
    ft = TrainSettings.of(json.loads(Path(a.settings).read_text()))
    job = RunSettings(a.per_device_batch, a.gradient_checkpointing, a.logging_steps, a.save_steps, tuple(a.report_to))
    run(a.train, a.base, a.out, ft, job, a.checkpoints, a.log_csv)


if __name__ == "__main__":
    main()
