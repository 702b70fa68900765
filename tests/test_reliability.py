"""Reliability: a killed writer loses nothing, a seed fixes the result, bad input of any shape gets a named
error (property-based), and the provenance chain prints back to the original."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import SMOKE_TRAIN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dcu
import unlearn
from dcu.checkpoint import base_meta, load_checkpoint, save_checkpoint
from dcu.forget import ForgetRequestError, parse_ids_file, random_ids
from dcu.workflows.cli import main


def dcu_cli(*args):
    return main([*args, "--quiet"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("reliability")
    assert dcu_cli("train", "--dataset", "digits", "--model", "mlp", "--epochs", "5", "--out", str(work / "original.pt")) == 0
    return work


def test_a_writer_killed_mid_save_leaves_the_previous_checkpoint(tmp_path, digits, mlp):
    target = tmp_path / "model.pt"
    meta = {**base_meta(mlp, digits, digits.train.ids), "kind": "original"}
    digest = save_checkpoint(target, mlp, meta)
    reached = tmp_path / "reached-fsync"
    # the child writes a new, large checkpoint to the same path and is killed after its bytes are written but
    # before the rename: the moment a non-atomic writer would leave a torn file
    child = f"""
import os, time, torch, dcu
from dcu.checkpoint import base_meta, save_checkpoint
def stall(fd):
    open({str(reached)!r}, "w").close()
    time.sleep(120)
os.fsync = stall
splits = dcu.data.load("digits").holdout(0.1, seed=0)
model = dcu.create_model("mlp", in_channels=1, num_classes=10, image_size=8, hidden=(2048, 2048))
save_checkpoint({str(target)!r}, model, {{**base_meta(model, splits, splits.train.ids), "kind": "original"}})
"""
    proc = subprocess.Popen([sys.executable, "-c", child])
    try:
        deadline = time.monotonic() + 120
        while not reached.exists():
            assert proc.poll() is None, "the writer exited before reaching the save"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        partial = [p for p in tmp_path.glob(".model.pt.*.tmp")]
        assert partial and partial[0].stat().st_size > target.stat().st_size   # the new bytes were on disk
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    model, loaded = load_checkpoint(target, digits)
    assert loaded["hash"] == digest
    for a, b in zip(model.state_dict().values(), mlp.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name, cfg", [("finetune", {"epochs": 2}), ("salun", {"epochs": 2}),
                                       ("scrub", {"epochs": 2}), ("amun", {"epochs": 1, "steps": 5}),
                                       ("neggrad_plus", {"epochs": 2}), ("fisher", {})])
def test_same_seed_same_cpu_gives_identical_unlearned_weights(digits, mlp, name, cfg):
    forget_ids = random_ids(digits.train.ids, 0.1, 0)
    forget, retain = digits.train.subset(forget_ids), digits.train.without(forget_ids)
    runs = [unlearn.get_unlearner(name, train_config=SMOKE_TRAIN, seed=3, **cfg).unlearn(mlp, retain, forget,
                                                                                         val=digits.val).model
            for _ in range(2)]
    for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()):
        assert torch.equal(a, b)
    result = unlearn.get_unlearner(name, train_config=SMOKE_TRAIN, seed=4, **cfg).unlearn(mlp, retain, forget, val=digits.val)
    other = result.model
    assert any(not torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), other.state_dict().values()))


def test_diverging_unlearning_aborts_with_a_clear_error_and_leaves_inputs_untouched(digits, mlp, trained, tmp_path, capsys):
    forget_ids = random_ids(digits.train.ids, 0.1, 0)
    forget, retain = digits.train.subset(forget_ids), digits.train.without(forget_ids)
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    with pytest.raises(FloatingPointError, match="became|non-finite"):
        unlearn.get_unlearner("gradient_ascent", lr=1e8, epochs=50, train_config=SMOKE_TRAIN).unlearn(mlp, retain, forget)
    assert all(torch.equal(v, before[k]) for k, v in mlp.state_dict().items())
    out = tmp_path / "diverged.pt"
    code = dcu_cli("forget", "--dataset", "digits", "--model", str(trained / "original.pt"), "--forget-frac", "0.1",
                   "--method", "gradient_ascent", "--set", "lr=1e8", "--set", "epochs=50", "--out", str(out))
    assert code == 2 and not out.exists() and not list(tmp_path.glob(".diverged*"))
    assert "The training loss became" in capsys.readouterr().err


def test_forgetting_everything_or_nothing_is_refused(trained, tmp_path, capsys):
    splits = dcu.data.load("digits").holdout(0.1, seed=0)
    everything = tmp_path / "all.txt"
    everything.write_text("".join(f"{int(i)}\n" for i in splits.train.ids))
    out = tmp_path / "x.pt"
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(trained / "original.pt"), "--ids", str(everything),
                   "--method", "finetune", "--out", str(out)) == 2
    assert "forgets all" in capsys.readouterr().err
    nothing = tmp_path / "none.txt"
    nothing.write_text("# no ids today\n")
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(trained / "original.pt"), "--ids", str(nothing),
                   "--method", "finetune", "--out", str(out)) == 2
    assert "holds no ids" in capsys.readouterr().err
    assert not out.exists()


def test_history_prints_the_chain_back_to_the_original(trained, tmp_path, capsys):
    first, second = tmp_path / "u1.pt", tmp_path / "u2.pt"
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(trained / "original.pt"), "--forget-frac", "0.02",
                   "--forget-seed", "1", "--method", "finetune", "--set", "epochs=1", "--out", str(first)) == 0
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(first), "--forget-class", "3",
                   "--method", "ssd", "--set", "alpha=1.0", "--out", str(second)) == 0
    capsys.readouterr()
    assert dcu_cli("history", str(second), "--json") == 0
    steps = json.loads(capsys.readouterr().out)
    _, original = load_checkpoint(trained / "original.pt")
    _, one = load_checkpoint(first)
    _, two = load_checkpoint(second)
    assert [s["hash"] for s in steps] == [original["hash"], one["hash"], two["hash"]]
    assert [s["method"] for s in steps[1:]] == ["finetune", "ssd"]
    assert steps[1]["parent_hash"] == original["hash"] and steps[2]["parent_hash"] == one["hash"]
    assert steps[2]["forget_count"] == two["forget_count"] > 100 and steps[1]["method_config"]["epochs"] == 1
    assert all(s["versions"]["torch"] for s in steps)
    assert dcu_cli("history", str(second)) == 0
    text = capsys.readouterr().out
    assert "2 forget request(s)" in text and "with 'ssd'" in text and original["hash"] in text


# --- property-based: whatever the input, a named error or a correct result, never a crash ---------------

_lines = st.one_of(st.integers(-5, 60).map(str), st.sampled_from(["", "# c", "x", "1.5", " 7 ", "3 # note", "0x1"]),
                   st.text(alphabet="0123456789 -#ab\t", max_size=6))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_lines, max_size=12))
def test_forget_id_parsing_accepts_exactly_the_valid_files(tmp_path, lines):
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(lines) + "\n")
    expected, error = [], None
    seen = {}
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            value = int(text, 10)
        except ValueError:
            error = error or f"line {number}"
            continue
        if not 0 <= value < 50 or value in seen:
            error = error or f"line {number}"
        seen.setdefault(value, number)
        expected.append(value)
    try:
        ids = parse_ids_file(path, 50)
    except ForgetRequestError as err:
        assert str(path) in str(err)
        assert error is not None or not expected, (lines, err)
        if error is not None:
            assert error in str(err), (lines, err)
        return
    assert error is None and expected
    assert ids.tolist() == sorted(expected)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30))
def test_a_dataset_spec_is_loaded_or_named_in_the_error(spec):
    if spec in dcu.data.list_datasets():
        return
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        dcu.data.load(spec, "/nonexistent-dcu-root")
    assert spec.strip()[:10] in str(info.value) or "folder" in str(info.value) or "dataset" in str(info.value).lower()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
       value=st.one_of(st.text(max_size=8), st.integers(-10, 10).map(str), st.just("nan"), st.just("-1e9")))
def test_unknown_or_bad_cli_settings_exit_2_and_write_nothing(trained, tmp_path, capsys, key, value):
    out = tmp_path / "never.pt"
    if key in ("epochs", "lr", "batch_size", "schedule", "seed"):
        key = key + "_typo"
    code = main(["forget", "--dataset", "digits", "--model", str(trained / "original.pt"), "--forget-frac", "0.05",
                 "--method", "finetune", "--set", f"{key}={value}", "--out", str(out), "--quiet"])
    assert code == 2 and not out.exists()
    assert f"'{key}'" in capsys.readouterr().err


def test_training_resumed_after_an_interruption_equals_an_uninterrupted_run(digits, tmp_path):
    from dcu.train import TrainConfig, train

    cfg = TrainConfig(**{**SMOKE_TRAIN.__dict__, "epochs": 6})

    def fresh():
        torch.manual_seed(0)
        return dcu.create_model("mlp", in_channels=1, num_classes=10, image_size=8)

    whole = fresh()
    train(whole, digits.train, cfg)

    class Stop(Exception):
        pass

    def stop_at(epoch):
        if epoch == 3:
            raise Stop

    progress_file = tmp_path / "train.progress.pt"
    with pytest.raises(Stop):
        train(fresh(), digits.train, cfg, on_epoch=stop_at, progress_file=progress_file)
    resumed = dcu.create_model("mlp", in_channels=1, num_classes=10, image_size=8)   # other initial weights
    history = train(resumed, digits.train, cfg, progress_file=progress_file)
    assert len(history["loss"]) == 6
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(Exception, match="other settings"):
        train(fresh(), digits.train, TrainConfig(**{**cfg.__dict__, "lr": 0.1}), progress_file=progress_file)


def test_dcu_train_killed_with_sigkill_resumes_to_the_same_checkpoint(tmp_path):
    args = ["--dataset", "digits", "--model", "mlp", "--model-arg", "hidden=[512,512]", "--epochs", "150", "--quiet"]
    assert dcu_cli("train", *args, "--out", str(tmp_path / "whole.pt")) == 0
    out, progress_file = tmp_path / "resumed.pt", tmp_path / "resumed.progress.pt"
    proc = subprocess.Popen([sys.executable, "-m", "dcu", "train", *args, "--out", str(out)])
    try:
        deadline = time.monotonic() + 120
        while not progress_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    assert dcu_cli("train", *args, "--out", str(out), "--resume") == 0
    _, whole = load_checkpoint(tmp_path / "whole.pt")
    _, resumed = load_checkpoint(out)
    assert resumed["hash"] == whole["hash"] and not progress_file.exists()
    assert dcu_cli("train", *args, "--out", str(tmp_path / "again.pt"), "--resume") == 2   # nothing to resume
