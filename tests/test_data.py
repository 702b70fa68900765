import time

import numpy as np
import pytest
import torch
from PIL import Image

import dcu
from dcu.forget import ForgetRequestError, parse_ids_file, resolve


def make_folder(root, size=(12, 12), per_class=6, classes=("cat", "dog", "eel")):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i:03d}.png")
    return root


def test_digits_is_the_embedded_default(digits):
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.num_ids == 1437
    assert len(digits.train) + len(digits.val) == 1437
    assert not torch.isin(digits.val.ids, digits.train.ids).any()  # held-out ids keep their numbers


def test_folder_dataset_loads_caches_and_keeps_ids(tmp_path):
    root = make_folder(tmp_path / "tree")
    first = dcu.data.load(f"folder:{root}")
    assert first.classes == ["cat", "dog", "eel"] and first.input_shape == (3, 12, 12)
    assert len(first.train) == 18 and torch.equal(first.train.ids, torch.arange(18))
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == sorted([f"{i:03d}.png" for i in range(6)] * 6)
    assert list((dcu.data.cache_dir() / "datasets").glob("folder-*.pt"))   # the cache lives in $DCU_CACHE
    start = time.perf_counter()
    second = dcu.data.load(f"folder:{root}")
    assert time.perf_counter() - start < 1.0
    assert torch.equal(first.train.images, second.train.images)


def test_cifar10_name_accepts_an_extracted_image_folder_tree(tmp_path):
    make_folder(tmp_path / "cifar10", size=(32, 32), per_class=2, classes=tuple("abcdefghij"))
    splits = dcu.data.load("cifar10", tmp_path)
    assert splits.name == "cifar10" and splits.input_shape == (3, 32, 32) and len(splits.train) == 20


def test_folder_dataset_names_unreadable_files(tmp_path):
    root = make_folder(tmp_path / "tree")
    (root / "train" / "dog" / "broken.png").write_bytes(b"not a png")
    (root / "train" / "cat" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError) as err:
        dcu.data.load(f"folder:{root}")
    assert "broken.png" in str(err.value) and "notes.txt" in str(err.value)


def test_missing_torchvision_dataset_says_where_to_put_the_files(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(FileNotFoundError, match="Put MNIST/raw/"):
        dcu.data.load("mnist", tmp_path)


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(ValueError, match="Valid values are: cifar10, cifar100, digits"):
        dcu.data.load("imagenet")


@pytest.mark.parametrize(
    "text, message",
    [
        ("1\n2\nx3\n", "line 3: 'x3' is not an integer"),
        ("1\n\n# c\n5000\n", "line 4: id 5000 is out of range"),
        ("7\n8\n7\n", "line 3: id 7 is a duplicate of line 1"),
        ("-1\n", "line 1: id -1 is out of range"),
        ("# nothing\n\n", "holds no ids"),
        ("1.5\n", "line 1: '1.5' is not an integer"),
    ],
)
def test_bad_forget_files_name_the_line(tmp_path, text, message):
    path = tmp_path / "forget.txt"
    path.write_text(text)
    with pytest.raises(ForgetRequestError, match=message):
        parse_ids_file(path, 1437)


def test_forget_file_with_comments_and_blank_lines(tmp_path):
    path = tmp_path / "forget.txt"
    path.write_text("# request 1\n3\n\n1  # trailing comment\n2\n")
    assert parse_ids_file(path, 10).tolist() == [1, 2, 3]


def test_forget_requests_in_three_forms(digits, tmp_path):
    frac = resolve(digits, frac=0.1, seed=3)
    assert torch.equal(frac, resolve(digits, frac=0.1, seed=3))
    assert torch.isin(frac, digits.train.ids).all() and abs(len(frac) - 0.1 * len(digits.train)) <= 1
    cls = resolve(digits, cls=4)
    assert (digits.train.subset(cls).labels == 4).all() and len(cls) == int((digits.train.labels == 4).sum())
    held = tmp_path / "held.txt"
    held.write_text(f"{int(digits.val.ids[0])}\n")
    with pytest.raises(ForgetRequestError, match="held-out validation split"):
        resolve(digits, ids_file=str(held))
    with pytest.raises(ForgetRequestError, match="exactly one form"):
        resolve(digits, frac=0.1, cls=2)
    with pytest.raises(ForgetRequestError, match="--forget-class 10 is out of range: the classes are 0..9"):
        resolve(digits, cls=10)
    everything = tmp_path / "all.txt"
    everything.write_text("\n".join(str(int(i)) for i in digits.train.ids))
    with pytest.raises(ForgetRequestError, match="nothing would remain"):
        resolve(digits, ids_file=str(everything))


def test_any_map_style_datasets_become_splits(tmp_path):
    from PIL import Image
    from torch.utils.data import TensorDataset

    class Pictures(torch.utils.data.Dataset):      # PIL images, as a torchvision dataset without a transform
        classes = ["red", "blue"]

        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            colour = (255, 0, 0) if i % 2 == 0 else (0, 0, 255)
            return Image.new("RGB", (6, 6), colour), i % 2

    splits = dcu.data.from_datasets(Pictures(10), Pictures(4), name="colours")
    assert splits.classes == ["red", "blue"] and splits.train.images.shape == (10, 3, 6, 6)
    assert torch.equal(splits.train.ids, torch.arange(10))
    red = splits.train.images[0] * torch.tensor(splits.std).view(3, 1, 1) + torch.tensor(splits.mean).view(3, 1, 1)
    assert torch.allclose(red[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)     # pixels kept exactly
    floats = dcu.data.from_datasets(TensorDataset(torch.rand(8, 1, 5, 5), torch.arange(8) % 4),
                                    TensorDataset(torch.rand(4, 1, 5, 5), torch.arange(4)), name="floats")
    assert floats.classes == ["0", "1", "2", "3"] and floats.input_shape == (1, 5, 5)
    with pytest.raises(ValueError, match=r"train\[1\] is \(1, 4, 4\), but \[0\] is \(1, 5, 5\)"):
        dcu.data.from_datasets([(torch.rand(1, 5, 5), 0), (torch.rand(1, 4, 4), 1)], [(torch.rand(1, 5, 5), 0)],
                               name="ragged")


def test_forget_class_takes_a_name_before_an_index(tmp_path):
    from dcu.forget import ForgetRequestError, resolve_request

    root = make_folder(tmp_path / "tree", classes=("10", "9", "cat"))     # sorted: "10", "9", "cat"
    splits = dcu.data.load(f"folder:{root}")
    nine = resolve_request(splits, cls="9").forget
    assert set(splits.train.labels[nine].tolist()) == {splits.classes.index("9")} == {1}
    assert set(splits.train.labels[resolve_request(splits, cls="cat").forget].tolist()) == {2}
    assert set(splits.train.labels[resolve_request(splits, cls="2").forget].tolist()) == {2}   # no class named 2
    with pytest.raises(ForgetRequestError, match="'dog' is no class of this dataset; its classes are 10, 9, cat"):
        resolve_request(splits, cls="dog")
    with pytest.raises(ForgetRequestError, match="out of range"):
        resolve_request(splits, cls="7")


def test_folder_dataset_is_named_by_its_resolved_path(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "tree")
    monkeypatch.chdir(tmp_path)
    assert dcu.data.load("folder:tree/").name == dcu.data.load(f"folder:{root}").name == f"folder:{root.resolve()}"
