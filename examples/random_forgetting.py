"""Random 10% forgetting, methods x architectures (the DC_U paper's Table 1 layout, in dcu's presets).

    python examples/random_forgetting.py --preset smoke --models mlp,convnet
    python examples/random_forgetting.py --preset cifar10-cpu-sub --data-root ~/data/cifar10 --models convnet

Prints one markdown table per architecture, writes JSON and a bar chart per architecture to --out-dir.
"""
from __future__ import annotations

import sys

from common import accuracy_bars, finish, parser, start

from dcu.presets import get_preset
from dcu.workflows.pipeline import compare, table


def main(argv=None) -> int:
    p = parser(__doc__, "runs/examples/random_forgetting")
    p.add_argument("--models", default="mlp,convnet,resnet18,vgg11")
    args = p.parse_args(argv)
    out = start(args)
    results, text = {}, []
    preset = get_preset(args.preset)
    for arch in args.models.split(","):
        # the preset's own model keeps its settings (e.g. ConvNet width); any other runs with its defaults
        model_args = preset.get("model_args", {}) if arch == preset["model"] else {}
        result = compare(args.preset, seed=args.seed, methods=args.methods.split(","), data_root=args.data_root,
                         work_dir=out, device=args.device, preset_overrides={"model": arch, "model_args": model_args})
        results[arch] = result
        text.append(f"## {args.preset}, {arch}, random {result['split_sizes']['forget']} of "
                    f"{result['split_sizes']['train']}, seed {args.seed}\n\n{table(result)}\n")
        accuracy_bars({"original": result["original"], **result["methods"]}, out / f"{args.preset}-{arch}.png",
                      f"{args.preset}, {arch}: random forgetting")
    finish(results, "\n".join(text), out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
