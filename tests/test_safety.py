"""Nothing a careless user does destroys a file, and nothing a hostile file does takes the machine: outputs
checked against inputs before any work, one-line refusals of bad metadata and settings, the request ledger
kept out of the shareable model, folder datasets that stay inside their tree."""
import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import dcu
from dcu.checkpoint import base_meta, load_checkpoint, save_checkpoint
from dcu.io import ArtifactError, OutputError, atomic_save, commit_together, output_lock, recover
from dcu.train import TrainConfig, train
from dcu.workflows.cli import main

DIGITS = ("--dataset", "digits")


def dcu_cli(*args):
    return main([*args, "--quiet"])


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("safety")
    assert dcu_cli("train", *DIGITS, "--model", "mlp", "--epochs", "5", "--out", str(w / "original.pt")) == 0
    assert dcu_cli("condense", *DIGITS, "--model", str(w / "original.pt"), "--method", "fdm", "--ipc", "5",
                   "--out", str(w / "condensed.pt")) == 0
    trained_on = dcu.data.load("digits").holdout(0.1, seed=0).train.ids
    (w / "forget.txt").write_text("".join(f"{int(i)}\n" for i in trained_on[:60:3]))
    assert dcu_cli("forget", *DIGITS, "--model", str(w / "original.pt"), "--ids", str(w / "forget.txt"),
                   "--method", "retrain", "--set", "epochs=5", "--out", str(w / "retrained.pt")) == 0
    return w


def snapshot(*paths):
    return {p: p.read_bytes() for p in paths}


# --- data loss ---------------------------------------------------------------------------------------------

def test_a_failed_train_leaves_the_file_named_by_checkpoint(work, tmp_path, capsys):
    keep = tmp_path / "keep.pt"
    keep.write_bytes((work / "original.pt").read_bytes())
    assert dcu_cli("train", *DIGITS, "--model", "mlp", "--checkpoint", str(keep), "--batch-size", "0",
                   "--out", str(tmp_path / "a.pt")) == 2
    one_line_error(capsys, "--batch-size")
    assert keep.read_bytes() == (work / "original.pt").read_bytes()
    # a fresh run never deletes a file that is already there: it names it and stops
    assert dcu_cli("train", *DIGITS, "--model", "mlp", "--epochs", "1", "--checkpoint", str(keep),
                   "--out", str(tmp_path / "a.pt")) == 2
    one_line_error(capsys, "--resume")
    assert keep.read_bytes() == (work / "original.pt").read_bytes() and not (tmp_path / "a.pt").exists()


def test_checkpoint_equal_to_out_is_refused(tmp_path, capsys):
    out = tmp_path / "a.pt"
    assert dcu_cli("train", *DIGITS, "--model", "mlp", "--epochs", "1", "--checkpoint", str(out), "--out", str(out)) == 2
    one_line_error(capsys, "same file")
    assert not out.exists()


@pytest.mark.parametrize("command", [
    ["forget", "--model", "{w}/original.pt", "--forget-frac", "0.1", "--method", "finetune", "--out", "{w}/original.pt"],
    ["evaluate", "--model", "{w}/retrained.pt", "--out", "{w}/retrained.pt"],
    ["evaluate", "--model", "{w}/retrained.pt", "--reference", "{w}/retrained.pt", "--out", "{w}/retrained.pt"],
    ["condense", "--model", "{w}/original.pt", "--method", "random", "--ipc", "2", "--out", "{w}/original.pt"],
    ["tune", "--model", "{w}/original.pt", "--forget-frac", "0.1", "--method", "finetune", "--trials", "1",
     "--out", "{w}/original.pt"],
    ["forget", "--model", "{w}/original.pt", "--forget-frac", "0.1", "--method", "finetune",
     "--out", "{w}/x.pt", "--condensed-out", "{w}/x.pt", "--condensed", "{w}/condensed.pt"],
    ["forget", "--model", "{w}/original.pt", "--ids", "{w}/forget.txt", "--method", "finetune", "--out", "{w}/forget.txt"],
    ["evaluate", "--model", "{w}/retrained.pt", "--out", "{w}/retrained.ledger.json"],
])
def test_no_command_overwrites_its_input(work, capsys, command):
    before = snapshot(*sorted(p for p in work.iterdir() if p.is_file()))
    args = [part.format(w=work) for part in command]
    assert dcu_cli(args[0], *DIGITS, *args[1:]) == 2
    one_line_error(capsys, "same file")
    assert snapshot(*before) == before and not (work / "x.pt").exists()


def test_two_outputs_are_written_together_or_not_at_all(tmp_path, monkeypatch):
    a, b = tmp_path / "model.pt", tmp_path / "ledger.json"
    a.write_text("old a")
    b.write_text("old b")
    real_replace = os.replace
    calls = []

    def crash_after_first(src, dst):
        calls.append(dst)
        if len([c for c in calls if not str(c).endswith("dcu-txn.json")]) == 2:
            raise KeyboardInterrupt   # the process dies between the two renames
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        commit_together([(a, lambda fh: fh.write(b"new a")), (b, lambda fh: fh.write(b"new b"))])
    monkeypatch.setattr(os, "replace", real_replace)
    assert a.read_text() == "new a" and b.read_text() == "old b"   # half done on disk ...
    recover([a, b])                                                  # ... and rolled forward by the next writer
    assert a.read_text() == "new a" and b.read_text() == "new b"
    assert not list(tmp_path.glob(".*"))


def test_a_second_writer_to_the_same_output_is_refused(work, tmp_path, capsys):
    out = tmp_path / "u.pt"
    (tmp_path / "u.pt.lock").write_text(str(os.getppid()))   # a live process holds it
    assert dcu_cli("forget", *DIGITS, "--model", str(work / "original.pt"), "--forget-frac", "0.05",
                   "--method", "finetune", "--set", "epochs=1", "--out", str(out)) == 2
    one_line_error(capsys, "another dcu process")
    assert not out.exists()
    (tmp_path / "u.pt.lock").write_text("999999999")   # its writer is gone: taken over
    with output_lock([out]):
        assert (tmp_path / "u.pt.lock").read_text() == str(os.getpid())
    assert not (tmp_path / "u.pt.lock").exists()


def test_a_condensed_set_refreshed_for_another_model_is_refused(work, tmp_path, capsys):
    common = (*DIGITS, "--method", "dcu", "--condensed", str(work / "condensed.pt"))
    assert dcu_cli("forget", "--model", str(work / "original.pt"), "--forget-frac", "0.05", "--forget-seed", "1",
                   *common, "--out", str(tmp_path / "u1.pt"), "--condensed-out", str(tmp_path / "c1.pt")) == 0
    assert dcu_cli("forget", "--model", str(work / "original.pt"), "--forget-frac", "0.05", "--forget-seed", "2",
                   *common, "--out", str(tmp_path / "u2.pt"), "--condensed-out", str(tmp_path / "c2.pt")) == 0
    # u1 with the set written for u2: a mismatched pair
    assert dcu_cli("forget", *DIGITS, "--model", str(tmp_path / "u1.pt"), "--condensed", str(tmp_path / "c2.pt"),
                   "--forget-frac", "0.05", "--method", "dcu", "--out", str(tmp_path / "u3.pt")) == 2
    err = one_line_error(capsys)
    assert "refreshed for model" in err or "earlier request forgot" in err
    assert not (tmp_path / "u3.pt").exists()


# --- hostile checkpoints -------------------------------------------------------------------------------------

def crafted(work, tmp_path, change, name="crafted.pt"):
    payload = torch.load(work / "original.pt", weights_only=True)
    change(payload)
    path = tmp_path / name
    torch.save(payload, path)
    return path


def _set(key, value):
    def change(p):
        p["meta"][key] = value
    return change


def _set_arg(key, value):
    def change(p):
        p["meta"]["arch_args"][key] = value
    return change


def _weights_as_lists(p):
    p["state_dict"] = {k: v.tolist() for k, v in p["state_dict"].items()}


def _weights_int(p):
    p["state_dict"] = {k: v.to(torch.int64) for k, v in p["state_dict"].items()}


@pytest.mark.parametrize("change, needle", [
    (_set_arg("colour", 3), "colour"),
    (_set("num_classes", "ten"), "num_classes"),
    (_weights_as_lists, "state_dict"),
    (_weights_int, "torch.int64"),
    (_set("holdout", {"frac": 7, "seed": 0}), "holdout"),
    (_set("holdout", "half"), "holdout"),
    (_set("train_config", {"epochs": 5, "turbo": True}), "turbo"),
    (_set("lineage", [{"hash": 5}]), "lineage[0].hash"),
    (_set("lineage", "garbage"), "lineage"),
    (_set("input_shape", [1, 16, 16]), "16"),
    (_set("forgotten_ids", [-3, 999999]), "forgotten_ids"),
    (_set_arg("hidden", [100000, 100000]), "hidden"),    # 40 GB if built: refused from the arguments
    (_set_arg("hidden", [60000, 60000]), "weight"),      # 14 GB if built: refused from the shapes alone
    (_set_arg("num_classes", 12), "num_classes"),
])
def test_crafted_checkpoints_get_a_one_line_refusal(work, tmp_path, capsys, change, needle):
    path = crafted(work, tmp_path, change)
    assert dcu_cli("history", str(path)) == 2
    one_line_error(capsys, needle)
    assert dcu_cli("forget", *DIGITS, "--model", str(path), "--forget-frac", "0.1", "--method", "finetune",
                   "--out", str(tmp_path / "x.pt")) == 2
    one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.pt"]


def test_a_model_with_more_outputs_than_classes_is_refused(tmp_path, digits):
    model = dcu.create_model("mlp", in_channels=1, num_classes=12, image_size=8)
    path = tmp_path / "twelve.pt"
    save_checkpoint(path, model, {**base_meta(model, digits, digits.train.ids), "num_classes": 10})
    with pytest.raises(ArtifactError, match="num_classes"):
        load_checkpoint(path)


# --- settings and arguments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["forget", "--method", "finetune", "--forget-frac", "0.1", "--set", "epochs=abc"], "epochs"),
    (["forget", "--method", "finetune", "--forget-frac", "0.1", "--set", "lr=abc"], "lr"),
    (["forget", "--method", "finetune", "--forget-frac", "0.1", "--set", "lr=[1,2]"], "lr"),
    (["forget", "--method", "finetune", "--forget-frac", "0.1", "--set", "epochs=0"], "left every weight"),
    (["condense", "--method", "dm", "--set", "iterations=1.5"], "iterations"),
    (["condense", "--method", "dm", "--set", "lr_img=NaN"], "lr_img"),
    (["invert", "--per-class", "0"], "--per-class"),
    (["tune", "--method", "finetune", "--forget-frac", "0.1", "--trials", "0"], "--trials"),
    (["tune", "--method", "finetune", "--forget-frac", "0.1", "--forget-bound", "-1"], "--forget-bound"),
    (["attack", "--attack", "lira", "--forget-frac", "0.1", "--set", "online=maybe"], "online"),
])
def test_bad_settings_are_refused_in_one_line(work, tmp_path, capsys, args, needle):
    out = tmp_path / "out.pt"
    assert dcu_cli(args[0], *DIGITS, "--model", str(work / "original.pt"), *args[1:], "--out", str(out)) == 2
    err = one_line_error(capsys, needle)
    assert "diverged" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, needle", [
    (["--model-arg", "width=abc", "--model", "convnet"], "width"),
    (["--model-arg", "width=0", "--model", "convnet"], "width"),
    (["--model", "mlp", "--epochs", "0"], "--epochs"),
    (["--model", "mlp", "--val-frac", "-0.1"], "--val-frac"),
])
def test_bad_training_arguments_are_refused_in_one_line(tmp_path, capsys, args, needle):
    assert dcu_cli("train", *DIGITS, *args, "--out", str(tmp_path / "a.pt")) == 2
    one_line_error(capsys, needle)
    assert list(tmp_path.iterdir()) == []


def test_outputs_that_cannot_be_written_are_refused_before_work(work, tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert dcu_cli("evaluate", *DIGITS, "--model", str(work / "retrained.pt"), "--out", str(folder)) == 2
    one_line_error(capsys, "is a directory")
    assert dcu_cli("evaluate", *DIGITS, "--model", str(work / "retrained.pt"), "--out", "/proc/dcu-report.json") == 2
    one_line_error(capsys, "cannot write into /proc")


def test_a_full_disk_is_named(tmp_path, monkeypatch, mlp, digits):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "m.pt"
    with pytest.raises(OutputError, match="No space left"):
        save_checkpoint(target, mlp, base_meta(mlp, digits, digits.train.ids))
    assert list(tmp_path.iterdir()) == []


# --- wrong inputs ---------------------------------------------------------------------------------------------

def test_a_reference_for_another_request_or_split_is_refused(work, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text("".join(f"{int(i)}\n" for i in dcu.data.load("digits").holdout(0.1, seed=0).train.ids[1:61:3]))
    assert dcu_cli("forget", *DIGITS, "--model", str(work / "original.pt"), "--ids", str(other), "--method", "retrain",
                   "--set", "epochs=2", "--out", str(tmp_path / "r-other.pt")) == 0
    assert dcu_cli("evaluate", *DIGITS, "--model", str(work / "retrained.pt"), "--reference",
                   str(tmp_path / "r-other.pt"), "--out", str(tmp_path / "report.json")) == 2
    one_line_error(capsys, "not this request")
    split = crafted(work, tmp_path, _set("holdout", {"frac": 0.2, "seed": 0}), "split.pt")
    assert dcu_cli("evaluate", *DIGITS, "--model", str(work / "retrained.pt"), "--reference", str(split),
                   "--out", str(tmp_path / "report.json")) == 2
    one_line_error(capsys, "held-out split")
    other_data = crafted(work, tmp_path, _set("dataset", "fashionmnist"), "fmnist.pt")
    assert dcu_cli("tune", *DIGITS, "--model", str(work / "original.pt"), "--ids", str(work / "forget.txt"),
                   "--method", "finetune", "--trials", "1", "--reference", str(other_data),
                   "--out", str(tmp_path / "tune.json")) == 2
    one_line_error(capsys, "fashionmnist")
    assert not (tmp_path / "report.json").exists() and not (tmp_path / "tune.json").exists()


def test_a_shadow_store_of_another_dataset_is_refused(work, tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.json").write_text(json.dumps({"format": "dcu-shadow-store", "dataset": "cifar10",
                                                     "num_ids": 50000, "pool_ids": [0, 1], "count": 2, "seed": 0,
                                                     "train_config": {}}))
    assert dcu_cli("attack", *DIGITS, "--model", str(work / "retrained.pt"), "--attack", "lira", "--shadows", str(store),
                   "--out", str(tmp_path / "lira.json")) == 2
    one_line_error(capsys, "cifar10")
    assert not (tmp_path / "lira.json").exists()


def test_a_progress_file_of_another_run_does_not_resume(tmp_path, digits, capsys):
    progress = tmp_path / "p.pt"
    cfg = TrainConfig(epochs=3, batch_size=128, lr=0.05, weight_decay=5e-4, seed=0, augment=False, flip=False)
    model = dcu.create_model("mlp", in_channels=1, num_classes=10, image_size=8)

    def stop(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, digits.train, cfg, on_epoch=stop, progress_file=progress,
              progress_identity={"dataset": "mnist", "arch": "mlp"})
    before = progress.read_bytes()
    assert dcu_cli("train", *DIGITS, "--model", "mlp", "--epochs", "3", "--checkpoint", str(progress), "--resume",
                   "--out", str(tmp_path / "a.pt")) == 2
    one_line_error(capsys, "another dataset or model")
    assert progress.read_bytes() == before and not (tmp_path / "a.pt").exists()


def test_resumed_training_counts_every_segment(tmp_path, digits):
    progress = tmp_path / "p.pt"
    cfg = TrainConfig(epochs=3, batch_size=128, seed=0)
    model = dcu.create_model("mlp", in_channels=1, num_classes=10, image_size=8)

    def stop(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, digits.train, cfg, on_epoch=stop, progress_file=progress)
    history = train(model, digits.train, cfg, progress_file=progress)
    assert len(history["segment_seconds"]) == 2 and all(s > 0 for s in history["segment_seconds"])


def test_no_run_that_did_nothing_is_recorded(tmp_path, capsys):
    assert dcu_cli("condense", *DIGITS, "--method", "dm", "--ipc", "2", "--set", "iterations=2", "--set", "lr_img=1e38",
                   "--out", str(tmp_path / "c.pt")) == 2
    one_line_error(capsys, "non-finite")
    assert not (tmp_path / "c.pt").exists()


# --- the ledger: the shareable model does not say who asked to be forgotten ---------------------------------

def test_an_unlearned_checkpoint_holds_no_forgotten_ids(work, tmp_path, capsys):
    ids = [int(i) for i in (work / "forget.txt").read_text().split()]
    payload = torch.load(work / "retrained.pt", weights_only=True)
    text = json.dumps(payload["meta"])
    assert "forgotten_ids" not in payload["meta"] and payload["meta"]["forgotten_count"] == len(ids)
    assert dcu.io.ids_hash(ids) not in text   # no unsalted digest a guesser could confirm either
    ledger = json.loads((work / "retrained.ledger.json").read_text())
    assert ledger["forgotten_ids"] == ids and ledger["model_hash"] == payload["meta"]["hash"]
    # chaining reads the ledger; without it the request is refused, not silently wrong
    moved = tmp_path / "moved.pt"
    moved.write_bytes((work / "retrained.pt").read_bytes())
    assert dcu_cli("forget", *DIGITS, "--model", str(moved), "--forget-frac", "0.05", "--method", "finetune",
                   "--set", "epochs=1", "--out", str(tmp_path / "next.pt")) == 2
    one_line_error(capsys, "ledger")
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps({**ledger, "forgotten_ids": ids[:-1]}))
    assert dcu_cli("forget", *DIGITS, "--model", str(moved), "--ledger", str(tampered), "--forget-frac", "0.05",
                   "--method", "finetune", "--set", "epochs=1", "--out", str(tmp_path / "next.pt")) == 2
    one_line_error(capsys, "does not match")
    assert dcu_cli("forget", *DIGITS, "--model", str(moved), "--ledger", str(work / "retrained.ledger.json"),
                   "--ids", str(work / "forget.txt"), "--method", "finetune", "--out", str(tmp_path / "next.pt")) == 2
    one_line_error(capsys, "already removed")
    assert dcu_cli("forget", *DIGITS, "--model", str(moved), "--ledger", str(work / "retrained.ledger.json"),
                   "--forget-frac", "0.05", "--method", "finetune", "--set", "epochs=1",
                   "--out", str(tmp_path / "next.pt")) == 0
    chained = json.loads((tmp_path / "next.ledger.json").read_text())
    assert set(ids) < set(chained["forgotten_ids"]) and len(chained["requests"]) == 2


def test_export_writes_plain_weights_without_request_data(work, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "model.safetensors"
    assert dcu_cli("export", str(work / "retrained.pt"), "--out", str(out)) == 0
    model, meta = load_checkpoint(work / "retrained.pt")
    with safe_open(str(out), "pt") as fh:
        header = fh.metadata()
        for key, value in model.state_dict().items():
            assert torch.equal(fh.get_tensor(key), value)
    assert json.loads(header["arch"]) == "mlp" and json.loads(header["num_classes"]) == 10
    assert not any(word in json.dumps(header) for word in ("forget", "lineage", meta["hash"], "ledger"))


# --- folder datasets ----------------------------------------------------------------------------------------

def _tree(root):
    from test_data import make_folder

    return make_folder(root)


def test_links_out_of_the_tree_and_special_files_are_refused(tmp_path):
    outside = tmp_path / "elsewhere.png"
    root = _tree(tmp_path / "tree")
    outside.write_bytes((root / "train" / "cat" / "000.png").read_bytes())
    (root / "train" / "cat" / "999.png").symlink_to(outside)
    with pytest.raises(ValueError, match="outside the dataset folder"):
        dcu.data.load(f"folder:{root}")
    (root / "train" / "cat" / "999.png").unlink()
    (root / "train" / "cat" / "999.png").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="999.png"):
        dcu.data.load(f"folder:{root}")
    (root / "train" / "cat" / "999.png").unlink()
    os.mkfifo(root / "train" / "cat" / "999.png")
    with pytest.raises(ValueError, match="not a regular file"):
        dcu.data.load(f"folder:{root}")
    (root / "train" / "cat" / "999.png").unlink()
    (root / "train" / "cat" / "999.png").symlink_to(root / "test" / "cat" / "000.png")   # inside the tree: fine
    assert len(dcu.data.load(f"folder:{root}").train) == 19
    (tmp_path / "far" / "fox").mkdir(parents=True)
    (root / "train" / "fox").symlink_to(tmp_path / "far" / "fox")
    with pytest.raises(ValueError, match="outside the dataset folder"):
        dcu.data.load(f"folder:{root}")


def test_the_cache_follows_images_rewritten_in_place(tmp_path):
    from PIL import Image

    root = _tree(tmp_path / "tree")
    first = dcu.data.load(f"folder:{root}")
    image = root / "train" / "cat" / "000.png"
    Image.new("RGB", (12, 12), (255, 0, 0)).save(image)
    second = dcu.data.load(f"folder:{root}")
    assert not torch.equal(first.train.images[0], second.train.images[0])
    assert not [p for p in root.rglob("*") if p.name.startswith(".")]   # nothing written into the user's tree
    assert dcu.data.load(f"folder:{root}/").name == dcu.data.load(f"folder:{os.path.relpath(root)}").name


# --- smaller ------------------------------------------------------------------------------------------------

def test_overwriting_keeps_the_files_mode_and_cleans_stale_temporaries(tmp_path):
    target = tmp_path / "secret.pt"
    atomic_save({"a": 1}, target)
    os.chmod(target, 0o600)
    stale = tmp_path / ".secret.pt.999999999.abcd1234.tmp"   # a writer killed mid-save (its pid is gone)
    stale.write_bytes(b"x" * 1000)
    live = tmp_path / f".secret.pt.{os.getpid()}.zzzz.tmp"
    live.write_bytes(b"y")
    atomic_save({"a": 2}, target)
    assert (os.stat(target).st_mode & 0o777) == 0o600
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize("content, needle", [
    ("\u0661\u0662\n", "not an integer"), ("1_0\n", "not an integer"), ("x" * 5_000_000 + "\n", "not an integer"),
])
def test_the_id_parser_takes_ascii_digits_only_and_clips_messages(work, tmp_path, capsys, content, needle):
    bad = tmp_path / "ids.txt"
    bad.write_text(content, encoding="utf-8")
    assert dcu_cli("forget", *DIGITS, "--model", str(work / "original.pt"), "--ids", str(bad), "--method", "finetune",
                   "--out", str(tmp_path / "x.pt")) == 2
    err = one_line_error(capsys, needle)
    assert len(err) < 600


def test_small_messages_name_the_right_thing(work, tmp_path, capsys):
    assert dcu_cli("forget", *DIGITS, "--model", str(work / "original.pt"), "--ids", str(tmp_path), "--method",
                   "finetune", "--out", str(tmp_path / "x.pt")) == 2
    one_line_error(capsys, "is a directory")
    assert dcu_cli("forget", *DIGITS, "--model", str(work / "original.pt"), "--method", "finetune",
                   "--out", str(tmp_path / "x.pt")) == 2
    one_line_error(capsys, "--forget-seed")
    assert dcu_cli("history", str(tmp_path)) == 2
    one_line_error(capsys, "is a directory")


def test_a_bad_shard_leaves_no_store(work, tmp_path, capsys):
    assert dcu_cli("shadows", *DIGITS, "--model", str(work / "original.pt"), "--count", "2", "--shard", "3/2",
                   "--out", str(tmp_path / "store")) == 2
    one_line_error(capsys, "3/2")
    assert not (tmp_path / "store").exists()


# --- threads ------------------------------------------------------------------------------------------------

def test_threads_default_to_the_affinity_mask_and_respect_omp(monkeypatch):
    from dcu.device import default_threads, set_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert default_threads() == 3
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_every_command_takes_threads():
    from dcu.workflows.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        assert any("--threads" in a.option_strings for a in sub._actions), name


# --- fuzz: random metadata and random bytes to every loader, under a memory limit --------------------------

FUZZ = textwrap.dedent("""
    import json, os, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    import torch
    from hypothesis import HealthCheck, given, settings, strategies as st
    from dcu.checkpoint import load_checkpoint
    from dcu.forget import parse_ids_file
    from dcu.io import ArtifactError
    from dcu.ledger import read_ledger
    from dcu.train import _load_progress, TrainConfig
    from condense import load_condensed

    work, original = sys.argv[1], sys.argv[2]
    base = torch.load(original, weights_only=True)
    path = os.path.join(work, "fuzz.bin")
    OK = (ArtifactError, ValueError, FileNotFoundError, KeyError)
    values = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=8),
                          lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                          max_leaves=12)
    keys = st.sampled_from(sorted(base["meta"]) + ["arch_args.width", "arch_args.hidden", "arch_args.num_classes",
                                                   "holdout.frac", "train_config.epochs", "lineage"])

    def loaders():
        yield lambda: load_checkpoint(path)
        yield lambda: load_condensed(path)
        yield lambda: parse_ids_file(path, 1437)
        yield lambda: _load_progress(path, TrainConfig(), {})
        yield lambda: read_ledger({"hash": "h", "forgotten_count": 1}, "m.pt", 1437, path)

    def check():
        for load in loaders():
            try:
                load()
            except OK:
                pass
        assert sorted(os.listdir(work)) == ["fuzz.bin", "original.pt"], os.listdir(work)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.lists(st.tuples(keys, values), min_size=1, max_size=3))
    def metadata(changes):
        payload = {"format": base["format"], "format_version": 1, "meta": json.loads(json.dumps(base["meta"])),
                   "state_dict": base["state_dict"]}
        for key, value in changes:
            head, _, tail = key.partition(".")
            if tail and isinstance(payload["meta"].get(head), dict):
                payload["meta"][head][tail] = value
            else:
                payload["meta"][head] = value
        torch.save(payload, path)
        check()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.binary(max_size=4096), st.integers(0, 3))
    def raw_bytes(data, where):
        blob = open(original, "rb").read()
        if where:   # damage a real file rather than write pure noise
            cut = len(blob) * where // 4
            data = blob[:cut] + data + blob[cut + len(data):]
        with open(path, "wb") as fh:
            fh.write(data)
        check()

    metadata()
    raw_bytes()
    print("fuzz ok")
""")


def test_fuzzed_files_get_clean_refusals_in_bounded_memory(work, tmp_path):
    (tmp_path / "original.pt").write_bytes((work / "original.pt").read_bytes())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", FUZZ, str(tmp_path), str(tmp_path / "original.pt")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0 and "fuzz ok" in run.stdout, run.stderr[-3000:]
