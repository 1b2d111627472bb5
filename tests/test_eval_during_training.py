"""``eval.during_training: {every: N, suite: S}``: a TRL stage scores its model every N steps and at the end through
the same cached, recorded eval, and charts ``eval/<skill>/score`` by step on its own train run; training itself is
unchanged; bad settings are one line before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.tracking import schema, store

# An SFT stage of 5 steps (40 conversations, 8 per step, one epoch) on the tiny checkpoint, nothing else.
SFT_ONLY = ["--quick", "--set", "pretrain.enabled=false", "--set", "dpo.enabled=false", "--set", "rlvr.enabled=false",
            "--set", "arena.enabled=false", "--set", "sft.examples_per_skill=10", "--set", "sft.batch_size=8",
            "--set", "sft.epochs=1", "--set", "sft.log_every=1", "--set", "eval.limit=3"]


def _history(results: Path, run_id: str, key: str) -> dict[int, float]:
    from mlflow.tracking import MlflowClient

    return {m.step: m.value for m in MlflowClient(store.tracking_uri(results)).get_metric_history(run_id, key)}


def test_scores_by_step_on_the_stage_run(tmp_path, tiny_checkpoint):
    results = tmp_path / "results"
    assert main(["run", *SFT_ONLY, "--set", f"sft.init={tiny_checkpoint}", "--results", str(results),
                 "--set", "eval.during_training={every: 2, suite: tiny}"]) == 0
    train = store.find_runs("harness", schema.Kind.TRAIN, results)
    assert len(train) == 1
    train_id = train.run_id.iloc[0]
    assert sorted(_history(results, train_id, "loss")) == [1, 2, 3, 4, 5]

    # Evaluated at steps 2 and 4, and at the end (step 5), each an eval run nested under the stage's run.
    evals = store.find_runs("harness", schema.Kind.EVAL, results, extra=schema.where_parent(train_id))
    by_step = {int(schema.RunTags.from_row(row).step): row for _, row in evals.iterrows()}
    assert sorted(by_step) == [2, 4, 5]
    steps_dir = results / "checkpoints" / "embedded" / "sft-steps"
    for step, row in by_step.items():
        assert row.status == "FINISHED"
        assert schema.RunTags.from_row(row).model == str(steps_dir / f"checkpoint-{step}")
        assert (steps_dir / f"checkpoint-{step}" / "trainer_state.json").is_file()
    assert len({row["params.model_hash"] for row in by_step.values()}) == 3  # the model moved between evals
    for skill in ("arithmetic", "format", "knowledge", "safety", "overall"):
        history = _history(results, train_id, schema.eval_step_metric(skill))
        assert sorted(history) == [2, 4, 5], skill
        for step, row in by_step.items():
            assert history[step] == pytest.approx(row[f"metrics.{schema.skill_metric(skill)}"])

    # The final checkpoint's own eval (under the pipeline run) is the step-5 model: the same scores.
    pipeline_id = store.find_runs("harness", schema.Kind.PIPELINE, results).run_id.iloc[0]
    final = store.find_runs("harness", schema.Kind.EVAL, results, extra=schema.where_parent(pipeline_id))
    assert len(final) == 1
    overall = schema.skill_metric("overall")
    assert final[f"metrics.{overall}"].iloc[0] == pytest.approx(by_step[5][f"metrics.{overall}"])

    # Training is unchanged by the evals (their seeding does not leak into it): the same final weights without them.
    plain = tmp_path / "plain"
    assert main(["run", *SFT_ONLY, "--set", f"sft.init={tiny_checkpoint}", "--results", str(plain),
                 "--set", "eval.enabled=false"]) == 0
    weights = "model.safetensors"
    assert (plain / "checkpoints/embedded/sft" / weights).read_bytes() == \
        (results / "checkpoints/embedded/sft" / weights).read_bytes()


@pytest.mark.parametrize("value, message", [
    ("{every: 0, suite: tiny}", "config key eval.during_training.every: 0 is out of range"),
    ("{every: 2, suite: no_such_suite}", "config key eval.during_training.suite: unknown suite 'no_such_suite'"),
    ("{every: 2, suit: tiny}", "config key eval.during_training: unknown key 'suit' (valid: every, suite)"),
])
def test_bad_settings_are_one_line_before_any_work(tmp_path, tiny_checkpoint, value, message, no_model_work, capsys):
    assert main(["run", *SFT_ONLY, "--set", f"sft.init={tiny_checkpoint}", "--results", str(tmp_path),
                 "--set", f"eval.during_training={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "mlflow.db").exists()
