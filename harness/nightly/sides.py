"""The two sides of a nightly: what ``--candidate`` and ``--baseline`` name, resolved before any model work.

A side is one of:

- a model folder, a hub id (``org/name``) or an MLflow URI (``models:/name/3``, ``models:/name@alias``,
  ``runs:/<id>/checkpoint``): it is evaluated (the eval cache makes an unchanged checkpoint cheap);
- a bare word, an alias of the registered model (``champion`` → ``models:/harness-embedded@champion``);
- ``last-pass`` (baseline only): the candidate of the latest passing nightly of the same suite (an A/A check does
  not count: it judged no candidate), whose per-item scores are read back from that nightly's eval run instead of
  evaluating again;
- ``run:<eval run id>``: an eval run already in the store (a harness eval, or lm-eval output recorded with
  ``harness import lm-eval``), read back instead of evaluating.

Anything else is a `HarnessError` naming the spec and what it could have been.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.nightly.config import EVAL_RUN, LAST_PASS
from harness.tracking import schema

if TYPE_CHECKING:
    import pandas as pd

_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


@dataclass
class Side:
    """A resolved candidate or baseline."""

    spec: str  # as the user gave it
    model: str  # what is evaluated: a folder, hub id or MLflow URI
    label: str  # short display name
    registered: tuple[str, str] | None = None  # (registered model, version) when known
    eval_run: str | None = None  # an eval run holding its per-item scores (last-pass), else set after evaluation
    nightly_run: str | None = None  # the nightly it was taken from (last-pass)
    suite_version: str | None = None  # the suite version of that nightly (last-pass)
    model_hash: str | None = None  # the checkpoint's content hash, as its eval run records it (run:<id>, last-pass)


def _registered_version(uri: str, results_dir) -> tuple[str, str]:
    from harness.tracking import store

    rest = uri[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        aliases = store.model_aliases(name, results_dir)
        if alias not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            raise HarnessError(f"model {uri!r} not found: registered model {name!r} has no alias {alias!r} "
                               f"(aliases: {known}) in {store.tracking_uri(results_dir)}")
        return name, aliases[alias]
    name, _, version = rest.rpartition("/")
    if version not in {v["version"] for v in store.model_versions(name, results_dir)}:
        raise HarnessError(f"model {uri!r} not found: registered model {name!r} has no version {version!r} in "
                           f"{store.tracking_uri(results_dir)}")
    return name, version


def judged(runs: "pd.DataFrame") -> "pd.DataFrame":
    """The nightly runs among `runs` (`search_runs` rows) that judged a candidate: A/A nightlies (the baseline
    checked against itself) left out."""
    column = schema.column("aa")
    if column not in runs.columns:
        return runs
    return runs[runs[column] != "true"]


def _last_pass(suite: str, version: str | None, experiment: str, results_dir) -> Side:
    """The latest passing nightly of the suite at `version`; else the latest of any version (which then cannot be
    compared, and the nightly says why)."""
    from harness.tracking import store

    uri = store.tracking_uri(results_dir)
    found = judged(store.find_runs(experiment, schema.Kind.NIGHTLY, results_dir, suite=suite, verdict="pass"))
    if not len(found):
        raise HarnessError(f"no passing nightly of suite {suite!r} in experiment {experiment!r} of {uri} (A/A "
                           f"checks do not count), so there is no '{LAST_PASS}' baseline; give --baseline an alias "
                           "(champion), a model folder or a models:/ URI")
    same = found[found[schema.column("suite_version")] == version]
    row = (same if len(same) else found).iloc[0]
    tags = schema.check_version(schema.row_tags(row), row["run_id"])
    when = row["start_time"].strftime("%Y-%m-%d %H:%M")
    evaluated = store.find_run(tags.candidate_eval_run, results_dir) if tags.candidate_eval_run else None
    model_hash = schema.RunTags.from_tags(evaluated["tags"]).model_hash if evaluated else None
    return Side(spec=LAST_PASS, model=tags.candidate, label=f"last pass ({when})",
                eval_run=tags.candidate_eval_run, nightly_run=row["run_id"], suite_version=tags.suite_version,
                model_hash=model_hash)


def _eval_run(spec: str, role: str, results_dir) -> Side:
    """An eval run of the store as a side: its model as its tags name it, its per-item scores read back."""
    from harness.tracking import store

    run_id = spec[len(EVAL_RUN):].strip()
    if not run_id:
        raise HarnessError(f"--{role} {spec!r}: name the eval run, {EVAL_RUN}<MLflow run id>")
    try:
        tags = store.read_run(run_id, results_dir, kind=schema.Kind.EVAL, finished=True)["schema"]
    except HarnessError as err:
        raise HarnessError(f"--{role} {spec!r}: {err}") from None
    model = tags.model or run_id
    return Side(spec, model, f"{Path(model.rstrip('/')).name or model} (run {run_id[:8]})", eval_run=run_id,
                model_hash=tags.model_hash)


def resolve(spec: str, *, role: str, registered_model: str, suite: str, experiment: str,
            results_dir: str | os.PathLike, suite_version: str | None = None) -> Side:
    """Resolve a candidate or baseline spec (see the module docstring) without loading a model.

    Args:
        spec: the spec as given.
        role: ``candidate`` or ``baseline`` (only a baseline may be ``last-pass``).
        registered_model: the registered model whose aliases bare words name.
        suite: the suite name (for ``last-pass``).
        suite_version: the suite's version now (``last-pass`` prefers a nightly of the same version).
        experiment: the MLflow experiment searched for nightlies.
        results_dir: results folder of the store.

    Returns:
        The `Side`.

    Raises:
        HarnessError: the spec names nothing in the store or on disk.
    """
    from harness.models import load
    from harness.tracking import store

    if spec == LAST_PASS:
        if role != "baseline":
            raise HarnessError(f"--{role} {LAST_PASS}: only the baseline can be the last passing nightly")
        return _last_pass(suite, suite_version, experiment, results_dir)
    if spec.startswith(EVAL_RUN):
        return _eval_run(spec, role, results_dir)
    if spec.startswith("models:/"):
        name, version = _registered_version(spec, results_dir)
        return Side(spec, spec, spec[len("models:/"):], registered=(name, version))
    if spec.startswith(_URI_SCHEMES):
        return Side(spec, spec, spec)
    if Path(spec).expanduser().exists() or "/" in spec or spec.startswith((".", "~")):
        try:
            model = load.resolve(spec)  # a folder must hold a model; a hub id passes as it is
        except HarnessError as err:
            raise HarnessError(f"{role} {err}") from None
        return Side(spec, model, Path(spec.rstrip("/")).name or spec)
    aliases = store.model_aliases(registered_model, results_dir)
    if spec in aliases:
        uri = f"models:/{registered_model}@{spec}"
        return Side(spec, uri, f"{spec} (v{aliases[spec]})", registered=(registered_model, aliases[spec]))
    known = ", ".join(sorted(aliases)) or "none"
    raise HarnessError(f"{role} {spec!r} not found: not an alias of registered model {registered_model!r} "
                       f"(aliases: {known}), nor a model folder, a hub id (org/name), a models:/ URI, "
                       f"{EVAL_RUN}<eval run id> or '{LAST_PASS}'")


def content_hash(side: Side, results_dir: str | os.PathLike) -> str | None:
    """The side's checkpoint content hash, where it is known without loading or downloading a model: an eval run's
    (its tag), a registered version's (recorded on its LoggedModel by the pipeline that trained it), a local
    folder's (hashed); None for a hub id, or a version or URI whose record names no hash."""
    from harness.models import load
    from harness.tracking import store

    if side.model_hash:
        return side.model_hash
    if side.registered:
        name, version = side.registered
        found = next((v for v in store.model_versions(name, results_dir) if v["version"] == version), None)
        run = store.find_run(found["run_id"], results_dir) if found and found["run_id"] else None
        model_id = schema.RunTags.from_tags(run["tags"]).logged_model if run else None
        return store.logged_model_hash(model_id, results_dir) if model_id else None
    if Path(side.model).is_dir():
        return load.content_hash(side.model)
    return None


def _sameness(candidate: Side, baseline: Side, results_dir: str | os.PathLike) -> str | None:
    """Why the two sides are one checkpoint (the same spec, eval run, registered version or content hash), or
    None."""
    if candidate.eval_run and candidate.eval_run == baseline.eval_run:
        return f"both are eval run {candidate.eval_run}"
    if not (candidate.eval_run or baseline.eval_run) and candidate.model == baseline.model:
        return f"both are {candidate.model!r}"
    if candidate.registered and candidate.registered == baseline.registered:
        return f"both are version {candidate.registered[1]} of registered model {candidate.registered[0]!r}"
    digest = content_hash(candidate, results_dir)
    if digest and digest == content_hash(baseline, results_dir):
        return f"{candidate.model!r} and {baseline.model!r} have the same content hash {digest}"
    return None


def check_distinct(candidate: Side, baseline: Side, results_dir: str | os.PathLike, *, aa: bool = False,
                   promote: bool = False) -> None:
    """Refuse a nightly of a checkpoint against itself, before any model work: the same spec, the same eval run,
    the same version of a registered model, or the same content hash (`content_hash`: a folder against the alias
    registered from it, the last passing nightly's own candidate). An A/A check (`aa`) asks for exactly that.

    A side given as ``run:<id>`` may have the other side's content hash without `promote`: such a nightly checks two
    records of one checkpoint (an lm-eval import against a harness eval, a watched checkpoint against a champion of
    the same bytes) and promotes nothing.

    Raises:
        HarnessError: the two sides are one checkpoint (or, with `aa`, two).
    """
    why = _sameness(candidate, baseline, results_dir)
    if aa:
        if why is None:
            raise HarnessError(f"--aa compares a checkpoint with itself, but candidate {candidate.spec!r} and baseline "
                               f"{baseline.spec!r} are two checkpoints; leave out --candidate")
        return
    records = candidate.spec.startswith(EVAL_RUN) or baseline.spec.startswith(EVAL_RUN)
    if why and (not records or promote or why.startswith("both are eval run")):
        raise HarnessError(f"candidate {candidate.spec!r} and baseline {baseline.spec!r} are the same checkpoint "
                           f"({why}): a nightly compares two; give --baseline another model, an alias (champion) "
                           f"or '{LAST_PASS}', or --aa for an A/A check of the checkpoint against itself")


def again(side: Side) -> Side:
    """The checkpoint of `side`, to be evaluated afresh (an A/A nightly's candidate: ``--aa``), even where `side` is
    an eval run already in the store."""
    return Side(spec=side.spec, model=side.model, label=f"{side.label}, evaluated again", registered=side.registered,
                model_hash=side.model_hash)


def promotion_version(side: Side, registered_model: str, results_dir: str | os.PathLike) -> str:
    """The version of `registered_model` that ``--promote`` points the alias at: the candidate's own version, or
    the version the pipeline registered from the candidate's checkpoint folder.

    Raises:
        HarnessError: the candidate is not a version of `registered_model`.
    """
    from harness.tracking import store

    if side.registered:
        name, version = side.registered
        if name == registered_model:
            return version
    elif Path(side.model).is_dir():
        folder = str(Path(side.model).resolve())
        for v in store.model_versions(registered_model, results_dir):
            run = store.find_run(v["run_id"], results_dir) if v["run_id"] else None
            checkpoint = schema.RunTags.from_tags(run["tags"]).checkpoint if run else None
            if checkpoint and str(Path(checkpoint).resolve()) == folder:
                return v["version"]
    raise HarnessError(f"--promote: candidate {side.spec!r} is not a version of registered model "
                       f"{registered_model!r}; give it as models:/{registered_model}/<version> (or a checkpoint "
                       "folder the pipeline registered)")
