"""The main job, in order: pretrain (or load) → SFT → DPO → RLVR, evaluating every stage, then an arena between them.

One parent MLflow run per call, one nested run per training stage (params: the stage's config and its TRL config;
metrics: the training curve by step and the stage's cost; artifacts: the resolved config; output: the checkpoint as
an MLflow LoggedModel named after the stage, registered as a model version tagged with its stage). Evaluation and
arena runs nest under the same parent.
Checkpoints are written to ``<results>/checkpoints/<run name>/<stage>`` through a temporary folder, so a failed
stage leaves no half-written checkpoint; its MLflow run ends FAILED.
Reasoning (`harness.reasoning`): ``model.reasoning`` applies to the evals and the arena unless ``eval.reasoning`` or
``arena.reasoning`` says otherwise; ``model.think`` trains the think format (SFT adds the delimiters to the tokenizer
and teaches worked steps inside them, RLVR rewards the answer part); ``eval.budgets`` adds one eval run per
thinking budget and stage, and the scaling curve on the pipeline run (`harness.evals.budgets`).
Under ``accelerate launch`` the main process runs all of this and the others only train each TRL stage with it
(`_follow`, `harness.distributed`); pretraining, a plain torch loop, runs on the main process alone.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import console, distributed, provenance
from harness.config import Config, to_dict
from harness.config import validate as validate_config
from harness.tracking import schema, store

STAGES = ("base", "sft", "dpo", "rlvr")


@dataclass
class StageRecord:
    """One stage's line in the summary."""

    stage: str
    checkpoint: str
    tokens: int
    seconds: float
    cost_usd: float
    flops: float
    run_id: str


@dataclass
class PipelineResult:
    """What `run_pipeline` produced: the parent run, per-stage records, and the later steps' results."""

    run_id: str
    tracking_uri: str
    experiment_id: str = ""
    stages: list[StageRecord] = field(default_factory=list)
    evals: dict = field(default_factory=dict)
    arena: object | None = None
    curves: dict = field(default_factory=dict)  # stage → budget → SuiteResult (eval.budgets)
    thinking: dict = field(default_factory=dict)  # stage → its eval's pooled thinking accounting (reasoning on)


def _stage_cfg(cfg: Config, stage: str):
    return cfg.pretrain if stage == "base" else getattr(cfg, stage)


def validate(cfg: Config) -> None:
    """Check the config as a whole before anything runs: its own rules (values, ranges, rules between keys; see
    `harness.config`), then that every enabled stage's ``init`` resolves to a model, and its dataset, trainer
    settings and LoRA targets check (`harness.train.checks`); raise `HarnessError`."""
    from harness.models.load import resolve
    from harness.train.checks import check_stages

    validate_config(cfg)
    if cfg.eval.during_training and distributed.processes() > 1:
        from harness.errors import HarnessError

        raise HarnessError(f"config key eval.during_training: evaluates inside one process's training loop, and this "
                           f"launch has {distributed.processes()} processes; set it off (null) or train in one process")
    for stage in STAGES[1:]:
        init = _stage_cfg(cfg, stage).init
        if init and _stage_cfg(cfg, stage).enabled:
            resolve(init)  # a missing or non-model checkpoint fails here, before any run starts
    check_stages(cfg)


def _quiet_libraries() -> None:
    """Progress lines come from the harness; silence the libraries' own bars and advice."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _offline_defaults(cfg: Config, results: Path) -> None:
    """Keep Hugging Face caches inside the results folder; stay offline unless a stage names a hub id."""
    os.environ.setdefault("HF_HOME", str(results / "hf_home"))
    inits = [_stage_cfg(cfg, s).init for s in STAGES[1:]]
    if all(i is None or Path(i).exists() or i.startswith(("models:/", "runs:/")) for i in inits):
        for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(key, "1")


def training_delimiters(cfg: Config):
    """The reasoning delimiters the training stages use: model.reasoning's, or the default pair for model.think;
    None when neither is set (the default pipeline)."""
    from harness import reasoning

    found = reasoning.from_config(cfg.model.reasoning)
    return found or (reasoning.Delimiters() if cfg.model.think else None)


def _model_reasoning(cfg: Config) -> dict | None:
    """model.reasoning as the evals and the arena inherit it: with model.think, the think format's delimiters (every
    stage is measured with them, the base model too, which has not learnt them)."""
    found = training_delimiters(cfg)
    return cfg.model.reasoning if cfg.model.reasoning is not None or found is None else found.to_dict()


def _with_reasoning(section, model_value):
    """An eval or arena section whose unset ``reasoning`` (None) takes model.reasoning's."""
    from dataclasses import replace

    return section if section.reasoning is not None or model_value is None else replace(section,
                                                                                       reasoning=model_value)


def _train(stage: str, cfg: Config, init: str | None, out: Path):
    from harness.train import dpo, pretrain, rlvr, sft

    seed, trc = cfg.run.seed, cfg.model.trust_remote_code
    if stage == "base":
        return pretrain.run(cfg.pretrain, cfg.model, out, seed)
    module = {"sft": sft, "dpo": dpo, "rlvr": rlvr}[stage]
    extra = {}
    if stage == "sft" and cfg.model.think:
        extra["think"] = training_delimiters(cfg)
    if stage == "rlvr" and training_delimiters(cfg) is not None:
        extra["reasoning"] = training_delimiters(cfg)
    with distributed.lockstep((stage, init)):  # the other processes, if any, train the stage with this one
        return module.run(_stage_cfg(cfg, stage), init, out, seed, trust_remote_code=trc, **extra)


def _launch_params() -> dict[str, str]:
    """The processes `accelerate launch` started, as params (none in one process)."""
    return {schema.DISTRIBUTED[k]: v for k, v in distributed.launch().items()}


def _follow(cfg: Config, ckpt_root: Path):
    """A process other than the main one under ``accelerate launch``: train each stage the main process starts,
    from the checkpoint it names, in step with it, until it ends the command (`distributed.share` raises
    `distributed.Stopped` with its exit code). Nothing is recorded, saved or printed here."""
    while True:
        stage, init = distributed.share()
        _train(stage, cfg, init, ckpt_root / f".{stage}.partial")


def _run_stage(
    stage: str, cfg: Config, init: str | None, parent: store.Run, ckpt_root: Path, tags: dict[str, str]
) -> StageRecord:
    import yaml

    from harness.models.load import content_hash

    final = ckpt_root / stage
    tmp = ckpt_root / f".{stage}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    console.note(f"stage {stage}" + (f" from {init}" if init else " from scratch"))
    tags = {**tags, **schema.tags(stage=stage)}
    with store.run(schema.train_run_name(stage), schema.Kind.TRAIN, parent=parent, tags=tags) as run:
        stage_cfg = asdict(_stage_cfg(cfg, stage))
        run.log_params({"stage": stage, "init": init or "scratch", **store.flatten(stage_cfg, "stage."),
                        **_launch_params()})
        if stage_cfg.get("dataset"):  # the stage's own data (checked before any run started): params and input
            from harness.train import user_data

            data = user_data.load(_stage_cfg(cfg, stage))
            run.log_params(data.params())
            run.log_datasets([data.record], schema.TRAIN_CONTEXT)
        from harness.train.eval_callback import during

        try:
            with during(run, cfg, stage, ckpt_root):  # eval.during_training: evals by step on this run
                result = _train(stage, cfg, init, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / "harness_config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        result.checkpoint = final
        run.log_params(store.flatten({k: v for k, v in result.trainer_config.items() if v is not None}, "trainer."))
        run.log_history(result.history)
        cost = result.cost(cfg.run.price_per_hour)
        run.log_metrics({**cost, "parameters": result.parameters, **result.extra_metrics})
        run.write(schema.CONFIG, to_dict(cfg))
        store.log_checkpoint(run, final, cfg.run.registered_model, {"stage": stage, "run": cfg.run.name},
                             model_hash=content_hash(str(final)), name=stage)
        run.set_tags(schema.tags(checkpoint=str(final)))
    return StageRecord(stage, str(final), result.tokens, result.seconds, cost[schema.COST["usd"]],
                       cost[schema.COST["flops"]], run.run_id)


def _decontaminate(cfg: Config, parent: store.Run) -> None:
    """``eval.decontam``: before training, every enabled stage's own dataset against the eval suite's items (as the
    evals will score them), logged on the pipeline run (`harness.evals.decontam.log_report`). Needs no model;
    nothing to do when no stage has a dataset or evals are off."""
    settings = cfg.eval.decontam
    staged = [s for s in STAGES[1:] if _stage_cfg(cfg, s).enabled and _stage_cfg(cfg, s).dataset]
    if not (staged and settings.enabled and cfg.eval.enabled):
        return
    from harness.data.train_text import texts_of
    from harness.evals import decontam
    from harness.train import user_data

    data = {stage: user_data.load(_stage_cfg(cfg, stage)) for stage in staged}  # checked before: read once
    train = {stage: (texts_of(row) for row in d.dataset) for stage, d in data.items()}
    items = decontam.suite_items(cfg.eval.suite, limit=cfg.eval.limit)
    report = decontam.overlap(train, items, n=settings.n, threshold=settings.threshold)
    flagged = decontam.log_report(parent, report, flag_rate=settings.flag_rate,
                                  sources={stage: str(d.params()["dataset.source"]) for stage, d in data.items()})
    notes = decontam.Recorded(report.rows, flagged).notes()
    found = (f"{len(flagged)} of {len(items)} tasks contaminated: " + "; ".join(f"{t} ({notes[t]})" for t in flagged)
             + f" (pairs: artifact {schema.DECONTAM_PAIRS.path})") if flagged else \
        f"none of its {len(items)} tasks contaminated"
    console.info(f"decontamination of {', '.join(f'{s}.dataset' for s in staged)} against suite {cfg.eval.suite} "
                 f"({settings.n}-grams, eval.decontam.flag_rate {settings.flag_rate:g}): {found}")


def run_pipeline(cfg: Config, *, resume: bool = False) -> PipelineResult:
    """Run the configured stages with evaluation and the arena, all recorded under one MLflow parent run.

    Args:
        cfg: the resolved configuration.
        resume: continue the newest unfinished pipeline run of ``cfg.run.name`` under its own parent run, from its
            first unfinished stage (`harness.resume`); its finished stages and evals are read back, not redone.

    Returns:
        The pipeline's result (parent run id, per-stage records, eval and arena results).

    Raises:
        HarnessError: bad configuration or input (nothing is started, or the started runs end FAILED).
    """
    validate(cfg)
    import torch

    results = Path(cfg.run.results).resolve()
    _offline_defaults(cfg, results)
    _quiet_libraries()
    torch.set_num_threads(cfg.run.threads)
    ckpt_root = results / "checkpoints" / cfg.run.name
    ckpt_root.mkdir(parents=True, exist_ok=True)
    if not distributed.is_main():
        _follow(cfg, ckpt_root)
    tags = provenance.tags(cfg.run.seed)
    done = None
    if resume:
        from harness import resume as resuming

        done = resuming.find(cfg, [s for s in STAGES if _stage_cfg(cfg, s).enabled])
        console.info(f"resuming pipeline run {done.run_id}: "
                     + (f"stages {', '.join(done.stages)} done" if done.stages else "no stage finished"))
    with store.run(cfg.run.name, schema.Kind.PIPELINE, experiment=cfg.run.experiment, results_dir=results,
                   tags={**tags, **(schema.tags(resumed=done.resumed) if done else {})},
                   reopen=done.run_id if done else None) as parent:
        out = PipelineResult(parent.run_id, parent.uri, parent.experiment_id)
        if done is None:
            parent.log_params({**store.flatten(to_dict(cfg)), **_launch_params()})
            parent.write(schema.CONFIG, to_dict(cfg))
        _decontaminate(cfg, parent)
        previous: str | None = None
        for stage in STAGES:
            stage_cfg = _stage_cfg(cfg, stage)
            if not stage_cfg.enabled:
                console.info(f"stage {stage}: skipped")
                continue
            init = None if stage == "base" else (stage_cfg.init or previous)
            if done and stage in done.stages:
                record = StageRecord(**done.stages[stage])
                console.info(f"stage {stage}: done in run {record.run_id} ({record.checkpoint})")
            else:
                record = _run_stage(stage, cfg, init, parent, ckpt_root, tags)
            out.stages.append(record)
            previous = record.checkpoint
            eval_cfg = _with_reasoning(cfg.eval, _model_reasoning(cfg))
            if done and stage in done.evals:
                out.evals[stage] = done.evals[stage]
            elif cfg.eval.enabled:
                from harness.evals import evaluate

                out.evals[stage] = evaluate(
                    record.checkpoint, cfg.eval.suite, cfg=eval_cfg, results_dir=results, parent=parent, label=stage,
                    experiment=cfg.run.experiment,
                )
            if cfg.eval.enabled and stage in out.evals:
                from harness.evals.run import thinking_metrics

                out.thinking[stage] = thinking_metrics(out.evals[stage], cfg.eval.usd_per_mtok)
            if cfg.eval.enabled and cfg.eval.budgets:
                from harness.evals.budgets import evaluate_budgets

                out.curves[stage] = evaluate_budgets(
                    record.checkpoint, cfg.eval.suite, budgets=cfg.eval.budgets, cfg=eval_cfg, results_dir=results,
                    parent=parent, label=stage, experiment=cfg.run.experiment)
        if out.evals:
            from harness.evals import format_stage_skill_table, log_stage_skill_table, stage_skill_table
            from harness.evals.decontam import read_report
            from harness.evals.table import contaminated_skills

            marks = contaminated_skills(out.evals, read_report(parent.run_id, results))  # as recorded above
            log_stage_skill_table(parent, out.evals, marks)
            table = format_stage_skill_table(stage_skill_table(out.evals), marks)
            console.info(f"\nScores by stage and skill (95% CI):\n{table}")
        if out.curves:
            from harness.evals.budgets import format_scaling, log_scaling, scaling_table

            curve = scaling_table(out.curves)
            log_scaling(parent, curve)
            console.info(f"\nTest-time scaling by thinking budget (generation tasks; 95% CI):\n{format_scaling(curve)}")
        if cfg.arena.enabled and len(out.stages) >= 2:
            from harness.arena import pipeline_arena

            out.arena = pipeline_arena(
                {s.stage: s.checkpoint for s in out.stages}, cfg=_with_reasoning(cfg.arena, _model_reasoning(cfg)),
                results_dir=results, parent=parent,
                seed=cfg.run.seed,
            )
        totals = schema.COST_TOTALS
        parent.log_metrics(
            {
                totals["usd"]: sum(s.cost_usd for s in out.stages),
                totals["tokens"]: sum(s.tokens for s in out.stages),
                totals["seconds"]: sum(s.seconds for s in out.stages),
                totals["flops"]: sum(s.flops for s in out.stages),
            }
        )
    return out


def _thinking_summary(thinking: dict) -> str:
    """The evals' thinking cost per stage (generated tokens per item, of which reasoning, unterminated share, USD
    per item at eval.usd_per_mtok); empty when no eval had reasoning."""
    from harness.evals.result import ci
    from harness.report.tables import estimate, number, render
    from harness.tracking.schema import reasoning_metric as m

    rows = [[stage, estimate(s[m("tokens_mean")], *ci(s[m("tokens_mean")], s.get(m("tokens_stderr"), 0.0), False), 1),
             number(s[m("reasoning_tokens_mean")], 1), number(s[m("unterminated_rate")]),
             number(s[m("usd_per_item")], 6)] for stage, s in thinking.items() if m("tokens_mean") in s]
    if not rows:
        return ""
    return "eval thinking per item (95% CI):\n" + render(
        rows, ["stage", "tokens/item", "reasoning tokens", "unterminated", "usd/item"]) + "\n"


def summary(result: PipelineResult) -> str:
    """The end-of-run table (stage, checkpoint, tokens, seconds, cost, run id) and how to open the MLflow UI."""
    from harness.report.tables import render

    rows = [[s.stage, s.checkpoint, s.tokens, s.seconds, s.cost_usd, s.run_id] for s in result.stages]
    table = render(rows, ["stage", "checkpoint", "tokens", "seconds", "cost_usd", "mlflow_run"],
                   digits={"seconds": 1, "cost_usd": 5})
    stages = result.stages
    total = (f"total: {sum(s.tokens for s in stages)} tokens, {sum(s.seconds for s in stages):.1f} s, "
             f"${sum(s.cost_usd for s in stages):.5f}")
    thinking = _thinking_summary(result.thinking)
    return (
        f"{table}\n{total}\n{thinking}"
        f"parent run: {result.run_id}\n"
        f"open the MLflow UI: mlflow ui --backend-store-uri {result.tracking_uri}\n"
        f"  then {store.ui_url(result.experiment_id)}"
    )
