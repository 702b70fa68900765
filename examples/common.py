"""What the example scripts share: the argument set, and writing a result as JSON, a table and a bar chart."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict

from dcu.device import add_threads_argument, resolve_device, set_threads
from dcu.io import atomic_write_json, atomic_write_text
from dcu.plots import comparison_bars
from dcu.progress import set_quiet
from dcu.workflows.evaluate import provenance


def parser(doc: str, out_dir: str, methods: str = "retrain,finetune,dcu") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="smoke")
    p.add_argument("--methods", default=methods)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out-dir", default=out_dir)
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true")
    return p


def start(args) -> Path:
    """Silence the progress bars if asked, resolve ``args.device`` and make the output folder."""
    set_quiet(args.quiet)
    set_threads(args.threads)
    args.device = resolve_device(args.device)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def accuracy_bars(rows: Dict[str, dict], path: Path, title: str) -> None:
    """Retain / forget / test accuracy and loss_lr MIA per method, as grouped bars."""
    bars = {name: {"retain": r["retain_acc"], "forget": r["forget_acc"], "test": r["test_acc"],
                   "MIA": r["mia"]["loss_lr"]["headline"]} for name, r in rows.items()}
    comparison_bars(bars, ["retain", "forget", "test", "MIA"], path, title=title)


def finish(results, table_text: str, out: Path, args: argparse.Namespace) -> None:
    """Write ``<preset>.json`` (the results with what produced them: command, preset, seed, device, machine,
    versions) and ``<preset>.md`` (the table), and print the table."""
    report = {"example": Path(sys.argv[0]).stem, **provenance(), "preset": args.preset,
              "seed": args.seed, "device": str(args.device),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results}
    atomic_write_json(report, out / f"{args.preset}.json")
    atomic_write_text(table_text + "\n", out / f"{args.preset}.md")
    print(table_text, flush=True)
