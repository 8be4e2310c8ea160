"""``apipack.train`` under ``accelerate launch`` with an FSDP config, sharded on a CPU.

accelerate turns its FSDP plugin on only for GPU process groups: on a CPU a multi-process launch
is a plain gloo group (MULTI_CPU) and nothing is sharded. This launcher switches that group's
state to FSDP once accelerate has built it, with the plugin accelerate built from the config's
environment, and lets FSDP1's ``sync_module_states`` initialise empty modules on the CPU (where
accelerate looks for a GPU). The rest runs unchanged: accelerate wraps the model (FSDP1 or
FSDP2), the Trainer builds its own optimizer on the sharded parameters, saves and loads its
checkpoints, and the final save gathers the full state dict. Used by tests/test_sharded_training.py.
"""

from unittest import mock

import accelerate.utils.dataclasses as plugins
import torch
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

from apipack.train import main

_state_init = AcceleratorState.__init__
_plugin_init = FullyShardedDataParallelPlugin.__post_init__


def _fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs) -> None:
    _state_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        if self._mixed_precision != "no":
            fsdp_plugin.set_mixed_precision(self._mixed_precision)
        self.fsdp_plugin = fsdp_plugin
        PartialState._shared_state["device"] = torch.device("cpu")  # not cpu:<rank>, as FSDP1 wants
        self.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def _plugin_on_cpu(self) -> None:
    with mock.patch.object(plugins, "is_cuda_available", lambda: True), \
            mock.patch("torch.cuda.current_device", lambda: "cpu"):
        _plugin_init(self)


AcceleratorState.__init__ = _fsdp_on_cpu
FullyShardedDataParallelPlugin.__post_init__ = _plugin_on_cpu

if __name__ == "__main__":
    main()
