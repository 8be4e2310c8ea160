"""LLM-written instructions (reference stages 3.3-3.4), chosen by back-translation score.

For every operation, a sampler writes ``n`` candidate user queries from a few-shot prompt (the
reference's "create a realistic user query" prompt with seed examples); a causal LM scores each
candidate by the mean log-probability of the operation's metadata given the candidate (the
reference's back-translation score, which is what its selection reduces to). The best candidate
becomes ``instruction``; the best one that neither contains it nor is contained in it becomes
``instruction_test``. Samplers: a local HF model, or any OpenAI-compatible endpoint (key from the
environment). The instruction is shared by the ten language rows of an operation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .instructions import OPENERS, candidates, clean_text, row_rng

GEN_PREFIX = (
    "Create a realistic user query for the API operation described in the input. Focus on: "
    "1) including the API name; 2) being specific about what the user wants; 3) being concise, "
    "one sentence; 4) not including the endpoint.\nExamples for practice:\n"
)
REVERSE_PREFIX = (
    "Infer the functionality, description, endpoint identifier and API name of the API operation "
    "that the user query asks for.\n"
)
Sampler = Callable[[Sequence[str], int], list[list[str]]]


def metadata(row: dict) -> str:
    return (
        f"Functionality: {clean_text(row['functionality'])}\n"
        f"Description: {clean_text(row['description'])}\n"
        f"Endpoint: {row['endpoint']}\nAPI: {row['api_name']}"
    )


def generation_prompt(row: dict, examples: Sequence[dict]) -> str:
    """Few-shot prompt: seed examples (template queries) then the target's metadata."""
    shots = ""
    for ex in examples:
        seed = candidates(ex, OPENERS[:1])
        if seed:
            shots += f"###Input:\n{metadata(ex)}\n###Output:\n{seed[0]}\n\n"
    return f"{GEN_PREFIX}{shots}###Input:\n{metadata(row)}\n###Output:\n"


def back_translation(row: dict, candidate: str) -> tuple[str, str]:
    """(prompt, target) whose target log-probability is the candidate's score."""
    return f"{REVERSE_PREFIX}###Input:\n{candidate}\n###Output:\n", metadata(row)


def clean_candidate(text: str) -> str | None:
    """First line, stripped of quotes; None for empty ones and ones with ':' (the reference
    regenerates those)."""
    line = text.strip().split("\n")[0].strip().strip('"').strip()
    return line if line and ":" not in line else None


def choose(cands: Sequence[str], scores: Sequence[float]) -> tuple[str, str] | None:
    """Best by score as instruction; the best non-overlapping other one as instruction_test."""
    ranked = [c for _, c in sorted(zip(scores, cands), key=lambda p: (-p[0], p[1]))]
    if not ranked:
        return None
    best = ranked[0]
    test = next((c for c in ranked[1:] if best not in c and c not in best), None)
    return (best, test) if test else None


class LogProbScorer:
    """Mean log-probability of target tokens given a prompt, from a local causal LM."""

    def __init__(self, path: str, batch_size: int = 8):
        import torch

        from .models import load_causal_lm, load_tokenizer

        self.tok = load_tokenizer(path)
        self.model = load_causal_lm(path).eval()
        self.batch_size = batch_size
        self.torch = torch

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        out = []
        for i in range(0, len(pairs), self.batch_size):
            out += self._batch(pairs[i : i + self.batch_size])
        return out

    def _batch(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        torch, tok = self.torch, self.tok
        seqs, spans = [], []
        for prompt, target in pairs:
            p = tok(prompt, add_special_tokens=False)["input_ids"]
            t = tok(target, add_special_tokens=False)["input_ids"]
            seqs.append(p + t)
            spans.append((len(p), len(p) + len(t)))
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for j, s in enumerate(seqs):  # right padding keeps positions of the real tokens
            ids[j, : len(s)] = torch.tensor(s)
            mask[j, : len(s)] = 1
        with torch.no_grad():
            logp = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        scores = []
        for j, (a, b) in enumerate(spans):
            tgt = ids[j, a:b]
            scores.append(float(logp[j, a - 1 : b - 1].gather(1, tgt[:, None]).mean()))
        return scores


def hf_sampler(path: str, n: int, max_new_tokens: int, temperature: float) -> Sampler:
    """``n`` sampled continuations per prompt from a local HF model (seeded)."""
    import torch

    from .models import load_causal_lm, load_tokenizer

    tok, model = load_tokenizer(path), load_causal_lm(path).eval()

    def sample(prompts: Sequence[str], seed: int) -> list[list[str]]:
        torch.manual_seed(seed)
        batch = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **batch,
                do_sample=True,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                num_return_sequences=n,
                pad_token_id=tok.pad_token_id,
            )
        texts = tok.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]

    return sample


def openai_sampler(api: dict, n: int, max_new_tokens: int, temperature: float) -> Sampler:
    """``n`` chat completions per prompt from an OpenAI-compatible server."""
    from .generate import OpenAIEngine

    spec = {
        "source": "openai",
        "base_url": api["base_url"],
        "api_model": api["model"],
        "api_key_env": api["api_key_env"],
        "require_key": api.get("require_key", True),
    }
    engine = OpenAIEngine(spec, max_new_tokens, temperature)
    return lambda prompts, seed: [[engine([p], seed + k)[0] for k in range(n)] for p in prompts]


def llm_pairs(
    rows: Sequence[dict], sample: Sampler, score: Callable, seed: int, batch_size: int = 8
) -> dict[tuple, tuple[str, str] | None]:
    """Instruction pairs per operation ``(spec_id, method, path)`` of the API DB rows."""
    ops: dict[tuple, dict] = {}
    by_api: dict[str, list[dict]] = {}
    for row in rows:
        key = (row["spec_id"], row["method"], row["path"])
        if key not in ops:
            ops[key] = row
            by_api.setdefault(row["api_name"], []).append(row)
    keys = list(ops)
    pairs: dict[tuple, tuple[str, str] | None] = {}
    for i in range(0, len(keys), batch_size):
        chunk = keys[i : i + batch_size]
        prompts = []
        for key in chunk:
            row = ops[key]
            peers = [r for r in by_api[row["api_name"]] if r is not row]
            shots = row_rng(seed, *key).sample(peers, min(3, len(peers)))
            prompts.append(generation_prompt(row, shots))
        for key, texts in zip(chunk, sample(prompts, seed + i)):
            cands = sorted({c for c in map(clean_candidate, texts) if c})
            scores = score([back_translation(ops[key], c) for c in cands]) if cands else []
            pairs[key] = choose(cands, scores)
        print(f"instructions: {min(i + batch_size, len(keys))}/{len(keys)} operations", flush=True)
    return pairs
