"""Rule loss_curve: the training loss of one fine-tuned model against its steps."""

import pandas as pd

from apipack.figures import loss_curve
from apipack.rulelog import logged

with logged(snakemake):
    wc = snakemake.wildcards
    loss_curve(pd.read_csv(snakemake.input[0]), f"{wc.model} fine-tuned on {wc.trainset}", snakemake.output[0])
