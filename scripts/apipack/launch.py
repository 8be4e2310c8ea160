"""How a training job is launched: its GPU resources in the SLURM plugin's terms and its command.

How the job runs travels on the command line, outside the rule's params and the checkpoint key,
so that changing it never retrains: the GPUs and nodes, the accelerate config and
``apipack.settings.RunSettings``.
"""

from __future__ import annotations

from pathlib import Path

from .settings import RunSettings

# Placeholders that Snakemake fills in the rule's shell command.
RULE_FILES = (
    "--data {input.data} --base {input.base} --settings {input.settings} --out {output.model} "
    "--checkpoints {params.checkpoints} --log-csv {output.curve}"
)


def train_resources(gpus: int, nodes: int) -> dict[str, int | str]:
    """GPU resources of a training job.

    One node: ``gpu`` GPUs (sbatch --gpus; on a workstation the count that --resources gpu=N
    budgets). Several nodes: ``gres=gpu:G`` per node, one task per node (``tasks``) and
    ``mpi=srun``, so that the jobstep plugin does not wrap the job in its own srun and the
    rule's ``srun`` starts one launcher per node.
    """
    if nodes == 1:
        return {"gpu": gpus, "nodes": 1}
    return {"gpu": 0, "gres": f"gpu:{gpus}", "nodes": nodes, "tasks": nodes, "tasks_per_gpu": 0, "mpi": "srun"}


def launcher(gpus: int, nodes: int, accelerate_config: str | None, root: Path) -> str:
    """What starts ``apipack.train``: plain python on a CPU or one GPU; ``accelerate launch`` with
    one process per GPU; on several nodes ``{resources.mpi}`` (srun) runs accelerate launch once per
    node, machine rank = SLURM_NODEID. On a workstation a GPU job first claims free GPUs
    (apipack.gpu_slots); inside SLURM jobs SLURM has picked them."""
    config = f"--config_file {root / accelerate_config} " if accelerate_config else "--multi_gpu "
    launch = "accelerate launch " + config
    if nodes > 1:
        head = "$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1)"
        launch += (
            f"--num_processes {gpus * nodes} --num_machines {nodes} --machine_rank $SLURM_NODEID "
            f"--main_process_ip {head} --main_process_port 29500 -m apipack.train"
        )
        return (
            f"{{resources.mpi}} --nodes {nodes} --ntasks-per-node 1 --kill-on-bad-exit 1 "
            f"bash -c '{launch} \"$@\"' apipack-train"
        )
    train = "python -m apipack.train" if gpus <= 1 else f"{launch}--num_processes {gpus} -m apipack.train"
    return (f"python -m apipack.gpu_slots {gpus} -- " if gpus else "") + train


def finetune_command(config: dict, root: str | Path) -> str:
    """The shell command of rule finetune for ``config`` (validated), in the workflow at ``root``."""
    root, ft = Path(root), config["finetune"]
    launch = launcher(ft["gpus"], ft["nodes"], ft["accelerate_config"], root)
    # exec: the launcher replaces the job's shell, which SIGTERM (sbatch --signal) would otherwise
    # end at once, and with it the job step, while training saves its checkpoint.
    return (
        f"mkdir -p {{params.checkpoints}} && PYTHONPATH={root / 'scripts'} exec {launch} {RULE_FILES} "
        f"{RunSettings.from_config(config).arguments()} > {{log}} 2>&1"
    )
