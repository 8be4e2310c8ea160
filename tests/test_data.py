"""The published instance format: validation, loading policies and clear errors."""

import json

import pytest

from apipack.data import (
    DataError,
    check_instance,
    format_output,
    load_instances,
    parse_output,
)
from conftest import make_instance, write_json


def test_output_layout_matches_published_example():
    out = format_output(["forex", "finance"], "curl --url x", "1forge.com", "cURL")
    assert out == (
        "**domain**:['forex', 'finance']\n**api_call**:curl --url x\n"
        "**api_provider**:1forge.com\n**lang**:cURL"
    )
    assert parse_output(out) == {
        "domain": "['forex', 'finance']",
        "api_call": "curl --url x",
        "provider": "1forge.com",
        "lang": "cURL",
    }


@pytest.mark.parametrize(
    "mutate, field, reason",
    [
        (lambda r: r.pop("instruction_test"), "instruction_test", "missing"),
        (lambda r: r.update(instruction=3), "instruction", "expected str"),
        (lambda r: r["api_call_data"].update(lang="Cobol"), "api_call_data.lang", "unknown"),
        (lambda r: r["api_call_data"].update(domain="x"), "api_call_data.domain", "expected list"),
        (lambda r: r.update(instruction_test="  "), "instruction_test", "empty"),
        (lambda r: r.update(output="no layout"), "output", "layout"),
        (lambda r: r.update(api_description="x" * 10_001), "api_description", "over the limit"),
    ],
)
def test_check_instance_names_the_field(mutate, field, reason):
    rec = make_instance("Pets", 0)
    assert check_instance(rec, "Python", max_chars=10_000) is None
    mutate(rec)
    got = check_instance(rec, "Python", max_chars=10_000)
    assert got is not None and got[0] == field and reason in got[1]


def test_label_of_another_language_is_rejected():
    assert check_instance(make_instance("Pets", 0, "curl"), "Python")[0] == "api_call_data.lang"


def test_error_policy_names_file_record_and_field(tmp_path):
    recs = [make_instance("Pets", i) for i in range(3)]
    del recs[1]["output"]
    path = write_json(tmp_path / "total_data_cleaned_python.json", recs)
    with pytest.raises(DataError, match=r"total_data_cleaned_python.json: record 1 .*field 'output': missing"):
        load_instances(path, "python")


def test_skip_policy_returns_rejects_and_keeps_the_rest(tmp_path):
    recs = [make_instance("Pets", i) for i in range(4)]
    recs[1]["api_call_data"]["lang"] = "Klingon"
    recs[3]["unique_id"] = recs[0]["unique_id"]
    path = write_json(tmp_path / "d.json", recs)
    res = load_instances(path, "python", on_bad_record="skip")
    assert [r["unique_id"] for r in res.instances] == ["Pets.json_0", "Pets.json_2"]
    assert [(r.record, r.field) for r in res.rejects] == [(1, "api_call_data.lang"), (3, "unique_id")]
    assert "duplicate" in res.rejects[1].reason


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b'[{"api_name": "x"', "invalid JSON at line 1"),
        (b'{"a": 1}', "expected a JSON list"),
        (b'["\xff\xfe"]', "invalid UTF-8 at byte 2"),
    ],
)
def test_file_level_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        load_instances(path, on_bad_record="skip")
    assert str(path) in str(err.value)


def test_round_trip_of_valid_file(tmp_path):
    recs = [make_instance("Pets", i) for i in range(5)]
    path = write_json(tmp_path / "d.json", recs)
    assert load_instances(path, "python").instances == json.loads(path.read_text())
