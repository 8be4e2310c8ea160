"""The data builder: spec selection, user specs (JSON/YAML, 2.0/3.x), openapi-snippet, validation."""

import json

import pandas as pd
import yaml

from apipack.builder import (
    build_from_snippets,
    call_problem,
    load_user_specs,
    select_directory_specs,
    staging_name,
    template_instructions,
)
from apipack.data import load_instances
from apipack.languages import BY_TARGET, LANG_KEYS, LANGUAGES
from apipack.snippets import generate_snippets
from apipack.specfile import clean_name, printable
from conftest import spec_limits

SWAGGER2 = {
    "swagger": "2.0",
    "info": {"title": "Pet Store", "version": "1", "description": "Pets for sale."},
    "host": "petstore.example.com",
    "basePath": "/v2",
    "schemes": ["https"],
    "paths": {
        "/pets": {"get": {"summary": "List all pets", "tags": ["pets"]},
                  "post": {"summary": "Create a pet", "parameters": [
                      {"in": "body", "name": "body",
                       "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}]}},
        "/pets/{petId}": {"delete": {"operationId": "deletePet", "parameters": [
            {"in": "path", "name": "petId", "required": True, "type": "string"}]}},
    },
}
OPENAPI3 = {
    "openapi": "3.0.0",
    "info": {"title": "Weather", "version": "1", "description": "Forecasts."},
    "servers": [{"url": "https://weather.example.org/api"}],
    "paths": {
        "/forecast": {"get": {"summary": "Returns the forecast for a city", "parameters": [
            {"name": "city", "in": "query", "required": True, "schema": {"type": "string"}}]}},
        "/alerts": {"get": {"description": "Lists the weather alerts. More text here."}},
    },
}


def index_row(i, ops=5, desc=True, title=None, error=None):
    row = {"id": f"api{i:02d}", "file": f"/x/{i}.json", "title": title or f"API {i}",
           "n_operations": ops, "has_description": desc}
    return {**row, "error": error} if error else row


def test_directory_selection_is_seeded_and_filtered():
    index = [index_row(i) for i in range(20)] + [index_row(30, ops=1), index_row(31, desc=False),
                                                   index_row(32, title="API 3"), index_row(33, error="bad JSON")]
    a, rejects = select_directory_specs(index, 5, 3, 10, True, seed=1)
    b, _ = select_directory_specs(list(reversed(index)), 5, 3, 10, True, seed=1)
    c, _ = select_directory_specs(index, 5, 3, 10, True, seed=2)
    assert a == b and a != c and len(a) == 5
    assert not {"api30", "api31", "api32", "api33"} & {s["id"] for s in a}
    assert {r["spec"]: r["reason"] for r in rejects} == {"api32": "duplicate title 'API 3'", "api33": "bad JSON"}
    assert {r["stage"] for r in rejects} == {"selection"}


def test_real_snippets_pass_validation_and_broken_ones_do_not(snippets):
    for target, call in snippets.items():
        lang = BY_TARGET[target]
        assert call_problem(call, "PATCH", lang) is None, target
        assert call_problem(call, "DELETE", lang) == "method", target
    curl = LANGUAGES["curl"]
    assert call_problem("wget http://x", "GET", curl) == "signature"
    assert call_problem("curl --request GET --url '://'", "GET", curl) == "url"
    assert call_problem("curl --request GET", "GET", curl) == "url"


def test_user_specs_and_rejects(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "petstore.yaml").write_text(yaml.safe_dump(SWAGGER2))
    (specs / "weather.json").write_text(json.dumps(OPENAPI3))
    (specs / "broken.yaml").write_text("openapi: 3.0.0\ninfo: [unclosed\n")
    (specs / "nopaths.json").write_text(json.dumps({"openapi": "3.0.0", "info": {"title": "E"}}))
    (specs / "bad.json").write_bytes(b'{"openapi": "3.0.0", "info": {"title": "\xff"}}')
    (specs / "weather_v2.json").write_text(json.dumps(OPENAPI3).replace("Weather", "Weather\\u0000 "))
    chosen, rejects = load_user_specs(specs, tmp_path / "staging", spec_limits())
    assert [c["id"] for c in chosen] == ["petstore.yaml", "weather.json"]
    reasons = {r["spec"]: r["reason"] for r in rejects}
    assert set(reasons) == {"broken.yaml", "nopaths.json", "bad.json", "weather_v2.json"}
    assert reasons["nopaths.json"] == "missing or empty 'paths'"
    assert reasons["broken.yaml"].startswith("unparsable")
    assert reasons["weather_v2.json"] == "duplicate title 'Weather'"  # control characters do not make it new


def test_build_all_ten_languages_from_user_specs(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "petstore.yaml").write_text(yaml.safe_dump(SWAGGER2))
    (specs / "weather.json").write_text(json.dumps(OPENAPI3))
    chosen, rejects = load_user_specs(specs, tmp_path / "staging", spec_limits())
    targets = ",".join(LANGUAGES[k].target for k in LANG_KEYS)
    assert generate_snippets(chosen, targets, str(tmp_path / "snippets.jsonl"), spec_limits()) == []
    files = [str(tmp_path / f"total_data_cleaned_{k}.json") for k in LANG_KEYS]
    summary = build_from_snippets(str(tmp_path / "snippets.jsonl"), pd.DataFrame(rejects, columns=["stage"]),
                                  list(LANG_KEYS),
                                  template_instructions(0), 20_000, files, str(tmp_path / "api_db.jsonl"),
                                  str(tmp_path / "summary.csv"))
    table = summary.set_index("stage")
    assert table.loc["operations", "all"] == 5
    assert table.loc["specs_selected", "all"] == 2
    for key, path in zip(LANG_KEYS, files):
        loaded = load_instances(path, key)  # raises on any record not in the published format
        assert len(loaded.instances) == table.loc["kept", key] == 5, key
        assert {i["api_name"] for i in loaded.instances} == {"Pet Store", "Weather"}
        for inst in loaded.instances:
            assert inst["instruction"] != inst["instruction_test"]
    python = json.loads(open(files[LANG_KEYS.index("python")]).read())
    assert python[0]["unique_id"] == "Pet-Store.json_0"
    assert "petstore.example.com" in python[0]["output"] and "**lang**:Python" in python[0]["output"]
    assert (tmp_path / "summary.csv").read_text() == summary.to_csv(index=False)


def test_names_from_specs_lose_their_control_characters():
    title = "../x\u0000<script>\n\u202eevil\ud800 "
    assert clean_name(title) == "../x <script> evil" and clean_name(" Two  spaces\t") == "Two  spaces"
    assert printable(title) == "../x\\x00<script>\\n\\u202eevil\\ud800 "
    assert printable(title).isprintable() and printable("Größe ok") == "Größe ok"


def test_staging_names_are_plain_and_distinct():
    names = [staging_name(rel) for rel in ("a b.json", "a_b.json", "sub/a b.json", "../\u0000x.yaml")]
    assert len(set(names)) == 4
    assert all(n.endswith(".json") and "/" not in n and n.isascii() and n.isprintable() for n in names)
