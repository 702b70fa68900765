"""Figures (matplotlib, Agg backend) for papers: condensed-image grids, comparison bars, ROC curves, the audit.

The format follows the file's suffix (png, pdf or svg); labels are words, not JSON keys; axes are cut to the
data so that small differences show; legends sit outside the bars.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    """Write the figure atomically, in the format the suffix names, with the permissions a plain file gets."""
    from .io import _atomic

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    _atomic(path, lambda fh: fig.savefig(fh, format=fmt, dpi=120, bbox_inches="tight"))
    _pyplot().close(fig)
    return path


LABELS = {"retain_acc": "retain accuracy", "forget_acc": "forget accuracy", "test_acc": "test accuracy",
          "val_acc": "held-out accuracy", "mia": "MIA (loss_lr)", "forgetting_score": "forgetting score",
          "test_forget_class_acc": "forgotten class, test"}


def label(key: str) -> str:
    """The words for a metric key (``forget_acc`` -> ``forget accuracy``)."""
    return LABELS.get(key, key.replace("_", " "))


def dataset_label(name: str) -> str:
    """A dataset's name for a title: ``folder:/home/me/pets`` -> ``pets``."""
    return Path(name.split(":", 1)[1]).name if name.startswith("folder:") else name


def image_grid(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], mean: Sequence[float],
               std: Sequence[float], path: str | os.PathLike, per_class: int = 10, title: str = "") -> Path:
    """One row per class, up to ``per_class`` de-normalised images each."""
    plt = _pyplot()
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    pictures = (images * s + m).clamp(0, 1)
    rows = len(classes)
    fig, axes = plt.subplots(rows, per_class, figsize=(per_class * 0.9, rows * 0.95), squeeze=False)
    for c in range(rows):
        chosen = torch.nonzero(labels == c).flatten()[:per_class]
        for j in range(per_class):
            ax = axes[c][j]
            ax.axis("off")
            if j < len(chosen):
                img = pictures[chosen[j]]
                picture = (img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy()
                ax.imshow(picture, cmap="gray" if img.shape[0] == 1 else None)
        axes[c][0].set_title(str(classes[c]), fontsize=7, loc="left")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def comparison_bars(rows: Dict[str, Dict[str, float]], metrics: List[str], path: str | os.PathLike,
                    title: str = "", reference: Optional[str] = "retrain") -> Path:
    """Grouped bars: one group per metric, one bar per method (the reference hatched)."""
    import math

    plt = _pyplot()
    methods = list(rows)
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(metrics), 3.2))
    shown = []
    for i, method in enumerate(methods):
        values = [100 * rows[method].get(m, float("nan")) for m in metrics]
        xs = [k + (i - (len(methods) - 1) / 2) * width for k in range(len(metrics))]
        bars = ax.bar(xs, values, width, label=method, hatch="//" if method == reference else None,
                      edgecolor="black", linewidth=0.4)
        ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
        shown += [v for v in values if not math.isnan(v)]
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([label(m) for m in metrics])
    ax.set_ylabel("%")
    if shown:   # cut the axis to the data: 97.7 against 99.2 must be visible
        low, high = min(shown), max(shown)
        pad = max(1.0, 0.15 * (high - low))
        ax.set_ylim(max(0.0, low - pad) if low - pad > 10 else 0.0, min(100.0, high + pad) if high < 99 else high + pad)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def loss_curve(values: Sequence[float], path: str | os.PathLike, title: str = "", ylabel: str = "matching loss",
               xlabel: str = "iteration") -> Path:
    """A loss-per-iteration line (log scale when it spans more than a decade)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    ax.plot(range(1, len(values) + 1), list(values), linewidth=1.0)
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 10:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def roc_curves(curves: Dict[str, Dict[str, List[float]]], path: str | os.PathLike, title: str = "") -> Path:
    """Log-log ROC curves (TPR against FPR), one line per attack or model, with the chance diagonal; each curve
    stops at the lowest FPR its sample supports (one non-member: ``min_fpr``, when the curve records it)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    floor = 1.0
    for name, curve in curves.items():
        lowest = curve.get("min_fpr", 1e-4)
        points = [(f, max(t, 1e-5)) for f, t in zip(curve["fpr"], curve["tpr"]) if f >= lowest]
        floor = min(floor, lowest)
        ax.plot([f for f, _ in points], [t for _, t in points], label=name, linewidth=1.2)
    ax.plot([floor, 1], [floor, 1], color="grey", linestyle=":", linewidth=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def inversion_pairs(inverted: torch.Tensor, nearest: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                    mean: Sequence[float], std: Sequence[float], path: str | os.PathLike, title: str = "") -> Path:
    """Each inverted image (top row) above its nearest real image of the same class (bottom row)."""
    plt = _pyplot()
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    n = len(inverted)
    fig, axes = plt.subplots(2, n, figsize=(max(n, 2) * 0.9, 2.2), squeeze=False)
    for row, images in enumerate((inverted, nearest)):
        pictures = (images * s + m).clamp(0, 1)
        for j in range(n):
            ax = axes[row][j]
            ax.axis("off")
            img = pictures[j]
            ax.imshow((img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy(),
                      cmap="gray" if img.shape[0] == 1 else None)
            if row == 0:
                ax.set_title(str(classes[int(labels[j])]), fontsize=6)
    if title:
        fig.suptitle(title, fontsize=8)
    return _save(fig, path)


def audit_figure(card: Dict, path: str | os.PathLike, title: str = "") -> Path:
    """The per-example audit in three panels: the distribution of ε over the forget set, U-LiRA's ROC on log
    axes (down to the FPR the number of scored pairs supports), and the per-example KL of margins."""
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.8))
    rows = card["rows"]
    styles = {name: ("--" if name.startswith("ceiling") else "-") for name in rows}
    eps_bins = np.arange(0, 8.25, 0.25)
    for name, row in rows.items():
        eps = np.clip(np.asarray(row["epsilons"]), 0, 8)
        axes[0].hist(eps, bins=eps_bins, histtype="step", linewidth=1.6, linestyle=styles[name],
                     label=f"{name} (F={row['forgetting_quality']:.3f})")
        roc = row["ulira"].get("roc")
        if roc:
            fpr, tpr = np.asarray(roc["fpr"]), np.asarray(roc["tpr"])
            keep = fpr >= 1.0 / max(row["ulira"].get("pairs", 100), 1)
            axes[1].plot(fpr[keep], np.maximum(tpr[keep], 1e-4), linestyle=styles[name],
                         label=f"{name} (AUC {row['ulira']['auc']:.3f})")
        kl = np.asarray(row.get("klom_forget_per_example", []))
        if len(kl):
            axes[2].hist(kl, bins=30, histtype="step", linewidth=1.6, linestyle=styles[name], label=name)
    axes[1].plot([1e-4, 1], [1e-4, 1], color="0.6", linewidth=0.8)
    axes[0].set(xlabel="per-example ε (capped at 8 for display)", ylabel="forget examples",
                title="Forgetting score: ε per example")
    axes[1].set(xscale="log", yscale="log", xlabel="false positive rate", ylabel="true positive rate",
                title="U-LiRA: was this model unlearned?")
    axes[2].set(xlabel="KL of margins, unlearned ‖ retrained", ylabel="forget examples",
                title="KLoM per example (forget set)")
    for ax in axes:
        ax.legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
