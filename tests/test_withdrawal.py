"""A deletion request may name held-out ids: they are withdrawn from the held-out split that this and every
later request calibrates on, and recorded in the request ledger."""
import json

import pytest
import torch

import dcu
import unlearn
from dcu.workflows.cli import main


def dcu_cli(*args):
    return main([*args, "--quiet"])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("withdrawal")
    assert dcu_cli("train", "--dataset", "digits", "--model", "mlp", "--epochs", "5", "--out", str(w / "original.pt")) == 0
    assert dcu_cli("condense", "--dataset", "digits", "--model", str(w / "original.pt"), "--method", "fdm", "--ipc", "5",
                   "--out", str(w / "condensed.pt")) == 0
    return w


def test_held_out_ids_are_withdrawn_for_this_and_every_later_request(work, tmp_path, monkeypatch, caplog):
    splits = dcu.data.load("digits").holdout(0.1, seed=0)
    held, trained = splits.val.ids[:7], splits.train.ids[:13]
    seen_val = []
    real = unlearn.Unlearner.unlearn

    def spy(self, model, retain, forget, *, condensed=None, val=None):
        seen_val.append(val.ids.clone())
        return real(self, model, retain, forget, condensed=condensed, val=val)

    monkeypatch.setattr(unlearn.Unlearner, "unlearn", spy)
    request = tmp_path / "request.txt"
    request.write_text("".join(f"{int(i)}\n" for i in torch.cat([held, trained])))
    with caplog.at_level("INFO", logger="dcu"):
        assert main(["forget", "--dataset", "digits", "--model", str(work / "original.pt"), "--condensed",
                     str(work / "condensed.pt"), "--ids", str(request), "--method", "dcu", "--out", str(tmp_path / "u1.pt"),
                     "--condensed-out", str(tmp_path / "c1.pt")]) == 0
    assert "7 of the ids were held out and never trained on" in caplog.text
    ledger = json.loads((tmp_path / "u1.ledger.json").read_text())
    assert ledger["withdrawn_ids"] == sorted(held.tolist()) and ledger["forgotten_ids"] == sorted(trained.tolist())
    _, meta = dcu.load_checkpoint(tmp_path / "u1.pt")
    assert meta["forget_count"] == 13 and meta["withdrawn_count"] == 7
    # the request itself already calibrated without them, and so does the next one, and the one after
    assert len(seen_val[0]) == len(splits.val) - 7 and not torch.isin(held, seen_val[0]).any()
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(tmp_path / "u1.pt"), "--condensed",
                   str(tmp_path / "c1.pt"), "--forget-frac", "0.02", "--method", "dcu", "--out", str(tmp_path / "u2.pt"),
                   "--condensed-out", str(tmp_path / "c2.pt")) == 0
    more = tmp_path / "more.txt"
    more.write_text(f"{int(splits.val.ids[20])}\n{int(splits.train.ids[500])}\n")
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(tmp_path / "u2.pt"), "--condensed",
                   str(tmp_path / "c2.pt"), "--ids", str(more), "--method", "dcu", "--out", str(tmp_path / "u3.pt"),
                   "--condensed-out", str(tmp_path / "c3.pt")) == 0
    assert not torch.isin(held, seen_val[1]).any() and len(seen_val[1]) == len(splits.val) - 7
    assert not torch.isin(torch.cat([held, splits.val.ids[20:21]]), seen_val[2]).any()
    assert len(seen_val[2]) == len(splits.val) - 8
    third = json.loads((tmp_path / "u3.ledger.json").read_text())
    assert len(third["withdrawn_ids"]) == 8 and len(third["requests"]) == 3
    # naming a withdrawn id again is refused like naming a forgotten one
    again = tmp_path / "again.txt"
    again.write_text(f"{int(held[0])}\n")
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(tmp_path / "u3.pt"), "--ids", str(again),
                   "--method", "finetune", "--out", str(tmp_path / "u4.pt")) == 2


def test_a_request_of_held_out_ids_only_changes_no_weight_but_is_recorded(work, tmp_path):
    splits = dcu.data.load("digits").holdout(0.1, seed=0)
    request = tmp_path / "held.txt"
    request.write_text(f"{int(splits.val.ids[0])}\n")
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(work / "original.pt"), "--ids", str(request),
                   "--method", "finetune", "--out", str(tmp_path / "u.pt")) == 0
    original, _ = dcu.load_checkpoint(work / "original.pt")
    model, meta = dcu.load_checkpoint(tmp_path / "u.pt")
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), model.state_dict().values()))
    assert meta["forget_count"] == 0 and meta["withdrawn_count"] == 1
    assert json.loads((tmp_path / "u.ledger.json").read_text())["withdrawn_ids"] == [int(splits.val.ids[0])]


def test_a_method_that_ignores_the_condensed_set_still_refreshes_it(work, tmp_path):
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(work / "original.pt"), "--condensed",
                   str(work / "condensed.pt"), "--forget-frac", "0.05", "--method", "gradient_ascent",
                   "--set", "epochs=1", "--out", str(tmp_path / "u.pt"), "--condensed-out", str(tmp_path / "c.pt")) == 0
    forgotten = torch.tensor(json.loads((tmp_path / "u.ledger.json").read_text())["forgotten_ids"])
    refreshed = dcu.io.safe_load(tmp_path / "c.pt")
    assert not torch.isin(refreshed["members"], forgotten).any()


def test_stores_report_and_prune_what_holds_deleted_ids(work, tmp_path, capsys):
    from inversion_attacks.shadow import ShadowStore

    store = tmp_path / "store"
    assert dcu_cli("shadows", "--dataset", "digits", "--model", str(work / "original.pt"), "--count", "2",
                   "--out", str(store)) == 0
    splits = dcu.data.load("digits").holdout(0.1, seed=0)
    request = tmp_path / "r.txt"
    request.write_text(f"{int(splits.train.ids[3])}\n{int(splits.val.ids[2])}\n")
    assert dcu_cli("forget", "--dataset", "digits", "--model", str(work / "original.pt"), "--ids", str(request),
                   "--method", "finetune", "--set", "epochs=1", "--out", str(tmp_path / "u.pt")) == 0
    ledger = str(tmp_path / "u.ledger.json")
    capsys.readouterr()
    assert dcu_cli("stores", "--ledger", ledger, "--condensed", str(work / "condensed.pt"), "--shadows", str(store)) == 0
    report = json.loads(capsys.readouterr().out)
    # the original's condensed set summarises the forgotten training id; each id is in about half the shadows
    assert report["deleted_ids"] == 2 and report["condensed"][str(work / "condensed.pt")]["holds"] == 1
    trained = report["shadows"][str(store)]["models_trained_on_deleted_ids"]
    expected = sorted(ShadowStore(store).trained_on(torch.tensor([int(splits.train.ids[3]), int(splits.val.ids[2])])))
    assert trained == expected and trained   # with two shadows on random halves, at least one saw one of two ids
    assert dcu_cli("stores", "--ledger", ledger, "--shadows", str(store), "--prune") == 0
    assert json.loads(capsys.readouterr().out)["shadows"][str(store)]["pruned"] == trained
    assert dcu_cli("shadows", "--dataset", "digits", "--model", str(work / "original.pt"), "--count", "2",
                   "--out", str(store)) == 0   # retrained without the deleted ids
    assert ShadowStore(store).trained_on(torch.tensor([int(splits.train.ids[3]), int(splits.val.ids[2])])) == {}
