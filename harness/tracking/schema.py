"""The schema of the MLflow record: every run kind, tag key, artifact path, run name and metric or param name the
harness writes, each defined once with its writer and its reader side by side, and versioned.

Nothing else spells a ``harness.*`` tag key, an artifact path or a run-name format: writers build their tags with
`tags()`, readers parse them with `RunTags`; artifacts are `Artifact` constants (or builders such as `samples`)
that `harness.tracking.store` writes and reads by format; names pass through `key()` so that any checkpoint label
gives a name MLflow accepts (it allows only letters, digits, ``_ - . / : `` and spaces, in at most 250 characters).

Every run carries ``harness.schema_version``. A reader that meets a run written under another version says so in
one line (`check_version`): an older record is read with a warning, a newer one is refused.

This module is pure: it imports neither MLflow nor pandas (only `harness.console`, for the version warning).
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, Mapping

from harness.errors import HarnessError

SCHEMA_VERSION = 1
PREFIX = "harness."
MAX_KEY = 250  # MLflow's limit on a metric, param or tag key
MAX_RUN_NAME = 250


class Kind(str, Enum):
    """What a run is (tag ``harness.kind``)."""

    PIPELINE = "pipeline"  # `harness run`: the parent of its train, eval and arena runs
    TRAIN = "train"  # one training stage (base, sft, dpo, rlvr)
    EVAL = "eval"  # one (checkpoint, suite) evaluation
    ARENA = "arena"  # one pairwise arena
    NIGHTLY = "nightly"  # one nightly regression comparison
    COMPARE = "compare"  # `harness compare`
    RATINGS = "ratings"  # `harness rate` / `harness winrate --mlflow`
    WATCH = "watch"  # `harness watch DIR`: the parent of the eval runs of the checkpoints written into DIR

    def __str__(self) -> str:
        return self.value


# --------------------------------------------------------------------------------------------------- names


_BAD = re.compile(r"[^\w\-./ :]")


def key(name: str) -> str:
    """A metric, param or tag key MLflow accepts, from any text.

    lm-eval's ``metric,filter`` becomes ``metric/filter``; other characters MLflow rejects (``@``, ``,``, ``=``,
    ``|``...) become ``_``; empty, ``.`` and ``..`` path segments are dropped; the result is cut to 250 characters.
    """
    text = _BAD.sub("_", str(name).replace(",", "/"))
    parts = [p for p in text.split("/") if p.strip() not in ("", ".", "..")]
    return "/".join(parts)[:MAX_KEY].rstrip("/") or "_"


def run_name(*parts: Any) -> str:
    """A run name from its parts joined by ``-``: control characters removed, at most 250 characters."""
    text = "-".join(str(p) for p in parts if p not in (None, ""))
    return re.sub(r"[\x00-\x1f\x7f]", "", text)[:MAX_RUN_NAME]


def eval_run_name(label: str, suite: str, budget: int | str | None = None) -> str:
    """``eval-<label>-<suite>``: the label is the stage (base, sft...) or the model folder's name; a budget-forced
    run (`harness.evals.budgets`) ends ``-budget<N>``."""
    return run_name("eval", label, suite, f"budget{budget}" if budget is not None else None)


def train_run_name(stage: str) -> str:
    return run_name("train", stage)


def nightly_run_name(suite: str, candidate_label: str) -> str:
    return run_name("nightly", suite, candidate_label)


def compare_run_name(labels: list[str]) -> str:
    return run_name("compare", "-vs-".join(labels))


def ratings_run_name(command: str, source: str) -> str:
    return run_name(command, source)


def watch_run_name(folder: str, suite: str) -> str:
    """``watch-<folder name>-<suite>``: the run `harness watch` charts a folder's checkpoints on."""
    return run_name("watch", folder, suite)


ARENA_RUN_NAME = "arena"
NIGHTLY_ARENA_RUN_NAME = "arena-nightly"


# ---------------------------------------------------------------------------------------------------- tags


@dataclass(frozen=True)
class RunTags:
    """The harness tags of one run, typed. Each field is the tag ``harness.<field>``; lists are comma-joined.

    Write with `tags(kind, **fields)`; read with `RunTags.from_tags(mapping)` or `RunTags.from_row(row)` (a row of
    `harness.tracking.store.search_runs`).
    """

    kind: str | None = None
    schema_version: int | None = None
    # checkpoints and suites
    stage: str | None = None  # base, sft, dpo, rlvr (train runs and the pipeline's eval runs)
    model: str | None = None  # the model as given: folder, hub id or models:/ URI
    model_hash: str | None = None  # content hash of the checkpoint
    imported: str | None = None  # an eval run read from lm-eval's own output: its results file
    suite: str | None = None
    suite_version: str | None = None
    cached_tasks: tuple[str, ...] = ()
    model_version: str | None = None  # registered model version of a train run's checkpoint
    logged_model: str | None = None  # MLflow LoggedModel id of a train run's checkpoint
    checkpoint: str | None = None  # local folder of a train run's checkpoint
    step: str | None = None  # the training step of the checkpoint an eval run scored (eval during training, watch)
    watched: str | None = None  # the folder `harness watch` watches: on its watch run and on each eval run it made
    budget: str | None = None  # the thinking budget (tokens) an eval run forced (`harness.evals.budgets`)
    curve: str | None = None  # a budget-forced eval run: the checkpoint's label on the scaling curve (no stage tag,
    # so that a stage's eval run stays the one without a budget)
    # arenas and ratings
    judge: str | None = None
    judge_version: str | None = None
    reward_model: str | None = None
    command: str | None = None  # rate / winrate
    # nightlies
    candidate: str | None = None
    baseline: str | None = None
    candidate_eval_run: str | None = None
    baseline_eval_run: str | None = None
    candidate_version: str | None = None
    regressions: tuple[str, ...] = ()
    verdict: Literal["pass", "fail", "cannot-compare"] | None = None
    promoted: str | None = None
    promoted_version: str | None = None  # the version this nightly pointed the alias at (--promote, a pass)
    promotion_held: Literal["true", "false"] | None = None  # the alias read back just after: still that version?
    aa: Literal["true"] | None = None  # an A/A nightly (--aa): the baseline evaluated again, cache bypassed
    drift: Literal["true", "false"] | None = None  # an A/A nightly's finding: its own scores moved beyond noise
    # compare
    runs: tuple[str, ...] = ()
    # the outbox (`harness.tracking.outbox`): what `harness sync` records exactly once
    record_id: str | None = None  # given to an eval or nightly run before it is logged; its outbox entry's id
    outbox_parent: str | None = None  # a run `harness sync` recorded at the top level: the parent it was meant for
    # liveness (`harness.tracking.liveness`): who holds a RUNNING run, and since when it last said it was alive
    host: str | None = None  # the machine whose process holds the run
    pid: str | None = None  # that process
    heartbeat: str | None = None  # epoch seconds of its last heartbeat
    reaped: str | None = None  # why a later command ended the run KILLED (its process died without ending it)
    resumed: str | None = None  # a pipeline continued by `harness run --resume`: how many times
    # decontamination (`harness.evals.decontam`): on a pipeline run, the eval tasks its training data contaminates
    contaminated: tuple[str, ...] = ()

    @classmethod
    def from_tags(cls, tags: Mapping[str, Any]) -> "RunTags":
        """Parse a run's tag mapping (missing tags are None or empty)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = tags.get(PREFIX + f.name)
            if raw is None or (isinstance(raw, float) and raw != raw):  # NaN: a pandas cell without the tag
                continue
            raw = str(raw)
            if f.name in _LIST_FIELDS:
                values[f.name] = tuple(x for x in raw.split(",") if x)
            elif f.name == "schema_version":
                values[f.name] = int(raw) if raw.isdigit() else None
            else:
                values[f.name] = raw
        return cls(**values)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "RunTags":
        """Parse the ``tags.*`` columns of a `search_runs` row."""
        return cls.from_tags(row_tags(row))


def row_tags(row: Mapping[str, Any]) -> dict[str, Any]:
    """The tag mapping of a `search_runs` row (its ``tags.*`` columns; cells of tags the run lacks are NaN)."""
    return {k[len("tags."):]: v for k, v in row.items() if str(k).startswith("tags.")}


_FIELDS = {f.name for f in dataclasses.fields(RunTags)}
_LIST_FIELDS = {"cached_tasks", "regressions", "runs", "contaminated"}
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
# The experiment's kind as MLflow records it: "Machine learning" (custom_model_development), whose first page is
# the runs table, not a GenAI app's traces. (MLflow 3.17's UI picks the view from its sidebar's GenAI / Model
# training switch instead, which `harness.tracking.store.ui_url` sets.)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# On a LoggedModel: its registered model versions, as JSON [{"name", "version"}] (as `mlflow.register_model`
# writes it; the UI lists them from this tag).
MODEL_VERSIONS_TAG = "mlflow.modelVersions"
# On a dataset input: what the run used it for.
DATASET_CONTEXT_TAG = "mlflow.data.context"
EVAL_CONTEXT = "eval"
TRAIN_CONTEXT = "training"  # a training stage's data (MLflow's own name for that context)


def tag_key(field: str) -> str:
    """The MLflow tag key of a `RunTags` field (``model_hash`` → ``harness.model_hash``)."""
    if field not in _FIELDS:
        raise KeyError(f"no harness tag {field!r}; tags: {', '.join(sorted(_FIELDS))}")
    return PREFIX + field


def column(field: str) -> str:
    """The `search_runs` column of a tag field (``suite`` → ``tags.harness.suite``)."""
    return "tags." + tag_key(field)


def tags(kind: Kind | None = None, **fields: Any) -> dict[str, str]:
    """Tags to write, by `RunTags` field name; with `kind`, also ``harness.kind`` and ``harness.schema_version``.

    None values are left out; lists and tuples are comma-joined. An unknown field name is a programming error
    (`KeyError`), so a misspelt tag cannot reach the record.
    """
    out: dict[str, str] = {}
    if kind is not None:
        out[tag_key("kind")] = Kind(kind).value
        out[tag_key("schema_version")] = str(SCHEMA_VERSION)
    for name, value in fields.items():
        if value is None:
            continue
        if name in _LIST_FIELDS and not isinstance(value, str):
            value = ",".join(str(v) for v in value)
        out[tag_key(name)] = str(value)
    return out


def where(kind: Kind | None = None, *, finished: bool = True, **fields: str) -> str:
    """An MLflow search filter: runs of `kind` (FINISHED ones only, unless asked) whose tags equal `fields`."""
    terms = []
    if kind is not None:
        terms.append(f"tags.`{tag_key('kind')}` = {_quote(Kind(kind).value)}")
    if finished:
        terms.append("attributes.status = 'FINISHED'")
    for name, value in fields.items():
        terms.append(f"tags.`{tag_key(name)}` = {_quote(value)}")
    return " and ".join(terms)


def where_model(model_hash: str) -> str:
    """A `search_logged_models` filter: the logged models of one checkpoint, by its content hash tag."""
    return f"tags.`{tag_key('model_hash')}` = {_quote(model_hash)}"


def where_parent(run_id: str) -> str:
    """A search term matching the runs nested under run `run_id`."""
    return f"tags.`{PARENT_TAG}` = {_quote(run_id)}"


def where_name(value: str) -> str:
    """A search term matching runs by name."""
    return f"attributes.run_name = {_quote(value)}"


def _quote(value: Any) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


_warned: set[str] = set()


def check_version(tags: Mapping[str, Any], run_id: str) -> RunTags:
    """Parse a run's tags and check its schema version: an older record is read with a one-line warning (once per
    run), a newer one raises `HarnessError`.

    Returns:
        The run's `RunTags`.
    """
    parsed = RunTags.from_tags(tags)
    version = parsed.schema_version or 0
    if version > SCHEMA_VERSION:
        raise HarnessError(f"run {run_id} was recorded with record schema version {version}, newer than this "
                           f"harness's {SCHEMA_VERSION}: upgrade harness to read it")
    if version < SCHEMA_VERSION and run_id not in _warned:
        _warned.add(run_id)
        from harness import console

        console.warn(f"run {run_id} was recorded with record schema version {version} (this harness writes "
                     f"{SCHEMA_VERSION}); reading it as version {SCHEMA_VERSION}")
    return parsed


# ----------------------------------------------------------------------------------------------- artifacts


Format = Literal["csv", "jsonl", "json", "yaml", "text", "png", "dir"]


@dataclass(frozen=True)
class Artifact:
    """One artifact of the record: its path inside the run and how it is stored.

    `harness.tracking.store` writes it (`Run.write`) and reads it back (`store.read`) by its format: ``csv`` and
    ``jsonl`` are pandas tables (``jsonl`` read with JSON's own types), ``json``/``yaml`` plain data, ``text``
    strings, ``png`` matplotlib figures, ``dir`` a local folder.
    """

    path: str
    format: Format

    def __post_init__(self) -> None:
        if posixpath.normpath(self.path) != self.path or self.path.startswith(("/", "..")):
            raise ValueError(f"artifact path {self.path!r} is not a normalised relative path")

    @property
    def folder(self) -> str | None:
        """The folder part of the path (None at the run's root)."""
        parent = posixpath.dirname(self.path)
        return parent or None


def _file(name: str) -> str:
    """A file name from a task or model name: path separators and odd characters become ``_``."""
    return re.sub(r"[^\w\-.]", "_", str(name)).strip(".") or "_"


# the resolved config of a pipeline or train run
CONFIG = Artifact("config.yaml", "yaml")
# a train run's checkpoint folder: stored as its LoggedModel's artifacts (registered as a model version);
# ``runs:/<train run>/checkpoint`` names it
CHECKPOINT = Artifact("checkpoint", "dir")

# eval runs
LM_EVAL_RESULTS = Artifact("lm_eval_results.json", "json")  # lm-eval's output without the samples
SCORES = Artifact("scores.csv", "csv")  # skill, task, metric, value, stderr, ci_low, ci_high, n
SKILLS = Artifact("skills.csv", "csv")  # skill, value, stderr, ci_low, ci_high, n, tasks
SUITE_FOLDER = "suite"  # the suite file, copied


def samples(task: str) -> Artifact:
    """Per-item rows of one task: doc_id, item_id, prompt, target, response, one column per metric."""
    return Artifact(f"samples/{_file(task)}.jsonl", "jsonl")


# the scaling curve of thinking budgets (`harness.evals.budgets`): label, budget, score with its CI, mean tokens
SCALING_TABLE = Artifact("scaling/scaling.csv", "csv")
SCALING_FIGURE = Artifact("scaling/scaling.png", "png")

# the pipeline's stage x skill table
STAGE_SKILL_TABLE = Artifact("stage_skill.csv", "csv")
STAGE_SKILL_TEXT = Artifact("stage_skill.txt", "text")
STAGE_SKILL_FIGURE = Artifact("stage_skill.png", "png")

# compare runs
COMPARE_TABLE = Artifact("compare.csv", "csv")
COMPARE_TEXT = Artifact("compare.txt", "text")

# arena runs (under arena/) and ratings runs (under rate/ or winrate/)
ARENA = "arena"
ARENA_CONFIG = Artifact("arena/config.yaml", "yaml")
ARENA_ANSWERS = Artifact("arena/answers.jsonl", "jsonl")
ARENA_BATTLES = Artifact("arena/battles.jsonl", "jsonl")
ARENA_JUDGEMENTS = Artifact("arena/judgements.jsonl", "jsonl")
ARENA_FAILURES = Artifact("arena/failures.jsonl", "jsonl")


def leaderboard(prefix: str = ARENA) -> Artifact:
    """A ratings leaderboard (model, rating, ci_low, ci_high, ...) under `prefix` (arena, rate, winrate)."""
    return Artifact(f"{prefix}/leaderboard.csv", "csv")


def leaderboard_json(prefix: str = ARENA) -> Artifact:
    return Artifact(f"{prefix}/leaderboard.json", "json")


def matrix(name: str, prefix: str = ARENA) -> Artifact:
    """A square model × model table (win_prob, empirical_win_rate, battle_counts); first column ``model``."""
    return Artifact(f"{prefix}/{_file(name)}.csv", "csv")


def ratings_figure(name: str, prefix: str = ARENA) -> Artifact:
    return Artifact(f"{prefix}/{_file(name)}.png", "png")


def ratings_details(prefix: str) -> Artifact:
    return Artifact(f"{prefix}/details.json", "json")


# nightly runs
NIGHTLY_CONFIG = Artifact("nightly/config.yaml", "yaml")
NIGHTLY_COMPARISONS = Artifact("nightly/comparisons.csv", "csv")
NIGHTLY_REASONS = Artifact("nightly/reasons.txt", "text")
NIGHTLY_REPORT_MD = Artifact("nightly/report.md", "text")
NIGHTLY_REPORT_HTML = Artifact("nightly/report.html", "text")

# a pipeline run's decontamination: every contaminated (training example, eval item) pair, one per line
# (dataset, source, task, item_id, train_index, score, shared_ngrams)
DECONTAM_PAIRS = Artifact("decontam/pairs.jsonl", "jsonl")


# ------------------------------------------------------------------------------------ logged models, datasets


def logged_model_name(label: str) -> str:
    """A LoggedModel's name from a stage or checkpoint label (MLflow forbids ``/ : . % " '`` in it)."""
    return re.sub(r"""[/:.%"'\x00-\x1f\x7f]""", "_", str(label)).strip()[:MAX_RUN_NAME] or "checkpoint"


MAX_DIGEST = 36  # MLflow's limit on a dataset digest


def dataset_name(task: str) -> str:
    """The dataset input of one eval task: named as the task (MLflow allows 500 characters)."""
    return str(task)[:500]


@dataclass(frozen=True)
class TaskData:
    """The data one eval task read, as the eval run's dataset input.

    `source_type` is MLflow's: ``local`` (`source` ``{"uri": path}``) or ``hugging_face`` (`source` ``{"path": hub
    id, "config_name", "data_files", "split", "revision"}``). `digest` identifies the content (at most 36 characters).
    """

    name: str
    digest: str
    source_type: Literal["local", "hugging_face"]
    source: Mapping[str, Any]
    rows: int | None = None

    def __post_init__(self) -> None:
        if not self.digest or len(self.digest) > MAX_DIGEST:
            raise ValueError(f"dataset digest {self.digest!r} must have 1 to {MAX_DIGEST} characters")


# ------------------------------------------------------------------------------------------ metrics, params


def task_metric(skill: str, task: str, metric: str) -> str:
    """An eval metric: ``<skill>/<task>/<metric>/<filter>`` (lm-eval's ``metric,filter`` split at the comma)."""
    return key(f"{skill}/{task}/{metric}")


def skill_metric(skill: str) -> str:
    """A skill's aggregate score (``overall`` for the mean over skills): ``<skill>/score``."""
    return key(f"{skill}/score")


def lm_eval_stderr(metric: str) -> str:
    """lm-eval's stderr key of a metric key: ``exact_match,strict-match`` → ``exact_match_stderr,strict-match``."""
    name, _, filt = metric.partition(",")
    return f"{name}_stderr,{filt}"


def task_stderr(skill: str, task: str, metric: str) -> str:
    """The standard error beside `task_metric`: ``<skill>/<task>/<metric>_stderr/<filter>``."""
    return task_metric(skill, task, lm_eval_stderr(metric))


def skill_stderr(skill: str) -> str:
    """``<skill>/score_stderr``."""
    return key(f"{skill}/score_stderr")


OVERALL = "overall"

# nightly metrics: the candidate's value under the eval name, and these prefixes before it
# (mde: the minimum detectable effect at the metric's n and observed disagreement; discordant: the share of items
# the two sides score differently, `harness.nightly.power`)
NIGHTLY_PREFIXES = ("baseline", "delta", "delta_ci_low", "delta_ci_high", "p_value", "p_adjusted", "mde",
                    "discordant", "discordant_ci_low", "discordant_ci_high")
NIGHTLY_COUNTS = {"metrics": "nightly/metrics", "regressions": "nightly/regressions",
                  "improvements": "nightly/improvements", "pass": "nightly/pass", "drift": "nightly/drift",
                  "drifted": "nightly/drifted_metrics"}


def nightly_metric(prefix: str, metric_key: str) -> str:
    """``<prefix>/<skill>/<task>/<metric>`` for one compared metric (prefix from `NIGHTLY_PREFIXES`)."""
    if prefix not in NIGHTLY_PREFIXES:
        raise KeyError(f"no nightly metric prefix {prefix!r}; prefixes: {', '.join(NIGHTLY_PREFIXES)}")
    return key(f"{prefix}/{metric_key}")


# The reproducibility fingerprint of an eval run (`harness.evals.fingerprint`): what can move a score without any
# setting changing (lm-eval#3357: greedy decoding varies across batch sizes and backends), as tags
# ``fingerprint.<field>``. Not params: an imported lm-eval run, whose params equal a harness eval's, has none.
FINGERPRINT_FIELDS = ("backend", "backend_version", "dtype", "batch_size", "chat_template", "lm_eval",
                      "transformers", "torch", "hardware")
FINGERPRINT_PREFIX = "fingerprint."


def fingerprint_tag(field: str) -> str:
    """The tag of one fingerprint field: ``fingerprint.<field>``."""
    if field not in FINGERPRINT_FIELDS:
        raise KeyError(f"no fingerprint field {field!r}; fields: {', '.join(FINGERPRINT_FIELDS)}")
    return FINGERPRINT_PREFIX + field


def fingerprint_tags(fingerprint: Mapping[str, Any]) -> dict[str, str]:
    """The tags of a fingerprint (field → value); empty values left out."""
    return {fingerprint_tag(k): str(v) for k, v in fingerprint.items() if v not in (None, "")}


def parse_fingerprint(tags: Mapping[str, Any]) -> dict[str, str]:
    """field → value of the fingerprint tags in a run's tag mapping (empty for a run that has none)."""
    found = {f: tags.get(fingerprint_tag(f)) for f in FINGERPRINT_FIELDS}
    return {f: v for f, v in found.items() if isinstance(v, str)}  # a pandas cell without the tag is NaN


def eval_step_metric(skill: str) -> str:
    """A skill's score (``overall`` too) logged by training step on a train run (eval during training) or a watch
    run: ``eval/<skill>/score``, so that the MLflow UI charts it against the step."""
    return key(f"eval/{skill}/score")


# thinking accounting (`harness.reasoning.sample_metrics`): per eval task ``reasoning/<skill>/<task>/<stat>``, pooled
# over an eval run's generation tasks ``reasoning/<stat>``, per arena model ``reasoning/<model>/<stat>``
REASONING_PREFIX = "reasoning"
REASONING_STATS = tuple(f"{part}_{k}" for part in ("reasoning_tokens", "answer_tokens")
                        for k in ("mean", "stderr", "p50", "p90")) + (
    "tokens_mean", "tokens_stderr", "unterminated_rate", "unterminated_rate_stderr", "forced_rate", "items",
    "usd_per_item")


def reasoning_metric(stat: str, *scope: str) -> str:
    """``reasoning/[<scope>/...]<stat>``: a thinking statistic of an eval task (scope: skill, task), of an eval run
    (no scope) or of an arena model (scope: the model)."""
    if stat not in REASONING_STATS:
        raise KeyError(f"no reasoning statistic {stat!r}; statistics: {', '.join(REASONING_STATS)}")
    return key("/".join([REASONING_PREFIX, *map(str, scope), stat]))


def compare_delta_metric(label: str, skill: str) -> str:
    return key(f"delta/{label}/{skill}/score")


def ratings_metric(column: str, model: str) -> str:
    """A leaderboard column of one model: ``<column>/<model>`` (``rating/sft``, ``ci_low/sft``...)."""
    return key(f"{column}/{model}")


# a judge's reliability (`harness.ratings.reliability`), on an arena run and a `harness winrate --mlflow` run:
# ``reliability/<stat>`` is the estimate, ``reliability/<stat>/<part>`` its standard error, CI ends and units
RELIABILITY_PREFIX = "reliability"
RELIABILITY_STATS = ("position_flip_rate", "position_bias", "length_bias", "tie_rate", "self_family_score",
                     "self_preference", "human_accuracy", "human_kappa")
RELIABILITY_PARTS = ("value", "se", "ci_low", "ci_high", "n")


def reliability_metric(stat: str, part: str = "value") -> str:
    """``reliability/<stat>`` (the estimate) or ``reliability/<stat>/<part>`` (se, ci_low, ci_high, n)."""
    if stat not in RELIABILITY_STATS:
        raise KeyError(f"no reliability statistic {stat!r}; statistics: {', '.join(RELIABILITY_STATS)}")
    if part not in RELIABILITY_PARTS:
        raise KeyError(f"no reliability part {part!r}; parts: {', '.join(RELIABILITY_PARTS)}")
    return f"{RELIABILITY_PREFIX}/{stat}" + ("" if part == "value" else f"/{part}")


def parse_reliability_metric(name: str) -> tuple[str, str] | None:
    """``reliability/<stat>[/<part>]`` → ``(stat, part)``; None for other metrics."""
    parts = name.split("/")
    if len(parts) not in (2, 3) or parts[0] != RELIABILITY_PREFIX or parts[1] not in RELIABILITY_STATS:
        return None
    if len(parts) == 2:
        return parts[1], "value"
    return (parts[1], parts[2]) if parts[2] in RELIABILITY_PARTS[1:] else None


# the judge's fingerprint, as params of an arena run (and of a winrate run, from the annotations): what judged
# (kind, model), a hash of what it was asked (the LLM judge's prompt; "none" for judges without one) and its
# sampling temperature
JUDGE_FINGERPRINT = ("kind", "model", "prompt_version", "temperature")


def judge_param(field: str) -> str:
    """``judge.<field>``: one field of the judge's fingerprint."""
    if field not in JUDGE_FINGERPRINT:
        raise KeyError(f"no judge fingerprint field {field!r}; fields: {', '.join(JUDGE_FINGERPRINT)}")
    return f"judge.{field}"


# decontamination, on a pipeline run: per (training dataset, eval task) the contaminated items, the items, the rate
DECONTAM_STATS = ("contaminated", "total", "rate")
DECONTAM_PREFIX = "decontam"


def decontam_metric(dataset: str, task: str, stat: str) -> str:
    """``decontam/<dataset>/<task>/<stat>``: the dataset is the stage whose data it is (``all``: pooled)."""
    if stat not in DECONTAM_STATS:
        raise KeyError(f"no decontamination statistic {stat!r}; statistics: {', '.join(DECONTAM_STATS)}")
    return key(f"{DECONTAM_PREFIX}/{_file(dataset)}/{task}/{stat}")


def parse_decontam_metric(name: str) -> tuple[str, str, str] | None:
    """``decontam/<dataset>/<task>/<stat>`` → ``(dataset, task, stat)``; None for other metrics."""
    parts = name.split("/")
    if len(parts) < 4 or parts[0] != DECONTAM_PREFIX or parts[-1] not in DECONTAM_STATS:
        return None
    return parts[1], "/".join(parts[2:-1]), parts[-1]


# training costs, on each train run and (as totals) on the pipeline run
COST = {"usd": "cost/usd", "tokens": "cost/tokens", "seconds": "cost/seconds", "flops": "cost/flops"}
COST_TOTALS = {"usd": "cost/total_usd", "tokens": "cost/total_tokens", "seconds": "cost/total_seconds",
               "flops": "cost/total_flops"}
# a multi-process launch (`harness.distributed`), on the pipeline run and each train run; absent in one process
DISTRIBUTED = {"processes": "distributed.processes", "backend": "distributed.backend"}


def task_param(task: str, setting: str) -> str:
    """An eval run's per-task setting: ``task.<task>.<setting>`` (version, num_fewshot, apply_chat_template...)."""
    return key(f"task.{task}.{setting}")


def parse_task_param(name: str) -> tuple[str, str] | None:
    """``task.<task>.<setting>`` → ``(task, setting)``; None for other params."""
    if not name.startswith("task."):
        return None
    task, _, setting = name[len("task."):].rpartition(".")
    return (task, setting) if task else None


def compare_run_param(label: str) -> str:
    """A compare run's param naming one compared eval run: ``run.<label>``."""
    return key(f"run.{label}")
