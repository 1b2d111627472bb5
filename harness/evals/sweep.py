"""`sweep`: every (model, suite entry) of a set of checkpoints evaluated as a task, in this process or fanned out on
a Ray cluster, then each model recorded exactly as `harness eval` records it.

    harness sweep --models /ckpt/step-1000 /ckpt/step-2000 --suite tulu3_dev [--limit N] [--ray HOST:PORT]

The recipe, in order:

1. every model and the suite are resolved and checked (`harness.evals.run.prepare`: a missing model, an unknown
   task, a generation that does not fit the context... fail in one line before any Ray or model work); the entries
   already in the eval cache are done;
2. the rest are split into the lm-eval calls `evaluate` would make (one per suite entry, except that small entries
   with the same settings share one call up to ``eval.group_items`` items; ``eval.group_items: 0`` gives every entry
   its own task). Each call is a task: run here in turn, or with an address a Ray task with the resources of the
   ``sweep`` config section (``cpus_per_task``, ``gpus_per_task``, ``max_retries``). A task computes its call with
   `evaluate`'s own code (`harness.evals.run.compute`) and returns the outputs: workers need no shared folder and
   never touch the eval cache or MLflow;
3. this process checks that the worker computed the cache keys it expects (the same suite, tasks and data there)
   and writes each output into the eval cache as `evaluate` would, printing one line per (model, entry);
4. per model, `evaluate` finds every entry cached and logs the one eval run that ``harness eval`` would.

A worker that dies mid-task (killed, out of memory, a lost node) is run again by Ray, up to ``max_retries`` times;
only this process writes the cache and MLflow, so nothing is lost or recorded twice. The outputs received before
an interruption stay in the eval cache, so the same command resumes where it stopped.

On a cluster (``ray start --head`` on one machine, ``ray start --address HOST:PORT`` on the others): the harness and
its dependencies installed on every node, each model at the same path on every node (or a hub id each node can
load; ``models:/`` URIs are downloaded here into the results folder, which the other nodes then need to see), and
the suite's data reachable from every node. The Hugging Face, transformers and harness variables of this process's
environment (``HF_*``, ``TRANSFORMERS_*``, ``HARNESS_*``; tokens, keys and passwords left out) are passed to the
workers. A worker's request cache (a killed call resumes from it) is on its own node, in ``$TMPDIR/harness-sweep``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import console
from harness.config import EvalConfig, SweepConfig
from harness.errors import HarnessError, first_line
from harness.evals import cache
from harness.evals import run as eval_run

if TYPE_CHECKING:
    from harness.evals.result import SuiteResult
    from harness.tracking.store import Run

_log = logging.getLogger(__name__)
_ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")
_FORWARDED = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "HARNESS_", "TOKENIZERS_", "NLTK_")
_SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSWORD", re.IGNORECASE)
_VALID = "valid: HOST:PORT of a running Ray head, as `ray start --head --port PORT` prints it"


def check_address(address: str, timeout: float = 3.0) -> str:
    """Before any work: Ray is installed and something listens at `address` (``HOST:PORT``, a Ray head's GCS).

    Returns:
        The address, as given.

    Raises:
        HarnessError: Ray missing (naming the extra to install), a malformed address, or nothing listening there.
    """
    try:
        import ray  # noqa: F401 - only whether it is there
    except ImportError:
        raise HarnessError("--ray needs Ray, which is not installed here: pip install 'harness[ray]'") from None
    match = _ADDRESS.match(address)
    if not match or not 0 < int(match["port"]) < 65536:
        raise HarnessError(f"--ray {address!r} is not an address ({_VALID})")
    host, port = match["host"].strip("[]"), int(match["port"])
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise HarnessError(f"--ray {address}: no Ray cluster answers there ({err.strerror or type(err).__name__}; "
                           f"{_VALID})") from None
    return address


def sweep(models: list[str], suite: str, *, cfg: EvalConfig, resources: SweepConfig | None = None,
          results_dir: str | os.PathLike, address: str | None = None, experiment: str = "harness",
          parent: Run | None = None, trust_remote_code: bool = False, threads: int = 1) -> list[SuiteResult]:
    """Evaluate every model on `suite` (`compute`), then record one eval run per model as `harness eval` does.

    Args:
        models: folders, hub ids or MLflow model URIs (each at most once).
        suite: a suite name or file.
        cfg: the eval settings, as for `evaluate`.
        resources: CPUs, GPUs and retries per Ray task (default: `SweepConfig()`).
        results_dir: the eval cache and, unless ``MLFLOW_TRACKING_URI`` is set, the MLflow store.
        address: a Ray cluster's ``HOST:PORT``; None runs every task in this process.
        experiment: MLflow experiment (ignored when `parent` is given).
        parent: an MLflow run to nest the eval runs under.
        trust_remote_code: allow code shipped with a checkpoint to run.
        threads: torch CPU threads of each task.

    Returns:
        One `SuiteResult` per model, in order, each with its MLflow run id.
    """
    from harness.evals import evaluate

    compute(models, suite, cfg=cfg, resources=resources, results_dir=results_dir, address=address,
            trust_remote_code=trust_remote_code, threads=threads)
    recording = dataclasses.replace(cfg, cache=True)  # every output is in the eval cache now: read it, do not redo
    return [evaluate(model, suite, cfg=recording, results_dir=results_dir, parent=parent, experiment=experiment,
                     trust_remote_code=trust_remote_code) for model in models]


def compute(models: list[str], suite: str, *, cfg: EvalConfig, resources: SweepConfig | None = None,
            results_dir: str | os.PathLike, address: str | None = None, trust_remote_code: bool = False,
            threads: int = 1) -> list[eval_run.Prepared]:
    """Steps 1 to 3 of the module docstring: every (model, entry) of `suite` in the eval cache; nothing recorded.

    Raises:
        HarnessError: bad input (before any task runs: a missing model, a model given twice, a check that fails, a
            cluster without a node large enough for one task), or tasks that failed (after the others finished and
            were cached: one line naming the first failure).
    """
    resources = resources or SweepConfig()
    repeated = sorted({m for m in models if models.count(m) > 1})
    if repeated:
        raise HarnessError(f"model {repeated[0]!r} is given twice; give each model once")
    prepared = [eval_run.prepare(model, suite, cfg=cfg, results_dir=results_dir,
                                 trust_remote_code=trust_remote_code) for model in models]
    hashes: dict[str, str] = {}
    for p in prepared:
        if hashes.setdefault(p.model_hash, p.model) != p.model:
            raise HarnessError(f"models {hashes[p.model_hash]!r} and {p.model!r} are the same checkpoint (content "
                               f"hash {p.model_hash}); give each once")
    jobs = [(p, call) for p in prepared for call in p.calls(cfg.group_items)]
    for p in prepared:
        for plan in p.plans:
            if plan.output is not None:
                console.info(f"sweep: {p.model} {_name(plan)}: cached")
    if not jobs:
        return prepared
    ref = _suite_ref(suite, prepared[0].spec)
    args = [(p.target, p.model_hash, ref, _units(p, call), cfg, trust_remote_code, threads) for p, call in jobs]
    if address is None:
        failures = _in_process(jobs, args, results_dir)
    else:
        failures = _on_ray(jobs, args, results_dir, address, resources)
    if failures:
        more = f" (and {len(failures) - 1} more, in the log)" if len(failures) > 1 else ""
        raise HarnessError(f"sweep: {len(failures)} of {len(jobs)} tasks failed: {failures[0]}{more}; the others are "
                           "in the eval cache, so running the same command again computes only the failed ones")
    return prepared


def evaluate_call(target: str, model_hash: str, suite: str, units: list[tuple[int, int]], cfg: EvalConfig,
                  trust_remote_code: bool, threads: int, scratch_dir: str | None = None) -> dict[str, Any]:
    """One task of a sweep: one lm-eval call computed by `harness.evals.run.compute` (on a Ray worker, its
    process title is ``ray::evaluate_call``).

    Returns:
        ``{"outputs": [(cache key, output)...], "fingerprint", "host", "node", "seconds"}``: the fingerprint
        (`harness.evals.fingerprint`) of the machine that computed the outputs, which their cache entries carry.
    """
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    scratch = scratch_dir or str(Path(tempfile.gettempdir()) / "harness-sweep")
    outputs = eval_run.compute(target, model_hash, suite, units, cfg=cfg, scratch_dir=scratch,
                               trust_remote_code=trust_remote_code)
    from harness.evals import backends, fingerprint

    here = fingerprint.take(cfg, *backends.model_arguments(cfg, target, trust_remote_code), target)
    node = None
    if "ray" in sys.modules:  # on a Ray worker: which node ran it
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()[:8]
    return {"outputs": outputs, "fingerprint": here, "host": socket.gethostname(), "node": node,
            "seconds": time.perf_counter() - start}


def _in_process(jobs, args, results_dir) -> list[str]:
    """Every task in this process, in turn; a failing task ends the sweep (as `evaluate` ends at a failing call)."""
    for (p, call), task_args in zip(jobs, args):
        _store(p, call, evaluate_call(*task_args, scratch_dir=str(results_dir)), results_dir)
    return []


def _on_ray(jobs, args, results_dir, address: str, resources: SweepConfig) -> list[str]:
    """Every task on the Ray cluster at `address`; each output cached as it arrives. The failures, as lines."""
    import ray

    ours = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address, runtime_env={"env_vars": _forwarded_env()}, log_to_driver=True,
                 logging_level=logging.WARNING)
    except (ConnectionError, ray.exceptions.AuthenticationError) as err:  # a head that listens but refuses us
        raise HarnessError(_refused(address, err)) from None
    finally:  # ray.init replaces the SIGTERM handler by its own sys.exit(15): open runs would end FAILED, not KILLED
        if ours is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, ours)
    try:
        _check_fits(ray, address, resources)
        remote = ray.remote(num_cpus=resources.cpus_per_task, num_gpus=resources.gpus_per_task,
                            max_retries=resources.max_retries)(evaluate_call)
        pending = {remote.remote(*task_args): job for job, task_args in zip(jobs, args)}
        failures: list[str] = []
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    p, call = pending.pop(ref)
                    try:
                        answer = ray.get(ref)
                    except ray.exceptions.RayError as err:
                        failures.append(_failure(p, call, err, resources))
                        console.warn(f"sweep: {p.model} {', '.join(map(_name, call))}: {failures[-1]}")
                        continue
                    _store(p, call, answer, results_dir)
        finally:
            for ref in pending:  # interrupted: nothing more is wanted from the cluster
                ray.cancel(ref, force=True)
        return failures
    finally:
        ray.shutdown()


def _check_fits(ray, address: str, resources: SweepConfig) -> None:
    """Some node of the cluster can run one task (else Ray would wait for one forever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(n.get("CPU", 0) >= resources.cpus_per_task and n.get("GPU", 0) >= resources.gpus_per_task
               for n in nodes):
        largest = max(((n.get("CPU", 0), n.get("GPU", 0)) for n in nodes), default=(0, 0))
        raise HarnessError(f"--ray {address}: no node has sweep.cpus_per_task={resources.cpus_per_task:g} CPUs and "
                           f"sweep.gpus_per_task={resources.gpus_per_task:g} GPUs free to give a task (largest node: "
                           f"{largest[0]:g} CPUs, {largest[1]:g} GPUs); lower them with --set sweep.KEY=VALUE")


def _failure(p: eval_run.Prepared, call, err: BaseException, resources: SweepConfig) -> str:
    """A failed task as one line (the whole error to the log)."""
    import ray

    _log.error("sweep task %s [%s] failed: %s", p.model, ", ".join(map(_name, call)), err)
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = getattr(err, "cause", None) or err
        detail = first_line(cause) if isinstance(cause, HarnessError) else \
            f"{type(cause).__name__}: {first_line(cause, '')}".rstrip(": ")
    else:  # the worker or its node died more often than max_retries allowed
        detail = f"{type(err).__name__} after {resources.max_retries} retries (sweep.max_retries)"
    return f"{p.model} [{', '.join(map(_name, call))}]: {detail}"


def _store(p: eval_run.Prepared, call, answer: dict, results_dir) -> None:
    """Write a task's outputs into the eval cache, as `evaluate` writes them; one line per (model, entry)."""
    outputs = answer["outputs"]
    for plan, (key, output) in zip(call, outputs, strict=True):
        if key != plan.key:
            raise HarnessError(f"sweep: the worker on {answer['host']} evaluated {plan.entry.task} of {p.model} "
                               "with another cache key than this machine's: its suite, task files, data or "
                               "packages differ; install the same harness and data on every node")
        plan.output = cache.save(results_dir, plan.key, plan.material, output, fingerprint=answer.get("fingerprint"))
        plan.fingerprint = answer.get("fingerprint")
    where = f" on {answer['host']} (node {answer['node']})" if answer.get("node") else ""
    seconds = answer["seconds"]
    for plan in call:
        console.info(f"sweep: {p.model} {_name(plan)}: done ({seconds:.1f}s{where})")


def _name(plan) -> str:
    return plan.entry.task + (f" (repeat {plan.repeat})" if plan.entry.repeats > 1 else "")


def _units(p: eval_run.Prepared, call) -> list[tuple[int, int]]:
    """The call's plans as (index into the suite's entries, repeat): what a worker rebuilds them from."""
    return [(next(i for i, e in enumerate(p.spec.entries) if e is plan.entry), plan.repeat) for plan in call]


def _suite_ref(suite: str, spec) -> str:
    """The suite as a worker loads it: a name stays a name (the packaged suites sit wherever the harness is
    installed there), a file is given by its absolute path."""
    return str(spec.path) if suite.endswith((".yaml", ".yml")) or os.sep in suite else suite


def _refused(address: str, err: BaseException) -> str:
    """The line for a Ray head that answers but does not let this client in (Ray's own error is a traceback)."""
    chain, cause = [], err
    while cause is not None:
        chain.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    if any("Authentication token" in text or "InvalidAuthToken" in text for text in chain):
        return (f"--ray {address}: the Ray cluster there refused this client's authentication token; a cluster with "
                "token authentication needs RAY_AUTH_MODE=token here and its token in RAY_AUTH_TOKEN_PATH (a file), "
                "RAY_AUTH_TOKEN or ~/.ray/auth_token")
    return f"--ray {address}: could not connect to the Ray cluster there ({first_line(str(err))}; {_VALID})"


def _forwarded_env() -> dict[str, str]:
    """The variables the workers need to evaluate as this process would (offline flags, caches, suites, data)."""
    return {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED) and not _SECRET.search(k)}

