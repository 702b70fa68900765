"""Image grids of saved condensed sets (from ``condensation.py --save-dir``), for the docs: one row per class.
A multi-formation set (ncfm, idm) is drawn as stored, each image a grid of cells, unless ``--decoded``.

    python benchmarks/grids.py runs/condensed/cifar10-cpu-ncfm-ipc10.pt --out-dir benchmarks/results
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dcu.plots import image_grid

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    from condense import load_condensed

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", help="condensed sets (.pt)")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--decoded", action="store_true", help="draw the images networks train on")
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    for path in args.sets:
        cset = load_condensed(path)
        stored = cset.state.get("stored") if not args.decoded else None
        images = cset.images if stored is None else stored
        labels = cset.labels if stored is None else torch.arange(len(cset.source["classes"])).repeat_interleave(
            len(stored) // len(cset.source["classes"]))
        out = Path(args.out_dir) / f"grid-{Path(path).stem}.png"
        image_grid(images, labels, cset.source["classes"], cset.source["mean"], cset.source["std"], out,
                   per_class=args.per_class, title=f"{cset.method}, {cset.config.get('ipc')} images per class"
                                                   + (" (decoded)" if stored is None and "stored" in cset.state else ""))
        print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
