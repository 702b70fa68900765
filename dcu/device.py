"""Devices and processes: ``--device auto|cpu|cuda[:i]`` and running under ``torchrun``.

Under ``torchrun --nproc_per_node N`` every process runs the same command; ``init_distributed`` joins them
into one process group (NCCL on GPUs, gloo on CPUs), the training loop wraps the model in
``DistributedDataParallel`` and gives each process every N-th sample of the same global batch, so a run
matches the single-process run with that batch within float tolerance (models with batch norm excepted:
their statistics are per process). Only rank 0 writes files.
"""
from __future__ import annotations

import os

import torch


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` is the first GPU when there is one (or this process's GPU under torchrun), else the CPU."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"Unknown device '{spec}'. Valid values are: auto, cpu, cuda, cuda:N.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Device '{spec}' was asked for, but this machine has no CUDA GPU (torch "
                             f"{torch.__version__}); use --device cpu.")
        index = device.index if device.index is not None else int(os.environ.get("LOCAL_RANK", 0))
        if index >= torch.cuda.device_count():
            raise ValueError(f"Device '{spec}' does not exist: this machine has {torch.cuda.device_count()} GPU(s).")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"Unsupported device '{spec}'. Valid values are: auto, cpu, cuda, cuda:N.")
    return device


def init_distributed(device: torch.device) -> int:
    """Join the torchrun process group when launched by torchrun; returns this process's rank (0 otherwise)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank()


def finish_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def default_threads() -> int:
    """Threads that do not oversubscribe: ``$OMP_NUM_THREADS`` when set, else the cores this process may run
    on (its CPU affinity mask, which a container or ``taskset`` narrows), never more."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return min(int(env), cores)
    return max(1, cores)


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (``--threads N``; default :func:`default_threads`); returns the count."""
    count = threads if threads else default_threads()
    if count < 1:
        raise ValueError(f"--threads must be at least 1. Got {count}.")
    torch.set_num_threads(count)
    return count


def add_threads_argument(parser) -> None:
    """``--threads N`` on an argparse parser: every command, benchmark and example takes it."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default: $OMP_NUM_THREADS, else the cores this process may use)")
