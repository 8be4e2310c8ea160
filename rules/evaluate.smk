ruleorder: generate_api > generate


rule generate:
    """A local model's answers, on a GPU job (generation.gpus) or the CPU."""
    input:
        prompts="results/prompts/test/{lang}/L{level}_{mode}.jsonl",
        base=base_model_dir,
        finetuned=finetuned_dir,
    output:
        "results/generations/{model}/{trainset}/{lang}/L{level}_{mode}_s{seed}.jsonl",
    log:
        "logs/generate/{model}/{trainset}/{lang}/L{level}_{mode}_s{seed}.log",
    benchmark:
        "logs/benchmarks/generate/{model}/{trainset}/{lang}/L{level}_{mode}_s{seed}.tsv"
    conda:
        generation_env()
    threads: 2
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=config["generation"]["gpus"],
    params:
        generation=generation_settings,
        model=model_source,  # what the model's answers depend on (an adapter trained elsewhere included)
    script:
        "../scripts/generate.py"


if config["generation"]["api_local"]:

    localrules:
        generate_api,


rule generate_api:
    """An API model's answers (source openai): HTTP requests only, where the network is: by
    default in Snakemake's own process on the submitting node (generation.api_local), else as
    a small CPU job. Its params hold only what is sent: the prompts are its input, then the
    model (base_url, api_model), the token cap, the temperature and the seed (its wildcard)."""
    input:
        prompts="results/prompts/test/{lang}/L{level}_{mode}.jsonl",
    output:
        "results/generations/{model}/{trainset}/{lang}/L{level}_{mode}_s{seed}.jsonl",
    log:
        "logs/generate/{model}/{trainset}/{lang}/L{level}_{mode}_s{seed}.log",
    benchmark:
        "logs/benchmarks/generate/{model}/{trainset}/{lang}/L{level}_{mode}_s{seed}.tsv"
    wildcard_constraints:
        model=api_models(),
        trainset="base",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        request=ApiRequest.from_config(config).param(),
        # how the model is reached (key, concurrency, retries) comes from the config: no part of its answers
        model=model_source,
    script:
        "../scripts/generate_api.py"


rule score:
    input:
        generations="results/generations/{model}/{trainset}/{lang}/L{level}_{mode}_s{seed}.jsonl",
        valid="results/splits/{lang}/valid.json",
    output:
        "results/scores/{model}/{trainset}/{lang}/L{level}_{mode}_s{seed}.jsonl",
    log:
        "logs/score/{model}/{trainset}/{lang}/L{level}_{mode}_s{seed}.log",
    benchmark:
        "logs/benchmarks/score/{model}/{trainset}/{lang}/L{level}_{mode}_s{seed}.tsv"
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        mode=config["evaluation"]["metric_mode"],
        code=code_version("score.py"),
    script:
        "../scripts/score.py"


rule metrics:
    input:
        score_files(),
    output:
        seeds=report(
            "results/metrics/metrics.csv",
            caption="../report/metrics.rst",
            category="Metrics",
        ),
        cells=report(
            "results/metrics/cells.csv",
            caption="../report/cells.rst",
            category="Metrics",
        ),
    log:
        "logs/metrics.log",
    benchmark:
        "logs/benchmarks/metrics.tsv"
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("metrics.py"),
    script:
        "../scripts/metrics.py"


rule comparisons:
    input:
        score_files(),
    output:
        report(
            "results/metrics/comparisons.csv",
            caption="../report/comparisons.rst",
            category="Metrics",
        ),
    log:
        "logs/comparisons.log",
    benchmark:
        "logs/benchmarks/comparisons.tsv"
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        comparisons=COMPARISONS,
        bootstrap=config["evaluation"]["bootstrap"],
        seed=config["seed"],
        code=code_version("comparisons.py"),
    script:
        "../scripts/comparisons.py"


rule leakage:
    input:
        unpack(leakage_inputs),
    output:
        report(
            "results/metrics/leakage.csv",
            caption="../report/leakage.rst",
            category="Metrics",
        ),
    log:
        "logs/leakage.log",
    benchmark:
        "logs/benchmarks/leakage.tsv"
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        max_items=config["evaluation"]["max_items"],
        seed=config["seed"],
        code=code_version("leakage.py"),
    script:
        "../scripts/leakage.py"


rule manifest:
    input:
        unpack(manifest_inputs),
    output:
        "results/metrics/manifest.json",
    log:
        "logs/manifest.log",
    benchmark:
        "logs/benchmarks/manifest.tsv"
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        config=config,
        root=workflow.basedir,
    script:
        "../scripts/manifest.py"
