"""`import_lm_eval`: what ``lm_eval --output_path DIR --log_samples`` wrote, recorded as a harness eval run.

    harness import lm-eval results/lm_eval_out --suite tiny --label sft

lm-eval writes, under ``DIR/<model name, sanitised>/`` (or beside ``DIR`` when it names a ``.json`` file), one
``results_<timestamp>.json`` (scores, task configs and versions, few-shot counts, the run's ``config`` and chat
settings) and, per task, ``samples_<task>_<timestamp>.jsonl`` (one line per item and filter). The recipe:

1. find the newest results file in ``DIR`` (or in its one model folder) and each task's samples file of the same
   timestamp; read them, and turn the samples back into what ``lm_eval.simple_evaluate`` returns in memory (lm-eval
   writes ``arguments`` as a mapping and responses as strings);
2. derive the settings a harness eval would have logged for the same run: backend and its arguments (with the
   harness's defaults filled in, as `harness.evals.backends.model_arguments` gives them), the limit, few-shot,
   chat template, few-shot as multi-turn and generation settings; the model is the results' ``model_args``
   ``pretrained`` (``model`` for served ones), identified by its content hash when the folder is here;
3. with ``--suite``, check that the imported tasks are the suite's and take each task's skill and data from it;
   without, every top-level task or group is a skill of its own, in a suite file written from the run;
4. build the `SuiteResult` with `harness.evals.result`'s tables, as `evaluate` does, and log it with
   `harness.evals.record.record`: the same run kind, tags, metrics, params, artifacts and MLflow links, plus the tag
   ``harness.imported`` naming the results file.

Every check runs before the MLflow run opens: bad input is one `HarnessError` and no run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from harness import console
from harness.config import EvalConfig
from harness.errors import HarnessError
from harness.evals import backends, local_data
from harness.evals import suite as suites
from harness.evals.record import record
from harness.evals.result import SuiteResult, sample_tables, score_table, skill_table
from harness.tracking import schema

# lm-eval's results file and its samples files share one timestamp (``datetime.isoformat`` with ``:`` → ``-``).
_RESULTS = re.compile(r"^(?:results|.+)_(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d(?:\.\d+)?)\.json$")
_SECTIONS = ("results", "configs", "versions", "n-shot", "n-samples", "config")  # what an import needs
_LOGLIKELIHOOD = {"loglikelihood", "multiple_choice", "loglikelihood_rolling"}
SUITE_NAME = "lm-eval"  # the suite of an import without --suite


def find_results(path: str | os.PathLike) -> Path:
    """The lm-eval results file in `path`: the file itself, else the newest ``results_*.json`` in the folder or in
    its one model subfolder.

    Raises:
        HarnessError: no results file, or results of several models (name the model's folder).
    """
    given = Path(path).expanduser()
    if given.is_file():
        if not _RESULTS.match(given.name):
            raise HarnessError(f"{str(given)!r} is not an lm-eval results file (results_<timestamp>.json)")
        return given.resolve()
    if not given.is_dir():
        raise HarnessError(f"lm-eval output folder {str(given)!r} not found")
    found = sorted(given.glob("results_*.json")) or sorted(given.glob("*/results_*.json"))
    found = [p for p in found if _RESULTS.match(p.name)]
    if not found:
        raise HarnessError(f"no lm-eval results (results_<timestamp>.json) in {str(given)!r} or its subfolders; "
                           "write them with lm_eval --output_path DIR --log_samples")
    folders = sorted({p.parent.name for p in found})
    if len(folders) > 1:
        raise HarnessError(f"{str(given)!r} holds lm-eval results of several models ({', '.join(folders)}); "
                           "import one model's folder")
    newest = max(found, key=lambda p: _RESULTS.match(p.name).group(1))
    if len(found) > 1:
        console.info(f"importing the newest of {len(found)} lm-eval results in {newest.parent}: {newest.name}")
    return newest.resolve()


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HarnessError(f"results file {str(path)!r} is not valid JSON (line {err.lineno}: {err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise HarnessError(f"results file {str(path)!r} could not be read: {err}") from None
    if not isinstance(data, dict):
        raise HarnessError(f"results file {str(path)!r} is not lm-eval's results (a JSON object)")
    missing = [k for k in _SECTIONS if not isinstance(data.get(k), dict)]
    if missing or "chat_template" not in data:
        what = ", ".join(missing + ([] if "chat_template" in data else ["chat_template"]))
        raise HarnessError(f"results file {str(path)!r} lacks {what}: not written by lm_eval --output_path")
    return data


def _restore(sample: dict, output_type: str) -> dict:
    """A written sample as ``simple_evaluate`` returns it: ``arguments`` as a list of argument lists, and for
    log-likelihood tasks each response back to numbers (lm-eval writes ``(-1.2, False)`` as ``["-1.2", "False"]``)."""
    args = sample.get("arguments")
    if isinstance(args, dict):
        def index(key: str) -> int:
            return int(key.rpartition("_")[2]) if key.rpartition("_")[2].isdigit() else 0

        sample["arguments"] = [[arg[k] for k in sorted(arg, key=index)] if isinstance(arg, dict) else arg
                               for _, arg in sorted(args.items(), key=lambda kv: index(kv[0]))]
    if output_type in _LOGLIKELIHOOD:
        for key in ("resps", "filtered_resps"):
            if key in sample:
                sample[key] = _numbers(sample[key])
    return sample


def _numbers(value: Any) -> Any:
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if value in ("True", "False"):
        return value == "True"
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _utf8_line(raw: bytes, path: Path, number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise HarnessError(f"samples file {str(path)!r} line {number} is not UTF-8 text (byte 0x{raw[err.start]:02x} "
                           f"at column {err.start + 1}); save it as UTF-8") from None


def read_samples(results_file: Path, data: dict) -> dict[str, list[dict]]:
    """Each task's samples (``samples_<task>_<timestamp>.jsonl`` beside the results file), restored.

    Raises:
        HarnessError: a task's samples file is missing or malformed, or its items are not those the results count.
    """
    stamp = _RESULTS.match(results_file.name).group(1)
    out: dict[str, list[dict]] = {}
    for task, config in data["configs"].items():
        path = results_file.parent / f"samples_{task}_{stamp}.jsonl"
        if not path.is_file():
            raise HarnessError(f"no samples file for task {task!r} ({path.name} beside {results_file.name}); "
                               "run lm_eval with --log_samples")
        output_type = (config or {}).get("output_type", "")
        rows = []
        with path.open("rb") as f:
            for number, raw in enumerate(f, 1):
                line = _utf8_line(raw, path, number)
                if not line.strip():
                    continue
                try:
                    sample = json.loads(line)
                except json.JSONDecodeError as err:
                    raise HarnessError(f"samples file {str(path)!r} line {number} is not valid JSON ({err.msg})"
                                       ) from None
                if not isinstance(sample, dict) or "doc_id" not in sample or "filter" not in sample:
                    raise HarnessError(f"samples file {str(path)!r} line {number} is not an lm-eval sample "
                                       "(no doc_id or filter)")
                rows.append(_restore(sample, output_type))
        items = len({s["doc_id"] for s in rows})
        expected = (data["n-samples"].get(task) or {}).get("effective")
        if expected is not None and items != expected:
            raise HarnessError(f"samples file {str(path)!r} holds {items} items, the results file counts {expected} "
                               f"for task {task!r}: they are not from the same run")
        out[task] = rows
    return out


def _args(value: Any) -> dict:
    """lm-eval's ``model_args`` / ``gen_kwargs``: a mapping, or the CLI's ``k=v,k=v`` string."""
    if isinstance(value, dict):
        return dict(value)
    if not value:
        return {}
    from lm_eval.utils import simple_parse_args_string

    return simple_parse_args_string(str(value))


def _whole(value: Any) -> Any:
    """A float that is a whole number as an int (lm-eval writes ``--limit 8`` as ``8.0``)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


@dataclasses.dataclass
class _Run:
    """What the results file says about how lm-eval ran, as the harness names it."""

    model: str
    cfg: EvalConfig
    trust_remote_code: bool
    limit: int | float | None
    apply_chat_template: bool
    fewshot_as_multiturn: bool | None
    gen_kwargs: dict | None
    params: dict[str, Any]  # logged over the params `record` derives from this process


def _settings(data: dict, where: str) -> _Run:
    config = data["config"]
    model_args = _args(config.get("model_args"))
    backend = str(config.get("model") or data.get("model_source") or "")
    model = model_args.pop("pretrained", None) or model_args.pop("model", None) or data.get("model_name")
    if not model:
        raise HarnessError(f"{where}: its config names no model (model_args pretrained=...)")
    trust = bool(model_args.pop("trust_remote_code", False))
    if backend in backends.CHAT_ONLY:
        model_args.pop("tokenizer_backend", None)  # the harness passes it itself
    limit = _whole(config.get("limit"))
    batch = _whole(config.get("batch_size"))
    params: dict[str, Any] = {"lm_eval_version": data.get("lm_eval_version") or "unknown",
                              "transformers_version": data.get("transformers_version") or "unknown"}
    values = {"backend": backend, "backend_args": model_args, "device": config.get("device"),
              "limit": limit if isinstance(limit, int) else None,
              "bootstrap_iters": _whole(config.get("bootstrap_iters", 100000))}
    if isinstance(batch, int) or (isinstance(batch, str) and batch.isdigit()):
        values["batch_size"] = int(batch)
    else:
        params["batch_size"] = batch  # "auto", "auto:4": what lm-eval was asked, not a number the harness takes
    if not isinstance(limit, int) and limit is not None:
        params["limit"] = limit  # a fraction of each task's items
    if config.get("device") is None:
        params["device"] = "unknown"  # not this machine's: lm-eval picked one where it ran
    try:
        cfg = EvalConfig(**values)
    except HarnessError as err:
        raise HarnessError(f"{where}: lm-eval ran with settings the harness does not ({err})") from None
    if data.get("system_instruction"):
        console.warn(f"{where}: lm-eval ran with a system instruction, which a harness eval never sets")
        params["system_instruction_sha"] = data.get("system_instruction_sha") or ""
    multiturn = data.get("fewshot_as_multiturn")
    return _Run(model=str(model), cfg=cfg, trust_remote_code=trust, limit=limit,
                apply_chat_template=data.get("chat_template") is not None,
                fewshot_as_multiturn=multiturn if isinstance(multiturn, bool) else None,
                gen_kwargs=_args(config.get("gen_kwargs")) or None, params=params)


def _identity(run: _Run, results_dir) -> str:
    """The model's content hash as `evaluate` computes it; a folder that is not here is named by its path."""
    from harness.evals.run import resolve_model

    try:
        return resolve_model(run.model, run.cfg, results_dir)[1]
    except HarnessError as err:  # a folder on another machine, or weights the harness does not read
        console.warn(f"{err}: the import identifies the model by its path, not its bytes (a harness eval of the "
                     "same checkpoint gets another model_hash)")
        return hashlib.sha256(run.model.encode()).hexdigest()[:16]


def _children(output: dict, name: str) -> list[str]:
    """Every task and group under `name` in lm-eval's ``group_subtasks``, depth first."""
    out = []
    for sub in (output.get("group_subtasks") or {}).get(name) or []:
        out += [sub, *_children(output, sub)]
    return out


def _entry(base: suites.Entry, run: _Run, output: dict) -> suites.Entry:
    """`base` with the settings lm-eval ran its task under (few-shot, chat template, limit, generation settings)."""
    n_shot, task = output["n-shot"], base.task
    shots = {n_shot[t] for t in [task, *_children(output, task)] if t in n_shot}
    fewshot = n_shot.get(task, shots.pop() if len(shots) == 1 else base.num_fewshot)
    # Few-shot as multi-turn only acts with the chat template; without it a harness eval logs its suite's value.
    multiturn = base.fewshot_as_multiturn
    if run.apply_chat_template:
        multiturn = True if run.fewshot_as_multiturn is None else run.fewshot_as_multiturn
    # A whole-number limit is the run's (EvalConfig.limit), as for a harness eval; a fraction is each task's own.
    return dataclasses.replace(base, num_fewshot=fewshot, limit=run.limit if isinstance(run.limit, float) else None,
                               apply_chat_template=run.apply_chat_template, fewshot_as_multiturn=multiturn,
                               gen_kwargs=run.gen_kwargs, repeats=1, pass_at=())


def _top_level(output: dict) -> list[str]:
    """Tasks and groups of the results that no group holds, in lm-eval's order."""
    held = {t for name in output["results"] for t in _children(output, name)}
    return [name for name in output["results"] if name not in held]


def _suite_entries(spec: suites.Suite, output: dict, run: _Run, root) -> tuple[list, dict, dict]:
    """The suite's entries with the imported settings, each result's owning entry, and each task's data source.

    Raises:
        HarnessError: the imported tasks are not the suite's.
    """
    suites.check_tasks(spec)
    tm = suites.task_manager(spec)
    results = output["results"]
    entries, owners, found, missing = [], {}, {}, []
    for base in spec.entries:
        sources = local_data.sources(tm, base.task, root=root, entry_data=base.data)
        names = [base.task, *_children(output, base.task), *sources]
        if base.task not in results and not (sources and set(sources) <= set(results)):
            missing.append(base.task)
            continue
        entry = _entry(base, run, output)
        entries.append((base, entry))
        owners.update({name: entry for name in names if name in results and name not in owners})
        found.update({task: s for task, s in sources.items() if task in results})
    extra = [name for name in _top_level(output) if name not in owners]
    if missing or extra:
        parts = ([f"suite tasks not in the import: {', '.join(missing)}"] if missing else []) + \
                ([f"imported tasks not in the suite: {', '.join(extra)}"] if extra else [])
        raise HarnessError(f"the import does not match suite {spec.name!r}: {'; '.join(parts)}")
    for base, entry in entries:
        _warn_settings(spec, base, entry, run)
    return [entry for _, entry in entries], owners, found


def _warn_settings(spec: suites.Suite, base: suites.Entry, entry: suites.Entry, run: _Run) -> None:
    """One line per task that lm-eval ran under other settings than the suite's (a nightly will not compare it)."""
    checks = [("few-shot", base.num_fewshot, entry.num_fewshot, base.num_fewshot is not None),
              ("chat template", base.apply_chat_template, entry.apply_chat_template, True),
              ("few-shot as multi-turn", base.fewshot_as_multiturn, entry.fewshot_as_multiturn, True),
              ("limit", base.limit, run.limit, base.limit is not None),
              ("generation settings", base.gen_kwargs or None, entry.gen_kwargs or None, True),
              ("repeats", base.repeats, entry.repeats, True)]
    differ = [f"{name} {theirs} (suite: {ours})" for name, ours, theirs, check in checks if check and ours != theirs]
    if differ:
        console.warn(f"task {entry.task}: lm-eval ran it with {', '.join(differ)}, not as suite {spec.name!r} "
                     "says; a nightly will not compare it with a harness eval of the suite")


def _own_suite(output: dict, run: _Run, folder: Path, results_file: Path) -> suites.Suite:
    """A suite written from the run: each top-level task or group a skill of its own, with the run's settings."""
    import yaml

    entries = [_entry(suites.Entry(skill=name, task=name), run, output) for name in _top_level(output)]
    path = folder / f"{SUITE_NAME}.yaml"
    skills = {}
    for e in entries:
        item = {"task": e.task, "num_fewshot": e.num_fewshot, "apply_chat_template": e.apply_chat_template,
                "fewshot_as_multiturn": e.fewshot_as_multiturn}
        if isinstance(run.limit, int):
            item["limit"] = run.limit
        if e.gen_kwargs:
            item["gen_kwargs"] = e.gen_kwargs
        skills[e.skill] = [item]
    text = yaml.safe_dump({"description": f"Imported from lm-eval's {results_file}: each task or group is a skill.",
                           "lm_eval_tasks": True, "skills": skills}, sort_keys=False)
    path.write_text(text)
    return suites.Suite(name=SUITE_NAME, path=path, description="", task_paths=(), lm_eval_tasks=True,
                        entries=tuple(entries))


def _known_sources(spec: suites.Suite, output: dict, root) -> dict[str, local_data.Source]:
    """What each task of a suite written from the run reads, for the tasks lm-eval's own index knows (indexing it
    takes seconds, so only when some task reads a dataset: a task loading its data through a hook alone is not a
    built-in one)."""
    if not any((cfg or {}).get("dataset_path") for cfg in output["configs"].values()):
        return {}
    tm = suites.task_manager(spec)
    out: dict[str, local_data.Source] = {}
    for entry in spec.entries:
        if entry.task in tm.all_tasks:
            out.update(local_data.sources(tm, entry.task, root=root))
    return out


def import_lm_eval(path: str | os.PathLike, *, suite: str | None = None, label: str | None = None,
                   results_dir: str | os.PathLike = "results", experiment: str = "harness") -> SuiteResult:
    """Record what ``lm_eval --output_path DIR --log_samples`` wrote as one harness eval run.

    Args:
        path: lm-eval's output folder (or its model subfolder, or the results JSON itself).
        suite: the suite the tasks belong to (skills, data, headline metrics); the imported tasks must be its tasks.
            None: every top-level task or group of the results is a skill of its own.
        label: the stage label, tagged ``harness.stage``.
        results_dir: results folder: unless ``MLFLOW_TRACKING_URI`` is set, the MLflow store.
        experiment: MLflow experiment.

    Returns:
        The `SuiteResult`, with the MLflow run id.

    Raises:
        HarnessError: no results file, a missing or malformed samples file, settings the harness cannot record, or
            tasks that are not the suite's; no MLflow run is started then.
    """
    results_file = find_results(path)
    data = _read_json(results_file)
    where = f"results file {str(results_file)!r}"
    output = {k: data.get(k) or {} for k in ("results", "groups", "group_subtasks", "configs", "versions", "n-shot",
                                              "higher_is_better", "n-samples")}
    if not output["results"]:
        raise HarnessError(f"{where} holds no task results")
    output["samples"] = read_samples(results_file, data)
    run = _settings(data, where)
    spec = suites.load(suite) if suite else None
    with tempfile.TemporaryDirectory() as tmp:
        root = local_data.data_dir(spec.data_dir if spec else None)
        if spec is not None:
            entries, owners, found = _suite_entries(spec, output, run, root)
            spec = dataclasses.replace(spec, entries=tuple(entries))
        else:
            spec = _own_suite(output, run, Path(tmp), results_file)
            owners = {}
            for entry in spec.entries:
                owners.update({name: entry for name in [entry.task, *_children(output, entry.task)]})
            found = {t: s for t, s in _known_sources(spec, output, root).items() if t in output["results"]}
        model_hash = _identity(run, results_dir)
        lm_name, lm_args = backends.model_arguments(run.cfg, run.model, run.trust_remote_code)
        samples = sample_tables(output)
        scores = score_table(output, owners, samples)
        skills = skill_table(scores, list(spec.entries), output, samples)
        result = SuiteResult(model=run.model, suite=spec.name, label=label, run_id=None, scores=scores,
                             samples=samples, skills=skills, lm_eval={k: v for k, v in data.items() if k != "samples"},
                             sources={t: s.describe() for t, s in found.items()},
                             digests={t: s.digest for t, s in found.items()})
        result.run_id = record(result, spec, run.cfg, model_hash, lm_name, lm_args, None, results_dir, experiment,
                               [s.task_data() for s in found.values()], params=run.params,
                               tags=schema.tags(imported=str(results_file)))
    return result
