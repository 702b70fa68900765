"""Datasets as tensors with stable sample ids.

``load(name, root=None)`` returns a :class:`DatasetSplits` whose ``train`` and ``test`` are
:class:`ImageSet` s: normalised float images ``(N, C, H, W)``, integer labels and the global sample ids
(the index in the training split; forget requests speak in these ids). Decoded images are cached as
uint8 tensors so a second load is fast.
"""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .io import atomic_save
from .registry import Registry

log = logging.getLogger(__name__)

DATASETS = Registry("dataset")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


class ImageSet(torch.utils.data.Dataset):
    """Images, labels and the global ids of the samples they are; a view of a split is again an ImageSet."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, ids: Optional[torch.Tensor] = None):
        if images.ndim < 2:
            raise ValueError(f"Expected a batch of images (N, C, H, W). Got shape {tuple(images.shape)}.")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"Expected {images.shape[0]} labels. Got shape {tuple(labels.shape)}.")
        self.images = images
        self.labels = labels.long()
        self.ids = torch.arange(len(labels)) if ids is None else torch.as_tensor(ids, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def positions(self, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Positions in this set of the given global ids; raises if one is not here."""
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
        order = torch.argsort(self.ids)
        sorted_ids = self.ids[order]
        pos = torch.searchsorted(sorted_ids, ids).clamp(max=max(len(sorted_ids) - 1, 0))
        if len(sorted_ids) == 0 or not torch.equal(sorted_ids[pos], ids):
            missing = ids[(sorted_ids[pos] != ids)] if len(sorted_ids) else ids
            raise KeyError(f"Sample id {int(missing[0])} is not in this set of {len(self)} samples.")
        return order[pos]

    def subset(self, ids: Sequence[int] | torch.Tensor) -> "ImageSet":
        """The samples with these global ids (a copy, in the order given)."""
        pos = self.positions(ids)
        return ImageSet(self.images[pos], self.labels[pos], self.ids[pos])

    def without(self, ids: Sequence[int] | torch.Tensor) -> "ImageSet":
        """All samples except those with these global ids."""
        keep = ~torch.isin(self.ids, torch.as_tensor(ids, dtype=torch.long).reshape(-1))
        return ImageSet(self.images[keep], self.labels[keep], self.ids[keep])


@dataclass
class DatasetSplits:
    """A dataset's splits and what is needed to read them back as pictures."""

    name: str
    train: ImageSet
    test: ImageSet
    classes: List[str]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    val: Optional[ImageSet] = None  # held-out training images, for methods that tune or calibrate
    info: Dict[str, object] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_ids(self) -> int:
        """How many ids the training split has, held-out ones included (ids run 0..num_ids-1)."""
        return int(self.info.get("num_ids", len(self.train)))

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def holdout(self, frac: float, seed: int = 0) -> "DatasetSplits":
        """Move a stratified fraction of the training split to ``val``; every sample keeps its id.

        The held-out ids are never trained on, so methods can calibrate on them without touching the test
        set; forget requests may not name them.
        """
        if frac <= 0:
            return self
        if frac >= 1:
            raise ValueError(f"The held-out fraction must be below 1. Got {frac}.")
        gen = torch.Generator().manual_seed(seed)
        held = []
        for c in range(self.num_classes):
            members = torch.nonzero(self.train.labels == c).flatten()
            count = int(round(frac * len(members)))
            held.append(members[torch.randperm(len(members), generator=gen)[:count]])
        held_ids = self.train.ids[torch.sort(torch.cat(held)).values]
        info = dict(self.info, holdout={"frac": frac, "seed": seed}, num_ids=self.num_ids)
        return replace(self, train=self.train.without(held_ids), val=self.train.subset(held_ids), info=info)

    def subsample(self, per_class: int, *, val_per_class: int = 0, seed: int = 0) -> "DatasetSplits":
        """A balanced training subset with fresh ids 0..N-1, and held-out training images as ``val``.

        This is how the ``*-sub`` presets are built: the subset is the training split that forget
        requests speak about, and ``val`` never overlaps it.
        """
        gen = torch.Generator().manual_seed(seed)
        chosen, held_out = [], []
        for c in range(self.num_classes):
            members = torch.nonzero(self.train.labels == c).flatten()
            members = members[torch.randperm(len(members), generator=gen)]
            if len(members) < per_class + val_per_class:
                raise ValueError(
                    f"Class {c} of {self.name} has {len(members)} training images; "
                    f"{per_class} + {val_per_class} (val) were asked for."
                )
            chosen.append(members[:per_class])
            held_out.append(members[per_class : per_class + val_per_class])
        chosen_pos = torch.sort(torch.cat(chosen)).values
        held_pos = torch.sort(torch.cat(held_out)).values
        train = ImageSet(self.train.images[chosen_pos], self.train.labels[chosen_pos])
        val = ImageSet(self.train.images[held_pos], self.train.labels[held_pos], -1 - held_pos) if val_per_class else None
        info = dict(self.info, subsample={"per_class": per_class, "val_per_class": val_per_class, "seed": seed})
        return replace(self, train=train, val=val, info=info)


def load(name: str, root: Optional[str | os.PathLike] = None, *, quiet: bool = True) -> DatasetSplits:
    """Load a dataset by name: ``digits``, ``cifar10``, ``cifar100``, ``svhn``, ``mnist``,
    ``fashionmnist`` or ``folder:PATH`` (an ImageFolder tree with ``train/`` and ``test/``)."""
    if name.startswith("folder:"):
        path = Path(os.path.expanduser(name[len("folder:") :])).resolve()
        return _load_folder(path, name=f"folder:{path}", quiet=quiet)
    loader = DATASETS.get(name)
    return loader(_data_root(root), quiet=quiet)


register_dataset = DATASETS.register


def from_datasets(train, test, *, name: str, classes: Optional[Sequence[str]] = None,
                  mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> DatasetSplits:
    """Splits from any two map-style datasets yielding ``(image, label)``: torchvision datasets (without a
    transform, or with ``ToTensor``), or your own. An image may be a PIL image, an ``H x W (x C)`` uint8
    array, or a ``C x H x W`` tensor (uint8, or floats in [0, 1]); all must share one shape. ``mean`` /
    ``std`` default to the training images' per-channel statistics; ``classes`` to the datasets' own
    ``classes`` attribute, else "0".."K-1". Ids are the training images' positions in ``train``.

    For the command line, register a loader in a module of yours and pass ``--import`` that module::

        @dcu.data.register_dataset("mydata")
        def mydata(root, quiet=True):
            return dcu.data.from_datasets(MyTrain(root), MyTest(root), name="mydata")
    """
    def arrays(ds, split: str):
        images, labels = [], []
        for i in range(len(ds)):
            item = ds[i]
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise ValueError(f"{name} {split}[{i}] is {type(item).__name__}; a dataset must yield (image, label).")
            images.append(_as_uint8_chw(item[0], f"{name} {split}[{i}]"))
            labels.append(int(item[1]))
            if images[-1].shape != images[0].shape:
                raise ValueError(f"{name} {split}[{i}] is {tuple(images[-1].shape)}, but [0] is "
                                 f"{tuple(images[0].shape)}: every image must have one size (resize them first).")
        if not images:
            raise ValueError(f"The {split} dataset of {name} is empty.")
        return torch.stack(images), torch.tensor(labels, dtype=torch.long)

    train_x, train_y = arrays(train, "train")
    test_x, test_y = arrays(test, "test")
    if test_x.shape[1:] != train_x.shape[1:]:
        raise ValueError(f"{name}: test images are {tuple(test_x.shape[1:])}, training images {tuple(train_x.shape[1:])}.")
    count = int(max(train_y.max(), test_y.max())) + 1
    classes = list(classes or getattr(train, "classes", None) or [str(i) for i in range(count)])
    if len(classes) < count or int(min(train_y.min(), test_y.min())) < 0:
        raise ValueError(f"{name}: labels run {int(min(train_y.min(), test_y.min()))}..{count - 1}, but there are "
                         f"{len(classes)} class names; labels must be 0..K-1.")
    if mean is None or std is None:
        pixels = train_x.transpose(0, 1).flatten(1).float() / 255
        mean, std = pixels.mean(1).tolist(), pixels.std(1).clamp(min=1e-3).tolist()
    raw = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "classes": [str(c) for c in classes]}
    return _from_uint8(name, raw, mean, std, info={"source": f"datasets {type(train).__name__} / {type(test).__name__}"})


def _as_uint8_chw(image, where: str) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        if image.dtype == torch.uint8:
            return image if image.ndim == 3 else image.unsqueeze(0)
        if image.is_floating_point():
            x = image if image.ndim == 3 else image.unsqueeze(0)
            return (x.clamp(0, 1) * 255).round().to(torch.uint8)
        raise ValueError(f"{where} is a {image.dtype} tensor; give uint8 or floats in [0, 1].")
    array = np.asarray(image)         # PIL images and arrays: H x W or H x W x C
    if array.dtype != np.uint8:
        raise ValueError(f"{where} is an array of {array.dtype}; give uint8 pixels, a PIL image or a tensor.")
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def list_datasets() -> List[str]:
    return DATASETS.names() + ["folder:PATH"]


def _data_root(root: Optional[str | os.PathLike]) -> Path:
    if root is None:
        root = os.environ.get("DCU_DATA_ROOT", "~/.cache/dcu/data")
    return Path(os.path.expanduser(str(root)))


def cache_dir() -> Path:
    """Where dcu keeps decoded datasets: ``$DCU_CACHE``, default ``~/.cache/dcu`` (never a user's data folder)."""
    return Path(os.path.expanduser(os.environ.get("DCU_CACHE", "~/.cache/dcu")))


def _cache_file(kind: str, source: Path) -> Path:
    key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "datasets" / f"{kind}-{key}.pt"


def _normalise(images_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x / 255 - mean) / std in two passes over memory: the float conversion and one fused multiply-add."""
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    scale = 1.0 / (255.0 * std_t)
    bias = -torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) / std_t
    x = images_uint8.to(torch.float32)
    return torch.addcmul(bias, x, scale, out=x)


def _from_uint8(name: str, raw: Dict[str, object], mean=None, std=None, info=None) -> DatasetSplits:
    train_x, test_x = raw["train_x"], raw["test_x"]
    if mean is None:
        mean, std = raw["mean"], raw["std"]
    return DatasetSplits(
        name=name,
        train=ImageSet(_normalise(train_x, mean, std), torch.as_tensor(raw["train_y"])),
        test=ImageSet(_normalise(test_x, mean, std), torch.as_tensor(raw["test_y"])),
        classes=list(raw["classes"]),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        info=info or {},
    )


def _cached(cache_file: Path, build: Callable[[], Dict[str, object]], signature: str = "") -> Dict[str, object]:
    """Decoded uint8 tensors, cached with ``torch.save`` and read back with ``weights_only=True``."""
    if cache_file.exists():
        try:
            raw = torch.load(cache_file, map_location="cpu", weights_only=True)
            if raw.get("signature", "") == signature:
                return raw
        except Exception as err:  # a corrupt cache is rebuilt, never trusted
            log.warning("Ignoring unreadable dataset cache %s (%s).", cache_file, err)
    raw = build()
    raw["signature"] = signature
    try:
        atomic_save(raw, cache_file)
    except OSError as err:
        log.warning("Could not write dataset cache %s (%s); the next load decodes again.", cache_file, err)
    return raw


# --- digits: the embedded default -------------------------------------------------------------------------

@DATASETS.register("digits")
def _load_digits(root: Path, quiet: bool = True) -> DatasetSplits:
    """scikit-learn's 1,797 handwritten 8x8 digits; a fixed stratified 80/20 train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=digits.target)
    mean, std = (float(x[train_idx].mean()),), (float(x[train_idx].std()),)
    x = (x - mean[0]) / std[0]
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return DatasetSplits(
        name="digits",
        train=ImageSet(x[train_idx], y[train_idx]),
        test=ImageSet(x[test_idx], y[test_idx]),
        classes=[str(i) for i in range(10)],
        mean=mean,
        std=std,
    )


# --- torchvision datasets ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _TorchvisionSpec:
    name: str
    cls_name: str
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    split_kw: Callable[[bool], Dict[str, object]]
    files_hint: str


def _split_train(train: bool) -> Dict[str, object]:
    return {"train": train}


def _split_svhn(train: bool) -> Dict[str, object]:
    return {"split": "train" if train else "test"}


_TORCHVISION = [
    _TorchvisionSpec("cifar10", "CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), _split_train,
                     "cifar-10-batches-py/ (from cifar-10-python.tar.gz)"),
    _TorchvisionSpec("cifar100", "CIFAR100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), _split_train,
                     "cifar-100-python/ (from cifar-100-python.tar.gz)"),
    _TorchvisionSpec("svhn", "SVHN", (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), _split_svhn,
                     "train_32x32.mat and test_32x32.mat"),
    _TorchvisionSpec("mnist", "MNIST", (0.1307,), (0.3081,), _split_train, "MNIST/raw/ (the four idx files)"),
    _TorchvisionSpec("fashionmnist", "FashionMNIST", (0.2860,), (0.3530,), _split_train,
                     "FashionMNIST/raw/ (the four idx files)"),
]


def _tv_arrays(ds) -> Tuple[torch.Tensor, torch.Tensor]:
    data = torch.as_tensor(np.asarray(ds.data))
    if data.ndim == 3:  # MNIST-like: (N, H, W)
        data = data.unsqueeze(1)
    elif data.shape[-1] == 3 and data.shape[1] != 3:  # CIFAR: (N, H, W, C)
        data = data.permute(0, 3, 1, 2)
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = ds.labels
    return data.contiguous().to(torch.uint8), torch.as_tensor(np.asarray(labels), dtype=torch.long)


def _image_folder_root(root: Path, name: str) -> Optional[Path]:
    """An extracted ImageFolder copy of a torchvision dataset (``root/train/<class>``), if there is one."""
    for candidate in (root, root / name):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    return None


def _make_torchvision_loader(spec: _TorchvisionSpec):
    def loader(root: Path, quiet: bool = True) -> DatasetSplits:
        folder = _image_folder_root(root, spec.name)
        if folder is not None:
            splits = _load_folder(folder, name=spec.name, quiet=quiet)
            splits.info["source"] = f"ImageFolder tree {folder}"
            return splits

        def build() -> Dict[str, object]:
            import torchvision

            cls = getattr(torchvision.datasets, spec.cls_name)
            arrays = {}
            for train in (True, False):
                try:
                    ds = cls(str(root), download=True, **spec.split_kw(train))
                except Exception as err:
                    raise FileNotFoundError(
                        f"Could not find or download {spec.name} in {root} ({type(err).__name__}: {err}). "
                        f"Put {spec.files_hint} in {root}, or an ImageFolder tree {root}/train/<class>/*.png "
                        f"and {root}/test/<class>/..., or pass --data-root where they are."
                    ) from err
                arrays[train] = (_tv_arrays(ds), getattr(ds, "classes", None))
            (train_x, train_y), classes = arrays[True]
            (test_x, test_y), _ = arrays[False]
            classes = list(classes) if classes else [str(i) for i in range(int(train_y.max()) + 1)]
            return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "classes": classes}

        raw = _cached(_cache_file(spec.name, root), build, signature="torchvision-v1")
        return _from_uint8(spec.name, raw, spec.mean, spec.std, info={"source": f"torchvision {spec.cls_name} in {root}"})

    loader.__doc__ = f"{spec.cls_name} through torchvision (downloaded into --data-root when the network allows)."
    return loader


for _spec in _TORCHVISION:
    DATASETS.register(_spec.name)(_make_torchvision_loader(_spec))


# --- ImageFolder trees ------------------------------------------------------------------------------------

def _folder_listing(path: Path, split: str) -> Tuple[List[str], List[Tuple[Path, int]]]:
    """Class names and (file, label) pairs of one split; anything that is not a regular image file inside
    the tree (a link leading out of it, a FIFO, a device, a folder among the images) is refused by name."""
    split_dir = path / split
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"Expected an ImageFolder tree with {split_dir}/<class>/<image>; {split_dir} is not a folder."
        )
    root = path.resolve()
    classes = []
    for entry in sorted(split_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        _inside(entry, root)
        if entry.is_dir():
            classes.append(entry.name)
    if not classes:
        raise FileNotFoundError(f"No class folders in {split_dir}; expected {split_dir}/<class>/<image>.")
    files = []
    for label, cls in enumerate(classes):
        for entry in sorted(os.scandir(split_dir / cls), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            file = split_dir / cls / entry.name
            _inside(file, root)
            if not file.is_file():
                kind = "a folder" if file.is_dir() else "not a regular file (a FIFO, socket or device)"
                raise ValueError(f"{file} is {kind}; an ImageFolder class folder may hold only image files.")
            files.append((file, label))
    return classes, files


def _inside(entry: Path, root: Path) -> None:
    """Refuse a link that leads out of the dataset tree: its images would be read from elsewhere silently."""
    if entry.is_symlink() and not entry.resolve().is_relative_to(root):
        raise ValueError(f"{entry} is a link to {entry.resolve()}, outside the dataset folder {root}; copy the "
                         "files into the tree instead.")


def _folder_signature(files: List[Tuple[Path, int]]) -> str:
    """A digest of every file's path, size and modification time: an image rewritten in place changes it."""
    digest = hashlib.sha256()
    for file, label in files:
        st = file.stat()
        digest.update(f"{file}:{label}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return "folder-v2:" + digest.hexdigest()[:16]


def _decode(files: List[Tuple[Path, int]], quiet: bool, what: str) -> Tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image
    from tqdm import tqdm

    def read(item: Tuple[Path, int]):
        file, _ = item
        if file.suffix.lower() not in IMAGE_EXTENSIONS:
            return file, f"not an image file (extension {file.suffix or 'none'})"
        try:
            with Image.open(file) as img:
                return file, np.asarray(img.convert("L" if img.mode in ("L", "1", "I;16") else "RGB"))
        except Exception as err:
            return file, f"unreadable image ({type(err).__name__}: {err})"

    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        decoded = list(tqdm(pool.map(read, files, chunksize=256), total=len(files), desc=f"decode {what}",
                            disable=quiet, unit="img"))
    bad = [f"{file}: {arr}" for file, arr in decoded if isinstance(arr, str)]
    if bad:
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise ValueError("Cannot read these files of the ImageFolder tree:\n  " + "\n  ".join(bad[:10]) + more)
    first_file, first = decoded[0]
    for file, arr in decoded:
        if arr.shape != first.shape:
            raise ValueError(
                f"All images must have one size: {file} is {arr.shape}, {first_file} is {first.shape}."
            )
    stacked = np.stack([arr for _, arr in decoded])
    images = torch.from_numpy(stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2))
    return images.contiguous(), torch.tensor([label for _, label in files], dtype=torch.long)


def _load_folder(path: Path, *, name: str, quiet: bool = True) -> DatasetSplits:
    if not path.is_dir():
        raise FileNotFoundError(f"Dataset folder {path} does not exist (from '{name}').")
    classes, train_files = _folder_listing(path, "train")
    test_classes, test_files = _folder_listing(path, "test")
    if test_classes != classes:
        raise ValueError(f"{path}/train and {path}/test have different class folders: {classes} vs {test_classes}.")

    def build() -> Dict[str, object]:
        train_x, train_y = _decode(train_files, quiet, "train")
        test_x, test_y = _decode(test_files, quiet, "test")
        if train_x.shape[1:] != test_x.shape[1:]:
            raise ValueError(f"Train images are {tuple(train_x.shape[1:])} but test images {tuple(test_x.shape[1:])}.")
        x = train_x.float() / 255.0
        mean = x.mean(dim=(0, 2, 3)).tolist()
        std = x.std(dim=(0, 2, 3)).tolist()
        return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
                "classes": classes, "mean": mean, "std": std}

    raw = _cached(_cache_file("folder", path), build, signature=_folder_signature(train_files + test_files))
    return _from_uint8(name, raw, info={"source": f"ImageFolder tree {path}"})
