"""Docs that cannot go stale: the configuration reference is the schema's, and every `snakemake`
command that the README and docs/ show plans (a dry run) from the root of a checkout."""

import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from apipack.schema_doc import keys, render
from conftest import ROOT, SCHEMA, checkout_copy, snakemake

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Names the docs ask the reader to choose, and what the test plans in their place.
PLACEHOLDERS = {"profiles/slurm_<site>": "profiles/slurm"}
# Options for software that this machine lacks (conda): left out of the dry run; that Snakemake
# still knows them is checked against its --help.
NEEDS_CONDA = ["--sdm conda", "--conda-create-envs-only"]


def test_configuration_reference_is_generated_from_the_schema():
    schema = yaml.safe_load(SCHEMA.read_text())
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == render(schema), "docs/configuration.md is stale: run `make docs`"


def test_every_config_key_is_described():
    schema = yaml.safe_load(SCHEMA.read_text())
    missing = [key for top, node in schema["properties"].items()
               for key, child in [(top, node), *keys(node, schema, f"{top}.")] if not child.get("description")]
    assert not missing, f"schemas/config.schema.yaml: keys without a description: {missing}"


def shown_commands(text: str) -> list[str]:
    """`snakemake ...` lines of fenced code blocks (comments cut, continuations joined) and inline
    code spans."""
    found = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("snakemake "):
                found.append(line)
    outside = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    found += re.findall(r"`(snakemake [^`]+)`", outside)
    return found


def commands() -> list[str]:
    found = {cmd for page in PAGES for cmd in shown_commands(page.read_text())}
    return sorted(found)


def test_the_docs_show_the_main_commands():
    shown = commands()
    assert len(shown) >= 10, shown
    for needed in ("--configfile configs/paper.yaml", "profiles/slurm", "figures_paper", "configs/own_model.yaml",
                   "configs/rehearsal.yaml", "download"):
        assert any(needed in cmd for cmd in shown), needed


def dry_run_args(cmd: str) -> list[str]:
    """The command's arguments, planned: placeholders replaced, conda options out, --report left
    out (it needs a finished run; the report itself is built in test_workflow.py), -n added."""
    for name, value in PLACEHOLDERS.items():
        cmd = cmd.replace(name, value)
    assert "<" not in cmd, f"{cmd}: a placeholder the test does not know; add it to PLACEHOLDERS"
    for option in NEEDS_CONDA:
        cmd = cmd.replace(option, "")
    args = shlex.split(cmd)[1:]
    if "--report" in args:
        i = args.index("--report")
        del args[i : i + 2]
    if not {"-n", "--unlock", "--lint"} & set(args):
        args.insert(0, "-n")
    # a target after --configfile would be read as a config file: the docs must put targets first
    if "--configfile" in args:
        after = args[args.index("--configfile") + 1 :]
        files = after[: next((i for i, a in enumerate(after) if a.startswith("-")), len(after))]
        assert all(f.endswith((".yaml", ".yml")) for f in files), f"{cmd}: targets go before --configfile"
    return args


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    root = checkout_copy(tmp_path_factory.mktemp("docs") / "apipack")
    for folder in ("my_models/model", "my_models/base", "my_models/lora"):  # configs/own_model.yaml's
        (root / folder).mkdir(parents=True)
    return root


def test_every_shown_snakemake_command_plans(checkout):
    def plan(cmd: str) -> tuple[str, int, str]:
        run = snakemake(*dry_run_args(cmd), cwd=checkout, check=False, timeout=600)
        return cmd, run.returncode, run.out

    with ThreadPoolExecutor(2) as pool:
        failed = [(cmd, out[-1500:]) for cmd, rc, out in pool.map(plan, commands()) if rc]
    assert not failed, "\n\n".join(f"{cmd}\n{out}" for cmd, out in failed)
    options = snakemake("--help").out
    assert all(option.split()[0] in options for option in NEEDS_CONDA)
