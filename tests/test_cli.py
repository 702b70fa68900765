"""The CLI end to end on digits, as a user types it, and its refusals of bad input."""
import json
import subprocess
import sys

import pytest

import dcu
from dcu.train import accuracy
from dcu.workflows.cli import main


def dcu_cli(*args):
    return main([*args, "--quiet"])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """original.pt, condensed.pt, forget.txt made through the CLI once for the module."""
    work = tmp_path_factory.mktemp("cli")
    assert dcu_cli("train", "--dataset", "digits", "--model", "mlp", "--epochs", "30", "--seed", "0",
                   "--out", str(work / "original.pt")) == 0
    assert dcu_cli("condense", "--dataset", "digits", "--model", str(work / "original.pt"), "--method", "fdm",
                   "--ipc", "10", "--out", str(work / "condensed.pt"), "--plots") == 0
    splits = dcu.data.load("digits").holdout(0.1)
    ids = dcu.forget.random_ids(splits.train.ids, 0.1, 5)
    (work / "forget.txt").write_text("# a request\n" + "".join(f"{int(i)}\n" for i in ids))
    return work


def test_the_whole_pipeline_as_documented(workdir):
    w = workdir
    assert (w / "condensed.png").stat().st_size > 1000
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(w / "original.pt"), "--condensed",
                   str(w / "condensed.pt"), "--ids", str(w / "forget.txt"), "--method", "dcu", "--out",
                   str(w / "unlearned.pt")) == 0
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(w / "original.pt"), "--ids", str(w / "forget.txt"),
                   "--method", "retrain", "--out", str(w / "retrained.pt")) == 0
    assert dcu_cli("evaluate", "--dataset", "digits", "--model", str(w / "unlearned.pt"), "--forget",
                   str(w / "forget.txt"), "--reference", str(w / "retrained.pt"), "--out", str(w / "report.json"),
                   "--plots") == 0
    report = json.loads((w / "report.json").read_text())
    unlearned, _ = dcu.load_checkpoint(w / "unlearned.pt")
    retrained, _ = dcu.load_checkpoint(w / "retrained.pt")
    forget = dcu.data.load("digits").holdout(0.1).train.subset(dcu.forget.parse_ids_file(w / "forget.txt", 1437))
    assert report["forget_acc"] == pytest.approx(accuracy(unlearned, forget), abs=1e-6)
    assert report["gap"]["forget_acc"] == pytest.approx(report["forget_acc"] - accuracy(retrained, forget),
                                                        abs=1e-6)
    assert report["mia"]["loss_lr"]["n_per_side"] == len(forget)   # forget set against as many unseen images
    assert report["split_sizes"]["forget"] == len(dcu.forget.parse_ids_file(w / "forget.txt", 1437))
    assert report["time"]["online_seconds"] > 0 and report["time"]["rte"] > 0
    assert (w / "report.png").exists()
    _, meta = dcu.load_checkpoint(w / "unlearned.pt")
    _, parent = dcu.load_checkpoint(w / "original.pt")
    assert meta["parent_hash"] == parent["hash"] and meta["method"] == "dcu"
    assert meta["forget_count"] == report["split_sizes"]["forget"] and meta["method_config"]["epochs"] > 0


def test_sequential_requests_chain_and_refuse_repeats(workdir, tmp_path):
    w = workdir
    first = tmp_path / "first.txt"
    first.write_text("".join(f"{i}\n" for i in dcu.forget.parse_ids_file(w / "forget.txt", 1437)[:20].tolist()))
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(w / "original.pt"), "--condensed",
                   str(w / "condensed.pt"), "--ids", str(first), "--method", "dcu", "--out", str(tmp_path / "u1.pt"),
                   "--condensed-out", str(tmp_path / "c1.pt")) == 0
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(tmp_path / "u1.pt"), "--condensed",
                   str(w / "condensed.pt"), "--forget-frac", "0.05", "--forget-seed", "9", "--method", "dcu",
                   "--out", str(tmp_path / "u2.pt")) == 2  # the stale condensed set still holds forgotten ids
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(tmp_path / "u1.pt"), "--ids", str(first),
                   "--method", "finetune", "--out", str(tmp_path / "u2.pt")) == 2
    assert not (tmp_path / "u2.pt").exists()
    _, meta = dcu.load_checkpoint(tmp_path / "u1.pt")
    assert meta["forgotten_count"] == 20 and len(meta["lineage"]) == 1 and "forgotten_ids" not in meta
    ledger = json.loads((tmp_path / "u1.ledger.json").read_text())
    assert ledger["forgotten_ids"] == sorted(int(i) for i in first.read_text().split())


@pytest.mark.parametrize(
    "content, message",
    [("1\n2\n99999\n", "line 3: id 99999 is out of range"), ("4\nfour\n", "line 2: 'four' is not an integer"),
     ("4\n4\n", "line 2: id 4 is a duplicate of line 1"), ("\n# empty\n", "holds no ids")],
)
def test_bad_forget_requests_exit_2_and_write_nothing(workdir, tmp_path, capsys, content, message):
    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    out = tmp_path / "never.pt"
    code = dcu_cli("forget", "--dataset", "digits", "--model", str(workdir / "original.pt"), "--ids", str(bad),
                   "--method", "finetune", "--out", str(out))
    assert code == 2 and not out.exists() and not list(tmp_path.glob(".never*"))
    err = capsys.readouterr().err
    assert message in err and "bad.txt" in err


def test_wrong_files_are_named(workdir, tmp_path, capsys):
    w = workdir
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(w / "condensed.pt"), "--forget-frac", "0.1",
                   "--method", "finetune", "--out", str(tmp_path / "x.pt")) == 2
    assert "condensed.pt is not a dcu checkpoint" in capsys.readouterr().err
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(w / "original.pt"), "--condensed",
                   str(w / "original.pt"), "--forget-frac", "0.1", "--method", "dcu", "--out", str(tmp_path / "x.pt")) == 2
    assert "is not a dcu condensed set" in capsys.readouterr().err
    assert dcu_cli("train", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--seed", "3",
                   "--out", str(tmp_path / "other.pt")) == 0
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(tmp_path / "other.pt"), "--condensed",
                   str(w / "condensed.pt"), "--forget-frac", "0.1", "--method", "dcu", "--out", str(tmp_path / "x.pt")) == 2
    assert "neither" in capsys.readouterr().err
    assert dcu_cli("train", "--dataset", "nope", "--model", "mlp", "--out", str(tmp_path / "x.pt")) == 2
    assert "Unknown dataset 'nope'" in capsys.readouterr().err
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(w / "original.pt"), "--forget-frac", "0.1",
                   "--method", "finetune", "--set", "epochz=3", "--out", str(tmp_path / "x.pt")) == 2
    assert "Unknown setting(s) ['epochz']" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_list_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "dcu", "list"], capture_output=True, text=True, check=True).stdout
    assert "models: convnet, mlp, resnet18, vgg11" in out
    listed = next(line for line in out.splitlines() if line.startswith("unlearning:"))
    assert all(name in listed for name in ("dcu", "finetune", "retrain", "salun", "scrub", "amun", "tmu"))
    assert "condensation: dc, dm, dsa, fdm, herding, idm, kcenter, mi, ncfm, random" in out
    assert "attacks: entropy, lira, loss_lr, rmia, svc_efficacy, ulira" in out
    helptext = subprocess.run([sys.executable, "-m", "dcu", "forget", "--help"], capture_output=True, text=True).stdout
    assert "--forget-frac" in helptext and "--condensed" in helptext


def test_demo_prints_the_comparison_table(capsys):
    assert main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    for method in ("| original |", "| retrain |", "| finetune |", "| dcu |"):
        assert method in out


def test_shadows_in_shards_then_lira_and_rmia_from_the_cli(workdir, tmp_path, capsys):
    w, store = workdir, tmp_path / "shadows"
    for shard in ("1/2", "0/2"):
        assert dcu_cli("shadows", "--dataset", "digits", "--model", str(w / "original.pt"), "--count", "4",
                       "--shard", shard, "--out", str(store)) == 0
    assert sorted(p.name for p in store.glob("shadow-*.pt")) == [f"shadow-000{i}.pt" for i in range(4)]
    out = tmp_path / "lira.json"
    assert dcu_cli("attack", "--dataset", "digits", "--model", str(w / "original.pt"), "--attack", "lira",
                   "--shadows", str(store), "--forget", str(w / "forget.txt"), "--out", str(out), "--plots") == 0
    report = json.loads(out.read_text())
    lira = report["mia"]["lira"]
    assert lira["auc"] > 0.5 and lira["shadows"] == 4   # the original trained on its forget set: members and len(lira["roc"]["fpr"]) == len(lira["roc"]["tpr"])
    assert (tmp_path / "lira-roc.png").stat().st_size > 1000
    assert dcu_cli("evaluate", "--dataset", "digits", "--model", str(w / "original.pt"), "--attacks",
                   "loss_lr,rmia,svc_efficacy,entropy", "--shadows", str(store), "--forget", str(w / "forget.txt"),
                   "--out", str(tmp_path / "all.json")) == 0
    assert set(json.loads((tmp_path / "all.json").read_text())["mia"]) == {"loss_lr", "rmia", "svc_efficacy", "entropy"}
    assert dcu_cli("attack", "--dataset", "digits", "--model", str(w / "original.pt"), "--attack", "ulira",
                   "--shadows", str(store), "--set", "method=finetune", "--set", 'settings={"epochs": 1}',
                   "--forget", str(w / "forget.txt"), "--out", str(tmp_path / "ulira.json")) == 0
    assert json.loads((tmp_path / "ulira.json").read_text())["mia"]["ulira"]["method"] == "finetune"
    assert dcu_cli("attack", "--dataset", "digits", "--model", str(w / "original.pt"), "--attack", "lira",
                   "--forget", str(w / "forget.txt"), "--out", str(tmp_path / "x.json")) == 2
    assert "needs shadow models" in capsys.readouterr().err
    assert dcu_cli("shadows", "--dataset", "digits", "--model", str(w / "original.pt"), "--count", "4",
                   "--shard", "2/2", "--out", str(store)) == 2
    assert "0 <= i < n" in capsys.readouterr().err


def test_reference_from_a_full_store_feeds_dcu_and_refuses_a_partial_one(workdir, tmp_path, capsys):
    w, store, ref = workdir, tmp_path / "shadows", tmp_path / "reference.pt"
    model = ("--dataset", "digits", "--model", str(w / "original.pt"))
    assert dcu_cli("shadows", *model, "--count", "4", "--keep", "0.75", "--shard", "0/2", "--out", str(store)) == 0
    assert dcu_cli("reference", *model, "--shadows", str(store), "--out", str(ref)) == 2
    assert "holds 2 of its 4 shadow models" in capsys.readouterr().err and not ref.exists()
    assert dcu_cli("shadows", *model, "--count", "4", "--keep", "0.75", "--shard", "1/2", "--out", str(store)) == 0
    assert dcu_cli("reference", *model, "--shadows", str(store), "--out", str(w / "original.pt")) == 2
    assert "destroy the input" in capsys.readouterr().err
    assert dcu_cli("reference", *model, "--shadows", str(store), "--out", str(ref)) == 0
    reference = dcu.io.safe_load(ref, what="dcu reference file")
    store_manifest = json.loads((store / "manifest.json").read_text())
    assert reference["format"] == "dcu-reference" and reference["ids"].tolist() == store_manifest["pool_ids"]
    assert store_manifest["keep"] == 0.75 and reference["shadows"] == 4 and reference["out_std"].gt(0).all()
    out = tmp_path / "unlearned.pt"
    assert dcu_cli("forget", *model, "--condensed", str(w / "condensed.pt"), "--ids", str(w / "forget.txt"),
                   "--method", "dcu", "--set", f"reference={ref}", "--set", "phi_weight=0.3", "--out", str(out)) == 0
    assert out.stat().st_size > 0


@pytest.mark.parametrize("method", ["gradient", "condensive", "unlearning_inversion"])
def test_invert_writes_scores_and_a_figure(workdir, tmp_path, method):
    w = workdir
    model = w / "original.pt"
    extra = []
    if method == "unlearning_inversion":
        assert dcu_cli("forget", "--dataset", "digits", "--model", str(model), "--forget-class", "2", "--method",
                       "gradient_ascent", "--set", "epochs=1", "--out", str(tmp_path / "u.pt")) == 0
        model, extra = tmp_path / "u.pt", ["--original", str(w / "original.pt")]
    out = tmp_path / "inv.json"
    assert dcu_cli("invert", "--dataset", "digits", "--model", str(model), "--method", method, "--per-class", "1",
                   "--steps", "40", *extra, "--out", str(out), "--plots") == 0
    scores = json.loads(out.read_text())["scores"]
    assert scores["evaluator_accuracy"] > 0.2 and scores["nearest_psnr"] > 0   # chance is 0.1
    assert (method != "unlearning_inversion") or scores["forget_closeness_gap"] is not None
    assert (tmp_path / "inv.png").stat().st_size > 1000


def test_info_describes_a_method_with_its_settings_and_search_space(capsys):
    assert main(["info", "salun", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "unlearning method" and "Fan et al." in info["doc"]
    assert info["settings"]["threshold"] == {"type": "float", "default": 0.5}
    assert info["search_space"]["lr"] == [1e-4, 0.1, "log"] and info["requires_condensed"] is False
    assert main(["info", "dcu"]) == 0 and "condensed set: required" in capsys.readouterr().out
    assert main(["info", "ulira", "--json"]) == 0
    assert "unlearn_shadow" not in json.loads(capsys.readouterr().out)["settings"]
    assert main(["info", "nope"]) == 2 and "dcu list" in capsys.readouterr().err


def test_every_help_shows_the_defaults(capsys):
    for command in ("train", "forget", "evaluate", "condense", "tune", "audit"):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "(default: 0)" in text or "(default 0" in text, command      # --seed everywhere
    assert main(["train", "--help"]) == 0
    assert "--epochs EPOCHS       (default: 30)" in capsys.readouterr().out


def test_json_outputs_carry_their_provenance(tmp_path):
    from dcu.workflows.cli import _with_provenance

    report = _with_provenance({"a": 1})
    assert report["a"] == 1 and {"command", "machine", "versions"} <= set(report["provenance"])


def test_figures_in_the_format_asked_with_words_for_labels_and_axes_cut_to_the_data(tmp_path, monkeypatch):
    from dcu import plots

    rows = {"retrain": {"retain_acc": 0.992, "forget_acc": 0.977}, "dcu": {"retain_acc": 0.990, "forget_acc": 0.975}}
    assert plots.comparison_bars(rows, ["retain_acc", "forget_acc"], tmp_path / "bars.pdf").read_bytes()[:4] == b"%PDF"
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    plots.comparison_bars(rows, ["retain_acc", "forget_acc"], "bars.svg")
    plots.roc_curves({"lira": {"fpr": [1e-4, 1e-3, 1e-2, 1.0], "tpr": [0.0, 0.01, 0.05, 1.0], "min_fpr": 1e-3}}, "r.svg")
    bars, roc = drawn[0].axes[0], drawn[1].axes[0]
    assert [t.get_text() for t in bars.get_xticklabels()] == ["retain accuracy", "forget accuracy"]
    assert bars.get_ylim()[0] > 90                       # not a 0-105 axis: 97.7 against 99.2 shows
    assert roc.get_xlim()[0] == 1e-3                     # no curve below the FPR one non-member supports
    assert plots.dataset_label("folder:/home/me/pets") == "pets"
