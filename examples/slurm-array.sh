#!/bin/bash
# Stylize a collection with a Slurm job array: each array task takes its share of the
# images from SLURM_ARRAY_TASK_ID, no --shard needed (docs/scale-out.md).
#
#   sbatch --array=0-31 examples/slurm-array.sh /shared/archive /shared/archive-monet 32
#   cyclegan report /shared/archive-monet          # exit 0 once every image is done
#
# Redo one task (cancelled, preempted, node failure): resubmit its id alone; it skips the
# images already written and does the rest.
#
#   sbatch --array=7 examples/slurm-array.sh /shared/archive /shared/archive-monet 32
#
# CPU tasks: one per core pair is a good start (the engine is multi-threaded; raise
# --cpus-per-task and lower the array size rather than the opposite).
# GPU tasks: use the cuda build and uncomment --gres; one task per GPU.
#
#SBATCH --job-name=cyclegan
#SBATCH --cpus-per-task=4
#SBATCH --mem=4G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=cyclegan-%A_%a.log
##SBATCH --gres=gpu:1
set -euo pipefail
usage="usage: sbatch --array=0-\$((N-1)) slurm-array.sh IN OUT N"
IN=${1:?$usage}
OUT=${2:?$usage}
# The number of shards, given explicitly so that a task resubmitted alone (--array=7)
# still takes shard 7 of 32 rather than the whole collection. Array ids are then the
# shard numbers, 0..N-1.
export CYCLEGAN_SHARD_COUNT=${3:?$usage}
DEVICE=cpu
if [ -n "${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}" ]; then DEVICE=cuda; fi
export RAYON_NUM_THREADS=${SLURM_CPUS_PER_TASK:-4}
exec cyclegan stylize "$IN" -o "$OUT" --recursive --device "$DEVICE" --style monet
