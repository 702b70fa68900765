"""Data-parallel training: 2 processes with gloo on the CPU reach the single-process weights."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import dcu
from dcu.train import TrainConfig, train

CFG = TrainConfig(epochs=3, batch_size=64, lr=0.05, schedule="onecycle", weight_decay=5e-4, augment=True,
                  flip=False, crop_padding=1, seed=0)


def _model():
    torch.manual_seed(0)
    return dcu.create_model("convnet", in_channels=1, num_classes=10, image_size=8, width=16, depth=2)


def _worker(rank, world, init_file, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        splits = dcu.data.load("digits").holdout(0.1, seed=0)
        model = _model()
        train(model, splits.train, CFG)
        if rank == 0:
            torch.save(model.state_dict(), out)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_gloo_processes_match_one_process_on_the_same_global_batch(digits, tmp_path):
    single = _model()
    train(single, digits.train, CFG)
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    for name, value in single.state_dict().items():
        assert torch.allclose(value, ddp[name], atol=1e-5, rtol=1e-4), name


def test_dcu_train_under_torchrun_matches_the_single_process_checkpoint(tmp_path):
    import shutil
    import subprocess
    import sys

    from dcu.checkpoint import load_checkpoint
    from dcu.workflows.cli import main

    args = ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "4", "--batch-size", "64", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one.pt")]) == 0
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "dcu", *args, "--device", "cpu",
                    "--out", str(tmp_path / "two.pt")], check=True, env=env, timeout=300)
    one, _ = load_checkpoint(tmp_path / "one.pt")
    two, meta = load_checkpoint(tmp_path / "two.pt")
    for (name, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), name
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--device", "cuda:7", "--out",
                 str(tmp_path / "x.pt"), "--quiet"]) == 2 or torch.cuda.device_count() > 7
