"""The structural metric: one request parsed alike from all ten languages; error labels."""

from apipack.languages import BY_TARGET
from apipack.structural import compare, detect_language, normalise_path, parse_request


def test_all_ten_languages_parse_to_the_same_request(snippets):
    for target, call in snippets.items():
        lang = BY_TARGET[target].key
        assert detect_language(call) == lang, target
        r = parse_request(call, lang)
        assert (r.method, r.scheme, r.host, r.path) == ("PATCH", "https", "api.example.com", "/v1/items/{}"), target
        assert r.query == {"q"}, target
        assert r.headers == {"x-key", "content-type"}, target
        assert r.body == {"name", "size"}, target


def test_error_labels(snippets):
    gold = snippets["shell_curl"]
    assert compare(gold, gold, "curl")["error"] == "ok"
    assert compare("", gold, "curl")["error"] == "no_call"
    assert compare(snippets["python_python3"], gold, "curl")["error"] == "wrong_language"
    assert compare(gold.replace("api.example.com", "evil.io"), gold, "curl")["error"] == "wrong_host"
    assert compare(gold.replace("/items/", "/users/"), gold, "curl")["error"] == "wrong_path"
    assert compare(gold.replace("--request PATCH", "--request PUT"), gold, "curl")["error"] == "wrong_method"
    no_q = gold.replace("?q=SOME_STRING_VALUE", "")
    assert compare(no_q, gold, "curl")["error"] == "missing_params"
    spec = {normalise_path("/items/{id}")}
    assert compare(gold.replace("/items/", "/ghosts/"), gold, "curl", spec)["error"] == "hallucinated_endpoint"
    assert compare(gold, gold, "curl", spec)["error"] == "ok"


def test_nothing_parsed_means_no_field_matches(snippets):
    res = compare("curl nonsense", snippets["shell_curl"], "curl")
    assert res["error"] == "no_call" and not any(v for k, v in res.items() if k.endswith("_match"))


def test_call_cut_off_by_the_token_limit_is_truncated_but_still_parsed(snippets):
    from apipack.data import format_output
    from apipack.score import score_rows

    gold_call = snippets["shell_curl"]
    gold = format_output([], gold_call, "example.com", "cURL")
    cut = gold[: gold.index("**api_provider**") - 40]  # the model ran out of tokens mid-call
    row = score_rows([{"lang": "curl", "output": cut, "ground_truth": gold}])[0]
    assert not row["endpoint_match"] and not row["api_call_match"]  # the paper's metric: no call
    assert row["error"] == "truncated" and row["host_match"] and row["path_match"] and row["method_match"]
    py_gold = format_output([], snippets["python_python3"], "example.com", "Python")
    py_cut = py_gold[: py_gold.index("conn.request")]  # host and headers written, path not yet
    row = score_rows([{"lang": "python", "output": py_cut, "ground_truth": py_gold}])[0]
    assert row["error"] == "truncated" and row["host_match"] and not row["path_match"]
    assert score_rows([{"lang": "curl", "output": "no call here", "ground_truth": gold}])[0]["error"] == "no_call"
    assert score_rows([{"lang": "curl", "output": gold, "ground_truth": gold}])[0]["error"] == "ok"


def test_normalise_path():
    assert normalise_path("/v1/items/%7Bid%7D/") == "/v1/items/{}"
    assert normalise_path("/a/{x}/b/{y}") == "/a/{}/b/{}"
