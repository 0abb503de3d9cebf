#!/usr/bin/env bash
# Distributed (PyTorch DDP) training: bash tools/dist_train.sh CONFIG GPUS [train.py args]
# GPUS = processes on this node. On CPU-only machines the Runner picks the gloo backend (env_cfg.dist_cfg.backend).
# Several nodes: run it on every node with the same NNODES, MASTER_ADDR (node 0's address) and PORT, and
# NODE_RANK = 0 .. NNODES-1, e.g. on 2 nodes of 8 GPUs:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8   # on 10.0.0.1
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8   # on the second node
# Slurm clusters: tools/slurm_train.sh.
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
python -m torch.distributed.run \
    --nnodes=$NNODES --node_rank=$NODE_RANK --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS --master_port=$PORT \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "${@:3}"
