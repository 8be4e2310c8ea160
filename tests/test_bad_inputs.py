"""The bad-input corpus (tests/bad_inputs/): every malformed dataset file, spec and config ends in a
message naming the file, record and field, or, under the skip policy, in a rejects row; no
declared output is left behind."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from apipack.builder import load_user_specs
from apipack.data import DataError, load_instances
from apipack.languages import LANGUAGES
from conftest import Run, snakemake, write_json

CORPUS = Path(__file__).parent / "bad_inputs"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text())
DATASETS = EXPECTED["datasets"]
RECORD_LEVEL = sorted(name for name, e in DATASETS.items() if "record" in e)
MAX_CHARS = 5000
# Languages that receive one corpus file each in a workflow run (python first: the corpus is Python).
WORKFLOW_LANGS = ["python", "java", "go", "javascript", "libcurl", "node", "php", "ruby", "swift", "curl"]
SPLIT_OUTPUTS = ["valid.json", "train.json", "level1.json", "level2.json", "level3.json",
                 "manifest.json", "statistics.csv", "rejects.csv"]


def test_corpus_has_at_least_fifteen_files_each_with_an_expectation():
    files = {p.relative_to(CORPUS).as_posix() for p in CORPUS.glob("*/*")}
    expected = {f"{kind}/{name}" for kind in ("datasets", "specs", "configs") for name in EXPECTED[kind]}
    assert files == expected and len(files) >= 15


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_error_policy_names_file_record_and_field(name):
    exp, path = DATASETS[name], CORPUS / "datasets" / name
    with pytest.raises(DataError) as err:
        load_instances(path, "python", "error", MAX_CHARS)
    msg = str(err.value)
    assert msg.startswith(str(path))
    if "file" in exp:
        assert f"{path}: file: {exp['file']}" in msg
    else:
        assert f"record {exp['record']}" in msg and f"field '{exp['field']}': {exp['reason']}" in msg


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_skip_policy_rejects_bad_records_with_reasons(name):
    exp, path = DATASETS[name], CORPUS / "datasets" / name
    if "file" in exp:  # a file that cannot be read has no records to keep: it stops either way
        with pytest.raises(DataError, match=exp["file"].replace("(", r"\(")):
            load_instances(path, "python", "skip", MAX_CHARS)
        return
    res = load_instances(path, "python", "skip", MAX_CHARS)
    assert [(r.file, r.record, r.field) for r in res.rejects] == [(str(path), exp["record"], exp["field"])]
    assert exp["reason"] in res.rejects[0].reason
    assert len(res.instances) == 3  # the corpus files hold four records, one bad


def test_bad_specs_are_rejected_with_reasons(tmp_path):
    folder = tmp_path / "specs"
    shutil.copytree(CORPUS / "specs", folder)
    good = {"openapi": "3.0.0", "info": {"title": "Good", "description": "d", "version": "1"},
            "paths": {"/pets": {"get": {"responses": {"200": {"description": "ok"}}}}}}
    write_json(folder / "good.json", good)
    chosen, rejects = load_user_specs(folder, tmp_path / "staging")
    assert [c["id"] for c in chosen] == ["good.json"]
    got = {r["spec"]: r["reason"] for r in rejects}
    assert set(got) == set(EXPECTED["specs"])
    for name, reason in EXPECTED["specs"].items():
        assert got[name].startswith(reason), (name, got[name])


def run(workdir: Path, config: dict | Path, *targets: str) -> Run:
    return snakemake("--cores", "2", "--keep-going", *targets, workdir=workdir, config=config, check=False,
                     timeout=600)


@pytest.mark.parametrize("name", sorted(EXPECTED["configs"]))
def test_bad_config_stops_before_any_job(tmp_path, name):
    res = run(tmp_path, CORPUS / "configs" / name, "-n")
    out = res.out
    assert res.returncode != 0
    for fragment in EXPECTED["configs"][name]:
        assert fragment in out, out[-2000:]
    assert not (tmp_path / "results").exists()


def local_run(tmp_path: Path, files: list[str], policy: str) -> tuple[Run, dict]:
    """Give each language one corpus file (relabelled) and run its splits rule."""
    local = tmp_path / "local"
    local.mkdir()
    langs = WORKFLOW_LANGS[: len(files)]
    assignment = dict(zip(langs, files))
    for lang, name in assignment.items():
        raw = (CORPUS / "datasets" / name).read_bytes()
        (local / f"total_data_cleaned_{lang}.json").write_bytes(raw.replace(b"Python", LANGUAGES[lang].label.encode()))
    config = {
        "languages": langs,
        "data": {"source": "local", "local_dir": str(local), "on_bad_record": policy, "max_field_chars": MAX_CHARS},
        "splits": {"level1": {"pool": 4, "size": 1, "min_api_count": 1},
                   "level2": {"pool": 4, "max_apis": 1, "min_api_count": 2}, "level3": {"start": 0, "size": 1}},
        "experiments": [{"model": "smollm2", "train_set": "base", "languages": [langs[0]]}],
    }
    res = run(tmp_path, config, *(f"results/splits/{lang}/manifest.json" for lang in langs))
    return res, assignment


def test_workflow_stops_on_each_bad_file_and_leaves_no_output(tmp_path):
    file_level = sorted(name for name, e in DATASETS.items() if "file" in e)
    record_level = [n for n in RECORD_LEVEL if n != "other_language_label.json"]  # curl takes cURL
    res, assignment = local_run(tmp_path, (file_level + record_level)[:10], "error")
    assert res.returncode != 0 and "Error in rule splits" in res.out
    for lang, name in assignment.items():
        exp, log = DATASETS[name], (tmp_path / f"logs/splits/{lang}.log").read_text()
        where = f"total_data_cleaned_{lang}.json: " + (
            f"file: {exp['file']}" if "file" in exp else f"record {exp['record']}"
        )
        assert where in log, (name, log[-1500:])
        assert not any((tmp_path / f"results/splits/{lang}" / out).exists() for out in SPLIT_OUTPUTS), name


def test_workflow_skip_policy_writes_rejects_and_goes_on(tmp_path):
    files = [n for n in RECORD_LEVEL if n != "other_language_label.json"]
    res, assignment = local_run(tmp_path, files[-9:], "skip")  # nine languages; curl not used
    assert res.returncode == 0, res.out[-3000:]
    for lang, name in assignment.items():
        exp, folder = DATASETS[name], tmp_path / f"results/splits/{lang}"
        rejects = pd.read_csv(folder / "rejects.csv")
        assert rejects[["record", "field"]].values.tolist() == [[exp["record"], exp["field"]]], name
        assert exp["reason"].replace("Python", LANGUAGES[lang].label) in rejects.loc[0, "reason"]
        assert len(json.loads((folder / "valid.json").read_text())) == 3
        assert (pd.read_csv(folder / "statistics.csv")["rejected_records"] == 1).all()
