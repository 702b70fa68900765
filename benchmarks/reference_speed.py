"""Side-by-side speed of ``dm`` (or ``dc`` / ``dsa``) against the reference implementation
(VICO-UoE/DatasetCondensation ``main_DM.py``; ``main.py`` for DC / DSA), same machine, same process, same data,
same settings (ConvNet-128, real init; DSA's augmentation for ``dm`` and ``dsa``).

    python benchmarks/reference_speed.py --reference /path/to/DatasetCondensation --data-root ~/data/cifar10
    python benchmarks/reference_speed.py --method dc --ipc 1 --batch-real 256 --warmup 0 --iterations 10 ...

The reference script runs unchanged: only its ``get_dataset`` is pointed at the preset's tensors (it cannot
download here) and its ``get_time`` returns a precise clock, which its own log line every 10 iterations
prints; evaluation is switched off with ``--num_eval 0``. The first ``--warmup`` iterations are not timed.
Reference code is read from the path given, never copied into dcu. Writes
``benchmarks/results/reference-speed-<preset>.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from dcu.device import add_threads_argument, resolve_device, set_threads
from dcu.io import atomic_write_json
from dcu.presets import get_preset
from dcu.progress import set_quiet
from dcu.workflows.evaluate import provenance
from dcu.workflows.pipeline import prepare_splits

RESULTS = Path(__file__).resolve().parent / "results"


REFERENCE_SCRIPT = {"dm": "main_DM", "dc": "main", "dsa": "main"}
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"


def reference_seconds_per_iteration(reference: Path, splits, batch_real: int, ipc: int, warmup: int,
                                    iterations: int, method: str = "dm") -> float:
    """Run the reference script's ``main()`` for ``warmup + iterations`` iterations and time its log lines."""
    sys.path.insert(0, str(reference))
    try:
        import utils as ref_utils  # the reference's module
        train, test = splits.train, splits.test
        ref_train = torch.utils.data.TensorDataset(train.images, train.labels)
        ref_test = torch.utils.data.TensorDataset(test.images, test.labels)

        def get_dataset(_dataset, _data_path):
            loader = torch.utils.data.DataLoader(ref_test, batch_size=256, shuffle=False)
            channels, *size = splits.input_shape
            return (channels, tuple(size), splits.num_classes, list(splits.classes), list(splits.mean),
                    list(splits.std), ref_train, ref_test, loader)

        ref_utils.get_dataset = get_dataset
        ref_utils.get_time = lambda: f"T{time.perf_counter():.4f}"
        name = REFERENCE_SCRIPT[method]
        sys.modules.pop(name, None)
        entry = importlib.import_module(name)
        with tempfile.TemporaryDirectory() as save_path:
            argv = sys.argv
            sys.argv = [f"{name}.py", "--dataset", "CIFAR10", "--model", "ConvNet", "--ipc", str(ipc), "--num_exp", "1",
                        "--num_eval", "0", "--Iteration", str(warmup + iterations), "--batch_real", str(batch_real),
                        "--init", "real", "--save_path", save_path, "--data_path", save_path]
            if method != "dm":   # main.py's DSA strategy defaults to none; main_DM.py's to DSA's
                sys.argv += ["--method", method.upper(), "--dsa_strategy", DSA_STRATEGY if method == "dsa" else "None"]
            log = io.StringIO()
            try:
                with contextlib.redirect_stdout(log), contextlib.redirect_stderr(io.StringIO()):
                    entry.main()
            finally:
                sys.argv = argv
    finally:
        sys.path.remove(str(reference))
    stamps = {int(it): float(t) for t, it in re.findall(r"T([0-9.]+) iter = (\d+)", log.getvalue())}
    return (stamps[warmup + iterations] - stamps[warmup]) / iterations


def dcu_seconds_per_iteration(splits, batch_real: int, ipc: int, warmup: int, iterations: int,
                              device: torch.device, method: str = "dm") -> float:
    from condense import get_condenser
    condenser = get_condenser(method, ipc=ipc, batch_real=batch_real, iterations=warmup + iterations + 1, seed=0)
    condenser.to(device)
    stamps = {}
    inner = condenser.iterations

    def timed(*args, **kwargs):
        for iteration in inner(*args, **kwargs):
            if iteration in (warmup, warmup + iterations):
                if device.type == "cuda":   # the work queued so far has finished (the reference syncs every step)
                    torch.cuda.synchronize(device)
                stamps[iteration] = time.perf_counter()
            yield iteration

    condenser.iterations = timed
    condenser.condense(splits)
    return (stamps[warmup + iterations] - stamps[warmup]) / iterations


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help="a checkout of VICO-UoE/DatasetCondensation")
    parser.add_argument("--method", default="dm", choices=sorted(REFERENCE_SCRIPT))
    parser.add_argument("--preset", default="cifar10-cpu")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--batch-real", default="256,64")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the reference takes the GPU when there is one)")
    parser.add_argument("--out", default=None)
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    set_quiet(True)
    reference = Path(args.reference).resolve()
    if not (reference / f"{REFERENCE_SCRIPT[args.method]}.py").exists():
        parser.error(f"--reference {reference} has no {REFERENCE_SCRIPT[args.method]}.py")
    if args.iterations % 10 or args.warmup % 10:
        parser.error("--warmup and --iterations must be multiples of 10 (the reference logs every 10 iterations)")
    device = resolve_device(args.device)
    if device.type == "cpu" and torch.cuda.is_available():
        parser.error("this machine has a GPU, which the reference always takes: pass --device cuda")
    splits = prepare_splits(get_preset(args.preset), args.data_root)
    result = {"benchmark": "reference-speed", "preset": args.preset, **provenance(), "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "threads": torch.get_num_threads(), "ipc": args.ipc,
              "method": args.method, "reference_script": f"{REFERENCE_SCRIPT[args.method]}.py",
              "settings": "ConvNet-128 (depth 3, instance norm), real init"
                          + ("" if args.method == "dc" else f", DSA {DSA_STRATEGY}"),
              "warmup": args.warmup, "timed_iterations": args.iterations, "runs": []}
    tag = "" if args.method == "dm" else f"-{args.method}-ipc{args.ipc}"
    out = Path(args.out) if args.out else RESULTS / f"reference-speed-{args.preset}{tag}{'-gpu' if device.type == 'cuda' else ''}.json"
    for batch_real in [int(b) for b in args.batch_real.split(",")]:
        ref = reference_seconds_per_iteration(reference, splits, batch_real, args.ipc, args.warmup, args.iterations,
                                              args.method)
        ours = dcu_seconds_per_iteration(splits, batch_real, args.ipc, args.warmup, args.iterations, device, args.method)
        result["runs"].append({"batch_real": batch_real, "reference_s_per_it": ref, "dcu_s_per_it": ours,
                               "speedup": ref / ours})
        atomic_write_json(result, out)
        print(f"batch_real {batch_real}: reference {ref:.3f} s/it, dcu {ours:.3f} s/it, speed-up {ref / ours:.2f}x",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
