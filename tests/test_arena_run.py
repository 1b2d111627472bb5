"""The arena end to end on tiny checkpoints: CLI, MLflow records, the caches, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import ArenaConfig
from harness.tracking import store


@pytest.fixture(scope="module")
def other_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """A second tiny checkpoint: same tokenizer, different initial weights, so its answers differ."""
    from transformers import AutoTokenizer

    from harness.models import tiny

    out = tmp_path_factory.mktemp("tiny2") / "other"
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    tiny.save(tiny.build_model(tok, hidden_size=32, layers=2, heads=2, seed=1), tok, out)
    return out


def _arena_run(results: Path):
    """The arena run of the store in `results`, and how many there are (through the client: `mlflow.set_tracking_uri`
    would point every later run of this process at this store)."""
    client = store.client(store.tracking_uri(results))
    exp = client.get_experiment_by_name("harness")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("harness.kind") == "arena"]
    return runs[0], len(runs)


def test_cli_arena_prints_leaderboard_and_logs_to_mlflow(tiny_checkpoint, other_checkpoint, tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["arena", "--models", f"base={tiny_checkpoint}", f"other={other_checkpoint}", "--judge", "verifier",
            "--baseline", "base", "--limit", "8", "--results", str(results),
            "--set", "arena.max_new_tokens=6", "--set", "arena.bootstrap=50"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for column in ("rating", "ci_low", "ci_high", "win_rate_vs_base", "lc_win_rate_vs_base", "p_win_vs_base"):
        assert column in out
    run, n = _arena_run(results)
    assert n == 1 and run.data.tags["harness.judge"] == "verifier"
    assert {"rating/base", "rating/other", "ci_low/other", "win_rate_vs_baseline/other",
            "p_win_vs_baseline/other", "judge/battles"} <= set(run.data.metrics)
    assert run.data.metrics["judge/battles"] == 8
    assert run.data.params["checkpoint_hash.base"] != run.data.params["checkpoint_hash.other"]
    art = Path(run.info.artifact_uri.removeprefix("file://")) / "arena"
    battles = [json.loads(x) for x in (art / "battles.jsonl").read_text().splitlines()]
    assert len(battles) == 8
    assert all(b["winner"] in ("model_a", "model_b", "tie", "tie (bothbad)") for b in battles)
    assert {b["model_a"] for b in battles} == {"base"} and {b["model_b"] for b in battles} == {"other"}
    for name in ("answers.jsonl", "judgements.jsonl", "leaderboard.csv", "win_prob.csv", "ratings.png",
                 "win_prob.png", "win_rate_vs_baseline.png", "config.yaml"):
        assert (art / name).is_file(), name
    answer = json.loads((art / "answers.jsonl").read_text().splitlines()[0])
    assert {"answer", "answer_chars", "prompt_tokens", "answer_tokens", "finish", "checkpoint_hash"} <= set(answer)
    assert answer["answer_tokens"] <= 6


def test_rerun_hits_the_cache_and_calls_no_model(tiny_checkpoint, other_checkpoint, tmp_path, monkeypatch, capsys):
    from harness.arena import engines, run_arena

    cfg = ArenaConfig(prompts=6, max_new_tokens=5, bootstrap=20)
    models = {"a": str(tiny_checkpoint), "b": str(other_checkpoint)}
    first = run_arena(models, cfg=cfg, results_dir=tmp_path, seed=0)
    assert first.stats["generation/cached"] == 0

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded or called on a cached re-run")

    monkeypatch.setattr(engines, "load", no_model)
    monkeypatch.setattr(engines, "generate_batch", no_model)
    again = run_arena(models, cfg=cfg, results_dir=tmp_path, seed=0)
    assert again.stats["generation/cached"] == 12
    assert again.stats["judge/judgements_cached"] == again.stats["judge/judgements"] == 12
    assert again.battles.equals(first.battles)
    assert list(again.answers["answer"]) == list(first.answers["answer"])
    assert again.run_id != first.run_id
    capsys.readouterr()


def test_arena_hard_scoring_from_the_config_rates_each_game_and_weights_strong_verdicts(
        tiny_checkpoint, other_checkpoint, tmp_path):
    from harness.arena import run_arena
    from harness.ratings import leaderboard
    from harness.ratings.arena_hard import expand_verdicts

    models = {"a": str(tiny_checkpoint), "b": str(other_checkpoint)}
    paired = run_arena(models, cfg=ArenaConfig(prompts=8, max_new_tokens=5, bootstrap=0), results_dir=tmp_path, seed=0)
    cfg = ArenaConfig(prompts=8, max_new_tokens=5, bootstrap=0, scoring="arena-hard", strong_weight=5)
    hard = run_arena(models, cfg=cfg, results_dir=tmp_path, seed=0)
    assert hard.battles.equals(paired.battles)  # the same judgements (cached), rated another way
    expanded = expand_verdicts(hard.battles, strong_weight=5)
    strong = int(hard.battles["verdict_ab"].str.contains(">>").sum() + hard.battles["verdict_ba"].str.contains(">>").sum())
    assert len(expanded) == 2 * len(hard.battles) + 4 * strong
    board = hard.leaderboard.set_index("model")
    assert int(board["battles"].sum()) == 2 * len(expanded)  # each counted game once per side
    expected = leaderboard(expanded, rounds=0).set_index("model")["rating"]
    assert board["rating"].to_dict() == pytest.approx(expected.to_dict())
    assert int(paired.leaderboard["battles"].sum()) == 2 * len(paired.battles)
    client = store.client(store.tracking_uri(tmp_path))
    assert client.get_run(hard.run_id).data.params["ratings.scoring"] == "arena-hard (>> = 5 battles)"
    assert client.get_run(paired.run_id).data.params["ratings.scoring"] == "paired"


def test_batched_generation_matches_one_by_one(tiny_checkpoint):
    import torch

    from harness.arena.answers import GenerationSettings, generate_batch
    from harness.arena.prompts import conversation, read_prompts
    from harness.models.load import load

    torch.set_num_threads(1)
    model, tok = load(str(tiny_checkpoint))
    chats = [conversation(p) for p in read_prompts(limit=6)]
    settings = GenerationSettings(max_new_tokens=6)
    batched = generate_batch(model, tok, chats, settings)
    single = [generate_batch(model, tok, [c], settings)[0] for c in chats]
    assert [r["answer"] for r in batched] == [r["answer"] for r in single]
    assert [r["prompt_tokens"] for r in batched] == [r["prompt_tokens"] for r in single]


def test_bad_prompt_file_is_a_one_line_error(tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "prompt": "hello"}) + "\n" + json.dumps({"id": "y"}) + "\n")
    code = main(["arena", "--models", f"a={tiny_checkpoint}", f"b={tiny_checkpoint}", "--prompts", str(bad),
                 "--judge", "llm", "--judge-base-url", "http://127.0.0.1:9/v1", "--judge-model", "m",
                 "--results", str(tmp_path / "r")])  # the prompts are checked before the judge is built
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("harness: error:") and "line 2" in err[-1] and "'prompt'" in err[-1]


def test_model_that_cannot_load_keeps_finished_answers(tiny_checkpoint, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file, save_file

    # Whole safetensors files (a cut or garbled one is refused before any model loads) whose tensors do not fit
    # the model: loading fails after the good model has answered.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((Path(tiny_checkpoint) / "config.json").read_text())
    names = load_file(Path(tiny_checkpoint) / "model.safetensors")
    save_file({name: torch.zeros(1) for name in names}, broken / "model.safetensors", metadata={"format": "pt"})
    results = tmp_path / "results"
    code = main(["arena", "--models", f"good={tiny_checkpoint}", f"broken={broken}", "--limit", "4",
                 "--results", str(results), "--set", "arena.max_new_tokens=4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("harness: error:") and "broken" in err[-1]
    cached = list((results / "cache" / "arena" / "generations").rglob("*.jsonl"))
    assert len(cached) == 1 and len(cached[0].read_text().splitlines()) == 4
    run, _ = _arena_run(results)
    assert run.info.status == "FAILED"

    missing = main(["arena", "--models", f"good={tiny_checkpoint}", f"gone={tmp_path / 'nowhere'}",
                    "--results", str(results)])
    assert missing == 2 and "no such folder" in capsys.readouterr().err
