localrules:
    finetune_settings,


rule finetune_settings:
    """The settings file of the training script: rewritten (and so retraining) only when a
    setting that changes a fine-tuned model changes."""
    output:
        "results/settings/finetune/{model}.json",
    log:
        "logs/finetune/settings_{model}.log",
    benchmark:
        "logs/benchmarks/finetune/settings_{model}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        settings=train_settings,
    script:
        "../scripts/finetune_settings.py"


rule tokenize:
    """The Arrow files of a training set as {tokenizer}'s tokenizer cuts it, one worker per
    thread, before any GPU job starts; every model sharing that tokenizer maps them."""
    input:
        train="results/prompts/train/{trainset}.jsonl",
        tokenizer="results/models/base/{tokenizer}",
    output:
        directory("results/tokenized/{tokenizer}/{trainset}"),
    log:
        "logs/tokenize/{tokenizer}/{trainset}.log",
    benchmark:
        "logs/benchmarks/tokenize/{tokenizer}/{trainset}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        cutoff_len=config["finetune"]["cutoff_len"],
        trust_remote_code=lambda wc: config["models"][wc.tokenizer].get("trust_remote_code", False),
    script:
        "../scripts/tokenize_train.py"


rule finetune:
    input:
        data=tokenized_dir,
        base=base_model_dir,
        settings="results/settings/finetune/{model}.json",
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
        "logs/benchmarks/finetune/{model}/{trainset}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        **train_resources(config["finetune"]["gpus"], config["finetune"]["nodes"]),
        mem_mb=16000,
        runtime=1440,
    params:
        # Undeclared, so that a killed job keeps its checkpoints and the rerun resumes.
        checkpoints="results/checkpoints/{model}/{trainset}",
    shell:
        finetune_command(config, workflow.basedir)
