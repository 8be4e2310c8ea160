"""Scorer speed: pairs per second of apipack.metrics.score_pair against the plain computation
(the reference's difflib calls, no bounds, no cache), on real openapi-snippet calls of all ten
languages with realistic near-miss predictions. Prints the ratio measured in one run and checks
that both give identical results.

    python benchmarks/bench_scorer.py [--pairs 20000]
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import re
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from apipack.data import format_output  # noqa: E402
from apipack.languages import BY_TARGET, LANGUAGES, PYTHON_PATH_REGEX  # noqa: E402
from apipack.metrics import extract_api_call, score_pair  # noqa: E402


def plain(lang: str, output: str, gold: str) -> tuple[bool, bool]:
    """The reference's computation: SequenceMatcher.ratio() on every compared pair."""
    sim = lambda a, b: difflib.SequenceMatcher(None, a, b).ratio() > 0.9  # noqa: E731
    p, g = extract_api_call(output), extract_api_call(gold)
    if lang == "python":
        host = LANGUAGES["python"].url_regex
        path = PYTHON_PATH_REGEX["paper"]
        ok = True
        for rx, unq in ((host, False), (path, True)):
            mp, mg = re.search(rx, p), re.search(rx, g)
            if not (mp and mg):
                return False, False
            a, b = mp[1], mg[1]
            if unq:
                a, b = urllib.parse.unquote(a), urllib.parse.unquote(b)
            ok = ok and sim(a.rstrip(".").rstrip("/"), b.rstrip(".").rstrip("/"))
        ep = ok
    else:
        mp, mg = re.search(LANGUAGES[lang].url_regex, p), re.search(LANGUAGES[lang].url_regex, g)
        if not (mp and mg):
            return False, False
        rx = r'http\.NewRequest\("[A-Z]+",\s*url,'
        if lang == "go" and not (re.search(rx, p) and re.search(rx, g)):
            return False, False
        a, b = mp[1], mg[1]
        if lang == "curl":
            a, b = urllib.parse.unquote(a), urllib.parse.unquote(b)
        ep = sim(a, b)
    return ep, ep and sim(p, g)


def corpus(n: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    snippets = json.loads((ROOT / "tests/fixtures/openapi_snippet_patch.json").read_text())
    pairs = []
    for i in range(n):
        target, call = rng.choice(list(snippets.items()))
        lang = BY_TARGET[target].key
        gold_call = call.replace("items", f"items{i % 997}").replace("PATCH", rng.choice(["GET", "POST", "PATCH"]))
        pred = gold_call
        r = rng.random()
        if r < 0.3:
            pred = pred.replace("api.example.com", "api.example.org")
        elif r < 0.6:
            chars = list(pred)
            for _ in range(rng.randint(1, 40)):
                chars[rng.randrange(len(chars))] = rng.choice("abc/_ ")
            pred = "".join(chars)
        elif r < 0.7:
            pred = rng.choice(list(snippets.values()))
        label = LANGUAGES[lang].label
        pairs.append((lang, format_output([], pred, "x", label), format_output([], gold_call, "x", label)))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pairs = corpus(args.pairs, args.seed)
    t0 = time.perf_counter()
    fast = [score_pair(lang, o, g) for lang, o, g in pairs]
    t1 = time.perf_counter()
    slow = [plain(lang, o, g) for lang, o, g in pairs]
    t2 = time.perf_counter()
    same = all((f["endpoint_match"], f["api_call_match"]) == s for f, s in zip(fast, slow))
    fast_rate, slow_rate = len(pairs) / (t1 - t0), len(pairs) / (t2 - t1)
    print(f"pairs: {len(pairs)}; identical results: {same}")
    print(f"apipack scorer: {fast_rate:,.0f} pairs/s; plain computation: {slow_rate:,.0f} pairs/s; "
          f"ratio {fast_rate / slow_rate:.1f}x")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
