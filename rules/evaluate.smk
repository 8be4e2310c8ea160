rule generate:
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
        # what the model's answers depend on; an API model's connection settings, which do not
        # change them, come from the config (apipack.settings.connection)
        model=model_source,
    script:
        "../scripts/generate.py"


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
