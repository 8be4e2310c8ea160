"""Fine-tuning with the transformers Trainer: LoRA (default), QLoRA or full, completion-only loss.

Run as a script under ``accelerate launch`` for multi-GPU/multi-node (the FSDP config in
``configs/accelerate/``); the global batch comes from the config and the gradient
accumulation is derived from the number of processes. The training set comes tokenized (rule
tokenize, ``apipack.tokenized``). Checkpoints go to an undeclared folder, so a killed job resumes
from the latest one; on SIGTERM (SLURM's time limit, or sbatch --signal before it) training saves
a checkpoint at the next step and exits with ``STOPPED``. Checkpoints are removed once the final
model is in place (unless ``finetune.keep_checkpoints``). docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd

from . import tokenized
from .files import atomic_open, fingerprint, reset_unless_stamped
from .measure import write_timing
from .models import load_causal_lm, load_tokenizer
from .settings import RunSettings, TrainSettings
from .tokenized import IGNORE

STOPPED = 75  # exit status of a run stopped by a signal after its checkpoint (EX_TEMPFAIL: retry)


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


def process_state(timeout_minutes: float):
    """accelerate's (and so the Trainer's) process state; its process group, created here, waits
    ``timeout_minutes`` for a collective before it fails (the Trainer's ddp_timeout would come too late)."""
    from accelerate import PartialState

    # On a CPU, use_cpu makes a multi-process launch one gloo group.
    return PartialState(cpu=not _has_gpu(), timeout=timedelta(minutes=timeout_minutes))


def stop_on_signal(signals=(signal.SIGTERM,)):
    """A TrainerCallback that, once one of ``signals`` arrived on any process, has the Trainer
    save a checkpoint at the end of the step and stop; its ``received`` holds the signal."""
    import torch
    import torch.distributed as dist
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        received: int | None = None

        def __init__(self):
            for sig in signals:
                signal.signal(sig, self._note)

        def _note(self, signum, frame) -> None:
            self.received = signum
            print(f"received {signal.Signals(signum).name}: saving a checkpoint at the end of this step",
                  flush=True)

        def on_step_end(self, args, state, control, **kwargs):
            stop = torch.tensor([float(self.received or 0)], device=args.device)
            if dist.is_available() and dist.is_initialized():  # one rank's signal stops them all
                dist.all_reduce(stop, op=dist.ReduceOp.MAX)
            if stop.item():
                self.received = self.received or int(stop.item())
                control.should_save = control.should_training_stop = True
            return control

    return StopOnSignal()


def run(data_dir: str, base: str, out: str, ft: TrainSettings, job: RunSettings, checkpoint_dir: str,
        log_csv: str) -> None:
    """Train on the tokenized set in ``data_dir``, resuming from the newest checkpoint in
    ``checkpoint_dir`` if there is one (of the same data, base model and ``ft``, on any process
    count and with any ``job`` settings). Stopped by SIGTERM: exits with ``STOPPED`` once the
    checkpoint of the current step is saved."""
    from transformers import set_seed

    set_seed(ft.seed)
    stopper = stop_on_signal()  # before anything slow, so that an early signal is not lost
    state = process_state(job.process_group_timeout)
    world_size = state.num_processes
    tok = load_tokenizer(base, ft.trust_remote_code)
    tok.padding_side = "right"  # training pads on the right; generation on the left
    ckpt_dir = Path(checkpoint_dir)
    data = tokenized.load(data_dir, tok, ft.cutoff_len)
    with state.main_process_first():  # the others wait until stale checkpoints are gone
        if state.is_main_process:
            claim_checkpoints(ckpt_dir, checkpoint_key(ft, data_dir, base))
    last = latest_checkpoint(ckpt_dir)
    tokens_before = _tokens_seen(last)  # read now: checkpoint rotation may delete it
    load = time.time()
    model = build_model(base, ft, job.gradient_checkpointing)
    load = time.time() - load
    args = training_args(ft, job, ckpt_dir, world_size)
    args.warmup_steps = _warmup_steps(ft, len(data), args, world_size)
    args.ddp_timeout = round(job.process_group_timeout * 60)  # as the process group's (process_state)
    trainer = arrow_trainer()(
        model=model, args=args, train_dataset=data, data_collator=collator(tok, ft.packing), callbacks=[stopper]
    )
    check_sharding(ft.optimizer, trainer.accelerator)
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
    if stopper.received and trainer.state.global_step < trainer.state.max_steps:
        print(f"stopped by {signal.Signals(stopper.received).name} at step {trainer.state.global_step}, "
              f"checkpoint saved in {ckpt_dir}; the next run resumes from it", flush=True)
        raise SystemExit(STOPPED)
    print(f"trained on {world_size} process(es); saving to {out}", flush=True)
    save = time.time()
    save_final(trainer, tok, Path(out), ft, job.keep_checkpoints)
    save = time.time() - save
    if trainer.is_world_process_zero():
        write_log(trainer.state.log_history, log_csv, time.time() - start, tokens_before)
        write_timing(Path(log_csv).with_suffix(".timing.json"), world_size, load, save)


def checkpoint_key(ft: TrainSettings, data_dir: str | Path, base: str) -> str:
    """What a checkpoint belongs to: the settings, the tokenized set's stamp (training file,
    tokenizer, cutoff) and the base model's files."""
    stamp = (Path(data_dir) / tokenized.STAMP).read_text()
    return fingerprint({**ft.param(), "data": stamp}, [base])


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


def save_final(trainer, tok, out: Path, ft: TrainSettings, keep_checkpoints: bool = False) -> None:
    """Gather the full model, write it (or the adapter) to a temporary folder with the sha256 of
    its files, rename it into place, then remove the checkpoints unless ``keep_checkpoints``.

    Called on every process: under FSDP gathering the full weights is a collective, which
    ``get_state_dict`` runs on all ranks while only the main process writes. A full model is
    saved in the training precision (``ft.precision``: bf16 halves the fp32 master weights);
    peft keeps its adapters in fp32."""
    from .manifest import record_hashes

    tmp = out.with_name(out.name + ".part")
    main = trainer.is_world_process_zero()
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    state = trainer.accelerator.get_state_dict(trainer.model)
    if main:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if ft.method == "full":
            state = in_precision(state, ft.precision)
        model.save_pretrained(tmp, state_dict=state)
        if ft.method == "full":  # save_pretrained wrote the dtype of the fp32 master weights
            model.config.dtype = DTYPES[ft.precision]
            model.config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        record_hashes(tmp)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        if not keep_checkpoints:
            remove_checkpoints(Path(trainer.args.output_dir))
    trainer.accelerator.wait_for_everyone()


def in_precision(state: dict, precision: str) -> dict:
    """The state dict with its floating-point tensors in ``precision`` (the others as they are),
    converted one by one so that host memory holds the fp32 copy of one tensor at a time."""
    import torch

    dtype = getattr(torch, DTYPES[precision])
    for name, value in state.items():
        if value.is_floating_point():
            state[name] = value.to(dtype)
    return state


def remove_checkpoints(folder: Path) -> None:
    """Delete the training checkpoints of a finished run (the tokenized set stays)."""
    done = sorted(p for p in folder.glob("checkpoint-*") if p.is_dir())
    for p in done:
        shutil.rmtree(p)
    print(f"removed {len(done)} checkpoint(s) from {folder} (finetune.keep_checkpoints keeps them)", flush=True)


def check_sharding(optimizer: str, accelerator) -> None:
    """Stop before training where the optimizer cannot step on the sharded parameters:
    transformers' Adafactor keeps plain-tensor statistics that FSDP2's DTensor gradients
    cannot be added to (docs/training.md)."""
    if optimizer.startswith("adafactor") and getattr(accelerator, "is_fsdp2", False):
        raise ValueError(
            f"finetune.optimizer: {optimizer} does not step on FSDP2-sharded parameters (fsdp_version 2 in "
            f"finetune.accelerate_config); use adamw_torch, as configs/paper.yaml does (docs/training.md)"
        )


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
    parser.add_argument("--data", required=True, help="tokenized training set (rule tokenize)")
    parser.add_argument("--base", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--settings", required=True, help="JSON of TrainSettings (rule finetune_settings)")
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--log-csv", required=True)
    parser.add_argument("--per-device-batch", type=int, required=True)
    parser.add_argument("--logging-steps", type=int, required=True)
    parser.add_argument("--save-steps", type=int, required=True)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--keep-checkpoints", action="store_true")
    parser.add_argument("--report-to", action="append", default=[], choices=["tensorboard", "wandb"])
    parser.add_argument("--process-group-timeout", type=float, required=True, help="minutes a collective may wait")
    a = parser.parse_args()
    ft = TrainSettings.of(json.loads(Path(a.settings).read_text()))
    job = RunSettings(a.per_device_batch, a.gradient_checkpointing, a.logging_steps, a.save_steps, tuple(a.report_to),
                      a.keep_checkpoints, a.process_group_timeout)
    run(a.data, a.base, a.out, ft, job, a.checkpoints, a.log_csv)


if __name__ == "__main__":
    main()
