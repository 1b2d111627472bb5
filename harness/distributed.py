"""Multi-process training: which process this is under ``accelerate launch`` (or torchrun, or mpirun), and where the
processes meet.

``accelerate launch --num_processes N -m harness run ...`` starts N copies of ``harness run``. The main process
(rank 0) runs the pipeline as one process would: it alone writes MLflow runs, checkpoints and logs, evaluates, runs
the arena and prints. The others follow it (`harness.runner`): each TRL stage the main process starts, they train
with it in lockstep (TRL's trainers and accelerate handle the data-parallel part: DDP, or the DeepSpeed / FSDP
config given to ``accelerate launch --config_file``), and in between they wait in `share` until the main process
sends the next stage or, in `finish`, its exit code: 0 they exit with too; on a failure they stay until the
launcher stops them, so that its report names the main process as the root cause.

The meetings go through a gloo process group of their own with a long timeout, so that the others can wait out a
long evaluation on the main process (the trainers' own group keeps its ``ddp_timeout``). Only the standard library
(and `harness.errors`) is imported at module level: `harness.console` asks `is_main` before anything else loads.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

from harness.errors import HarnessError

WAIT = timedelta(hours=24)  # how long the others wait for the main process (its evals, its arena) at a meeting
OUTLIVE = timedelta(seconds=60)  # how long the others stay after the main process said it failed (see `finish`)
_RANK = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")  # torchrun / accelerate, then MPI
_SIZE = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        if os.environ.get(name, "").strip().isdigit():
            return int(os.environ[name])
    return default


def processes() -> int:
    """How many processes the launcher started (1 without one)."""
    return _env_int(_SIZE, 1)


def rank() -> int:
    """This process's rank (0: the main process)."""
    return _env_int(_RANK, 0)


def is_main() -> bool:
    """Whether this is the process that records, saves, evaluates and prints (always, without a launcher)."""
    return rank() == 0


class Stopped(HarnessError):
    """Raised in the other processes when the main process ends the command: exit with its code (nothing to print,
    the main process said it)."""

    def __init__(self, code: int):
        super().__init__("")
        self.exit_code = code


@dataclass(frozen=True)
class _Exit:
    code: int


class _State:
    group = None  # the gloo group the meetings use
    apart = False  # the processes left lockstep by an exception: no more meetings (the launcher ends the rest)
    stopped = False  # told by the main process to exit: its last meeting is over


_state = _State()


def _group():
    """The meetings' gloo group, made on first use (with the default process group, as the trainers would make it,
    when none exists yet); every process gets here at the same meeting."""
    if _state.group is None:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            from accelerate import PartialState
            from accelerate.utils import parse_flag_from_env

            PartialState(cpu=not torch.cuda.is_available() or parse_flag_from_env("ACCELERATE_USE_CPU"))
        _state.group = dist.new_group(backend="gloo", timeout=WAIT)
    return _state.group


def _broadcast(value: Any) -> Any:
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=_group())
    return box[0]


def share(value: Any = None) -> Any:
    """Meet the other processes: the main process sends `value`, the others wait for it and return it.

    Raises:
        Stopped: in the others, when the main process ends the command instead (`finish`).
    """
    if processes() == 1:
        return value
    got = _broadcast(value)
    if isinstance(got, _Exit) and not is_main():
        _state.stopped = True
        raise Stopped(got.code)  # `finish` returns the code
    return got


@contextmanager
def lockstep(order: Any = None) -> Iterator[None]:
    """Train in the block together with the other processes: the main process first sends them `order` (what to
    train, from where); an exception out of the block leaves them out of step, so `finish` meets them no more."""
    if processes() > 1 and is_main():
        share(order)
    try:
        yield
    except BaseException:
        _state.apart = processes() > 1
        raise


def finish(code: int) -> int:
    """The command's last meeting: the main process tells the others its exit `code`; the exit code of this process.

    No meeting after an interrupt (every process got the signal) or when training failed out of step; a process
    that failed on its own (not told to stop) keeps its code, and the launcher ends the others."""
    if processes() == 1 or _state.apart or code >= 128:
        return code
    if not _state.stopped:
        try:
            got = _broadcast(_Exit(code) if is_main() else None)
        except Exception:  # noqa: BLE001 - a process already gone (the launcher reports it): keep this one's code
            return code
        if not isinstance(got, _Exit):  # this process failed on its own while the main one went on
            return code
        code = got.code
    _close()
    if code and not is_main():
        _outlive_main()
    return code


def _close() -> None:
    """Destroy the process groups after the last meeting: left to the interpreter's exit, gloo's threads can abort
    the process ("terminate called without an active exception", SIGABRT) instead of letting it exit with its code."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _state.group = None


def _outlive_main() -> None:
    """Give the main process time to exit first: the launcher then stops this one, and the failure it reports as the
    root cause is the main process's, whose line the user saw (exiting first would make this one the cause)."""
    import time

    time.sleep(OUTLIVE.total_seconds())


def launch() -> dict[str, str]:
    """What a run records of the launch (`harness.tracking.schema.DISTRIBUTED` names them): the number of processes
    and the trainers' backend; nothing in one process."""
    if processes() == 1:
        return {}
    import torch.distributed as dist

    _group()
    return {"processes": str(processes()), "backend": str(dist.get_backend())}
