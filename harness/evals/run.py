"""`evaluate`: score one checkpoint on one suite through lm-eval, reuse the cache, and record the run in MLflow.

The recipe, in order:

1. parse the suite and check every task name against lm-eval's task index;
2. resolve the checkpoint (folder, hub id or MLflow URI) and hash its bytes;
3. per suite entry, find what its tasks read (`harness.evals.local_data`: a data_dir mirror, the entry's own files,
   a task's hooks or the hub) and derive the cache key from lm-eval's index and those data digests (no task is
   built), then read the cached output; an entry with ``repeats: k`` is k runs, each cached on its own;
4. build the entries that missed, their documents served from the local files, and check them (`harness.evals.checks`:
   bad data, a backend that cannot run a task, generation longer than the model's context, unconfirmed unsafe
   code, a metric or NLTK data that is not here fail here, before any model work);
5. run them through ``lm_eval.simple_evaluate``, the model loaded once and shared. Entries with the same settings
   share one call while their items add up to at most ``eval.group_items`` (small tasks cost mostly per-call
   overhead: partial batches); larger ones run one call each. Each call's output is split per entry and cached at
   once, so an interrupted suite resumes at the first unfinished call (an lm-eval failure is one line naming
   the call's tasks). Inside a call, lm-eval's request cache (`harness.evals.request_cache`) keeps each batch of
   answers as it is done, so a killed call resumes mid-call with the same answers; it is deleted once every entry
   is cached;
6. turn the merged output into tables (`harness.evals.result`; repeated tasks pooled by `harness.evals.repeats`)
   and log one MLflow run (`harness.evals.record`), with the data each task read as its dataset inputs.

A reasoning model (`harness.reasoning`: delimiters from ``eval.reasoning`` or the checkpoint's chat template) has
its generations split by `request_cache.thinking`: lm-eval grades the answer part, the per-sample rows keep the
reasoning, and its token counts are logged per task. `evaluate(..., budget=N)` evaluates the suite's generation
tasks with the reasoning forced closed at N tokens (one run per budget: `harness.evals.budgets`).

lm-eval computes every metric; nothing here re-scores an item.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from harness import console
from harness import reasoning
from harness.config import EvalConfig
from harness.errors import HarnessError, first_line
from harness.evals import backends, cache, checks, fingerprint, local_data, repeats, request_cache
from harness.evals import suite as suites
from harness.evals.record import record
from harness.evals.result import SuiteResult, sample_tables, score_table, skill_table
from harness.tracking import schema

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
    cached: bool = False
    sources: dict[str, local_data.Source] | None = None  # what each leaf task reads
    repeat: int = 0  # which of the entry's `repeats` runs this is
    objs: list | None = None  # lm-eval's task (or group) objects, built only when the entry must run
    names: set[str] | None = None  # every task and group the entry's output holds
    items: int = 0  # items the entry evaluates (after the limit)
    fingerprint: dict | None = None  # where its output was computed (`harness.evals.fingerprint`)


def _generates(tasks: dict) -> bool:
    """Whether a task's index material (`cache.task_material`) holds a generation task."""
    return any(isinstance(v, dict) and (v.get("config") or {}).get("output_type") == "generate_until"
               for v in tasks.values())


def _plans(entry: suites.Entry, tm, cfg: EvalConfig, results_dir, model_hash: str, lm_name: str, lm_args: dict,
           data_root, think: dict | None = None) -> list[_Plan]:
    """The entry's runs (one, or `repeats`), each with its cache key and cached output."""
    import lm_eval

    found = local_data.sources(tm, entry.task, root=data_root, entry_data=entry.data)
    settings = {k: v for k, v in entry.settings().items() if k not in ("repeats", "pass_at")}  # not lm-eval's
    settings["limit"] = entry.limit if entry.limit is not None else cfg.limit
    tasks = cache.task_material(tm, entry.task)
    plans = []
    for r in range(entry.repeats):
        material = {
            "model": model_hash,
            "task": entry.task,
            "tasks": tasks,
            "data": {task: source.digest for task, source in found.items()},
            "settings": settings | ({"repeat": r} if entry.repeats > 1 else {}),
            "backend": [lm_name, {k: v for k, v in lm_args.items() if k not in {"pretrained", "model"}}],
            "batch_size": cfg.batch_size,
            "bootstrap_iters": cfg.bootstrap_iters,
            "lm_eval": lm_eval.__version__,
        }
        if think and _generates(tasks):  # only what generates changes with the reasoning split and budget
            material["reasoning"] = think
        key = cache.key(material)
        output, computed = (cache.entry(results_dir, key) if cfg.cache else None) or (None, None)
        plans.append(_Plan(entry, material, key, output, cached=output is not None, sources=found, repeat=r,
                           fingerprint=computed))
    return plans


def _build(tm, plan: _Plan, cfg: EvalConfig, lm_args: dict) -> None:
    """Build lm-eval's objects for a plan that must run, and check that the backend and the model can run them
    (`harness.evals.checks`)."""
    entry = plan.entry
    checks.before_build(tm, entry)
    try:
        with local_data.redirect(plan.sources or {}):
            loaded = tm.load([entry.task])
    except HarnessError:
        raise
    except Exception as err:  # noqa: BLE001 - a broken task YAML or data file raises anything; name the task
        first = first_line(err)
        raise HarnessError(f"task {entry.task!r} could not be loaded: {first}") from None
    tasks, groups = loaded["tasks"], loaded.get("groups") or {}
    backends.check_tasks(cfg, entry.task, {t.OUTPUT_TYPE for t in tasks.values()}, entry.apply_chat_template)
    checks.after_build(entry, tasks, cfg, lm_args)
    limit = plan.material["settings"]["limit"]
    plan.objs = [groups[entry.task]] if entry.task in groups else list(tasks.values())
    plan.names = set(tasks) | set(groups)
    plan.items = sum(min(len(t.eval_docs), limit) if limit else len(t.eval_docs) for t in tasks.values())


def _resolve(model: str, suite: str, cfg: EvalConfig, results_dir, trust_remote_code: bool
             ) -> tuple[suites.Suite, str, str, str, dict]:
    """What `evaluate` and `prepare` check first: the engine installed, the suite and its task names, the model
    resolved and hashed, lm-eval's model arguments. Returns (suite, target, model hash, lm name, lm args)."""
    logging.getLogger("lm_eval.api.task").addFilter(_QUIET)
    checks.engine_installed(cfg.backend, "eval.backend")
    spec = suites.load(suite)
    suites.check_tasks(spec)
    target, model_hash = resolve_model(model, cfg, results_dir)
    lm_name, lm_args = backends.model_arguments(cfg, target, trust_remote_code)
    return spec, target, model_hash, lm_name, lm_args


def _prepare(spec: suites.Suite, cfg: EvalConfig, results_dir, model_hash: str, lm_name: str, lm_args: dict,
             think: dict | None = None) -> tuple[Any, list[_Plan]]:
    """lm-eval's task manager and every entry's plans: looked up in the cache, the rest built and checked."""
    tm = suites.task_manager(spec)
    root = local_data.data_dir(spec.data_dir)
    plans = [plan for entry in spec.entries
             for plan in _plans(entry, tm, cfg, results_dir, model_hash, lm_name, lm_args, root, think)]
    for plan in plans:
        if plan.output is None:
            _build(tm, plan, cfg, lm_args)
    return tm, plans


def _calls(plans: list[_Plan], max_items: int) -> list[list[_Plan]]:
    """The plans to run, grouped into lm-eval calls: same settings, items adding up to at most `max_items`."""
    calls: list[list[_Plan]] = []
    open_calls: dict[str, list[_Plan]] = {}
    for plan in plans:
        if plan.output is not None:
            continue
        settings = json.dumps(plan.material["settings"], sort_keys=True)
        call = open_calls.get(settings)
        if call is None or sum(p.items for p in call) + plan.items > max_items:
            call = open_calls[settings] = []
            calls.append(call)
        call.append(plan)
    return calls


@contextmanager
def _environment_once() -> Iterator[None]:
    """Collect lm-eval's environment report and git hash once per suite instead of once per lm-eval call.

    ``simple_evaluate`` ends with ``add_env_info``, which runs ``pip list`` and other probes (about 1.5 s), and
    ``get_git_commit_hash`` (a git subprocess). A suite may call ``simple_evaluate`` several times so that finished
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


def _run_call(lm, call: list[_Plan], cfg: EvalConfig, tm) -> list[dict]:
    """Run one lm-eval call for `call` (plans with the same settings) and split its output per plan.

    Raises:
        HarnessError: lm-eval failed; one line naming the call's tasks, the traceback in the log (the calls
            that finished before are cached already).
    """
    import lm_eval

    entry = call[0].entry
    try:
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=[obj for plan in call for obj in plan.objs],
            num_fewshot=entry.num_fewshot,
            limit=call[0].material["settings"]["limit"],
            apply_chat_template=entry.apply_chat_template,
            fewshot_as_multiturn=entry.fewshot_as_multiturn,
            gen_kwargs=dict(entry.gen_kwargs) if entry.gen_kwargs else None,
            bootstrap_iters=cfg.bootstrap_iters,
            confirm_run_unsafe_code=entry.confirm_run_unsafe_code,
            task_manager=tm,
            log_samples=True,
            **repeats.seeds(call[0].repeat),
        )
    except HarnessError:
        raise
    except Exception as err:  # noqa: BLE001 - lm-eval and the tasks' hooks raise anything
        from harness import capture

        names = ", ".join(dict.fromkeys(plan.entry.task for plan in call))
        logging.getLogger(__name__).exception("lm-eval failed while running %s", names)
        first = first_line(err, "")
        log = capture.log_path()
        raise HarnessError(f"lm-eval failed while running {names}: {type(err).__name__}"
                           + (f": {first}" if first else "") + (f" (traceback in {log})" if log else "")) from None
    kept = {k: out[k] for k in _KEEP if k in out}
    return [{k: {name: v for name, v in section.items() if name in plan.names} for k, section in kept.items()}
            for plan in call]


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
    tags: dict[str, str] | None = None,
    threads: int | None = None,
    budget: int | None = None,
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
        tags: more tags of the run, from `harness.tracking.schema.tags` (e.g. the training step it scored).
        threads: torch threads for the model, if one is built (None: as they are).
        budget: thinking budget in tokens: only the suite's generation tasks run, their reasoning forced closed
            at `budget` tokens (the run is tagged ``budget``); None: as the model generates.

    Returns:
        The `SuiteResult`, with the MLflow run id.
    """
    spec, target, model_hash, lm_name, lm_args = _resolve(model, suite, cfg, results_dir, trust_remote_code)
    delimiters, think = _reasoning(spec, cfg, target, budget)
    if budget is not None:
        spec = _generation_only(spec, budget)
        tags = {**(tags or {}), **schema.tags(budget=budget)}
    with console.progress(f"eval {label or model}" + (f" (budget {budget})" if budget else ""),
                          unit="requests") as bar:
        tm, plans = _prepare(spec, cfg, results_dir, model_hash, lm_name, lm_args, think)

        lm = None
        answers = request_cache.RequestCache(results_dir, model_hash=model_hash, lm_name=lm_name, lm_args=lm_args,
                                             cfg=cfg, enabled=cfg.cache)
        with ExitStack() as once, answers:
            for call in _calls(plans, cfg.group_items):
                if lm is None:  # not before: a suite read whole from the cache loads neither lm-eval's evaluator
                    once.enter_context(_environment_once())  # nor torch
                    lm = backends.create(cfg, target, trust_remote_code, threads)
                    here = fingerprint.take(cfg, lm_name, lm_args, target)
                with answers.answering(lm, bar), request_cache.thinking(lm, delimiters, budget) as hook:
                    parts = _run_call(lm, call, cfg, tm)
                for plan, part in zip(call, parts):
                    hook.annotate(part)
                    plan.output = cache.save(results_dir, plan.key, plan.material, part, fingerprint=here)
                    plan.fingerprint = here
        if lm is not None:
            backends.release(lm)
        answers.discard()  # every plan is in the eval cache now: the answers it was built from are not needed
        if any(p.cached for p in plans):
            bar.set(cached=f"{sum(p.cached for p in plans)}/{len(plans)} tasks")
        if answers.reused:
            bar.set(resumed=f"{answers.reused} requests")
    return _result(model, spec, plans, label, cfg, model_hash, lm_name, lm_args, parent, results_dir, experiment,
                   tags, think)


def _reasoning(spec: suites.Suite, cfg: EvalConfig, target: str, budget: int | None
               ) -> tuple[reasoning.Delimiters | None, dict | None]:
    """The checkpoint's reasoning delimiters (`harness.reasoning.resolve`) and their cache-key material."""
    delimiters = reasoning.resolve(cfg.reasoning, target if cfg.backend not in backends.CHAT_ONLY else None,
                                   where="eval.reasoning")
    if budget is not None and cfg.backend in backends.CHAT_ONLY:
        raise HarnessError(f"config key eval.budgets: budget forcing continues the model's own raw text, which the "
                           f"{cfg.backend} backend (chats) cannot send (valid: eval.backend hf or vllm)")
    if budget is not None and delimiters is None:
        raise HarnessError(f"config key eval.budgets: budget {budget} needs reasoning delimiters, and neither "
                           f"eval.reasoning nor the chat template of {target} gives any (set eval.reasoning: "
                           "{start: '<think>', end: '</think>'})")
    if delimiters is None:
        return None, None
    return delimiters, {**delimiters.to_dict(), **({"budget": budget} if budget is not None else {})}


def _generation_only(spec: suites.Suite, budget: int) -> suites.Suite:
    """The suite's entries that generate (budgets change nothing else), or a one-line error when none does."""
    from dataclasses import replace

    tm = suites.task_manager(spec)
    entries = tuple(e for e in spec.entries if _generates(cache.task_material(tm, e.task)))
    if not entries:
        raise HarnessError(f"config key eval.budgets: suite {spec.name!r} has no generation task, so budget "
                           f"{budget} changes nothing (valid: a suite with generate_until tasks, or null)")
    return replace(spec, entries=entries)


def _result(model: str, spec: suites.Suite, plans: list[_Plan], label, cfg: EvalConfig, model_hash: str,
            lm_name: str, lm_args: dict, parent, results_dir, experiment: str,
            tags: dict[str, str] | None = None, think: dict | None = None) -> SuiteResult:
    """Merge the plans' lm-eval outputs into one `SuiteResult` (repeated tasks pooled) and record it."""
    output: dict[str, Any] = {}  # lm-eval's output, merged over the suite's tasks (run 0 of repeated ones)
    owners: dict[str, suites.Entry] = {}  # every task or group in the output → the suite entry that ran it
    runs: dict[str, list[dict]] = {}  # a repeated task → each run's lm-eval output for it
    for plan in plans:
        if plan.entry.repeats > 1:
            for task in plan.output.get("samples", {}):
                runs.setdefault(task, []).append({**plan.output, "samples": {task: plan.output["samples"][task]}})
        if plan.repeat:
            continue
        owners.update({task: plan.entry for task in plan.output.get("results", {})})
        for section, values in plan.output.items():
            output.setdefault(section, {}).update(values)
    samples = sample_tables(output)
    reasoning.add_columns(output.get("samples", {}), samples)
    for task, outputs in runs.items():
        samples[task] = repeats.combine([sample_tables(o)[task] for o in outputs])
    scores = score_table(output, owners, samples)
    if runs:
        scores = repeats.pool(scores, samples, {task: owners[task] for task in runs})
        output["repeats"] = {task: [o["results"].get(task) for o in outputs] for task, outputs in runs.items()}
    skills = skill_table(scores, list(spec.entries), output, samples)
    lm_output = {k: v for k, v in output.items() if k != "samples"}
    sources = {task: source for plan in plans for task, source in (plan.sources or {}).items()}
    result = SuiteResult(model=model, suite=spec.name, label=label, run_id=None, scores=scores, samples=samples,
                         skills=skills, lm_eval=lm_output, cached=list(dict.fromkeys(p.entry.task for p in plans
                                                                                      if p.cached)),
                         sources={task: s.describe() for task, s in sources.items()},
                         digests={task: s.digest for task, s in sources.items()})
    data = [source.task_data() for source in sources.values()]
    result.run_id = record(result, spec, cfg, model_hash, lm_name, lm_args, parent, results_dir, experiment, data,
                           tags=tags, fingerprint=fingerprint.combine([p.fingerprint for p in plans]),
                           metrics=thinking_metrics(result, cfg.usd_per_mtok),
                           params={f"reasoning.{k}": v for k, v in (think or {}).items()} or None)
    return result


def thinking_metrics(result: SuiteResult, usd_per_mtok: float = 0.0) -> dict[str, float]:
    """The eval run's thinking accounting (`harness.reasoning.sample_metrics`): per generation task with reasoning
    rows, and pooled over them (``reasoning/<stat>``), with the cost per item; empty without reasoning."""
    import pandas as pd

    skills = dict(zip(result.scores.task, result.scores.skill))
    metrics: dict[str, float] = {}
    tables = [t for t in result.samples.values() if "reasoning_tokens" in t.columns]
    for task, table in result.samples.items():
        stats = reasoning.sample_metrics(table)
        for stat, value in (stats or {}).items():
            metrics[schema.reasoning_metric(stat, skills.get(task, "other"), task)] = value
    if tables:
        pooled = reasoning.sample_metrics(pd.concat(tables, ignore_index=True))
        metrics.update({schema.reasoning_metric(stat): value for stat, value in pooled.items()})
        metrics[schema.reasoning_metric("usd_per_item")] = reasoning.cost_per_item(pooled["tokens_mean"], usd_per_mtok)
    return {k: v for k, v in metrics.items() if v == v}  # NaN (one item: no stderr) is not logged


# The seam for `harness.evals.sweep`: the part of `evaluate` before the model work (`prepare`, on the machine that
# records), and one of its lm-eval calls computed anywhere (`compute`, on a worker), without cache writes or MLflow.

@dataclass
class Prepared:
    """One model's suite, up to the model work: what `evaluate` knows before lm-eval runs.

    Attributes:
        model: the model as given; target: what lm-eval loads (a local folder, a hub id or a served name);
        model_hash: its content hash; spec: the suite; plans: every (entry, repeat) with its cache key, and its
        output when cached (the rest are built and checked).
    """

    model: str
    target: str
    model_hash: str
    spec: suites.Suite
    plans: list[_Plan]

    def calls(self, max_items: int) -> list[list[_Plan]]:
        """The plans still to run, grouped into lm-eval calls as `evaluate` groups them (``eval.group_items``)."""
        return _calls(self.plans, max_items)


def prepare(model: str, suite: str, *, cfg: EvalConfig, results_dir: str | os.PathLike,
            trust_remote_code: bool = False) -> Prepared:
    """Everything `evaluate` does before loading the model: the suite parsed and its task names checked, the model
    resolved and hashed, every entry looked up in the eval cache, and the entries that missed built and checked
    (`harness.evals.checks`), so that bad input fails here.

    Raises:
        HarnessError: a missing model, an unknown suite or task, a check that fails (one line naming it).
    """
    spec, target, model_hash, lm_name, lm_args = _resolve(model, suite, cfg, results_dir, trust_remote_code)
    _, plans = _prepare(spec, cfg, results_dir, model_hash, lm_name, lm_args, _reasoning(spec, cfg, target, None)[1])
    return Prepared(model, target, model_hash, spec, plans)


def compute(target: str, model_hash: str, suite: str, units: list[tuple[int, int]], *, cfg: EvalConfig,
            scratch_dir: str | os.PathLike, trust_remote_code: bool = False) -> list[tuple[str, dict]]:
    """Run one lm-eval call of `evaluate` for the (entry index, repeat) pairs `units` of `suite`, and return each
    one's output as the eval cache would hold it; nothing is cached or recorded (the caller does both).

    The plans are rebuilt here from the suite and the checkpoint, so that this can run on another machine: the
    checkpoint must hash to `model_hash` there, and the caller compares the returned cache keys with its own (a
    suite, task or data file that differs on this machine gives another key).

    Args:
        target: what lm-eval loads (`Prepared.target`).
        model_hash: the checkpoint's content hash on the calling machine.
        suite: a suite name or file, as `suite.load` reads it.
        units: (index into the suite's entries, repeat) of each plan of the call, as `Prepared.calls` grouped them.
        cfg: the eval settings.
        scratch_dir: the folder of the call's request cache (`harness.evals.request_cache`): a killed call resumes
            from it when it runs again on this machine; its db is deleted once the call has ended.
        trust_remote_code: allow code shipped with the checkpoint to run.

    Returns:
        ``(cache key, output)`` per unit, in order.

    Raises:
        HarnessError: the checkpoint is missing or differs here, a check fails, or lm-eval fails (one line).
    """
    logging.getLogger("lm_eval.api.task").addFilter(_QUIET)
    checks.engine_installed(cfg.backend, "eval.backend")
    spec = suites.load(suite)
    found_hash = resolve_model(target, cfg, scratch_dir)[1]
    if found_hash != model_hash:
        raise HarnessError(f"model {target!r} has other contents on this machine (content hash {found_hash}, "
                           f"{model_hash} where the sweep started): give every machine the same checkpoint")
    lm_name, lm_args = backends.model_arguments(cfg, target, trust_remote_code)
    tm = suites.task_manager(spec)
    root = local_data.data_dir(spec.data_dir)
    delimiters, think = _reasoning(spec, cfg, target, None)
    call = []
    for index, repeat in units:
        plan = _plans(spec.entries[index], tm, cfg, scratch_dir, model_hash, lm_name, lm_args, root, think)[repeat]
        _build(tm, plan, cfg, lm_args)
        call.append(plan)
    answers = request_cache.RequestCache(scratch_dir, model_hash=model_hash, lm_name=lm_name, lm_args=lm_args,
                                         cfg=cfg, enabled=cfg.cache)
    tasks = call[0].entry.task if len(call) == 1 else f"{len(call)} tasks"
    with console.progress(f"eval {target} ({tasks})", unit="requests") as bar, _environment_once(), answers:
        lm = backends.create(cfg, target, trust_remote_code)
        try:
            with answers.answering(lm, bar), request_cache.thinking(lm, delimiters) as hook:
                parts = _run_call(lm, call, cfg, tm)
            for part in parts:
                hook.annotate(part)
        finally:
            backends.release(lm)
    answers.discard()
    return [(plan.key, cache.normalise(part)) for plan, part in zip(call, parts)]
