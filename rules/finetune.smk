rule finetune:
    input:
        train="results/prompts/train/{trainset}.jsonl",
        base=base_model_dir,
    output:
        model=directory("results/models/ft/{model}/{trainset}"),
        curve=report(
            "results/train_logs/{model}/{trainset}.csv",
            caption="../report/train_log.rst",
            category="Training",
            labels={"model": "{model}", "train set": "{trainset}"},
        ),
    log:
        "logs/finetune/{model}/{trainset}.log",
    benchmark:
        "benchmarks/finetune/{model}/{trainset}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        **train_resources(),
        mem_mb=16000,
        runtime=1440,
    params:
        settings=finetune_settings,
        launcher=launcher,
        scripts=SCRIPTS,
        # Undeclared, so that a killed job keeps its checkpoints and the rerun resumes.
        checkpoints="results/checkpoints/{model}/{trainset}",
    shell:
        "mkdir -p {params.checkpoints} && "
        "echo '{params.settings}' > {params.checkpoints}/settings.json && "
        "PYTHONPATH={params.scripts} {params.launcher} --train {input.train} "
        "--base {input.base} --out {output.model} --checkpoints {params.checkpoints} "
        "--config {params.checkpoints}/settings.json --log-csv {output.curve} > {log} 2>&1"
