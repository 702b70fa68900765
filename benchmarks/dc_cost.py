"""What one ``dc`` / ``dsa`` iteration costs on this machine, from the arithmetic its loops fix: the seconds of one
forward-backward pass of the matching ConvNet over a batch (default memory layout and channels-last, interleaved),
times the image passes an iteration makes at an IPC (outer steps x classes x real batch, plus the inner
training's epochs over the synthetic set between outer steps).

    python benchmarks/dc_cost.py --ipc 10 --threads 1

For where the time goes inside an iteration, profile the condensation itself on random CIFAR-shaped data:

    py-spy record -f raw -o profile.txt -- python benchmarks/dc_cost.py --condense-iterations 1 --ipc 10

Writes ``benchmarks/results/dc-cost-ipc<ipc>.json``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dcu.data import DatasetSplits, ImageSet
from dcu.device import add_threads_argument, set_threads
from dcu.io import atomic_write_json
from dcu.models import create_model
from dcu.progress import set_quiet
from dcu.workflows.evaluate import provenance

RESULTS = Path(__file__).resolve().parent / "results"


def pass_seconds(width: int, batch: int, repeats: int) -> dict:
    """Seconds per forward-backward of ConvNet-``width`` on ``batch`` CIFAR-sized images, per memory layout."""
    torch.manual_seed(0)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    nets = {"default": (create_model("convnet", in_channels=3, num_classes=10, image_size=32, width=width), x),
            "channels_last": (create_model("convnet", in_channels=3, num_classes=10, image_size=32, width=width)
                              .to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last))}
    times = {name: [] for name in nets}
    for _ in range(repeats + 1):   # the first round warms up
        for name, (net, inputs) in nets.items():
            start = time.perf_counter()
            F.cross_entropy(net(inputs), y).backward()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t[1:]) for name, t in times.items()}


def image_passes(ipc: int, classes: int = 10, batch_real: int = 256) -> dict:
    """The forward-backward image passes of one iteration at ``ipc`` (the reference's loops)."""
    from condense.dc import loops_for

    outer, inner = loops_for(ipc)
    return {"outer": outer, "inner": inner, "real": outer * classes * batch_real,
            "synthetic_matching": outer * classes * ipc, "inner_training": (outer - 1) * inner * classes * ipc}


def condense_random(ipc: int, iterations: int, method: str) -> float:
    """Seconds per iteration of ``method`` on random CIFAR-shaped data (500 images a class): for a profiler."""
    from condense import get_condenser

    gen = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randn(5000, 3, 32, 32, generator=gen), torch.arange(10).repeat_interleave(500))
    splits = DatasetSplits(name="random", train=data, test=data, val=None, classes=[str(i) for i in range(10)],
                           mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    start = time.perf_counter()
    get_condenser(method, ipc=ipc, iterations=iterations, seed=0).condense(splits)
    return (time.perf_counter() - start) / iterations


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=100, help="images per timed pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--condense-iterations", type=int, default=0,
                        help="instead, run this many dc iterations on random data (to profile) and report s/iteration")
    parser.add_argument("--method", default="dc", choices=["dc", "dsa"])
    parser.add_argument("--out", default=None)
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    set_quiet(True)
    if args.condense_iterations:
        seconds = condense_random(args.ipc, args.condense_iterations, args.method)
        print(f"{args.method} IPC {args.ipc}: {seconds:.1f} s per iteration (random data)", flush=True)
        return 0
    per_pass = pass_seconds(args.width, args.batch, args.repeats)
    passes = image_passes(args.ipc)
    total = passes["real"] + passes["synthetic_matching"] + passes["inner_training"]
    per_image = per_pass["default"] / args.batch
    result = {"benchmark": "dc-cost", **provenance(), "threads": torch.get_num_threads(), "ipc": args.ipc,
              "width": args.width, "batch": args.batch, "pass_seconds": per_pass, "image_passes": passes,
              "estimated_seconds_per_iteration": total * per_image,
              "estimated_hours_for_1000_iterations": total * per_image * 1000 / 3600}
    out = Path(args.out) if args.out else RESULTS / f"dc-cost-ipc{args.ipc}.json"
    atomic_write_json(result, out)
    print(f"ConvNet-{args.width}, {args.batch} images: {per_pass['default']:.3f} s per pass "
          f"(channels-last {per_pass['channels_last']:.3f}); IPC {args.ipc}: {total} image passes an iteration, "
          f"about {total * per_image:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
