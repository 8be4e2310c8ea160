"""Rule peak_flops: the peak FLOP/s of one GPU (the CPU without one), from a timed matmul."""

from apipack.files import write_json
from apipack.gpu_slots import claim
from apipack.measure import measure_peak
from apipack.rulelog import logged
from apipack.train import DTYPES


def main(snakemake) -> None:
    with logged(snakemake):
        claim(snakemake.resources.gpu)
        p = snakemake.params
        peak = measure_peak(DTYPES[p.precision], p.size, p.repeats)
        print(f"{peak['device']}: {peak['peak_flops'] / 1e12:.3f} TFLOP/s ({peak['dtype']})")
        write_json(snakemake.output[0], peak)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (Snakemake's script preamble defines it)
