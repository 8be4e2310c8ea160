"""Score generated outputs: the paper metric and the structural metric, per item.

Command line (from the repository root, in the project's environment)::

    python -m apipack.score IN.jsonl OUT.jsonl [--mode paper|fixed]

Each input row needs ``lang`` (curl, python, java, go, javascript, libcurl, node, php, ruby,
swift), ``output`` (the model's text) and ``ground_truth`` (the gold output string). Each output
row is the input row plus ``endpoint_match``, ``api_call_match``, the structural fields and
``reference_skip`` (a row the reference's scorer would have left out of its denominator).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from .files import read_jsonl, write_jsonl
from .languages import LANGUAGES
from .metrics import extract_api_call, extract_partial_call, score_pair
from .structural import compare, normalise_path

REQUIRED = ("lang", "output", "ground_truth")


def check_row(row: object, where: str) -> None:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object")
    for name in REQUIRED:
        if not isinstance(row.get(name), str):
            raise ValueError(f"{where}: field '{name}': missing or not a string")
    if row["lang"] not in LANGUAGES:
        allowed = ", ".join(LANGUAGES)
        raise ValueError(f"{where}: field 'lang': {row['lang']!r} is not one of {allowed}")


def score_rows(
    rows: Iterable[dict],
    mode: str = "paper",
    spec_paths: dict[str, set[str]] | None = None,
    source: str = "<rows>",
) -> list[dict]:
    """Add the paper metric and the structural fields to each row.

    ``spec_paths`` maps an ``api_name`` to its normalised endpoint paths, for the
    ``hallucinated_endpoint`` label; rows without a known API skip that check.
    """
    out = []
    for i, row in enumerate(rows, 1):
        check_row(row, f"{source}: line {i}")
        lang = row["lang"]
        paths = (spec_paths or {}).get(row.get("api_name", ""))
        pred_call, complete = extract_partial_call(row["output"])
        structural = compare(pred_call, extract_api_call(row["ground_truth"]), lang, paths, complete)
        scores = score_pair(lang, row["output"], row["ground_truth"], mode)
        out.append({**row, **scores, **structural, "reference_skip": reference_skip(row)})
    return out


def reference_skip(row: dict) -> bool:
    """True for a row that the reference's eval.py drops from its denominator (inside
    ``try/except: continue``): no ``api_name``, or a gold item without ``api_call_data.path``.
    Here such a row stays in the denominator and is counted (``reference_skips``)."""
    gold_path = (row.get("api_call_data") or {}).get("path") if "api_call_data" in row else ""
    return not row.get("api_name") or gold_path is None


def api_paths(instances: Iterable[dict]) -> dict[str, set[str]]:
    """Normalised ``api_call_data.path`` values per API, from dataset instances."""
    paths: dict[str, set[str]] = {}
    for inst in instances:
        paths.setdefault(inst["api_name"], set()).add(normalise_path(inst["api_call_data"]["path"]))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apipack.score", description=__doc__.split("\n")[0])
    parser.add_argument("input", help="JSONL with lang, output, ground_truth")
    parser.add_argument("output", help="JSONL to write")
    parser.add_argument("--mode", choices=["paper", "fixed"], default="paper")
    args = parser.parse_args(argv)
    try:
        rows = score_rows(read_jsonl(args.input), args.mode, source=args.input)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_jsonl(args.output, rows)
    n = len(rows)
    ep = sum(r["endpoint_match"] for r in rows)
    ac = sum(r["api_call_match"] for r in rows)
    print(f"{n} rows; endpoint accuracy {ep / max(n, 1):.3f}; API-call accuracy {ac / max(n, 1):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
