"""Instructions for API DB rows: the paper's seed patterns, offline and deterministic.

The reference (step 3.1) writes template seeds, then has Mistral-7B rewrite them and write five
candidates, keeping the best by back-translation score as ``instruction`` and another candidate
judged good as ``instruction_test``. The offline generator here draws both from the seed
patterns, so that the two are different paraphrases of the same request.
"""

from __future__ import annotations

import hashlib
import random
import re

# The five request openers of step3_1_inst_examples_gen.py, plus paraphrases in the same spirit
# so that ``instruction_test`` can differ from ``instruction`` in wording.
OPENERS = (
    "Please tell me how to",
    "Please show me how to",
    "Hey, tell me how to",
    "I need to know how to",
    "Give me an example of how to",
)
TEST_OPENERS = (
    "How can I",
    "What is the way to",
    "Show me the call to",
    "Can you help me",
    "Write the request to",
)
_VERBS = (
    "add cancel check create delete describe disable download enable export generate get import "
    "list modify post put register remove replace reset retrieve return send set start stop "
    "update upload validate query fetch search patch push"
).split()
BASE_FORMS = {
    (v[:-1] + "ies" if v.endswith("y") else v + "es" if v.endswith(("ch", "sh")) else v + "s"): v
    for v in _VERBS
}
_TAG = re.compile(r"<[^>]+>|\[([^\]]*)\]\([^)]*\)|[`*_#]+")
_SPACE = re.compile(r"\s+")


def clean_text(text: str, max_chars: int = 160) -> str:
    """First sentence of a markdown/HTML text, flattened to one line."""
    text = _SPACE.sub(" ", _TAG.sub(lambda m: m.group(1) or " ", text)).strip()
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".!? ")
    if len(first) > max_chars:
        first = first[:max_chars].rsplit(" ", 1)[0]
    return first


def _lower_first(text: str) -> str:
    """Lower-case the first word (not acronyms) and turn ``Returns``/``Lists`` into ``return``."""
    if text[:1].isupper() and not text[:2].isupper():
        text = text[:1].lower() + text[1:]
    first, _, rest = text.partition(" ")
    return f"{BASE_FORMS.get(first, first)} {rest}".strip()


def humanize(identifier: str) -> str:
    """``getUserById`` or ``get_user_by_id`` -> ``get user by id``."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", identifier).replace("_", " ").replace("-", " ")
    return _SPACE.sub(" ", words).strip().lower()


def candidates(row: dict, openers: tuple[str, ...]) -> list[str]:
    """Seed-pattern instructions for one API DB row (patterns a-c of step 3.1).

    Where an operation has no summary, its description's first sentence or its humanised
    operationId stands in as the functionality.
    """
    api = row["api_name"]
    description = clean_text(row.get("description", ""))
    functionality = (
        clean_text(row.get("functionality", "")) or description or humanize(row.get("endpoint", ""))
    )
    out = []
    if functionality and "example request" not in functionality.lower():
        out += [f"{o} {_lower_first(functionality)} with the {api}" for o in openers]
    if description and len(description) > len(row.get("endpoint", "")):
        out.append(f"I need to {_lower_first(description)} with the {api}; please help")
    if not out and row.get("endpoint"):
        out.append(f"Give me an example of how to use endpoint {row['endpoint']} from {api}")
    return out


def row_rng(seed: int, *key: str) -> random.Random:
    """A generator seeded by the run seed and a stable row key (order-independent)."""
    digest = hashlib.sha256("\x1f".join([str(seed), *key]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _overlaps(a: str, b: str) -> bool:
    return a in b or b in a


def template_pair(row: dict, seed: int) -> tuple[str, str] | None:
    """``(instruction, instruction_test)`` for a row, or None when no seed pattern applies.

    The test instruction uses other openers, so neither string contains the other, as the
    reference requires of ``instruction_test``.
    """
    train = candidates(row, OPENERS)
    test = [c for c in candidates(row, TEST_OPENERS) if c not in train]
    if not train:
        return None
    rng = row_rng(seed, row["api_name"], row["method"], row["path"], row["lang"])
    instruction = rng.choice(train)
    test = [c for c in test if not _overlaps(c, instruction)]
    if not test:
        return None
    return instruction, rng.choice(test)
