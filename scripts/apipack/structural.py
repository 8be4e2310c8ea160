"""A structural metric beyond the paper: parse an HTTP request out of a snippet in any of the
ten languages and compare it field by field with the gold request.

Fields: method, scheme, host, path (path parameters normalised to ``{}``), query keys, header
names (lower-cased) and body keys. One error label per item, the first that applies of:
no_call, truncated (the call was cut off before ``**api_provider**``, so the paper's metric sees
no call; its fields are still parsed as far as it goes), wrong_language, wrong_host,
hallucinated_endpoint, wrong_path, wrong_method, missing_params, ok.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

from .languages import LANGUAGES

Q = r"[\"']"
_M = r"([A-Z]+)"
METHOD = {
    "curl": [rf"--request\s+{_M}", rf"-X\s+{_M}"],
    "python": [rf"\.request\(\s*\"{_M}\""],
    "java": [r"\.(get|post|put|delete|patch|head)\(", rf"\.method\(\"{_M}\""],
    "go": [rf"NewRequest\(\"{_M}\""],
    "javascript": [rf"xhr\.open\(\"{_M}\""],
    "libcurl": [rf"CURLOPT_CUSTOMREQUEST,\s*\"{_M}\""],
    "node": [rf"method:\s*'{_M}'"],
    "php": [rf"CURLOPT_CUSTOMREQUEST\s*=>\s*\"{_M}\""],
    "ruby": [r"Net::HTTP::(\w+)\.new"],
    "swift": [rf"httpMethod\s*=\s*\"{_M}\""],
}
HEADER = {
    "curl": [rf"--header\s+{Q}([^:'\"]+):"],
    "python": [r"^\s*'([^']+)':\s*\"", r"^\s*\"([^\"]+)\":\s*\""],
    "java": [r"\.addHeader\(\"([^\"]+)\""],
    "go": [r"Header\.(?:Add|Set)\(\"([^\"]+)\""],
    "javascript": [r"setRequestHeader\(\"([^\"]+)\""],
    "libcurl": [r"curl_slist_append\(headers,\s*\"([^:\"]+):"],
    "node": [r"headers:\s*\{([^}]*)\}"],
    "php": [r"^\s*\"([\w-]+):\s"],
    "ruby": [r"request\[\"([^\"]+)\"\]\s*="],
    "swift": [r"let headers = \[([^\]]*)\]"],
}
BODY_KEY = re.compile(r"\\?[\"']?([A-Za-z_][\w.-]*)\\?[\"']?\s*:\s*")
BODY = {
    "curl": [r"--data(?:-raw)?\s+'(.*?)'\s*$"],
    "python": [r"^payload\s*=\s*(.*)$"],
    "java": [r"RequestBody\.create\([^,]+,\s*(.*)\);"],
    "go": [r"strings\.NewReader\((.*)\)"],
    "javascript": [r"const data = JSON\.stringify\((.*?)\);"],
    "libcurl": [r"CURLOPT_POSTFIELDS,\s*(.*)\);"],
    "node": [r"body:\s*(\{.*?\}),?\s*$", r"form:\s*(\{.*?\}),?\s*$"],
    "php": [r"CURLOPT_POSTFIELDS\s*=>\s*(.*),\s*$"],
    "ruby": [r"request\.body\s*=\s*(.*)$"],
    "swift": [r"let parameters = (\[.*?\]) as"],
}
NODE_QS = re.compile(r"qs:\s*\{([^}]*)\}")
PATH_PARAM = re.compile(r"\{[^}/]*\}")
FIELDS = ("method_match", "host_match", "path_match", "query_match", "headers_match", "body_match")
LABELS = (
    "no_call",
    "truncated",
    "wrong_language",
    "wrong_host",
    "hallucinated_endpoint",
    "wrong_path",
    "wrong_method",
    "missing_params",
    "ok",
)


@dataclass
class Request:
    lang: str | None
    method: str | None = None
    scheme: str | None = None
    host: str | None = None
    path: str | None = None
    query: set[str] = field(default_factory=set)
    headers: set[str] = field(default_factory=set)
    body: set[str] = field(default_factory=set)


def normalise_path(path: str) -> str:
    """Unquote, drop a trailing slash and replace every ``{param}`` with ``{}``."""
    return PATH_PARAM.sub("{}", urllib.parse.unquote(path)).rstrip("/") or "/"


def detect_language(call: str) -> str | None:
    """The language whose signature the snippet carries (most specific first)."""
    for key in ("libcurl", "php", "python", "java", "go", "node", "ruby", "swift", "javascript"):
        if LANGUAGES[key].signature.lower() in call.lower():
            return key
    return "curl" if re.search(r"\bcurl\b", call) else None


MULTILINE_BODIES = {"javascript", "swift", "node"}


def _all(patterns: list[str], text: str, dotall: bool = True) -> list[str]:
    flags = re.MULTILINE | (re.DOTALL if dotall else 0)
    return [m for p in patterns for m in re.findall(p, text, flags)]


def _keys(text: str) -> set[str]:
    return {k for k in BODY_KEY.findall(text)}


def _url(lang: str, call: str) -> tuple[str | None, str | None, str | None, set[str]]:
    if lang == "python":
        host = re.search(r"HTTP(S?)Connection\(\"([^\"]+)\"\)", call)
        path = re.search(r"\.request\(\s*\"[A-Z]+\",\s*\"([^\"]+)\"", call)
        if not host:
            return None, None, None, set()
        url = ("https://" if host.group(1) else "http://") + host.group(2)
        if not path:  # a call cut off before conn.request: the host is known, the path is not
            parts = urllib.parse.urlsplit(url)
            return parts.scheme, parts.hostname, None, set()
        url += path.group(1)
    else:
        m = re.search(LANGUAGES[lang].url_regex, call)
        if not m:
            return None, None, None, set()
        url = m.group(1).strip("'\"")
    parts = urllib.parse.urlsplit(url if "://" in url else "https://" + url)
    query = set(urllib.parse.parse_qs(parts.query, keep_blank_values=True))
    if lang == "node":
        query |= {k for block in NODE_QS.findall(call) for k in _keys(block)}
    return parts.scheme, parts.hostname, normalise_path(parts.path), query


def parse_request(call: str, lang: str | None = None) -> Request:
    """Parse a snippet; ``lang`` defaults to the detected language."""
    lang = lang or detect_language(call)
    if lang is None or not call.strip():
        return Request(lang=None)
    methods = _all(METHOD[lang], call)
    method = methods[0].upper() if methods else ("GET" if lang == "curl" else None)
    scheme, host, path, query = _url(lang, call)
    if lang in ("node", "swift"):
        headers = {k.lower() for block in _all(HEADER[lang], call) for k in _keys(block)}
    else:
        headers = {h.strip().lower() for h in _all(HEADER[lang], call)}
    bodies = _all(BODY[lang], call, dotall=lang in MULTILINE_BODIES)
    body = {k for block in bodies for k in _keys(block)}
    return Request(lang, method, scheme, host, path, query, headers, body - headers)


def compare(
    pred_call: str,
    gold_call: str,
    lang: str,
    spec_paths: set[str] | None = None,
    complete: bool = True,
) -> dict:
    """Per-field matches and one error label for a predicted snippet against the gold one;
    ``complete=False`` marks a call cut off by the token limit (label ``truncated``)."""
    gold = parse_request(gold_call, lang)
    detected = detect_language(pred_call) if pred_call.strip() else None
    pred = parse_request(pred_call, lang) if detected == lang else Request(lang=detected)
    cut = not complete and detected == lang  # cut off, in the right language: compare what came
    if pred.path is None and not cut:  # nothing parsed: no field can match
        label = "no_call" if detected in (None, lang) else "wrong_language"
        return {**dict.fromkeys(FIELDS, False), "error": label}
    fields = {
        "method_match": pred.method is not None and pred.method == gold.method,
        "host_match": pred.host is not None and pred.host == gold.host,
        "path_match": pred.path is not None and pred.path == gold.path,
        "query_match": pred.query == gold.query,
        "headers_match": pred.headers == gold.headers,
        "body_match": pred.body == gold.body,
    }
    if cut:
        label = "truncated"
    elif not fields["host_match"]:
        label = "wrong_host"
    elif spec_paths is not None and not any(pred.path.endswith(p) for p in spec_paths):
        label = "hallucinated_endpoint"
    elif not fields["path_match"]:
        label = "wrong_path"
    elif not fields["method_match"]:
        label = "wrong_method"
    elif not (gold.query <= pred.query and gold.body <= pred.body):
        label = "missing_params"
    else:
        label = "ok"
    return {**fields, "error": label}
