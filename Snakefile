# API Pack reproduction: data -> splits and prompts -> fine-tuning -> evaluation -> figures.
# Run: snakemake --cores all   (see README.md; paper grid: --configfile configs/paper.yaml)
from snakemake.utils import min_version

min_version("9.20")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/preprocess.smk"
include: "rules/finetune.smk"
include: "rules/evaluate.smk"
include: "rules/figures.smk"


rule all:
    default_target: True
    input:
        "results/metrics/metrics.csv",
        result_targets(),
        figure_targets(),
        "results/splits/statistics.csv",
        build_summary(),


rule data:
    input:
        expand("results/data/raw/total_data_cleaned_{lang}.json", lang=LANGS),


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
