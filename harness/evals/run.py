"""`evaluate`: score one checkpoint on one suite through lm-eval, reuse the cache, and record the run in MLflow.

The recipe, in order:

1. parse the suite and check every task name against lm-eval's task index;
2. resolve the checkpoint (folder, hub id or MLflow URI) and hash its bytes;
3. per suite entry: build lm-eval's task objects, derive the cache key, and either read the cached output or run
   ``lm_eval.simple_evaluate`` on that entry alone (the model is loaded once, on the first miss, and shared), then
   cache the output at once, so an interrupted suite resumes at the first unfinished task;
4. turn the merged output into tables (`harness.evals.result`) and log one MLflow run: metrics
   ``<skill>/<task>/<metric>`` (+ ``_stderr``), ``<skill>/score`` and ``overall/score``; params for everything
   that changes a score; lm-eval's result JSON, the score tables and per-task sample JSONL as artifacts.

lm-eval computes every metric; nothing here re-scores an item.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from harness.config import EvalConfig
from harness.errors import HarnessError
from harness.evals import backends, cache
from harness.evals import suite as suites
from harness.evals.result import SuiteResult, sample_tables, score_table, skill_table

if TYPE_CHECKING:
    from harness.tracking.store import Run

_MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
# The parts of lm-eval's output that a result is made of (the rest is environment, logged as params).
_KEEP = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
         "samples")


class _QuietCustomDataset(logging.Filter):
    """lm-eval warns about CLI metadata for every task that loads its data with ``custom_dataset``: not useful here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


_QUIET = _QuietCustomDataset()  # one instance: addFilter ignores a filter it already has


def resolve_model(model: str, cfg: EvalConfig, results_dir: str | os.PathLike) -> tuple[str, str]:
    """``(what lm-eval loads, content hash)`` for a model spec.

    A served model (``local-chat-completions``) is identified by its name and endpoint; anything else is resolved
    to a local folder (MLflow URIs are downloaded from the store in `results_dir`) or a hub id.
    """
    from harness.models import load

    if cfg.backend in backends.CHAT_ONLY:
        ident = json.dumps([model, (cfg.backend_args or {}).get("base_url")])
        return model, hashlib.sha256(ident.encode()).hexdigest()[:16]
    if model.startswith(_MLFLOW_SCHEMES):
        from harness.tracking import store

        path = load.resolve(store.download_model(model, results_dir))
    else:
        path = load.resolve(model)
    return path, load.content_hash(path)


@dataclass
class _Plan:
    """One suite entry on its way through the cache: its key, and its output once cached or run."""

    entry: suites.Entry
    material: dict
    key: str
    output: dict | None
    objs: list | None = None  # lm-eval's task objects, built only when the entry must run


def _plan(entry: suites.Entry, tm, cfg: EvalConfig, results_dir, model_hash: str, lm_name: str,
          lm_args: dict) -> _Plan:
    import lm_eval

    material = {
        "model": model_hash,
        "task": entry.task,
        "tasks": cache.task_material(tm, entry.task),
        "settings": entry.settings() | {"limit": entry.limit if entry.limit is not None else cfg.limit},
        "backend": [lm_name, {k: v for k, v in lm_args.items() if k not in {"pretrained", "model"}}],
        "batch_size": cfg.batch_size,
        "bootstrap_iters": cfg.bootstrap_iters,
        "lm_eval": lm_eval.__version__,
    }
    key = cache.key(material)
    return _Plan(entry, material, key, cache.load(results_dir, key) if cfg.cache else None)


def _build(tm, entry: suites.Entry) -> tuple[list, dict]:
    """lm-eval's objects for one suite entry: ``(what to pass to simple_evaluate, {leaf name: Task})``."""
    try:
        loaded = tm.load([entry.task])
    except HarnessError:
        raise
    except Exception as err:  # noqa: BLE001 - a broken task YAML or data file raises anything; name the task
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HarnessError(f"task {entry.task!r} could not be loaded: {first}") from None
    tasks = loaded["tasks"]
    groups = loaded.get("groups") or {}
    return ([groups[entry.task]] if entry.task in groups else list(tasks.values())), tasks


@contextmanager
def _environment_once() -> Iterator[None]:
    """Collect lm-eval's environment report and git hash once per suite instead of once per task.

    ``simple_evaluate`` ends with ``add_env_info``, which runs ``pip list`` and other probes (about 1.5 s), and
    ``get_git_commit_hash`` (a git subprocess). A suite calls ``simple_evaluate`` once per task so that finished
    tasks can be cached, and would pay them every time; the answers do not change within a suite, so the first
    ones are reused. A future lm-eval without these module attributes is simply left alone.
    """
    from lm_eval import evaluator

    originals = {name: getattr(evaluator, name) for name in ("add_env_info", "get_git_commit_hash")
                 if hasattr(evaluator, name)}
    report: dict[str, Any] = {}
    git: list = []

    def add_env_info(results: dict) -> None:
        if not report:
            originals["add_env_info"](report)
        results.update(report)

    def get_git_commit_hash():
        if not git:
            git.append(originals["get_git_commit_hash"]())
        return git[0]

    replacements = {"add_env_info": add_env_info, "get_git_commit_hash": get_git_commit_hash}
    for name in originals:
        setattr(evaluator, name, replacements[name])
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(evaluator, name, original)


def _run_entry(lm, objs: list, entry: suites.Entry, cfg: EvalConfig, tm) -> dict:
    import lm_eval

    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=objs,
        num_fewshot=entry.num_fewshot,
        limit=entry.limit if entry.limit is not None else cfg.limit,
        apply_chat_template=entry.apply_chat_template,
        fewshot_as_multiturn=entry.fewshot_as_multiturn,
        bootstrap_iters=cfg.bootstrap_iters,
        confirm_run_unsafe_code=entry.confirm_run_unsafe_code,
        task_manager=tm,
        log_samples=True,
    )
    return {k: out[k] for k in _KEEP if k in out}


def _merge(total: dict, part: dict) -> None:
    for key, value in part.items():
        total.setdefault(key, {}).update(value)


def evaluate(
    model: str,
    suite: str,
    *,
    cfg: EvalConfig,
    results_dir: str | os.PathLike,
    parent: Run | None = None,
    label: str | None = None,
    experiment: str = "harness",
    trust_remote_code: bool = False,
) -> SuiteResult:
    """Score `model` on `suite` (from the cache where possible) and log one MLflow run.

    Args:
        model: a Hugging Face folder, hub id or MLflow model URI (``local-chat-completions``: the served name).
        suite: a suite name (``tiny``, ``tulu3_dev``...) or a suite YAML file.
        cfg: eval settings (backend, batch size, limit, cache...).
        results_dir: results folder: the eval cache and, unless ``MLFLOW_TRACKING_URI`` is set, the MLflow store.
        parent: the pipeline's MLflow run to nest this run under.
        label: the stage name (base, sft, dpo, rlvr), tagged ``harness.stage``.
        experiment: MLflow experiment (ignored when `parent` is given).
        trust_remote_code: allow code shipped with the checkpoint to run.

    Returns:
        The `SuiteResult`, with the MLflow run id.
    """
    logging.getLogger("lm_eval.api.task").addFilter(_QUIET)
    spec = suites.load(suite)
    suites.check_tasks(spec)
    target, model_hash = resolve_model(model, cfg, results_dir)
    lm_name, lm_args = backends.model_arguments(cfg, target, trust_remote_code)
    tm = suites.task_manager(spec)
    plans = [_plan(entry, tm, cfg, results_dir, model_hash, lm_name, lm_args) for entry in spec.entries]
    for plan in plans:  # every task to run is built and checked before any model work: bad input fails fast
        if plan.output is None:
            plan.objs, leaves = _build(tm, plan.entry)
            output_types = {t.OUTPUT_TYPE for t in leaves.values()}
            backends.check_tasks(cfg, plan.entry.task, output_types, plan.entry.apply_chat_template)

    output: dict[str, Any] = {}  # lm-eval's output, merged over the suite's tasks
    owners: dict[str, suites.Entry] = {}  # every task or group in the output → the suite entry that ran it
    cached: list[str] = []
    lm = None
    with _environment_once():
        for plan in plans:
            if plan.output is None:
                lm = lm or backends.create(cfg, target, trust_remote_code)
                plan.output = cache.save(results_dir, plan.key, plan.material,
                                         _run_entry(lm, plan.objs, plan.entry, cfg, tm))
            else:
                cached.append(plan.entry.task)
            owners.update({task: plan.entry for task in plan.output.get("results", {})})
            _merge(output, plan.output)

    samples = sample_tables(output)
    scores = score_table(output, owners, samples)
    skills = skill_table(scores, list(spec.entries), output, samples)
    lm_output = {k: v for k, v in output.items() if k != "samples"}
    result = SuiteResult(model=model, suite=spec.name, label=label, run_id=None, scores=scores, samples=samples,
                         skills=skills, lm_eval=lm_output, cached=cached)
    result.run_id = _record(result, spec, cfg, model_hash, lm_name, lm_args, parent, results_dir, experiment)
    return result


def _params(result: SuiteResult, spec: suites.Suite, cfg: EvalConfig, model_hash: str, lm_name: str,
            lm_args: dict) -> dict[str, Any]:
    import lm_eval
    import transformers

    params: dict[str, Any] = {
        "model": result.model,
        "model_hash": model_hash,
        "suite": spec.name,
        "suite_file": str(spec.path),
        "backend": lm_name,
        "backend_args": json.dumps({k: v for k, v in lm_args.items() if k not in {"pretrained", "model"}}),
        "batch_size": cfg.batch_size,
        "device": backends.extra_arguments(cfg)["device"] if lm_name == "hf" else cfg.device,
        "limit": cfg.limit,
        "bootstrap_iters": cfg.bootstrap_iters,
        "lm_eval_version": lm_eval.__version__,
        "transformers_version": transformers.__version__,
    }
    n_shot = result.lm_eval.get("n-shot", {})
    for entry in spec.entries:
        prefix = f"task.{entry.task}"
        params[f"{prefix}.skill"] = entry.skill
        params[f"{prefix}.apply_chat_template"] = entry.apply_chat_template
        params[f"{prefix}.fewshot_as_multiturn"] = entry.fewshot_as_multiturn
        params[f"{prefix}.limit"] = entry.limit if entry.limit is not None else cfg.limit
        params[f"{prefix}.num_fewshot"] = n_shot.get(entry.task, entry.num_fewshot)
    for task, version in result.lm_eval.get("versions", {}).items():
        params[f"task.{task}.version"] = version
    return params


def _metrics(result: SuiteResult) -> dict[str, float]:
    from harness.evals.result import stderr_key

    metrics: dict[str, float] = {}
    for row in result.scores.itertuples():
        metrics[f"{row.skill}/{row.task}/{row.metric}"] = row.value
        if math.isfinite(row.stderr):
            metrics[f"{row.skill}/{row.task}/{stderr_key(row.metric)}"] = row.stderr
    for row in result.skills.itertuples():
        metrics[f"{row.skill}/score"] = row.value
        metrics[f"{row.skill}/score_stderr"] = row.stderr
    return metrics


def _record(result: SuiteResult, spec: suites.Suite, cfg: EvalConfig, model_hash: str, lm_name: str, lm_args: dict,
            parent: Run | None, results_dir: str | os.PathLike, experiment: str) -> str:
    from harness import provenance
    from harness.tracking import store

    tags = {
        **provenance.tags(),  # git commit and dirty flag, package versions, device
        "harness.kind": "eval",
        "harness.model": result.model,
        "harness.model_hash": model_hash,
        "harness.suite": spec.name,
        "harness.cached_tasks": ",".join(result.cached),
    }
    if result.label:
        tags["harness.stage"] = result.label
    name = f"eval-{result.label or Path(result.model.rstrip('/')).name}-{spec.name}"
    with store.run(name, experiment=experiment, results_dir=results_dir, parent=parent, tags=tags) as run:
        run.log_params(_params(result, spec, cfg, model_hash, lm_name, lm_args))
        run.log_metrics(_metrics(result))
        run.log_dict(result.lm_eval, "lm_eval_results.json")
        run.log_text(spec.path.read_text(), f"suite/{spec.path.name}")
        run.log_table(result.scores, "scores.csv")
        run.log_table(result.skills, "skills.csv")
        for task, table in result.samples.items():
            run.log_table(table, f"samples/{task}.jsonl")
        return run.run_id
