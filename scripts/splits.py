"""Rule splits: validate one language's data, then level 1-3 test sets and the training split."""

from apipack.rulelog import logged
from apipack.settings import SplitSettings
from apipack.splits import split_language

with logged(snakemake):
    params = SplitSettings.of(snakemake.params.splits)
    result = split_language(
        snakemake.input[0], snakemake.wildcards.lang, snakemake.params.policy, snakemake.params.max_chars, params
    )
    result.write(snakemake.output)
    if result.rejects:
        print(f"skipped {len(result.rejects)} bad records; reasons in {snakemake.output.rejects}")
    print(result.statistics.to_string(index=False))
