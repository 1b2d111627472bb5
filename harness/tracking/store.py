"""The one module that talks to MLflow. Everything else hands it plain data.

The store is `MLFLOW_TRACKING_URI` when set, else a sqlite file `mlflow.db` in the results folder, with artifacts
under `results/mlartifacts`. Runs are addressed by id through `MlflowClient` (no global active-run state), so
nested runs are explicit: a child carries the `mlflow.parentRunId` tag. `run()` ends a run FINISHED, or FAILED
when its body raises (KILLED on Ctrl-C): no run is ever left RUNNING.

MLflow 3's links are made here too: a train run's checkpoint is a LoggedModel (its artifacts, registered as a model
version; `log_checkpoint`), an eval run names the LoggedModel it scores (`eval_model`) and the data of each task as
a dataset input (`Run.log_datasets`), and its metrics carry the model id and dataset (`Run.log_metrics`), so that
the UI lines checkpoints up. Experiments are created as model-training ones.

What the record holds is named in `harness.tracking.schema`: `run()` takes the run's kind and typed tags from
there, `Run.write` and `read` take its `Artifact` constants. Metric and param keys pass through `schema.key` here
and only here (lm-eval's ``"exact_match,strict-match"`` becomes ``exact_match/strict-match``; a label with ``@``
cannot break a param name); values that are not finite numbers (``"N/A"``, NaN, None) are never logged.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from harness.errors import HarnessError, ServerUnreachable, first_line
from harness.tracking import schema
from harness.tracking.schema import Artifact, Kind, TaskData

_PARAM_MAX = 6000  # MLflow's limit on a param value
_BATCH = 900  # log_batch accepts at most 1000 metrics per call

_client_cache: dict[str, Any] = {}


def tracking_uri(results_dir: str | os.PathLike | None = None) -> str:
    """The tracking URI in force: `MLFLOW_TRACKING_URI`, else ``sqlite:///<results>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = Path(results_dir or "results").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


# A tracking server that does not answer must cost seconds, not MLflow's default minutes (120 s per request, 7
# retries with doubling backoff): a command stops at the first request that fails after these (exit code 3).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5"}
_UNREACHABLE = ("Max retries exceeded", "Failed to establish a new connection", "Connection refused",
                "Read timed out", "Connection aborted", "RemoteDisconnected", "timed out")


def unreachable(err: BaseException) -> bool:
    """Whether `err` (or an exception it came from) says the tracking server did not answer."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        name = type(err).__name__
        if name in ("ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "MaxRetryError",
                    "NewConnectionError") or any(text in str(err) for text in _UNREACHABLE):
            return True
        err = err.__cause__ or err.__context__
    return False


def server_unreachable(uri: str, err: BaseException, results_dir: str | os.PathLike | None = None, *,
                       outbox: str | os.PathLike | None = None) -> ServerUnreachable:
    """The one line for a tracking server that did not answer: the results were kept in `outbox` (an entry of
    `harness.tracking.outbox`, recorded by ``harness sync``), else what was computed stays in the local caches."""
    kept = Path(results_dir or "results").resolve()
    if outbox is not None:
        return ServerUnreachable(f"the MLflow tracking server {uri} does not answer ({type(err).__name__}); the "
                                 f"results are kept locally in the outbox {outbox}: run `harness sync --results "
                                 f"{kept}` when the server is back")
    return ServerUnreachable(f"the MLflow tracking server {uri} does not answer ({type(err).__name__}); what was "
                             f"computed is kept in the local caches under {kept}: run the command again when the "
                             "server is back (finished work is not redone)")


def ping(results_dir: str | os.PathLike | None = None) -> None:
    """Before any model work: a tracking server (http/https URI) must answer one request, else `ServerUnreachable`;
    a server that refuses the credentials is a `HarnessError` (`refused`)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        return  # a local store: nothing to reach
    try:
        client(uri).search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - MLflow wraps requests' errors in its own types
        if unreachable(err):
            raise server_unreachable(uri, err, results_dir) from None
        if refused(err):
            raise credentials_refused(uri, err) from None
        raise


def refused(err: BaseException) -> bool:
    """Whether `err` is a tracking server refusing the request: HTTP 401 (no or wrong credentials) or 403."""
    return getattr(err, "error_code", None) in ("UNAUTHENTICATED", "PERMISSION_DENIED")


def credentials_refused(uri: str, err: BaseException) -> HarnessError:
    """The one line for a server (MLflow's basic auth) that refused the request; it names the user, never a
    secret (the credentials come only from ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``)."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    where = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if getattr(err, "error_code", None) == "PERMISSION_DENIED":
        return HarnessError(f"the MLflow tracking server {where} denied user {user!r} permission (HTTP 403): ask "
                            "its admin for EDIT on the experiment and the registered model")
    if user:
        return HarnessError(f"the MLflow tracking server {where} refused the credentials of user {user!r} (HTTP "
                            "401): check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    return HarnessError(f"the MLflow tracking server {where} requires credentials (HTTP 401): set "
                        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")


def client(uri: str):
    """A cached `MlflowClient` for `uri` (imports mlflow lazily); a server URI gets bounded timeouts and retries
    (`HTTP_DEFAULTS`, unless the environment sets them)."""
    if uri not in _client_cache:
        import logging

        if uri.startswith(("http://", "https://")):
            for key, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)

        from mlflow.tracking import MlflowClient

        for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking._tracking_service.client"):
            logging.getLogger(name).setLevel(logging.WARNING)
        if uri.startswith("sqlite:"):
            from harness.tracking import migrate

            migrate.ensure(uri)  # created and migrated once, under a lock, however many processes start at once
        _client_cache[uri] = MlflowClient(tracking_uri=uri)
    return _client_cache[uri]


def experiment_id(uri: str, name: str, results_dir: str | os.PathLike | None = None) -> str:
    """Get or create the experiment `name`; a local store keeps its artifacts in ``<results>/mlartifacts`` (a sqlite
    store named by ``MLFLOW_TRACKING_URI``: ``mlartifacts`` beside the database file).

    The experiment is a model-training one (``mlflow.experimentKind``, also set on an existing experiment that
    lacks it), so that the MLflow UI shows it as runs rather than as a GenAI app's traces.
    """
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if schema.EXPERIMENT_KIND_TAG not in exp.tags:
            c.set_experiment_tag(exp.experiment_id, schema.EXPERIMENT_KIND_TAG, schema.EXPERIMENT_KIND)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///") and not os.environ.get("MLFLOW_TRACKING_URI"):
        location = (Path(results_dir or "results").resolve() / "mlartifacts").as_uri()
    elif uri.startswith("sqlite:///"):  # beside the database, not in ./mlruns of whichever process came first
        from harness.tracking import migrate

        db = migrate.sqlite_path(uri)
        location = (db.parent / "mlartifacts").as_uri() if db else None
    try:
        return c.create_experiment(name, artifact_location=location,
                                   tags={schema.EXPERIMENT_KIND_TAG: schema.EXPERIMENT_KIND})
    except Exception as err:  # noqa: BLE001 - MLflow raises its own exception types
        if not already_exists(err):
            raise
        return c.get_experiment_by_name(name).experiment_id  # another process created it a moment ago


def already_exists(err: BaseException) -> bool:
    """Whether `err` is MLflow's "already exists" (``RESOURCE_ALREADY_EXISTS``): two processes creating the same
    experiment or registered model at once; the loser uses the winner's."""
    return getattr(err, "error_code", None) == "RESOURCE_ALREADY_EXISTS"


def ui_url(experiment_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI's runs table of an experiment, at the server `base`.

    MLflow 3's UI shows experiments in its GenAI view (traces) unless the page asks for the model-training one
    (``workflowType=machine_learning``, the sidebar's "Model training" switch, which the browser then remembers).
    """
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys (``{"a": {"b": 1}}`` → ``{"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def write_file(artifact: Artifact, data: Any, path: Path) -> None:
    """One artifact of the schema as the local file `path`, by its format: a DataFrame (csv, jsonl), plain data
    (json, yaml), a string (text, UTF-8), a matplotlib figure (png) or a local folder (dir, copied). What
    `Run.write` uploads and an outbox entry keeps (`harness.tracking.outbox`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if artifact.format == "csv":
        data.to_csv(path, index=False)
    elif artifact.format == "jsonl":
        data.to_json(path, orient="records", lines=True, force_ascii=False)
    elif artifact.format == "json":
        path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    elif artifact.format == "yaml":
        import yaml

        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    elif artifact.format == "text":
        path.write_text(data, encoding="utf-8")
    elif artifact.format == "png":
        data.savefig(path)
    else:
        import shutil

        shutil.copytree(data, path, dirs_exist_ok=True)


class Run:
    """A handle on one MLflow run: log params, metrics, tags and artifacts by id."""

    def __init__(self, uri: str, run_id: str, experiment_id: str):
        self.uri, self.run_id, self.experiment_id = uri, run_id, experiment_id

    @property
    def client(self):
        return client(self.uri)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log flat params in batches; values are stringified and cut to MLflow's limit."""
        from mlflow.entities import Param

        items = [Param(schema.key(str(k)), str(v)[:_PARAM_MAX]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), str(v)[:_PARAM_MAX]) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, tags=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, *, model_id: str | None = None,
                    dataset: TaskData | None = None) -> None:
        """Log one value per metric at `step` (sanitised names; non-finite values skipped).

        With `model_id` the values are also the LoggedModel's metrics; with `dataset` they are the metrics on that
        dataset (log it first with `log_datasets`).
        """
        self.log_history([(step or 0, metrics)], model_id=model_id, dataset=dataset)

    def log_history(self, rows: Iterable[tuple[int, Mapping[str, Any]]], *, model_id: str | None = None,
                    dataset: TaskData | None = None) -> None:
        """Log many `(step, {name: value})` rows in as few `log_batch` calls as possible."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        on = {"model_id": model_id}
        if dataset is not None:
            on.update(dataset_name=dataset.name, dataset_digest=dataset.digest)
        batch: list = []
        for step, metrics in rows:
            for k, v in metrics.items():
                f = _finite(v)
                if f is not None:
                    batch.append(Metric(schema.key(str(k)), f, now, int(step), **on))
        for i in range(0, len(batch), _BATCH):
            self.client.log_batch(self.run_id, metrics=batch[i : i + _BATCH])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Log a file or a whole folder."""
        p = Path(path)
        if p.is_dir():
            self.client.log_artifacts(self.run_id, str(p), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(p), artifact_path)

    def write(self, artifact: Artifact, data: Any) -> None:
        """Write one artifact of the schema by its format (`write_file`), uploaded as one file (a folder for dir)."""
        if artifact.format == "dir":
            self.log_artifact(data, artifact.path)
            return
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(artifact.path).name
            write_file(artifact, data, local)
            parent = str(Path(artifact.path).parent)
            self.client.log_artifact(self.run_id, str(local), None if parent == "." else parent)

    def artifact_uri(self) -> str:
        return self.client.get_run(self.run_id).info.artifact_uri

    def log_datasets(self, datasets: Iterable[TaskData], context: str = schema.EVAL_CONTEXT) -> None:
        """Log the data the run read as its dataset inputs (the UI's Datasets column), tagged with `context`."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(Dataset(d.name, d.digest, d.source_type, json.dumps(dict(d.source), default=str),
                                       profile=json.dumps({"num_rows": d.rows}) if d.rows is not None else None),
                               tags=[InputTag(schema.DATASET_CONTEXT_TAG, context)])
                  for d in datasets]
        if inputs:
            _racing(lambda: self.client.log_inputs(self.run_id, datasets=inputs))


_LOST_RACE = ("UniqueViolation", "UNIQUE constraint failed", "duplicate key value")


def _racing(call, attempts: int = 5):
    """`call()`, again (up to `attempts` times) when MLflow lost an insert race: it checks whether a shared row (a
    dataset of the experiment) exists and then inserts it, so two processes logging the same one at once collide on
    the unique key; the retry finds the row and links it."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - MLflow wraps the database's error in its own types
            if attempt == attempts - 1 or not any(text in str(err) for text in _LOST_RACE):
                raise
            time.sleep(0.2 * (attempt + 1))


@contextmanager
def run(
    name: str,
    kind: Kind,
    *,
    experiment: str = "harness",
    results_dir: str | os.PathLike | None = None,
    parent: Run | None = None,
    tags: Mapping[str, Any] | None = None,
    reopen: str | None = None,
) -> Iterator[Run]:
    """Open a run of `kind` (nested under `parent` if given); it ends FINISHED, FAILED on an exception, KILLED on
    Ctrl-C. `tags` are built with `schema.tags` (plus provenance tags); the kind and schema version are added here.
    Every open run holds a heartbeat (`harness.tracking.liveness`).

    `reopen` is the id of an ended run to continue instead (``harness run --resume``): it is RUNNING again, held by
    this process, until the block ends it as above.
    """
    uri = parent.uri if parent else tracking_uri(results_dir)
    c = client(uri)
    if reopen:
        info = c.get_run(reopen).info
        c.update_run(reopen, status="RUNNING")
        handle = Run(uri, reopen, info.experiment_id)
        handle.set_tags({**(tags or {}), **_alive_tags()})
        with _heartbeat(handle):
            yield from _ending(c, reopen, handle)
        return
    exp_id = parent.experiment_id if parent else experiment_id(uri, experiment, results_dir)
    all_tags = {schema.RUN_NAME_TAG: schema.run_name(name), **(tags or {}), **schema.tags(kind), **_alive_tags()}
    if parent:
        all_tags[schema.PARENT_TAG] = parent.run_id
    info = c.create_run(exp_id, run_name=all_tags[schema.RUN_NAME_TAG],
                        tags={k: str(v) for k, v in all_tags.items()}).info
    handle = Run(uri, info.run_id, exp_id)
    with _heartbeat(handle):
        yield from _ending(c, info.run_id, handle)


def _ending(c, run_id: str, handle: Run) -> Iterator[Run]:
    """Yield `handle`, then end its run FINISHED, FAILED on an exception, KILLED on Ctrl-C or a signal."""
    try:
        yield handle
    except KeyboardInterrupt:
        c.set_terminated(run_id, "KILLED")
        raise
    except BaseException:
        c.set_terminated(run_id, "FAILED")
        raise
    else:
        c.set_terminated(run_id, "FINISHED")


def _alive_tags() -> dict[str, str]:
    """Who holds a new run (`harness.tracking.liveness`): this host and process, and a first heartbeat."""
    from harness.tracking import liveness

    return schema.tags(host=liveness.host(), pid=os.getpid(), heartbeat=f"{time.time():.0f}")


_open_runs: dict[str, Run] = {}  # run id → handle, for the heartbeat thread
_beat_lock = threading.Lock()
_beat_thread: threading.Thread | None = None


@contextmanager
def _heartbeat(handle: Run) -> Iterator[None]:
    """While the block runs, the run's ``heartbeat`` tag is refreshed every `liveness.interval()` seconds by one
    daemon thread shared by all open runs of the process. A failed refresh (the server briefly away) is skipped:
    the run's own requests report outages."""
    global _beat_thread
    with _beat_lock:
        _open_runs[handle.run_id] = handle
        if _beat_thread is None or not _beat_thread.is_alive():
            _beat_thread = threading.Thread(target=_beat, name="harness-heartbeat", daemon=True)
            _beat_thread.start()
    try:
        yield
    finally:
        with _beat_lock:
            _open_runs.pop(handle.run_id, None)


def _beat() -> None:
    """The heartbeat thread: wakes every second at most (no store traffic) and refreshes each open run whose last
    beat is an interval old (the interval is read each time, so a changed ``HARNESS_HEARTBEAT_S`` applies)."""
    from harness.tracking import liveness

    key = schema.tag_key("heartbeat")
    last: dict[str, float] = {}
    while True:
        time.sleep(min(liveness.interval(), 1.0))
        with _beat_lock:
            handles = list(_open_runs.values())
        now = time.monotonic()
        last = {h.run_id: last.get(h.run_id, now) for h in handles}  # a new run beat when it was created
        for h in handles:
            if now - last[h.run_id] < liveness.interval():
                continue
            last[h.run_id] = now
            try:
                h.client.set_tag(h.run_id, key, f"{time.time():.0f}")
            except Exception:  # noqa: BLE001 - never let a heartbeat kill or slow the work it reports on
                continue


def running(results_dir: str | os.PathLike | None = None) -> list[dict]:
    """The store's RUNNING runs: ``run_id, name, experiment, kind, host, pid, heartbeat_age_s, orphan`` rows
    (``orphan``: why its process is gone — `harness.tracking.liveness.orphaned` — or empty). A default sqlite
    store that does not exist yet is not created."""
    from harness.tracking import liveness

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        if not (Path(results_dir or "results").resolve() / "mlflow.db").exists():
            return []
    c = client(tracking_uri(results_dir))
    experiments = {e.experiment_id: e.name for e in c.search_experiments()}
    ids, rows = list(experiments), []
    for i in range(0, len(ids), 100):  # search_runs takes at most 100 experiments
        token = None
        while True:
            page = c.search_runs(ids[i:i + 100], "attributes.status = 'RUNNING'", max_results=1000,
                                 page_token=token)
            now = time.time()
            for r in page:
                tags = schema.RunTags.from_tags(r.data.tags)
                beat = _finite(tags.heartbeat)
                rows.append({"run_id": r.info.run_id, "name": r.info.run_name,
                             "experiment": experiments.get(r.info.experiment_id, ""), "kind": tags.kind or "",
                             "host": tags.host or "", "pid": tags.pid or "",
                             "heartbeat_age_s": round(now - beat) if beat is not None else None,
                             "orphan": liveness.orphaned(tags, started=r.info.start_time / 1000, now=now) or ""})
            token = page.token
            if not token:
                break
    return rows


def reap(results_dir: str | os.PathLike | None = None, rows: list[dict] | None = None) -> list[dict]:
    """End KILLED every RUNNING run of the store whose process is gone, tagged with why (``reaped``); those runs
    (`running` rows; `rows` when the caller has just listed them). Every command on a store runs this first, so
    that no reader ever waits on a dead run."""
    orphans = [row for row in (running(results_dir) if rows is None else rows) if row["orphan"]]
    if orphans:
        c = client(tracking_uri(results_dir))
        for row in orphans:
            c.set_tag(row["run_id"], schema.tag_key("reaped"), row["orphan"])
            c.set_terminated(row["run_id"], "KILLED")
    return orphans


def search_runs(uri: str, experiment: str, filter_string: str = "", order_by: list[str] | None = None):
    """Runs of `experiment` as a pandas DataFrame, one row per run, in `mlflow.search_runs`' column layout
    (``run_id, status, start_time, ..., metrics.*, params.*, tags.*``); empty if the experiment does not exist.

    Reads through the client for `uri`: `mlflow.search_runs` would need the global tracking URI, and setting it
    would redirect every later run of the process to this store.
    """
    import pandas as pd

    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame()
    rows, token = [], None
    while True:
        page = c.search_runs([exp.experiment_id], filter_string, max_results=1000, order_by=order_by or None,
                             page_token=token)
        for r in page:
            row = {
                "run_id": r.info.run_id,
                "experiment_id": r.info.experiment_id,
                "status": r.info.status,
                "artifact_uri": r.info.artifact_uri,
                "start_time": pd.to_datetime(r.info.start_time, unit="ms", utc=True),
                "end_time": pd.to_datetime(r.info.end_time, unit="ms", utc=True) if r.info.end_time else pd.NaT,
            }
            row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
            row.update({f"params.{k}": v for k, v in r.data.params.items()})
            row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
            rows.append(row)
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint in the record: its LoggedModel and its registered model version."""

    model_id: str
    version: str


def log_checkpoint(handle: Run, folder: str | os.PathLike, model_name: str, tags: Mapping[str, Any], *,
                   model_hash: str, name: str | None = None) -> Checkpoint:
    """Record a checkpoint folder as the LoggedModel of the train run `handle`, registered as a version of
    `model_name`.

    The folder becomes the LoggedModel's artifacts (stored once: ``models:/<model_name>/<version>``,
    ``models:/<model id>`` and ``runs:/<run id>/checkpoint`` all resolve to this standard Hugging Face folder).
    The LoggedModel is named `name` (the stage), is an output of the run, and carries `model_hash` (so that evals
    of the same bytes find it) and the stage as params and tags, and its registered version as tags (the UI shows
    it from there). The version carries `tags` (for example the stage); it is created with the LoggedModel's id,
    which registries that keep it link back.
    """
    from mlflow.entities import LoggedModelOutput

    c = handle.client
    stage = tags.get("stage")
    model, version = _checkpoint_of(c, handle.experiment_id, model_name, model_hash)
    if model is not None and version is not None and str(model.status) == "READY":
        # The same bytes are recorded already (a rerun after a kill, a deterministic retrain): link, don't copy.
        c.log_outputs(handle.run_id, [LoggedModelOutput(model.model_id, step=0)])
        handle.set_tags(schema.tags(logged_model=model.model_id, model_version=version))
        return Checkpoint(model.model_id, str(version))
    if model is None:
        model = c.create_logged_model(
            handle.experiment_id, name=schema.logged_model_name(name or stage or Path(folder).name),
            source_run_id=handle.run_id,
            params={"model_hash": model_hash, **({"stage": str(stage)} if stage else {})},
            tags=schema.tags(model_hash=model_hash, stage=stage, schema_version=schema.SCHEMA_VERSION))
    try:
        c.log_model_artifacts(model.model_id, str(folder))
        c.log_outputs(handle.run_id, [LoggedModelOutput(model.model_id, step=0)])
        if version is None:
            try:
                c.get_registered_model(model_name)
            except Exception:  # noqa: BLE001 - MLflow raises its own RestException for "does not exist"
                try:
                    c.create_registered_model(model_name)
                except Exception as err:  # noqa: BLE001 - created by another process meanwhile: use it
                    if not already_exists(err):
                        raise
            # The source is the LoggedModel's artifact folder rather than ``models:/<id>``: a sqlite registry
            # resolves that URI through the process-wide tracking URI, not this client's.
            version = c.create_model_version(model_name, model.artifact_location, run_id=handle.run_id,
                                             tags={k: str(v) for k, v in tags.items()},
                                             model_id=model.model_id).version
        c.set_logged_model_tags(model.model_id, {
            **schema.tags(model_version=version),
            schema.MODEL_VERSIONS_TAG: json.dumps([{"name": model_name, "version": version}])})
    except BaseException:
        c.finalize_logged_model(model.model_id, "FAILED")
        raise
    c.finalize_logged_model(model.model_id, "READY")
    handle.set_tags(schema.tags(logged_model=model.model_id, model_version=version))
    return Checkpoint(model.model_id, str(version))


def _checkpoint_of(c, experiment: str, model_name: str, model_hash: str):
    """``(LoggedModel, version)`` already recording a checkpoint with `model_hash` as a version of `model_name`
    (either may be None: a process killed between creating the LoggedModel and registering it, or before).

    Only LoggedModels made by `log_checkpoint` count (an eval of an external checkpoint makes one without
    artifacts, with a ``model`` param). A LoggedModel that is not READY was cut short while uploading; its upload
    is redone. This is what keeps a rerun after a kill from adding a second model version of the same bytes."""
    found = c.search_logged_models([experiment], filter_string=schema.where_model(model_hash), max_results=50,
                                   order_by=[{"field_name": "creation_time", "ascending": False}])
    own = [m for m in found if "model" not in (m.params or {})]
    for m in own:
        try:
            registered = json.loads((m.tags or {}).get(schema.MODEL_VERSIONS_TAG) or "[]")
        except ValueError:
            registered = []
        for entry in registered:
            if entry.get("name") == model_name:
                return m, str(entry["version"])
    if not own:
        return None, None
    try:  # registered before its tags were written: the registry knows it by model id
        versions = c.search_model_versions(f"name='{model_name}'")
    except Exception:  # noqa: BLE001 - no such registered model yet
        versions = []
    by_model = {getattr(v, "model_id", None): str(v.version) for v in versions}
    for m in own:
        if m.model_id in by_model:
            return m, by_model[m.model_id]
    return own[0], None


def eval_model(handle: Run, *, model: str, model_hash: str, name: str, stage: str | None = None) -> str:
    """The LoggedModel that the eval run `handle` scores, logged as the run's model input; returns its id.

    It is the newest LoggedModel of the experiment with the checkpoint's content hash (the train stage's, for a
    checkpoint trained here); an external checkpoint gets a new one, named `name`, without artifacts (the weights
    stay where `model` points), with ``model`` and ``model_hash`` as params.
    """
    from mlflow.entities import LoggedModelInput

    c = handle.client
    found = c.search_logged_models([handle.experiment_id], filter_string=schema.where_model(model_hash),
                                   max_results=20, order_by=[{"field_name": "creation_time", "ascending": False}])
    ready = [m for m in found if str(m.status) == "READY"]  # not a stage that failed while uploading
    if ready:
        model_id = ready[0].model_id
    else:
        created = c.create_logged_model(
            handle.experiment_id, name=schema.logged_model_name(name), source_run_id=handle.run_id,
            params={"model": model[:_PARAM_MAX], "model_hash": model_hash, **({"stage": stage} if stage else {})},
            tags=schema.tags(model=model, model_hash=model_hash, stage=stage, schema_version=schema.SCHEMA_VERSION))
        model_id = c.finalize_logged_model(created.model_id, "READY").model_id
    c.log_inputs(handle.run_id, models=[LoggedModelInput(model_id)])
    return model_id


def trained_by(model_hash: str, experiment: str, results_dir: str | os.PathLike | None = None) -> str | None:
    """The pipeline run that trained the checkpoint with `model_hash` here (the parent of the train run whose
    LoggedModel records it), or None: trained elsewhere, or not by a pipeline."""
    c = client(tracking_uri(results_dir))
    found = c.get_experiment_by_name(experiment)
    if found is None:
        return None
    models = c.search_logged_models([found.experiment_id], filter_string=schema.where_model(model_hash),
                                    max_results=20, order_by=[{"field_name": "creation_time", "ascending": False}])
    for m in models:
        if "model" in (m.params or {}) or not m.source_run_id:  # made by an eval of an external checkpoint
            continue
        parent = c.get_run(m.source_run_id).data.tags.get(schema.PARENT_TAG)
        if parent:
            return parent
    return None


def logged_model_hash(model_id: str, results_dir: str | os.PathLike | None = None) -> str | None:
    """The content hash a READY LoggedModel records (None when it is absent or not READY)."""
    try:
        model = client(tracking_uri(results_dir)).get_logged_model(model_id)
    except Exception:  # noqa: BLE001 - MLflow raises its own exception types for "not found"
        return None
    if str(model.status) != "READY":
        return None
    return (model.params or {}).get("model_hash")


def set_alias(uri: str, model_name: str, alias: str, version: str) -> None:
    """Point `alias` (for example ``champion``) of a registered model at `version`."""
    client(uri).set_registered_model_alias(model_name, alias, version)


def download_model(model_uri: str, results_dir: str | os.PathLike | None = None) -> str:
    """Download an MLflow model URI (``models:/name/3``, ``models:/name@alias``, ``models:/m-<id>``,
    ``runs:/id/checkpoint`` or another ``runs:/id/path``) to a local folder.

    Raises `HarnessError` naming the URI when the store has no such model, version, alias or run.
    """
    uri = tracking_uri(results_dir)
    c = client(uri)
    try:
        source = _model_source(c, model_uri)
        import mlflow

        local = mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=uri)
    except HarnessError:
        raise
    except Exception as err:  # noqa: BLE001 - MLflow raises many types; the user needs one line
        first = first_line(err)
        raise HarnessError(f"model {model_uri!r} not found in the MLflow store {uri}: {first}") from None
    return local


def _model_source(c, model_uri: str) -> str:
    """Where the files of an MLflow model URI are: a registered version's storage location (its LoggedModel's
    artifacts, or its run's ``checkpoint/`` folder in older records), a LoggedModel's artifacts
    (``models:/m-<id>``), or a train run's checkpoint (``runs:/<id>/checkpoint``: its LoggedModel, tagged on it)."""
    if model_uri.startswith("models:/"):
        rest = model_uri[len("models:/"):]
        if "@" in rest:
            name, alias = rest.split("@", 1)
            return c.get_model_version_download_uri(name, c.get_model_version_by_alias(name, alias).version)
        if "/" not in rest:
            return c.get_logged_model(rest).artifact_location
        name, version = rest.rsplit("/", 1)
        return c.get_model_version_download_uri(name, version)
    if model_uri.startswith("runs:/"):
        run_id, _, path = model_uri[len("runs:/"):].partition("/")
        first, _, below = path.strip("/").partition("/")
        model_id = schema.RunTags.from_tags(c.get_run(run_id).data.tags).logged_model
        if first == schema.CHECKPOINT.path and model_id:
            return c.get_logged_model(model_id).artifact_location + (f"/{below}" if below else "")
    return model_uri


def find_run(run_id: str, results_dir: str | os.PathLike | None = None) -> dict | None:
    """A run's ``run_id``, ``name``, ``experiment_id``, ``status``, ``tags`` and ``metrics`` (latest values), or None
    if absent."""
    try:
        r = client(tracking_uri(results_dir)).get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow raises its own RestException / MlflowException for "not found"
        return None
    return {
        "run_id": r.info.run_id,
        "name": r.info.run_name,
        "experiment_id": r.info.experiment_id,
        "status": r.info.status,
        "tags": dict(r.data.tags),
        "metrics": dict(r.data.metrics),
    }


def read(run_id: str, artifact: Artifact, results_dir: str | os.PathLike | None = None) -> Any:
    """Read one artifact of the schema back, by its format: csv → DataFrame; jsonl → DataFrame with the types JSON
    gave (no dtype or date guessing, so an answer ``"007"`` stays the string it was); json and yaml → plain data;
    text → str. Raises `HarnessError` naming the run and the file when it cannot be read."""
    import mlflow

    uri = tracking_uri(results_dir)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact.path, dst_path=tmp, tracking_uri=uri))
            return _parse(local, artifact.format)
        except Exception as err:  # noqa: BLE001 - MLflow and the parsers raise many types; the user needs one line
            first = first_line(err)
            raise HarnessError(f"run {run_id}: no readable artifact {artifact.path!r} ({first})") from None


def _parse(local: Path, format: str) -> Any:
    import pandas as pd

    if format == "csv":
        return pd.read_csv(local)
    if format == "jsonl":
        # dtype=False keeps values as JSON wrote them; pandas 3 then converts no dates either (and deprecates the
        # convert_dates keyword), pandas 2 needs it said
        dates = {} if int(pd.__version__.split(".")[0]) >= 3 else {"convert_dates": False}
        return pd.read_json(local, orient="records", lines=True, dtype=False, **dates)
    if format == "json":
        return json.loads(local.read_text())
    if format == "yaml":
        import yaml

        return yaml.safe_load(local.read_text())
    if format == "text":
        return local.read_text()
    raise ValueError(f"artifacts of format {format!r} are not read back")


def read_run(run_id: str, results_dir: str | os.PathLike | None = None, *, kind: Kind | None = None,
             finished: bool = False) -> dict:
    """`find_run` for a reader of the record: the run must exist, be of `kind` when given and FINISHED when asked
    (else `HarnessError`), and its schema version is checked (`schema.check_version`); ``schema`` holds its parsed
    `RunTags`."""
    found = find_run(run_id, results_dir)
    if found is None:
        raise HarnessError(f"no MLflow run {run_id} in {tracking_uri(results_dir)}")
    found["schema"] = schema.check_version(found["tags"], run_id)
    if kind is not None and found["schema"].kind != Kind(kind):
        raise HarnessError(f"run {run_id} is not an {Kind(kind).value} run (kind {found['schema'].kind!r})")
    if finished and found["status"] != "FINISHED":
        raise HarnessError(f"{Kind(kind).value + ' ' if kind else ''}run {run_id} is {found['status']}, not "
                           "FINISHED: its record is incomplete")
    return found


def find_runs(experiment: str, kind: Kind, results_dir: str | os.PathLike | None = None, *,
              finished: bool = True, newest_first: bool = True, extra: str = "", **fields: str):
    """Runs of one kind (FINISHED only, unless asked) whose tags equal `fields`, as `search_runs` rows."""
    query = schema.where(kind, finished=finished, **fields) + (f" and {extra}" if extra else "")
    return search_runs(tracking_uri(results_dir), experiment, query,
                       ["attributes.start_time DESC"] if newest_first else None)


def run_params(run_id: str, results_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """A run's params (name → string value); a `HarnessError` naming the run when the store has no such run."""
    try:
        return dict(client(tracking_uri(results_dir)).get_run(run_id).data.params)
    except Exception:  # noqa: BLE001 - MLflow raises its own RestException / MlflowException for "not found"
        raise HarnessError(f"no MLflow run {run_id} in {tracking_uri(results_dir)}") from None


def metric_history(run_id: str, key: str, results_dir: str | os.PathLike | None = None) -> dict[int, float]:
    """Every value a run logged for the metric `key`, by step (the last one logged at a step)."""
    found = client(tracking_uri(results_dir)).get_metric_history(run_id, schema.key(key))
    return {int(m.step): float(m.value) for m in sorted(found, key=lambda m: m.timestamp)}


def model_versions(model_name: str, results_dir: str | os.PathLike | None = None) -> list[dict]:
    """Versions of a registered model, newest first: ``version, source, run_id, tags, aliases`` (empty if none)."""
    c = client(tracking_uri(results_dir))
    try:
        found = c.search_model_versions(f"name='{model_name}'")
    except Exception:  # noqa: BLE001 - a store without the model raises instead of returning nothing
        return []
    rows = [{"version": str(v.version), "source": v.source, "run_id": v.run_id, "tags": dict(v.tags or {}),
             "aliases": list(v.aliases or [])} for v in found]
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


def model_aliases(model_name: str, results_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Aliases of a registered model → version (empty when the model is not registered)."""
    try:
        model = client(tracking_uri(results_dir)).get_registered_model(model_name)
    except Exception:  # noqa: BLE001 - MLflow raises its own RestException for "does not exist"
        return {}
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def experiment_names(results_dir: str | os.PathLike | None = None) -> list[str]:
    """Names of the experiments in the store."""
    return sorted(e.name for e in client(tracking_uri(results_dir)).search_experiments())
