"""The ten API Pack languages: file keys, published labels, snippet targets and regexes.

One table so that the builder, the validator, the splits and the scorer agree on every name.
The eval regexes are those of the reference ``eval_combine.py`` (docs/reference.md 1.2, 6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    key: str  # file and CLI name: total_data_cleaned_{key}.json
    label: str  # ``api_call_data.lang`` and the ``**lang**`` field of ``output``
    target: str  # openapi-snippet target id
    signature: str  # substring every valid call contains (case-insensitive)
    url_regex: str  # the reference's endpoint regex (first group is the URL)


LANGUAGES: dict[str, Language] = {
    lang.key: lang
    for lang in [
        Language("curl", "cURL", "shell_curl", "curl", r"--url\s+(\S+)"),
        Language(
            "python",
            "Python",
            "python_python3",
            "http.client.HTTP",
            r'http\.client\.HTTP[S]?Connection\("([^"]+)"\)',
        ),
        Language("java", "Java", "java_okhttp", "OkHttpClient", r'\.url\("([^"]+)"\)'),
        Language("go", "go", "go_native", "package main", r'url\s*:=\s*"([^"]+)"'),
        Language(
            "javascript",
            "javascript xhr",
            "javascript_xhr",
            "XMLHttpRequest",
            r'xhr\.open\("[A-Z]+",\s*"([^"]+)"',
        ),
        Language(
            "libcurl",
            "libcurl",
            "c_libcurl",
            "CURL *hnd = curl_easy_init()",
            r'curl_easy_setopt\(\s*hnd,\s*CURLOPT_URL,\s*"([^"]+)"\s*\)',
        ),
        Language("node", "Node", "node_request", "require('request')", r"url:\s*'([^']+)'"),
        Language("php", "PHP", "php_curl", "<?php", r'CURLOPT_URL\s*=>\s*"([^"]+)"'),
        Language("ruby", "Ruby", "ruby_native", "require 'uri'", r'URI\("([^"]+)"\)'),
        Language(
            "swift",
            "swift",
            "swift_nsurlsession",
            "import Foundation",
            r'NSURL\(string:\s*"([^"]+)"\)',
        ),
    ]
}

LANG_KEYS: tuple[str, ...] = tuple(LANGUAGES)
BY_LABEL: dict[str, Language] = {lang.label: lang for lang in LANGUAGES.values()}
BY_TARGET: dict[str, Language] = {lang.target: lang for lang in LANGUAGES.values()}

# Python's path regex in the reference: the method class [GETPOSTPUTDELETE]* never matches
# PATCH, HEAD or OPTIONS. ``fixed`` mode accepts any upper-case method.
PYTHON_PATH_REGEX = {
    "paper": r'conn\.request\("[GETPOSTPUTDELETE]*", "([^"]+)"',
    "fixed": r'conn\.request\("[A-Z]+", "([^"]+)"',
}
GO_REQUEST_REGEX = r"http\.NewRequest\(\"[A-Z]+\",\s*url,"

COMPILED_URL = {key: re.compile(lang.url_regex) for key, lang in LANGUAGES.items()}


def language(key_or_label: str) -> Language:
    """Look a language up by key (``curl``) or published label (``cURL``)."""
    if key_or_label in LANGUAGES:
        return LANGUAGES[key_or_label]
    if key_or_label in BY_LABEL:
        return BY_LABEL[key_or_label]
    allowed = ", ".join(LANG_KEYS)
    raise KeyError(f"unknown language {key_or_label!r}; allowed: {allowed} (or their labels)")
