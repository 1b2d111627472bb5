"""The arena, in order: prompts → answers (cached) → judgements in both orders (cached) → battles → ratings →
MLflow.

`run_arena` rates any checkpoints on any prompt set with the configured judge; `pipeline_arena` is the step of
`harness run` that ranks the stage checkpoints (base as the baseline), first training the tiny reward model when the
judge is ``reward-model`` and none is given.

One MLflow run per arena (tag ``harness.kind=arena``, nested under the pipeline's run when there is one). It holds
the resolved arena config and model hashes as params, the raw battles (``arena/battles.jsonl``, Chatbot Arena format
plus the two verdicts), every judgement with its tokens and cost (``arena/judgements.jsonl``), the failed ones
(``arena/failures.jsonl``), the answers (``arena/answers.jsonl``), the leaderboard and matrices, the ratings as
metrics (``rating/<model>``, ``ci_low/<model>``, ``win_rate_vs_baseline/<model>``, …) and the figures, and the
judge's reliability (`harness.ratings.reliability`: ``reliability/<stat>`` with its CI, from the battles, the
declared families and the labels file) beside the judge's fingerprint (params ``judge.kind``, ``judge.model``,
``judge.prompt_version``, ``judge.temperature``). Battles are logged before the ratings are fitted, so they survive a
fit that fails.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from harness import console
from harness.config import ArenaConfig, RewardModelConfig
from harness.errors import HarnessError
from harness.tracking import schema, store


@dataclass
class ArenaResult:
    """An arena's records and ratings.

    Attributes:
        battles: one row per (prompt, pair) in Chatbot Arena format (``model_a, model_b, winner``) plus
            ``prompt_id, skill, judge, judge_version, verdict_ab, verdict_ba, score_a, consistent, len_a, len_b,
            tokens_a, tokens_b``.
        leaderboard: ``rank, model, rating, ci_low, ci_high, battles, wins, ties, losses, win_rate, avg_win_prob``
            and, with a baseline, ``win_rate_vs_baseline, win_rate_ci_low, win_rate_ci_high,
            lc_win_rate_vs_baseline, p_win_vs_baseline``; best first.
        failures: the failed judgements (``model_a, model_b, prompt_id, order, judge, error``).
        answers: the generation records.
        win_prob: predicted win probability, row model over column model.
        stats: judging and generation totals (also logged as metrics).
        judge, baseline, run_id: the judge's identity, the baseline model, the MLflow run.
        reliability: the judge's reliability report (also on ``leaderboard.attrs["reliability"]``, so that a summary
            built from the leaderboard carries it).
    """

    battles: pd.DataFrame
    leaderboard: pd.DataFrame
    failures: pd.DataFrame
    answers: pd.DataFrame
    win_prob: pd.DataFrame
    stats: dict[str, float] = field(default_factory=dict)
    judge: str = ""
    baseline: str | None = None
    run_id: str | None = None
    reliability: Any = None  # the judge's `harness.ratings.reliability.Reliability`


def _cache_root(results_dir: Path, cfg: ArenaConfig) -> Path | None:
    return results_dir / "cache" / "arena" if cfg.cache else None


def _report_failures(failures: pd.DataFrame, total: int) -> None:
    if failures.empty:
        return
    kinds = Counter(e.split(":")[0] for e in failures["error"])
    detail = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    console.warn(f"{len(failures)} of {total} judgements failed ({detail}); their battles are left out "
                 f"of the ratings, not counted as ties (see {schema.ARENA_FAILURES.path})")


def _params(models: dict[str, str], hashes: dict[str, str], cfg: ArenaConfig, judge, prompts: list[dict],
            settings, pairs) -> dict[str, Any]:
    from harness.arena.prompts import prompt_hash
    from harness.arena.verdicts import fingerprint

    digest = hashlib.sha256("".join(p["id"] + prompt_hash(p) for p in prompts).encode()).hexdigest()[:16]
    params = {
        **store.flatten(asdict(cfg), "arena."),
        "judge": judge.identity,
        "judge_version": judge.version,
        **{schema.judge_param(k): v for k, v in fingerprint(judge).items()},
        "prompts.n": len(prompts),
        "prompts.digest": digest,
        "pairs": len(pairs),
        "generation.key": settings.key(),
        "generation.chat_template": True,
        **{f"model.{name}": spec for name, spec in models.items()},
        **{f"checkpoint_hash.{name}": h for name, h in hashes.items()},
    }
    if getattr(judge, "endpoint", None):
        params["judge_endpoint"] = judge.endpoint
    return params


def _inputs(models: dict[str, str], cfg: ArenaConfig) -> tuple:
    """Check the cheap inputs before any model or judge loads: the engine, prompts, pairs, the families and the
    labels file, model paths (→ content hashes). Returns (prompts, pairs, hashes, labels or None)."""
    from harness.arena.battles import schedule
    from harness.arena.prompts import read_prompts
    from harness.evals.checks import engine_installed
    from harness.models.load import content_hash

    engine_installed(cfg.engine, "arena.engine")

    prompts = read_prompts(cfg.prompt_file, cfg.prompts)
    pairs = schedule(list(models), cfg.mode, cfg.baseline)
    unknown = sorted(set(cfg.families) - set(models))
    if unknown:
        raise HarnessError(f"config key arena.families: {', '.join(map(repr, unknown))} is not a model of this arena "
                           f"(models: {', '.join(models)})")
    labels = _labels(cfg.labels, prompts, pairs)
    hashes = {name: content_hash(spec) for name, spec in models.items()}  # a missing model fails here
    return prompts, pairs, hashes, labels


def _labels(path: str | None, prompts: list[dict], pairs: list[tuple[str, str]]):
    """The human labels file read and checked, or None; a file none of whose labels names a scheduled pair on one of
    these prompts is refused (it would measure nothing)."""
    if not path:
        return None
    from harness.ratings.reliability import read_labels

    labels = read_labels(path)
    ids = {str(p["id"]) for p in prompts}
    scheduled = {frozenset(p) for p in pairs}
    hits = sum(p in ids and frozenset((a, b)) in scheduled for p, a, b in
               zip(labels["prompt_id"], labels["model_a"], labels["model_b"]))
    if not hits:
        raise HarnessError(f"{path}: none of its {len(labels)} labels names a pair of this arena on its prompts "
                           f"(matched by prompt_id and model_a / model_b; pairs: "
                           f"{', '.join(f'{a}-{b}' for a, b in pairs)}; config key arena.labels)")
    return labels


def _arena(
    run: store.Run,
    models: dict[str, str],
    cfg: ArenaConfig,
    judge,
    inputs: tuple,
    results_dir: Path,
    seed: int,
    out: TextIO,
    trust_remote_code: bool = False,
) -> ArenaResult:
    """The arena inside an open MLflow run (see the module docstring); `inputs` come from `_inputs`, checked."""
    from harness.arena.answers import GenerationSettings, generate
    from harness.arena.battles import judge_battles
    from harness.arena.leaderboard import format_leaderboard, rate
    from harness.report.figures import arena_figures
    from harness.ratings.report import log_ratings

    prompts, pairs, hashes, labels = inputs
    settings = GenerationSettings(cfg.max_new_tokens, cfg.temperature, cfg.top_p, seed, cfg.engine,
                                  dict(cfg.engine_args), cfg.reasoning, cfg.budget)
    run.log_params(_params(models, hashes, cfg, judge, prompts, settings, pairs))
    run.write(schema.ARENA_CONFIG, asdict(cfg))
    cache = _cache_root(results_dir, cfg)

    start = time.perf_counter()
    answers = generate(models, prompts, settings, batch_size=cfg.batch_size,
                       cache_dir=cache / "generations" if cache else None, trust_remote_code=trust_remote_code,
                       hashes=hashes, device=cfg.device)
    gen_seconds = time.perf_counter() - start
    answers_frame = pd.DataFrame(answers)
    run.write(schema.ARENA_ANSWERS, answers_frame)
    made = answers_frame[~answers_frame["cached"]]
    gen_stats = {
        "generation/answers": float(len(answers_frame)),
        "generation/cached": float(answers_frame["cached"].sum()),
        "generation/seconds": gen_seconds,
        "generation/answers_per_s": float(len(made) / made["seconds"].sum()) if len(made) else float("nan"),
        "generation/mean_answer_tokens": float(answers_frame["answer_tokens"].mean()),
        **_thinking(answers_frame),
    }

    judged = judge_battles(judge, prompts, answers, pairs, cache_dir=cache / "judgements" if cache else None)
    run.write(schema.ARENA_BATTLES, judged.battles)
    run.write(schema.ARENA_JUDGEMENTS, judged.judgements)
    if not judged.failures.empty:
        run.write(schema.ARENA_FAILURES, judged.failures)
    stats = {**gen_stats, **{f"judge/{k}": v for k, v in judged.stats.items()}}
    run.log_metrics(stats)
    _report_failures(judged.failures, int(judged.stats["judgements"]))
    if judged.battles.empty:
        first = judged.failures["error"].iloc[0] if not judged.failures.empty else "none"
        raise HarnessError(f"arena: no battles to rate — every judgement failed (first error: {first}); answers are "
                           "cached, so a re-run only repeats the judging")

    ratings = rate(judged.battles, answers, baseline=cfg.baseline, rounds=cfg.bootstrap, seed=seed,
                   scoring=cfg.scoring, strong_weight=cfg.strong_weight)
    for message in ratings.warnings:
        console.warn(message)
    board = ratings.leaderboard
    ratings_params = {f"ratings.{k}": v for k, v in board.attrs.items() if not isinstance(v, dict)}
    matrices = {"win_prob": ratings.win_prob, "empirical_win_rate": ratings.empirical_win_rate,
                "battle_counts": ratings.battle_counts}
    log_ratings(run, board, params=ratings_params, matrices=matrices,
                figures=arena_figures(board, ratings.win_prob, judge.identity), prefix=schema.ARENA)
    n_failed = int(judged.stats["battles_failed"])
    level = board.attrs.get("level", 0.95)
    reliability = _reliability(run, judged.battles, cfg, labels, seed)
    board.attrs["reliability"] = reliability
    print(f"\nArena: {len(prompts)} prompts, {len(models)} models, judge {judge.identity}, {len(judged.battles)} "
          f"battles ({n_failed} left out for failed judgements), positions swapped; Bradley-Terry ratings with "
          f"{level:.0%} bootstrap CIs ({cfg.bootstrap} rounds)"
          + (f"; baseline {cfg.baseline}" if cfg.baseline else "")
          + (f"; scoring {board.attrs['scoring']}" if cfg.scoring != "paired" else "")
          + f"\n{format_leaderboard(board)}", file=out)
    print(format_reliability(reliability, judge), file=out)
    return ArenaResult(
        battles=judged.battles, leaderboard=board, failures=judged.failures, answers=answers_frame,
        win_prob=ratings.win_prob, stats=stats, judge=judge.identity, baseline=cfg.baseline, run_id=run.run_id,
        reliability=reliability,
    )


def _thinking(answers: pd.DataFrame) -> dict[str, float]:
    """Per arena model whose answers carry reasoning (`harness.arena.answers`): its thinking accounting
    (``reasoning/<model>/<stat>``: tokens with their stderr and percentiles, unterminated and forced shares)."""
    from harness import reasoning

    if "reasoning_tokens" not in answers:
        return {}
    out: dict[str, float] = {}
    for model, rows in answers[answers["reasoning_tokens"].notna()].groupby("model", sort=False):
        table = rows.rename(columns={"answer_tokens": "generated", "answer_only_tokens": "answer_tokens"})
        stats = reasoning.sample_metrics(table.assign(terminated=table["terminated"].astype(bool)))
        out.update({schema.reasoning_metric(stat, model): v for stat, v in stats.items() if v == v})
    return out


def _reliability(run: store.Run, battles: pd.DataFrame, cfg: ArenaConfig, labels, seed: int):
    """The judge's reliability from the battles, logged as metrics on the arena run."""
    from harness.ratings.reliability import arena_reliability

    report = arena_reliability(battles, judge_family=cfg.judge_family, families=cfg.families, labels=labels,
                               rounds=cfg.bootstrap, seed=seed)
    run.log_metrics(report.metrics())
    for note in report.notes:
        console.warn(f"judge reliability: {note}")
    return report


def format_reliability(report, judge) -> str:
    """The terminal block: a line with the judge's fingerprint, one row per statistic, a line on what was not
    measured and why."""
    from harness.arena.verdicts import fingerprint
    from harness.report.tables import render

    fp = fingerprint(judge)
    what = fp["kind"] if fp["model"] == fp["kind"] else f"{fp['kind']} {fp['model']}"
    head = (f"\nJudge reliability ({what}, prompt version {fp['prompt_version']}, temperature "
            f"{fp['temperature']}; {report.level:.0%} CIs clustered by prompt)")
    missing = report.missing_text()
    table = render(report.display(), {"statistic": "statistic", "estimate": f"estimate [{report.level:.0%} CI]",
                                      "n": "n"}, align={"estimate": "right"})
    return f"{head}\n{table}" + (f"\n{missing}" if missing else "")


def run_arena(
    models: dict[str, str],
    *,
    cfg: ArenaConfig,
    results_dir: str | Path = "results",
    parent: store.Run | None = None,
    seed: int = 0,
    experiment: str = "harness",
    run_name: str = schema.ARENA_RUN_NAME,
    judge=None,
    out: TextIO | None = None,
    trust_remote_code: bool = False,
) -> ArenaResult:
    """Run an arena among `models` and record it in one MLflow run.

    Args:
        models: display name → model spec (folder, hub id or MLflow URI).
        cfg: arena settings (prompt set, judge, mode, baseline, generation, bootstrap).
        results_dir: results folder (caches under ``cache/arena``; the default sqlite MLflow store).
        parent: the MLflow run to nest under, if any.
        seed: generation and bootstrap seed.
        experiment: MLflow experiment (when there is no parent).
        run_name: the MLflow run's name.
        judge: a ready judge (default: built from `cfg`).
        out: where the leaderboard is printed (default stdout; warnings go to stderr).
        trust_remote_code: passed to the model loader.

    Returns:
        The `ArenaResult`.

    Raises:
        HarnessError: bad prompts, models, judge settings or mode; answers finished before the error stay cached.
    """
    from harness.arena.judges import build_judge

    results_dir = Path(results_dir).resolve()
    inputs = _inputs(models, cfg)
    judge = judge or build_judge(cfg)
    judge.check(inputs[0])
    tags = schema.tags(judge=judge.identity, judge_version=judge.version)
    if parent is None:
        from harness import provenance

        tags.update(provenance.tags(seed))
    with store.run(run_name, schema.Kind.ARENA, experiment=experiment, results_dir=results_dir, parent=parent,
                   tags=tags) as run:
        return _arena(run, models, cfg, judge, inputs, results_dir, seed, out or console.result_stream(),
                      trust_remote_code)


def _reward_model(init: str, rm: RewardModelConfig, results_dir: Path, pairs_seed: int,
                  out: TextIO) -> tuple[str, dict]:
    """Train (or reuse) the tiny reward model on the pipeline's preference pairs; its folder and held-out metrics."""
    from harness.models.load import content_hash
    from harness.train import reward

    key = json.dumps([content_hash(init), pairs_seed, rm.pairs, rm.epochs, rm.batch_size, rm.learning_rate])
    folder = results_dir / "cache" / "arena" / "reward_models" / hashlib.sha256(key.encode()).hexdigest()[:16]
    metrics_file = folder / "heldout_metrics.json"
    if metrics_file.is_file():
        print(f"arena reward model: reusing {folder}", file=out)
        return str(folder), json.loads(metrics_file.read_text())
    print(f"arena reward model: training from {init} on {rm.pairs} preference pairs", file=out)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        result = reward.train(init, tmp, pairs=rm.pairs, seed=pairs_seed, epochs=rm.epochs,
                              batch_size=rm.batch_size, learning_rate=rm.learning_rate)
        metrics = {**result.extra_metrics, "reward_model/train_seconds": result.seconds,
                   "reward_model/train_tokens": float(result.tokens)}
        (tmp / "heldout_metrics.json").write_text(json.dumps(metrics))
    except BaseException:  # a full disk, Ctrl-C: no half-written folder left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return str(folder), metrics


def pipeline_arena(
    checkpoints: dict[str, str],
    *,
    cfg: ArenaConfig,
    results_dir: Path,
    parent: store.Run | None,
    seed: int,
    dpo_pairs_seed: int | None = None,
) -> ArenaResult:
    """The arena step of `harness run`: rank the stage checkpoints, base as the baseline when present.

    With ``cfg.judge == "reward-model"`` and no ``cfg.reward_model.path``, a tiny reward model is first trained from
    the base checkpoint on the pipeline's preference pairs (`dpo_rows` with `dpo_pairs_seed`; settings in
    ``cfg.reward_model``) and its held-out accuracy is logged as ``reward_model/heldout_accuracy``. The leaderboard
    is printed to stderr.

    Args:
        checkpoints: stage name → checkpoint folder, in stage order.
        cfg: arena settings.
        results_dir: the pipeline's results folder.
        parent: the pipeline's MLflow run.
        seed: generation and bootstrap seed.
        dpo_pairs_seed: the seed the DPO stage drew its pairs with (default: `seed`).

    Returns:
        The `ArenaResult`.
    """
    from harness.arena.judges import RewardModelJudge, build_judge

    results_dir = Path(results_dir).resolve()
    out = console.stream()
    baseline = cfg.baseline or ("base" if "base" in checkpoints else None)
    cfg = replace(cfg, baseline=baseline)
    print(f"arena: {', '.join(checkpoints)} (judge {cfg.judge}" + (f", baseline {baseline})" if baseline else ")"),
          file=out, flush=True)
    inputs = _inputs(checkpoints, cfg)
    rm_metrics: dict = {}
    if cfg.judge == "reward-model" and not cfg.reward_model.path:
        init = checkpoints.get("base") or next(iter(checkpoints.values()))
        pairs_seed = seed if dpo_pairs_seed is None else dpo_pairs_seed
        folder, rm_metrics = _reward_model(init, cfg.reward_model, results_dir, pairs_seed, out)
        judge = RewardModelJudge(folder, tie_margin=cfg.reward_model.tie_margin,
                                 strong_margin=cfg.reward_model.strong_margin, batch_size=cfg.batch_size,
                                 device=cfg.device)
        print(f"arena reward model: held-out accuracy {rm_metrics['reward_model/heldout_accuracy']:.3f} "
              f"on {int(rm_metrics['reward_model/heldout_pairs'])} preference pairs", file=out)
    else:
        judge = build_judge(cfg)
    judge.check(inputs[0])
    tags = schema.tags(judge=judge.identity, judge_version=judge.version)
    with store.run(schema.ARENA_RUN_NAME, schema.Kind.ARENA, results_dir=results_dir, parent=parent,
                   tags=tags) as run:
        if rm_metrics:
            run.log_metrics(rm_metrics)
            run.set_tags(schema.tags(reward_model=judge.identity.split(":", 1)[1]))
        result = _arena(run, checkpoints, cfg, judge, inputs, results_dir, seed, out)
    result.stats.update(rm_metrics)
    return result
