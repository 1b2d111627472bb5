"""`harness watch DIR`: evaluate the checkpoints another trainer writes into DIR, each exactly once, charted by step.

    harness watch /ckpt/run-7 --suite tulu3_dev [--baseline champion] [--once] [--poll 60]

The recipe, in order:

1. check before any work: DIR is a folder, the suite parses and its tasks exist, the baseline resolves, and the
   folder's watch run (if any) was recorded with the same eval settings (one run charts comparable scores only);
2. every poll (``--once``: once), list DIR's ``checkpoint-<step>`` folders that are complete (`complete`);
3. ask the record what is done: a FINISHED eval run tagged ``watched`` = DIR, ``step`` and ``model`` = the folder
   is a checkpoint evaluated already, so a restarted watch neither redoes nor re-records it (the eval cache would
   make the model work free anyway);
4. evaluate each new checkpoint, in step order, through `harness.evals.evaluate`, nested under the folder's watch
   run (tags ``kind=watch``, ``watched``, ``suite``; created the first time, reopened by a later watch of the same
   folder and suite), and log ``eval/<skill>/score`` (``overall`` too) at its step on the watch run, so that the
   MLflow UI charts score against step. A step whose eval finished but whose scores the watch run lacks (a watch
   killed in between) is logged from its eval run;
5. with ``--baseline``, run the nightly comparison (`harness.nightly.run.run_nightly`, the candidate being the
   checkpoint's eval run, ``run:<id>``) for each evaluated checkpoint that has no FINISHED nightly yet, print the
   verdict and log ``nightly/pass`` and ``nightly/regressions`` at its step on the watch run.

The watch run is opened only when there is something to do: a watch that finds nothing new records nothing. Without
``--once`` it polls until Ctrl-C or SIGTERM, which end the open runs KILLED (exit 130 / 143). A checkpoint that
cannot be evaluated (a broken folder, a task that fails) is one warning line and is not retried by this process;
the others go on.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from harness import console, stops
from harness.config_base import to_dict
from harness.errors import HarnessError
from harness.tracking import schema, store

if TYPE_CHECKING:
    from harness.config import Config
    from harness.evals.suite import Suite
    from harness.tracking.store import Run

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")  # as the Hugging Face Trainer names the folders it saves
SETTLE_S = 60.0  # a folder without trainer_state.json is complete once none of its files changed for this long
_UNCOMPARED = ("enabled", "cache", "during_training")  # eval settings that change no score


def complete(folder: Path, now: float | None = None) -> bool:
    """Whether a checkpoint folder is whole: its ``config.json`` and weights are there (``model.safetensors``, or
    every shard ``model.safetensors.index.json`` lists), and the writer is done with it: its
    ``trainer_state.json`` parses (the Trainer writes it last, after the weights, optimizer and random states), or,
    for a writer that does not write one, none of its files changed for `SETTLE_S` seconds."""
    try:
        if not (folder / "config.json").is_file():
            return False
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            shards = set(json.loads(index.read_text())["weight_map"].values())
            if not all((folder / shard).is_file() for shard in shards):
                return False
        elif not (folder / "model.safetensors").is_file():
            return False
        state = folder / "trainer_state.json"
        if state.is_file():
            json.loads(state.read_text())
            return True
        newest = max(f.stat().st_mtime for f in folder.rglob("*") if f.is_file())
        return (time.time() if now is None else now) - newest >= SETTLE_S
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # being written, or removed meanwhile
        return False


def checkpoints(folder: Path) -> dict[int, Path]:
    """The complete ``checkpoint-<step>`` folders in `folder`, by step."""
    found = {}
    for child in folder.iterdir():
        match = CHECKPOINT.match(child.name)
        if match and child.is_dir() and complete(child):
            found[int(match.group(1))] = child
    return dict(sorted(found.items()))


@dataclass
class _Watch:
    """One watch: its folder, suite and settings, and what this process has seen."""

    folder: Path
    spec: "Suite"
    suite: str  # as given (a name or a file), for evaluate
    cfg: "Config"
    results: Path
    baseline: str | None
    run_id: str | None = None  # the folder's watch run, once there is one
    failed: set[tuple[int, float]] = field(default_factory=set)  # (step, folder mtime) that could not be evaluated
    code: int = 0  # the command's exit code so far (the worst nightly's; 2 after a checkpoint that failed)

    @property
    def experiment(self) -> str:
        return self.cfg.run.experiment

    def params(self) -> dict[str, str]:
        """What the watch run records of its settings: the folder, the suite and every eval setting that changes a
        score."""
        settings = {k: v for k, v in to_dict(self.cfg.eval).items() if k not in _UNCOMPARED}
        return {"watched": str(self.folder), "suite": self.spec.name, **store.flatten(settings, "eval.")}


def watch(folder: str, suite: str, *, cfg: "Config", baseline: str | None = None, once: bool = False,
          poll: float = 60.0) -> int:
    """Evaluate the checkpoints written into `folder` (see the module docstring).

    Args:
        folder: the folder a trainer writes ``checkpoint-<step>`` folders into.
        suite: a suite name or suite YAML file.
        cfg: the experiment config (its run, model and eval sections apply).
        baseline: a nightly baseline (alias, model, ``run:<id>``, ``last-pass``): each checkpoint is compared with
            it; None: no comparison.
        once: evaluate what is there and return; else poll every `poll` seconds until interrupted.
        poll: seconds between two looks at the folder.

    Returns:
        The exit code: 0, or with `baseline` the worst nightly's (1 regression, 2 cannot compare); 2 when a
        checkpoint could not be evaluated.

    Raises:
        HarnessError: bad input (folder, suite, baseline, other settings than the folder's watch run), before any
            work.
    """
    w = _check(folder, suite, cfg, baseline)
    if not once:
        console.info(f"watching {w.folder} for checkpoint-<step> folders every {poll:g} s (suite {w.spec.name}); "
                     "Ctrl-C stops")
    with ExitStack() as stack:
        run: Run | None = None
        while True:
            todo = _pending(w)
            if todo is not None:
                run = run or stack.enter_context(_watch_run(w))
                _work(w, run, todo)
            elif once:
                console.result(f"nothing new in {w.folder} (suite {w.spec.name})")
            if once:
                return w.code
            stops.raise_if_stopped()  # a Ctrl-C a library swallowed mid-poll still stops the watch
            time.sleep(poll)


def _check(folder: str, suite: str, cfg: "Config", baseline: str | None) -> _Watch:
    """Everything that can be refused, refused before any work."""
    from harness.evals import suite as suites

    path = Path(folder).expanduser()
    if not path.is_dir():
        raise HarnessError(f"watch folder {folder!r} {'is not a folder' if path.exists() else 'not found'} (valid: "
                           "the folder a trainer writes checkpoint-<step> folders into)")
    spec = suites.load(suite)
    suites.check_tasks(spec)
    w = _Watch(path.resolve(), spec, suite, cfg, Path(cfg.run.results).resolve(), baseline)
    if baseline:
        from harness.nightly import records, sides

        sides.resolve(baseline, role="baseline", registered_model=cfg.run.registered_model, suite=spec.name,
                      experiment=w.experiment, results_dir=w.results, suite_version=records.suite_version(spec))
    found = store.find_runs(w.experiment, schema.Kind.WATCH, w.results, finished=False, watched=str(w.folder),
                            suite=spec.name)
    if len(found):
        row = found.iloc[0]
        w.run_id = str(row["run_id"])
        if row["status"] == "RUNNING":
            tags = schema.RunTags.from_row(row)
            raise HarnessError(f"{w.folder} is being watched already (suite {spec.name}): watch run {w.run_id} is "
                               f"RUNNING on host {tags.host}, process {tags.pid}; stop that watch first")
        recorded = store.run_params(w.run_id, w.results)
        differ = sorted(k for k, v in w.params().items() if recorded.get(schema.key(k), str(v)) != str(v))
        if differ:
            raise HarnessError(f"watch run {w.run_id} of {w.folder} recorded other eval settings ("
                               + ", ".join(f"{k}={recorded[schema.key(k)]}" for k in differ) + "): one run charts "
                               "comparable scores only; use the same settings, or another --experiment")
    return w


@dataclass
class _Todo:
    new: dict[int, Path]  # complete checkpoints without a FINISHED eval run
    unlogged: dict[int, str]  # evaluated steps whose scores the watch run lacks → their eval run
    unjudged: dict[int, str]  # evaluated steps without a FINISHED nightly (with --baseline) → their eval run


def _pending(w: _Watch) -> _Todo | None:
    """What is left to do in the folder now, from the record; None when nothing."""
    found = checkpoints(w.folder)
    done = _evaluated(w)
    new = {s: f for s, f in found.items() if s not in done and (s, _stamp(f)) not in w.failed}
    logged = set(store.metric_history(w.run_id, schema.eval_step_metric(schema.OVERALL), w.results)) \
        if w.run_id else set()
    unlogged = {s: rid for s, rid in done.items() if s not in logged}
    unjudged = {}
    if w.baseline:
        judged = _judged(w)
        unjudged = {s: rid for s, rid in done.items() if rid not in judged}
    todo = _Todo(new, unlogged, unjudged)
    return todo if new or unlogged or unjudged else None


def _stamp(folder: Path) -> float:
    try:
        return folder.stat().st_mtime
    except OSError:
        return 0.0


def _evaluated(w: _Watch) -> dict[int, str]:
    """Steps of the folder with a FINISHED eval run of the suite, made by a watch of it → the newest such run."""
    runs = store.find_runs(w.experiment, schema.Kind.EVAL, w.results, watched=str(w.folder), suite=w.spec.name)
    done: dict[int, str] = {}
    for _, row in runs.iterrows():  # newest first
        tags = schema.RunTags.from_row(row)
        if tags.step and tags.step.isdigit() and tags.model == str(w.folder / f"checkpoint-{tags.step}"):
            done.setdefault(int(tags.step), str(row["run_id"]))
    return done


def _judged(w: _Watch) -> set[str]:
    """Eval runs that a FINISHED nightly of the suite took as its candidate."""
    runs = store.find_runs(w.experiment, schema.Kind.NIGHTLY, w.results, suite=w.spec.name)
    return {t for t in (schema.RunTags.from_row(row).candidate_eval_run for _, row in runs.iterrows()) if t}


@contextmanager
def _watch_run(w: _Watch) -> Iterator["Run"]:
    """The folder's watch run: reopened when a watch made one before, else created with its settings as params.
    It ends FINISHED, or KILLED on Ctrl-C or a signal (`store.run`)."""
    tags = schema.tags(watched=str(w.folder), suite=w.spec.name)
    with store.run(schema.watch_run_name(w.folder.name, w.spec.name), schema.Kind.WATCH, experiment=w.experiment,
                   results_dir=w.results, tags=tags, reopen=w.run_id) as run:
        if w.run_id is None:
            run.log_params(w.params())
            w.run_id = run.run_id
        yield run


def _work(w: _Watch, run: "Run", todo: _Todo) -> None:
    """Do what `_pending` found, in step order; a checkpoint that fails to evaluate is one warning line."""
    for step, eval_run in todo.unlogged.items():
        metrics = (store.find_run(eval_run, w.results) or {}).get("metrics", {})
        _log_scores(run, step, {s: metrics.get(schema.skill_metric(s)) for s in [*w.spec.skills(), schema.OVERALL]})
    for step in sorted({*todo.new, *todo.unjudged}):  # each checkpoint's verdict right after its eval
        eval_run = _evaluate(w, run, step, todo.new[step]) if step in todo.new else todo.unjudged[step]
        if eval_run and w.baseline:
            _judge(w, run, step, eval_run)


def _evaluate(w: _Watch, run: "Run", step: int, folder: Path) -> str | None:
    """One checkpoint evaluated, nested under the watch run, and its scores logged at its step; its eval run."""
    from harness.evals import evaluate
    from harness.report.tables import interval, number

    try:
        result = evaluate(str(folder), w.suite, cfg=w.cfg.eval, results_dir=w.results, parent=run,
                          experiment=w.experiment, trust_remote_code=w.cfg.model.trust_remote_code,
                          tags=schema.tags(step=step, watched=str(w.folder)))
    except HarnessError as err:
        if err.exit_code != 2:  # the server or the disk: nothing else can be done either
            raise
        w.failed.add((step, _stamp(folder)))
        w.code = max(w.code, 2)
        console.warn(f"{folder.name}: not evaluated: {err}")
        return None
    skills = result.skills.set_index("skill")
    _log_scores(run, step, skills["value"].to_dict())
    overall = skills.loc[schema.OVERALL]
    console.result(f"{folder.name}: overall {number(overall.value)} {interval(overall.ci_low, overall.ci_high)} "
                   f"(eval run {result.run_id})")
    return result.run_id


def _log_scores(run: "Run", step: int, scores: dict) -> None:
    run.log_metrics({schema.eval_step_metric(skill): value for skill, value in scores.items()}, step=step)


def _judge(w: _Watch, run: "Run", step: int, eval_run: str) -> None:
    """The nightly comparison of one evaluated checkpoint with the baseline; its verdict printed and logged."""
    from harness.nightly.config import EVAL_RUN, NightlyConfig
    from harness.nightly.run import run_nightly

    cfg = NightlyConfig(suite=w.suite, results=str(w.results), experiment=w.experiment,
                        registered_model=w.cfg.run.registered_model, seed=w.cfg.run.seed,
                        threads=w.cfg.run.threads, trust_remote_code=w.cfg.model.trust_remote_code)
    cfg.eval = w.cfg.eval  # the baseline evaluated as the checkpoints are: like with like
    result = run_nightly(f"{EVAL_RUN}{eval_run}", w.baseline, cfg)
    regressed = sorted({c.task for c in result.regressions})
    counts = schema.NIGHTLY_COUNTS
    run.log_metrics({counts["pass"]: float(result.verdict == "pass"), counts["regressions"]: len(result.regressions)},
                    step=step)
    console.result(f"checkpoint-{step}: nightly {result.verdict} against {result.baseline.label}"
                   + (f" (regressed: {', '.join(regressed)})" if regressed else "")
                   + (f"; {'; '.join(result.reasons)}" if result.reasons else "") + f" (nightly run {result.run_id})")
    w.code = max(w.code, result.exit_code)
