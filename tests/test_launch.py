"""The training job's launch line and GPU resources (apipack.launch), for each way it runs."""

import shlex

import pytest

from apipack.launch import finetune_command, launcher, train_resources
from conftest import ROOT, schema_config

FSDP = "configs/accelerate/fsdp.yaml"


def command(**finetune) -> str:
    return finetune_command(schema_config({"finetune": finetune}), ROOT)


def test_cpu_and_one_gpu_run_the_script_itself():
    assert launcher(0, 1, None, ROOT) == "python -m apipack.train"
    assert launcher(1, 1, FSDP, ROOT) == "python -m apipack.gpu_slots 1 -- python -m apipack.train"
    assert train_resources(0, 1) == {"gpu": 0, "nodes": 1}


def test_several_gpus_launch_one_process_each_after_claiming_them():
    words = shlex.split(launcher(2, 1, FSDP, ROOT))
    assert words[:5] == ["python", "-m", "apipack.gpu_slots", "2", "--"]
    assert words[5:8] == ["accelerate", "launch", "--config_file"] and words[8] == str(ROOT / FSDP)
    assert words[9:] == ["--num_processes", "2", "-m", "apipack.train"]
    assert shlex.split(launcher(2, 1, None, ROOT))[5:8] == ["accelerate", "launch", "--multi_gpu"]
    assert train_resources(8, 1) == {"gpu": 8, "nodes": 1}


def test_several_nodes_run_one_launcher_per_node_through_srun():
    line = launcher(8, 15, None, ROOT)
    assert line.startswith("{resources.mpi} --nodes 15 --ntasks-per-node 1 --kill-on-bad-exit 1 bash -c '")
    inner = shlex.split(line.split("bash -c ")[1])[0]
    assert "--num_processes 120 --num_machines 15 --machine_rank $SLURM_NODEID" in inner
    assert "head -n 1)" in inner and inner.endswith('-m apipack.train "$@"')
    assert train_resources(8, 15) == {"gpu": 0, "gres": "gpu:8", "nodes": 15, "tasks": 15, "tasks_per_gpu": 0,
                                      "mpi": "srun"}


@pytest.mark.parametrize("gpus,nodes", [(0, 1), (2, 1), (8, 2)])
def test_command_carries_the_rule_files_and_run_settings(gpus, nodes):
    cmd = command(gpus=gpus, nodes=nodes, per_device_batch=3, save_steps=7, gradient_checkpointing=True,
                  report_to=["tensorboard"], process_group_timeout=90)
    # exec: the launcher, not a shell that SIGTERM would end, is the job's process (docs/clusters.md)
    assert cmd.startswith("mkdir -p {params.checkpoints} && PYTHONPATH=" + str(ROOT / "scripts") + " exec ")
    for placeholder in ("{input.data}", "{input.base}", "{input.settings}", "{output.model}", "{output.curve}"):
        assert cmd.count(placeholder) == 1, placeholder
    assert "--per-device-batch 3" in cmd and "--save-steps 7" in cmd and "--gradient-checkpointing" in cmd
    assert "--report-to tensorboard" in cmd and "--process-group-timeout 90" in cmd and cmd.endswith(" > {log} 2>&1")
    # the learning rate and other result settings reach the script through its settings file only
    assert "learning" not in cmd and "--lr" not in cmd
