# API Pack reproduction: data -> splits and prompts -> fine-tuning -> evaluation -> figures.
# Run: snakemake --cores all   (see README.md; paper grid: --configfile configs/paper.yaml)
from snakemake.utils import min_version

min_version("9.20")


# config.yaml is the default study. A --configfile replaces it instead of being merged over it:
# each config file stands alone on top of the schema defaults (schemas/config.schema.yaml), so
# configs/paper.yaml never inherits the CPU study's settings. Several --configfile files merge in
# the order given (e.g. configs/paper.yaml configs/rehearsal.yaml).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/preprocess.smk"
include: "rules/finetune.smk"
include: "rules/evaluate.smk"
include: "rules/figures.smk"
include: "rules/preflight.smk"


rule all:
    default_target: True
    input:
        "results/config.yaml",
        "results/metrics/metrics.csv",
        result_targets(),
        figure_targets(),
        "results/splits/statistics.csv",
        build_summary(),


rule data:
    input:
        expand("results/data/raw/total_data_cleaned_{lang}.json", lang=LANGS),


rule download:
    """Everything the run fetches from the network: run it on a login node first."""
    input:
        rules.data.input,
        hub_model_dirs(),


localrules:
    effective_config,


rule effective_config:
    """The config this run holds after loading its config files and the schema defaults."""
    output:
        "results/config.yaml",
    log:
        "logs/effective_config.log",
    benchmark:
        "logs/benchmarks/effective_config.tsv"
    conda:
        "envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        config=config,
    script:
        "scripts/effective_config.py"


rule train:
    input:
        finetuned_models(),


rule evaluate:
    input:
        "results/metrics/metrics.csv",
        result_targets(),


rule figures:
    input:
        figure_targets(),


rule preflight:
    """The preflight report (docs/preflight.md) and everything the run's config makes."""
    input:
        rules.preflight_report.output,
        rules.all.input,
