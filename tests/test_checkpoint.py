import pickle

import pytest
import torch

import dcu
from dcu.checkpoint import base_meta, check_fits, load_checkpoint, save_checkpoint
from dcu.io import ArtifactError


def test_checkpoint_round_trips_weights_and_metadata(tmp_path, digits, mlp):
    path = tmp_path / "m.pt"
    meta = {**base_meta(mlp, digits, digits.train.ids), "kind": "original", "train_config": {"epochs": 30}}
    digest = save_checkpoint(path, mlp, meta)
    model, loaded = load_checkpoint(path, digits)
    assert loaded["hash"] == digest and loaded["arch"] == "mlp" and loaded["num_classes"] == 10
    assert loaded["input_shape"] == [1, 8, 8] and loaded["dataset"] == "digits"
    assert loaded["versions"]["torch"] == str(torch.__version__)
    for a, b in zip(model.state_dict().values(), mlp.state_dict().values()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed, not left behind


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_carrying_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    payload = _Payload()
    payload.marker = marker
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"format": "dcu-checkpoint", "meta": payload}, fh)
    with pytest.raises(ArtifactError, match="weights_only=True"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_files_that_are_not_checkpoints_are_named(tmp_path, digits, mlp):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ArtifactError, match="notes.pt"):
        load_checkpoint(text)
    plain = tmp_path / "plain.pt"
    torch.save(mlp.state_dict(), plain)
    with pytest.raises(ArtifactError, match="not a dcu checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_altered_weights_are_detected(tmp_path, digits, mlp):
    path = tmp_path / "m.pt"
    save_checkpoint(path, mlp, base_meta(mlp, digits, digits.train.ids))
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["classifier.bias"] += 1
    torch.save(payload, path)
    with pytest.raises(ArtifactError, match="do not match the hash"):
        load_checkpoint(path)


def test_a_checkpoint_for_another_dataset_is_refused(tmp_path, digits):
    model = dcu.create_model("mlp", in_channels=1, num_classes=5, image_size=8)
    path = tmp_path / "five.pt"
    save_checkpoint(path, model, {**base_meta(model, digits, digits.train.ids), "num_classes": 5,
                                  "classes": [str(c) for c in range(5)]})
    with pytest.raises(ArtifactError, match="5 classes but dataset digits has 10"):
        load_checkpoint(path, digits)
    meta = base_meta(dcu.create_model("mlp", in_channels=1, num_classes=10, image_size=8), digits, digits.train.ids)
    with pytest.raises(ArtifactError, match="inputs of shape"):
        check_fits({**meta, "input_shape": [3, 32, 32]}, digits)
