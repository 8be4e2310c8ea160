"""Rule finetune_settings: the TrainSettings of one model as the JSON file of the training script."""

from apipack.files import write_json
from apipack.rulelog import logged
from apipack.settings import TrainSettings

with logged(snakemake):
    write_json(snakemake.output[0], TrainSettings.of(snakemake.params.settings).param())
