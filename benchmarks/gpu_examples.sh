#!/usr/bin/env bash
# The example scripts on a lent GPU, in one go (a few minutes on an H100):
#
#   benchmarks/gpu_examples.sh DATA_ROOT OUT_DIR [PRESET]
#
# Runs every script of examples/ with --device cuda on PRESET (default cifar10-cpu-sub), random forgetting on
# all four architectures; each writes its table, JSON and figure into OUT_DIR/<example>/ when it finishes, and
# a failing step does not stop the next. Only methods that keep their tensors on the GPU are asked for.
set -u
data=${1:?DATA_ROOT}; out=${2:?OUT_DIR}; preset=${3:-cifar10-cpu-sub}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
status=0
run() {
    name=$1; shift
    echo "== $name ($(date +%T))"
    mkdir -p "$out/$name"
    "$py" "$here/examples/$name.py" --preset "$preset" --data-root "$data" --device cuda --quiet \
        --out-dir "$out/$name" "$@" || status=1
}
run random_forgetting --models convnet,mlp,resnet18,vgg11 --methods retrain,finetune,cf_k,dcu
run class_forgetting --methods retrain,finetune,cf_k,dcu
run privacy_treatment --methods retrain,finetune,cf_k,dcu
run ipc_ablation --ipcs 10,25,50,100
run unlearning_cycles --cycles 5
run condensation_benchmark --ipc 10 --eval-runs 3
rm -f "$out"/*/*.pt
echo "== done ($(date +%T)), status $status"
exit $status
