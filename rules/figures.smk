rule figure:
    input:
        cells="results/metrics/cells.csv",
        reference=REFERENCE,
    output:
        png=report(
            "results/figures/{family}.png",
            caption="../report/figure.rst",
            category="Figures (our results)",
        ),
        pdf="results/figures/{family}.pdf",
        data="results/figures/{family}.csv",
    log:
        "logs/figures/{family}.log",
    benchmark:
        "logs/benchmarks/figures/{family}.tsv"
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figures=config["figures"],
        languages=LANGS,
        code=code_version("figure.py"),
    script:
        "../scripts/figure.py"


rule figure_paper:
    input:
        reference=REFERENCE,
    output:
        png=report(
            "results/figures/paper/{family}.png",
            caption="../report/figure.rst",
            category="Figures (published numbers)",
        ),
        pdf="results/figures/paper/{family}.pdf",
        data="results/figures/paper/{family}.csv",
    log:
        "logs/figures/paper_{family}.log",
    benchmark:
        "logs/benchmarks/figures/paper_{family}.tsv"
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("figure.py"),
    script:
        "../scripts/figure.py"


rule figures_paper:
    input:
        expand(
            "results/figures/paper/{family}.{ext}",
            family=["model_battle", "scaling", "cross_lingual"],
            ext=["png", "pdf", "csv"],
        ),


rule loss_curve:
    input:
        "results/train_logs/{model}/{trainset}.csv",
    output:
        report(
            "results/figures/loss/{model}/{trainset}.png",
            caption="../report/loss_curve.rst",
            category="Training",
            labels={"model": "{model}", "train set": "{trainset}"},
        ),
    log:
        "logs/figures/loss_{model}_{trainset}.log",
    benchmark:
        "logs/benchmarks/figures/loss_{model}_{trainset}.tsv"
    conda:
        "../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("loss_curve.py"),
    script:
        "../scripts/loss_curve.py"
