rule splits:
    input:
        "results/data/raw/total_data_cleaned_{lang}.json",
    output:
        valid="results/splits/{lang}/valid.json",
        train="results/splits/{lang}/train.json",
        levels=expand("results/splits/{{lang}}/level{level}.json", level=[1, 2, 3]),
        manifest="results/splits/{lang}/manifest.json",
        stats="results/splits/{lang}/statistics.csv",
        rejects="results/splits/{lang}/rejects.csv",
    log:
        "logs/splits/{lang}.log",
    benchmark:
        "logs/benchmarks/splits/{lang}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        splits=SplitSettings.from_config(config).param(),
        policy=config["data"]["on_bad_record"],
        max_chars=config["data"]["max_field_chars"],
    script:
        "../scripts/splits.py"


rule split_statistics:
    input:
        expand("results/splits/{lang}/statistics.csv", lang=LANGS),
    output:
        report(
            "results/splits/statistics.csv",
            caption="../report/split_statistics.rst",
            category="Data",
        ),
    log:
        "logs/splits/statistics.log",
    benchmark:
        "logs/benchmarks/splits/statistics.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_version("split_statistics.py"),
    script:
        "../scripts/split_statistics.py"


rule embed:
    input:
        **embedder_dirs(),
        valid="results/splits/{lang}/valid.json",
        levels=expand("results/splits/{{lang}}/level{level}.json", level=[1, 2, 3]),
    output:
        "results/retrieval/{lang}.npz",
    log:
        "logs/retrieval/{lang}.log",
    benchmark:
        "logs/benchmarks/retrieval/{lang}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
    params:
        retrieval=RetrievalSettings.from_config(config).param(),
    script:
        "../scripts/embed.py"


rule eval_prompts:
    input:
        unpack(eval_prompt_inputs),
    output:
        "results/prompts/test/{lang}/L{level}_{mode}.jsonl",
    log:
        "logs/prompts/test/{lang}/L{level}_{mode}.log",
    benchmark:
        "logs/benchmarks/prompts/test/{lang}/L{level}_{mode}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        prompts=lambda wildcards: PromptSettings.for_test(config, wildcards.mode).param(),
        code=code_version("eval_prompts.py"),
    script:
        "../scripts/eval_prompts.py"


rule train_set:
    input:
        unpack(train_set_inputs),
    output:
        "results/prompts/train/{trainset}.jsonl",
    log:
        "logs/prompts/train/{trainset}.log",
    benchmark:
        "logs/benchmarks/prompts/train/{trainset}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        spec=train_set_spec,
        prompts=train_prompt_settings,
    script:
        "../scripts/train_set.py"
