#!/usr/bin/env bash
# Testing on a Slurm cluster, as OpenMMLab ships it (one task per GPU; mmengine reads SLURM_* for the ranks):
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args, e.g. --work-dir DIR]
# DRY_RUN=1 prints the srun command line instead of running it.
set -euo pipefail

if [ $# -lt 4 ]; then
    echo "usage: [GPUS=8 ...] $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$((GPUS < 8 ? GPUS : 8))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PY_ARGS=("${@:5}")

CMD=(srun -p "${PARTITION}" --job-name="${JOB_NAME}" --gres=gpu:"${GPUS_PER_NODE}" --ntasks="${GPUS}"
     --ntasks-per-node="${GPUS_PER_NODE}" --cpus-per-task="${CPUS_PER_TASK}" --kill-on-bad-exit=1 ${SRUN_ARGS}
     python -u "$(dirname "$0")/test.py" "${CONFIG}" "${CHECKPOINT}" --launcher=slurm
     ${PY_ARGS[@]+"${PY_ARGS[@]}"})

export PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${DRY_RUN:-}" ]; then
    printf '%q ' "${CMD[@]}"
    echo
else
    exec "${CMD[@]}"
fi
