"""The tokenized training set: rule tokenize writes it once per training file, tokenizer and
cutoff (Arrow files, on CPU cores); the training job memory-maps it (``load``).

Several models share one tokenized set when they share a tokenizer (``models.<name>.tokenizer_of``):
the set records a key of the tokenizer's behaviour (``tokenizer_key``) and ``load`` refuses a set
made by another tokenizer or cutoff, so a wrong declaration fails instead of training on wrong ids.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from array import array
from collections import OrderedDict
from pathlib import Path

from .files import atomic_open, fingerprint
from .models import bos_prefix, load_tokenizer, token_ids

IGNORE = -100
STAMP = "tokenized.json"  # what the set was built from, written last


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


SHARD_BYTES = 32 << 20  # the training file is tokenized in byte ranges of at most about this size


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


def folder(models: dict, model: str, train_set: str) -> str:
    """Where rule tokenize writes the training set of ``model`` (relative to the workflow): under
    the model's own name, or under the one its entry's ``tokenizer_of`` names (one set for both)."""
    return f"results/tokenized/{models[model].get('tokenizer_of', model)}/{train_set}"


def tokenizer_key(tok) -> str:
    """sha256 of what the token ids depend on: the tokenizer's full definition (vocabulary,
    merges, normalizer, added tokens; the vocabulary of a slow tokenizer), BOS and EOS; not its
    padding and truncation state, which encoding calls switch on and off."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        spec = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("padding", "truncation")}
        definition = json.dumps(spec, sort_keys=True)
    else:
        definition = json.dumps(sorted(tok.get_vocab().items()))
    extra = json.dumps([type(tok).__name__, bos_prefix(tok), tok.eos_token_id])
    return hashlib.sha256((definition + extra).encode()).hexdigest()


def build(train_file: str, tokenizer: str, cutoff_len: int, trust_remote_code: bool, out: Path, workers: int) -> int:
    """Tokenize ``train_file`` into ``out`` (``Dataset.save_to_disk``) with ``workers`` processes,
    then write its stamp (``STAMP``); returns the number of sequences. Built in ``out.part``,
    renamed into place when complete."""
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    shards = line_shards(train_file, min(64, max(workers, 1 + Path(train_file).stat().st_size // SHARD_BYTES)))
    if not shards:
        raise ValueError(f"{train_file}: no training records")
    part = out.with_name(out.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    kwargs = {"shards": shards, "train_file": str(train_file), "base": str(tokenizer), "cutoff_len": cutoff_len,
              "trust_remote_code": trust_remote_code}
    try:
        data = Dataset.from_generator(_tokenized_rows, features=_features(), gen_kwargs=kwargs,
                                      cache_dir=str(part / "cache"), num_proc=min(len(shards), workers) or None)
    except DatasetGenerationError as err:  # say which record, not only that one failed
        raise (err.__cause__ or err) from None
    if len(data) == 0:
        raise ValueError(f"{train_file}: no training records")
    data.save_to_disk(str(part / "data"), num_proc=min(workers, data.num_rows) if workers > 1 else None)
    stamp = {
        "train_file": fingerprint({}, [train_file]),
        "tokenizer": tokenizer_key(load_tokenizer(tokenizer, trust_remote_code)),
        "cutoff_len": cutoff_len,
        "sequences": len(data),
    }
    del data
    shutil.rmtree(part / "cache")
    with atomic_open(part / "data" / STAMP) as fh:
        json.dump(stamp, fh, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    (part / "data").rename(out)
    part.rmdir()
    return stamp["sequences"]


def load(folder: str | Path, tok, cutoff_len: int):
    """The memory-mapped tokenized set in ``folder``, after checking that it was made by a
    tokenizer that gives the same ids as ``tok`` and with ``cutoff_len``."""
    from datasets import load_from_disk

    stamp_file = Path(folder) / STAMP
    if not stamp_file.is_file():
        raise ValueError(f"{folder}: not a complete tokenized set (no {STAMP}); rerun rule tokenize")
    stamp = json.loads(stamp_file.read_text())
    if stamp["cutoff_len"] != cutoff_len:
        raise ValueError(f"{stamp_file}: cutoff_len {stamp['cutoff_len']}, but finetune.cutoff_len is {cutoff_len}")
    if stamp["tokenizer"] != tokenizer_key(tok):
        raise ValueError(
            f"{stamp_file}: made by another tokenizer than the base model's ({tok.name_or_path}); "
            "a models entry's tokenizer_of names a model whose tokenizer differs"
        )
    return load_from_disk(str(folder))
