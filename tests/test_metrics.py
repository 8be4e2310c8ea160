"""The paper metric (all 10 languages), its quirks, the fast path and the score CLI."""

import difflib
import json
import random
import re
import subprocess
import sys
import urllib.parse

import pytest
from scipy.stats import binomtest

from apipack.data import format_output
from apipack.languages import BY_TARGET, LANGUAGES
from apipack.metrics import cell_table, metrics_table, score_pair, similar
from apipack.score import score_rows
from conftest import ROOT


def reference_score(lang: str, output: str, gold: str) -> tuple[bool, bool]:
    """The reference eval_combine.py logic, written out plainly (docs/reference.md 6)."""
    sim = lambda a, b: difflib.SequenceMatcher(None, a, b).ratio()  # noqa: E731
    grab = lambda t: (re.search(r"\**api_call\**:(.*?)\n\**api_provider\**", t, re.DOTALL) or [None, ""])[1]  # noqa: E731
    p, g = grab(output), grab(gold)
    if lang == "python":
        h = r'http\.client\.HTTP[S]?Connection\("([^"]+)"\)'
        q = r'conn\.request\("[GETPOSTPUTDELETE]*", "([^"]+)"'
        hp, hg, qp, qg = (re.search(h, p), re.search(h, g), re.search(q, p), re.search(q, g))
        if not (hp and hg and qp and qg):
            ep = False
        else:
            a = sim(hp[1].rstrip(".").rstrip("/"), hg[1].rstrip(".").rstrip("/")) > 0.9
            u = lambda m: urllib.parse.unquote(m[1]).rstrip(".").rstrip("/")  # noqa: E731
            ep = a and sim(u(qp), u(qg)) > 0.9
    else:
        rx = LANGUAGES[lang].url_regex
        mp, mg = re.search(rx, p), re.search(rx, g)
        if not (mp and mg):
            ep = False
        elif lang == "go" and not all(re.search(r'http\.NewRequest\("[A-Z]+",\s*url,', t) for t in (p, g)):
            ep = False
        else:
            a, b = mp[1], mg[1]
            if lang == "curl":
                a, b = urllib.parse.unquote(a), urllib.parse.unquote(b)
            ep = sim(a, b) > 0.9
    return ep, ep and sim(p, g) > 0.9


def wrap(call: str, lang: str) -> str:
    return format_output(["items"], call, "example.com", LANGUAGES[lang].label)


def variants(call: str, rng: random.Random) -> list[str]:
    """The call itself, and versions with another host, path, method and small edits."""
    out = [call, call.replace("api.example.com", "api.other.org"), call.replace("/items/", "/things/"),
           call.replace("PATCH", "POST").replace("patch", "post").replace("Patch", "Post"),
           call.replace("SOME_STRING_VALUE", "abc"), call[: len(call) // 2], ""]
    chars = list(call)
    for _ in range(3):
        chars[rng.randrange(len(chars))] = "x"
    return [*out, "".join(chars)]


def test_every_language_agrees_with_the_reference_logic(snippets):
    rng = random.Random(0)
    n = 0
    for target, call in snippets.items():
        lang = BY_TARGET[target].key
        gold = wrap(call, lang)
        assert score_pair(lang, gold, gold) == {"endpoint_match": lang != "python", "api_call_match": lang != "python"}
        for pred in variants(call, rng):
            for other in snippets.values():  # also answers in the wrong language
                answer = wrap(pred if other is call else other, lang)
                got = score_pair(lang, answer, gold)
                assert (got["endpoint_match"], got["api_call_match"]) == reference_score(lang, answer, gold)
                n += 1
    assert n > 500


def test_python_patch_quirk_and_fixed_mode(snippets):
    call = snippets["python_python3"]
    gold = wrap(call, "python")
    assert score_pair("python", gold, gold, "paper")["endpoint_match"] is False  # PATCH never matches
    assert score_pair("python", gold, gold, "fixed") == {"endpoint_match": True, "api_call_match": True}
    get = call.replace('"PATCH"', '"GET"')
    assert score_pair("python", wrap(get, "python"), wrap(get, "python"), "paper")["api_call_match"]


def test_hand_checked_curl_cases():
    gold = wrap("curl --request GET \\\n  --url https://api.x.com/v1/pets", "curl")
    near = wrap("curl --request GET \\\n  --url https://api.x.com/v1/pet", "curl")
    far = wrap("curl --request GET \\\n  --url https://api.x.com/v2/owners", "curl")
    assert score_pair("curl", near, gold) == {"endpoint_match": True, "api_call_match": True}
    assert score_pair("curl", far, gold) == {"endpoint_match": False, "api_call_match": False}
    assert score_pair("curl", "no answer", gold) == {"endpoint_match": False, "api_call_match": False}


def test_fast_similarity_equals_plain_ratio():
    rng = random.Random(1)
    alphabet = "abcde/:. "
    for _ in range(3000):
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        b = list(a)
        for _ in range(rng.randint(0, 8)):
            if b and rng.random() < 0.5:
                b.pop(rng.randrange(len(b)))
            else:
                b.insert(rng.randint(0, len(b)), rng.choice(alphabet))
        b = "".join(b)
        assert similar(a, b) == (difflib.SequenceMatcher(None, a, b).ratio() > 0.9)


def _score_file(path, outcomes: list[tuple[str, bool]]):
    """A score file of one cell: (unique_id, host match) per item, every other field False."""
    from apipack.files import write_jsonl

    fields = ("endpoint", "api_call", "method", "path", "query", "headers", "body")
    rows = [{"unique_id": uid, "host_match": hit, **{f"{f}_match": False for f in fields},
             "error": "wrong_path" if hit else "wrong_host"} for uid, hit in outcomes]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, rows)
    return str(path)


def test_tables_give_wilson_intervals_per_seed_and_over_seeds(tmp_path):
    cell = tmp_path / "scores/m/ft/python"
    s0 = _score_file(cell / "L1_zero_shot_s0.jsonl", [("a", True), ("b", True), ("c", False), ("d", False)])
    s1 = _score_file(cell / "L1_zero_shot_s1.jsonl", [("a", True), ("b", False), ("c", False), ("d", False)])
    per_seed = metrics_table([s0, s1]).set_index("seed")
    ci = binomtest(2, 4).proportion_ci(method="wilson")
    assert per_seed.loc[0, ["host_lo", "host_hi"]].tolist() == pytest.approx([ci.low, ci.high])
    zero = binomtest(0, 4).proportion_ci(method="wilson")  # 0/n: a non-zero upper bound
    assert per_seed.loc[1, "endpoint_hi"] == pytest.approx(zero.high) and zero.high > 0.4
    assert per_seed.loc[0, "error_wrong_host"] == 2
    cells = cell_table([s0, s1])
    assert len(cells) == 1 and cells.loc[0, "seeds"] == 2 and cells.loc[0, "n"] == 4
    assert cells.loc[0, "host_acc"] == pytest.approx(3 / 8)  # items a: 1, b: 0.5, c and d: 0


def test_score_cli(tmp_path, snippets):
    rows = [{"lang": BY_TARGET[t].key, "output": wrap(c, BY_TARGET[t].key), "ground_truth": wrap(c, BY_TARGET[t].key),
             "id": t} for t, c in snippets.items()]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = subprocess.run([sys.executable, "-m", "apipack.score", str(src), str(dst)], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["id"] for r in out] == list(snippets)
    assert sum(r["api_call_match"] for r in out) == 9  # all but Python's PATCH (paper mode)
    assert all(r["error"] == "ok" and r["method_match"] for r in out)


def test_score_cli_rejects_bad_rows(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"lang": "cobol", "output": "", "ground_truth": ""}) + "\n")
    res = subprocess.run([sys.executable, "-m", "apipack.score", str(src), str(tmp_path / "o.jsonl")],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and "line 1: field 'lang'" in res.stderr
    with pytest.raises(ValueError, match="field 'output'"):
        score_rows([{"lang": "curl", "ground_truth": ""}])


def test_rows_the_reference_would_drop_stay_in_the_denominator_and_are_counted(tmp_path):
    """eval.py skips (try/except: continue) rows without api_name or whose gold has no path;
    here they count as items, and the metrics table reports how many there were."""
    gold = wrap('curl --request GET --url https://a.example.com/v1/x', "curl")
    rows = [{"lang": "curl", "output": gold, "ground_truth": gold, "unique_id": "u0", "api_name": "A"},
            {"lang": "curl", "output": "", "ground_truth": gold, "unique_id": "u1"},
            {"lang": "curl", "output": "", "ground_truth": gold, "unique_id": "u2", "api_name": "A",
             "api_call_data": {"path": None}}]
    scored = score_rows(rows)
    assert [r["reference_skip"] for r in scored] == [False, True, True]
    path = tmp_path / "scores/m/base/curl/L3_zero_shot_s0.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in scored))
    table = metrics_table([str(path)]).iloc[0]
    assert table["n"] == 3 and table["reference_skips"] == 2
    assert table["api_call_acc"] == pytest.approx(1 / 3)  # the reference would print 1/1
