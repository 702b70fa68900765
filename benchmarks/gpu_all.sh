#!/usr/bin/env bash
# Every GPU check of the benchmarks in one go, for a lent GPU with few minutes (about 7 minutes on an H100 before
# the last step, which stops starting methods after 5 minutes of its own):
#
#   benchmarks/gpu_all.sh DATA_ROOT REFERENCE_CHECKOUT OUT_DIR [CONDENSE_MINUTES]
#
# DATA_ROOT holds CIFAR-10 (train/ and test/ ImageFolder trees, or torchvision's files); REFERENCE_CHECKOUT is
# a checkout of VICO-UoE/DatasetCondensation (read, never copied). Each step writes its JSON into OUT_DIR when
# it finishes, and a failing step does not stop the next.
set -u
data=${1:?DATA_ROOT}; reference=${2:?REFERENCE_CHECKOUT}; out=${3:?OUT_DIR}; minutes=${4:-1.5}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
status=0
step() { echo "== $1 ($(date +%T))"; shift; "$@" || status=1; }

step "training throughput, dm speed, dcu vs retrain (ResNet-18)" \
    "$py" "$here/gpu.py" --device cuda --data-root "$data" --epochs 10 --quiet --out "$out/gpu-cuda.json"
step "dm against the reference main_DM.py" \
    "$py" "$here/reference_speed.py" --device cuda --reference "$reference" --data-root "$data" \
    --batch-real 256,64 --warmup 20 --iterations 100 --out "$out/reference-speed-cifar10-cpu-gpu.json"
step "dm and dsa at IPC 10, dc-300ep evaluation (anchors: DM 48.9, DSA 52.1)" \
    "$py" "$here/condensation.py" --device cuda --preset cifar10-cpu --data-root "$data" --ipc 10 --methods dm,dsa \
    --budget-minutes "$minutes" --eval-runs 5 --quiet --out "$out/condense-cifar10-gpu.json"
step "every unlearning method on the GPU (ResNet-18, defaults; none started after 5 minutes)" \
    "$py" "$here/gpu.py" --device cuda --data-root "$data" --epochs 10 --parts dcu_vs_retrain --methods all \
    --budget-minutes 5 --quiet --out "$out/gpu-methods-cuda.json"
echo "== done ($(date +%T)), status $status"
exit $status
