#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by setup_cluster.sh (leaves the packages installed).
set -u
for daemon in slurmd slurmctld slurmdbd; do pkill -x "$daemon" 2>/dev/null || true; done
mysqladmin shutdown >/dev/null 2>&1 || true
pkill -x munged 2>/dev/null || true
echo "SLURM cluster stopped"
