"""The outbox: results computed while the MLflow tracking server did not answer, kept under ``<results>/outbox/``
until ``harness sync`` records them, exactly once.

Writing. `run` opens a run as `harness.tracking.store.run` does, tagged with a fresh record id (``record_id``). If
the server stops answering while the run is logged, `run` hands its `keep` function an `Entry`, a stand-in for the
run with the same methods (`log_params`, `log_metrics`, `log_datasets`, `log_artifact`, `write`, `set_tags`, and
`eval_model` for `store.eval_model`), which the caller fills with what the run would have held. The entry is
written under ``outbox/.tmp-<id>-<pid>/`` and renamed into place (a half-written entry is never read), and the
command stops with `ServerUnreachable` naming it (exit code 3). An entry nothing was written to (a nightly that
had not finished comparing) is not kept.

An entry, ``<results>/outbox/<id>/`` (ids sort by creation time):

- ``entry.json``: the run's kind, name, experiment, tags and params; the model it scores (`store.eval_model`'s
  arguments); its dataset inputs; its metric batches, each linked to the model and/or a dataset as they would have
  been; the tags set last (a nightly's verdict); the tracking URI and the parent run it was meant for;
- ``artifacts/``: its artifact files, laid out as they would have been uploaded.

Recording (`sync`). Every entry is recorded on the store in force (``MLFLOW_TRACKING_URI``), oldest first, as one
run tagged with the entry's id as ``record_id``, which it shares with the run the outage cut short. A FINISHED run
of the experiment with that id means the entry is recorded already: by a sync killed before it could remove the
entry, or by the original run if the server ended it but its answer was lost; for an eval, an equal eval run (the
same checkpoint, suite and params) started after the entry was kept counts too: the command was run again instead
of ``harness sync``, from the eval cache. Otherwise the entry is recorded (a sync killed midway leaves a run that
is not FINISHED, which the orphan reaper ends KILLED, and the next sync records it again). Once the run is FINISHED
the entry is renamed ``<id>.done`` and deleted. One sync at a time (a lock file, ``outbox/.lock``).

An eval that was nested under a parent run (a pipeline's or a nightly's) is recorded at the top level of its
experiment, with the tag ``outbox_parent`` naming that parent: the parent was cut short by the same outage (it ends
KILLED, without its summary), while the eval run is a complete record on its own, which ``compare``, the nightly
(``run:<id>``) and the dashboard read like any other. A nightly's recorded run does not move an alias: ``--promote``
is decided when the nightly runs, so a nightly whose server went away is promoted by running it again.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping

from harness.errors import first_line
from harness.tracking import schema, store
from harness.tracking.schema import Artifact, Kind, TaskData

FOLDER = "outbox"
ENTRY_FILE = "entry.json"
ARTIFACTS = "artifacts"
_TMP = ".tmp-"
_DONE = ".done"
MODEL = "<the eval model>"  # `Entry.eval_model`'s stand-in for the LoggedModel id, resolved when recorded
_FORMAT = 1  # of entry.json


def folder(results_dir: str | os.PathLike | None) -> Path:
    """The outbox of a results folder: ``<results>/outbox``."""
    return Path(results_dir or "results").resolve() / FOLDER


def new_id(kind: Kind | str) -> str:
    """A record id: ``<UTC time to the microsecond>-<kind>-<random>``, sortable by creation time."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%fZ}-{Kind(kind).value}-{uuid.uuid4().hex[:10]}"


@dataclass
class Entry:
    """One run to record later: what it would have held, as plain data (``entry.json``) and files
    (``artifacts/``). Filled through the methods a `harness.tracking.store.Run` has, so that the code that logs a
    run can log it here instead."""

    path: Path  # the entry's folder
    id: str
    kind: str
    name: str
    experiment: str
    tracking_uri: str
    parent: str | None = None  # the run it was to be nested under
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    model: dict[str, Any] | None = None  # `store.eval_model`'s keyword arguments
    datasets: list[dict[str, Any]] = field(default_factory=list)  # `TaskData` fields
    dataset_context: str = schema.EVAL_CONTEXT
    metrics: list[dict[str, Any]] = field(default_factory=list)  # {values, step, model_id, dataset}
    end_tags: dict[str, str] = field(default_factory=dict)  # set after everything else (a nightly's verdict)
    created: float = field(default_factory=time.time)

    @property
    def artifacts(self) -> Path:
        return self.path / ARTIFACTS

    @property
    def filled(self) -> bool:
        """Whether anything was written to the entry."""
        return bool(self.params or self.model or self.datasets or self.metrics or self.end_tags
                    or any(self.artifacts.iterdir()))

    # ------------------------------------------------------------------ the `store.Run` methods a record uses

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update({str(k): str(v) for k, v in params.items()})  # stringified, as MLflow keeps them

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, *, model_id: str | None = None,
                    dataset: TaskData | None = None) -> None:
        values = {str(k): f for k, f in ((k, _finite(v)) for k, v in metrics.items()) if f is not None}
        self.metrics.append({"values": values, "step": step, "model_id": model_id,
                             "dataset": dataset.name if dataset is not None else None})

    def log_datasets(self, datasets: Iterable[TaskData], context: str = schema.EVAL_CONTEXT) -> None:
        self.datasets += [{**asdict(d), "source": dict(d.source)} for d in datasets]
        self.dataset_context = context

    def eval_model(self, *, model: str, model_hash: str, name: str, stage: str | None = None) -> str:
        """`store.eval_model` for this entry: the model input is found or created when the entry is recorded."""
        self.model = {"model": model, "model_hash": model_hash, "name": name, "stage": stage}
        return MODEL

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.end_tags.update({str(k): str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """A file or a whole folder's contents, under `artifact_path`."""
        source, target = Path(path), self.artifacts / (artifact_path or "")
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target / source.name)

    def write(self, artifact: Artifact, data: Any) -> None:
        """One artifact of the schema, in the file `store.Run.write` would upload."""
        store.write_file(artifact, data, self.artifacts / artifact.path)

    # ------------------------------------------------------------------------------------------- the files

    def save(self) -> None:
        """Write ``entry.json`` (flushed to disk: the entry is complete once it is renamed into place)."""
        data = {"format": _FORMAT, **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}}
        with open(self.path / ENTRY_FILE, "w") as f:
            json.dump(data, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path: Path) -> "Entry":
        data = json.loads((path / ENTRY_FILE).read_text())
        data.pop("format", None)
        known = {f.name for f in fields(cls)}
        entry = cls(path=path, **{k: v for k, v in data.items() if k in known})
        Kind(entry.kind)  # a kind this harness records, else ValueError
        return entry


def _finite(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ------------------------------------------------------------------------------------------------- writing


@contextmanager
def run(name: str, kind: Kind, *, experiment: str, results_dir: str | os.PathLike,
        keep: Callable[[Entry], None], parent: store.Run | None = None,
        tags: Mapping[str, Any] | None = None) -> Iterator[store.Run]:
    """`harness.tracking.store.run`, tagged with a new record id; if the server stops answering, `keep(entry)`
    fills an outbox `Entry` with what the run would have held, and `ServerUnreachable` names it.

    Args:
        name, kind, experiment, results_dir, parent, tags: as for `store.run`.
        keep: writes the run's record into the entry it is given (through the `store.Run` methods); it may write
            nothing (nothing computed yet), and the entry is then not kept.

    Raises:
        ServerUnreachable: the server did not answer and the entry was kept (the original error when nothing was
            kept, or when the outbox could not be written).
    """
    record_id = new_id(kind)
    tags = dict(tags or {})
    try:
        with store.run(name, kind, experiment=experiment, results_dir=results_dir, parent=parent,
                       tags={**tags, **schema.tags(record_id=record_id)}) as handle:
            yield handle
    except Exception as err:
        if not store.unreachable(err):
            raise
        uri = parent.uri if parent is not None else store.tracking_uri(results_dir)
        entry = Entry(path=Path(), id=record_id, kind=Kind(kind).value, name=name, experiment=experiment,
                      tracking_uri=uri, parent=parent.run_id if parent is not None else None, tags=tags)
        kept = _keep(results_dir, keep, entry)
        if kept is None:
            raise
        raise store.server_unreachable(uri, err, results_dir, outbox=kept) from None


def _keep(results_dir, keep: Callable[[Entry], None], entry: Entry) -> Path | None:
    """Fill `entry` in a temporary folder and rename it into the outbox; its path (None if nothing was kept)."""
    import logging

    box = folder(results_dir)
    tmp = box / f"{_TMP}{entry.id}-{os.getpid()}"
    try:
        (tmp / ARTIFACTS).mkdir(parents=True)
        entry.path = tmp
        keep(entry)
        if not entry.filled:
            return None
        entry.save()
        final = box / entry.id
        os.replace(tmp, final)
        _fsync_dir(box)
        entry.path = final
        return final
    except Exception:  # noqa: BLE001 - a full disk or a read-only folder: the eval cache still holds the work
        logging.getLogger(__name__).exception("the outbox entry %s could not be written", entry.id)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------- recording


def entries(results_dir: str | os.PathLike | None) -> list[Path]:
    """The outbox's entry folders, oldest first (empty when there is no outbox)."""
    box = folder(results_dir)
    if not box.is_dir():
        return []
    return sorted(p for p in box.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and not p.name.endswith(_DONE))


@dataclass(frozen=True)
class Outcome:
    """What `sync` did with one entry."""

    id: str
    kind: str
    name: str
    status: Literal["recorded", "already", "unreadable", "failed"]
    run_id: str | None = None
    detail: str = ""

    def line(self) -> str:
        what = f"{self.kind} {self.name}" if self.name else self.id
        if self.status == "recorded":
            return f"recorded {what} as run {self.run_id} (outbox entry {self.id})"
        if self.status == "already":
            return f"already recorded: {what} is run {self.run_id} (outbox entry {self.id} removed)"
        return f"not recorded: outbox entry {self.id} ({self.detail}); it stays in the outbox"


def sync(results_dir: str | os.PathLike | None) -> Iterator[Outcome]:
    """Record every entry of the outbox on the store in force, exactly once (see the module docstring), oldest
    first; an `Outcome` per entry as it is done.

    An entry that cannot be read, or that the store refuses, stays in the outbox and the next entries are recorded.
    A server that does not answer stops the sync: the exception propagates, and the entries left stay.
    """
    import fcntl

    box = folder(results_dir)
    if not box.is_dir():
        return
    with open(box / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one sync at a time: two would both find an entry not yet recorded
        _tidy(box)
        for path in entries(results_dir):
            try:
                entry = Entry.load(path)
            except (OSError, ValueError, TypeError) as err:
                yield Outcome(path.name, "", "", "unreadable", detail=f"{ENTRY_FILE}: {first_line(err)}")
                continue
            done = _recorded(entry, results_dir)
            if done:
                _remove(path)
                yield Outcome(entry.id, entry.kind, entry.name, "already", run_id=done)
                continue
            try:
                run_id = _record(entry, results_dir)
            except Exception as err:  # noqa: BLE001 - MLflow raises many types; an outage stops the sync
                if store.unreachable(err):
                    raise
                yield Outcome(entry.id, entry.kind, entry.name, "failed", detail=first_line(err))
                continue
            _remove(path)
            yield Outcome(entry.id, entry.kind, entry.name, "recorded", run_id=run_id)


def _recorded(entry: Entry, results_dir) -> str | None:
    """A FINISHED run that holds the entry already: one with its record id, or, for an eval, an equal eval run (the
    same checkpoint, suite and params) started after the entry was kept: the command was run again rather than
    ``harness sync``, and recorded the same cached scores."""
    done = store.find_runs(entry.experiment, Kind(entry.kind), results_dir, record_id=entry.id)
    if len(done):
        return str(done["run_id"].iloc[0])
    if entry.kind != Kind.EVAL.value:
        return None
    tags = schema.RunTags.from_tags(entry.tags)
    later = store.find_runs(entry.experiment, Kind.EVAL, results_dir, model_hash=tags.model_hash or "",
                            suite=tags.suite or "", extra=f"attributes.start_time >= {int(entry.created * 1000)}")
    params = {schema.key(k): v for k, v in entry.params.items()}
    for run_id in later.get("run_id", []):
        if store.run_params(run_id, results_dir) == params:
            return str(run_id)
    return None


def _record(entry: Entry, results_dir) -> str:
    """Log `entry` as one run, in the order the harness logs a live one; the run's id."""
    tags = {**entry.tags, **schema.tags(record_id=entry.id, outbox_parent=entry.parent)}
    with store.run(entry.name, Kind(entry.kind), experiment=entry.experiment, results_dir=results_dir,
                   tags=tags) as handle:
        if entry.params:
            handle.log_params(entry.params)
        model_id = store.eval_model(handle, **entry.model) if entry.model else None
        datasets = [TaskData(**d) for d in entry.datasets]
        handle.log_datasets(datasets, entry.dataset_context)
        by_name = {d.name: d for d in datasets}
        for batch in entry.metrics:
            linked = model_id if batch["model_id"] == MODEL else batch["model_id"]
            handle.log_metrics(batch["values"], batch["step"], model_id=linked, dataset=by_name.get(batch["dataset"]))
        if any(entry.artifacts.iterdir()):
            handle.log_artifact(entry.artifacts)
        if entry.end_tags:
            handle.set_tags(entry.end_tags)
        return handle.run_id


def _remove(path: Path) -> None:
    """Remove a recorded entry: renamed first, so that a kill while deleting leaves no entry to record again."""
    done = path.with_name(path.name + _DONE)
    os.replace(path, done)
    shutil.rmtree(done, ignore_errors=True)


def tidy(results_dir: str | os.PathLike | None) -> None:
    """Delete what killed processes left in the outbox: done markers, and temporary entries whose writer is gone."""
    box = folder(results_dir)
    if box.is_dir():
        _tidy(box)


def _tidy(box: Path) -> None:
    for p in box.iterdir():
        recorded = p.name.endswith(_DONE)
        abandoned = p.name.startswith(_TMP) and not _alive(p.name.rpartition("-")[2])
        if p.is_dir() and (recorded or abandoned):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: str) -> bool:
    """Whether a process with this pid runs (on this machine: the outbox is a local folder)."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it runs, as another user
    return True
