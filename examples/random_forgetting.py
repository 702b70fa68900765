"""Random 10% forgetting, methods x architectures (the DC_U paper's Table 1 layout, in dcu's presets).

    python examples/random_forgetting.py --preset smoke --models mlp,convnet
    python examples/random_forgetting.py --preset cifar10-cpu-sub --data-root ~/data/cifar10 --models convnet

Prints one markdown table per architecture, writes JSON and a bar chart per architecture to --out-dir.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dcu.io import atomic_write_json
from dcu.pipeline import compare, table
from dcu.plots import comparison_bars
from dcu.progress import set_quiet


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--models", default="mlp,convnet,resnet18,vgg11")
    parser.add_argument("--methods", default="retrain,finetune,dcu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out-dir", default="runs/examples/random_forgetting")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    out = Path(args.out_dir)
    results = {}
    for arch in args.models.split(","):
        result = compare(args.preset, seed=args.seed, methods=args.methods.split(","), data_root=args.data_root,
                         work_dir=out, preset_overrides={"model": arch, "model_args": {}})
        results[arch] = result
        print(f"\n## {args.preset}, {arch}, random {result['split_sizes']['forget']} of "
              f"{result['split_sizes']['train']}, seed {args.seed}\n\n{table(result)}\n", flush=True)
        rows = {"original": result["original"], **result["methods"]}
        bars = {name: {"retain": r["retain_acc"], "forget": r["forget_acc"], "test": r["test_acc"],
                       "MIA": r["mia"]["loss_lr"]["headline"]} for name, r in rows.items()}
        comparison_bars(bars, ["retain", "forget", "test", "MIA"], out / f"{args.preset}-{arch}.png",
                        title=f"{args.preset}, {arch}: random forgetting")
    atomic_write_json(results, out / f"{args.preset}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
