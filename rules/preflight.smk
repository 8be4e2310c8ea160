# The preflight (docs/preflight.md): measured figures of the first fine-tuning experiment on this
# machine and the projected cost of the grid in preflight.grid. Target: `preflight` (Snakefile).
# Its helpers are in rules/common.smk.


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
