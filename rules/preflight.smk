# The preflight (docs/preflight.md): measured figures of the first fine-tuning experiment on this
# machine and the projected cost of the grid in preflight.grid. Target: `preflight` (Snakefile).
import yaml

from apipack.projection import preflight_job  # noqa: E402

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


rule peak_flops:
    """The GPU's peak FLOP/s, measured: a square matmul in the training precision."""
    output:
        "results/preflight/peak.json",
    log:
        "logs/preflight/peak.log",
    benchmark:
        "logs/benchmarks/preflight/peak.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=10,
        gpu=min(1, config["finetune"]["gpus"]),
    params:
        precision=config["finetune"]["precision"],
        size=PREFLIGHT["matmul_size"],
        repeats=PREFLIGHT["matmul_repeats"],
    script:
        "../scripts/preflight_peak.py"


rule preflight_engine:
    """Load time and items/s of the HF engine, or of an API model, on the preflight's prompts."""
    input:
        unpack(preflight_models),
        prompts=preflight_prompts,
    output:
        "results/preflight/engines/{engine}.json",
    log:
        "logs/preflight/engine_{engine}.log",
    benchmark:
        "logs/benchmarks/preflight/engine_{engine}.tsv"
    wildcard_constraints:
        engine="|".join(["hf", *PREFLIGHT["api_models"]]),
    conda:
        "../envs/evaluate.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=60,
        gpu=config["generation"]["gpus"],
    script:
        "../scripts/preflight_engine.py"


rule preflight_vllm:
    """The same for vLLM, in its env (envs/vllm.yaml: on GPUs)."""
    input:
        unpack(preflight_models),
        prompts=preflight_prompts,
    output:
        "results/preflight/engines/{engine}.json",
    log:
        "logs/preflight/engine_{engine}.log",
    benchmark:
        "logs/benchmarks/preflight/engine_{engine}.tsv"
    wildcard_constraints:
        engine="vllm",
    conda:
        "../envs/vllm.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=60,
        gpu=config["generation"]["gpus"],
    script:
        "../scripts/preflight_engine.py"


rule preflight_report:
    """The preflight report: measured figures and the grid's projected cost, with the formulas."""
    input:
        unpack(preflight_training),
        config="results/config.yaml",
        peak="results/preflight/peak.json",
        engines=expand("results/preflight/engines/{engine}.json", engine=PREFLIGHT_TIMED),
        grid=PREFLIGHT["grid"],
    output:
        md="results/preflight/report.md",
        json="results/preflight/report.json",
    log:
        "logs/preflight/report.log",
    benchmark:
        "logs/benchmarks/preflight/report.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        benchmark=preflight_benchmark,
        grid=preflight_grid,
    script:
        "../scripts/preflight_report.py"
