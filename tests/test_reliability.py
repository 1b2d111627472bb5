"""Judge reliability: planted position and length biases recovered within their CIs, an unbiased judge's CIs
covering zero, kappa and self-preference on hand-computed cases, the labels file's errors, and the report on the
arena's record, in `harness winrate`, the nightly report and the dashboard."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.ratings.reliability import (Reliability, annotations_reliability, arena_reliability, cohen_kappa,
                                         read_labels)
from harness.tracking import schema, store

THETA = {"a": 0.6, "b": 0.0, "c": -0.6}  # model strengths (logit)
MEAN_LEN = {"a": 300.0, "b": 200.0, "c": 250.0}  # the strongest model also writes longest: length is confounded


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One MLflow store for the tests here that record runs (a store's creation costs more than the runs)."""
    return tmp_path_factory.mktemp("reliability") / "results"


def simulate(position: float, length: float, *, prompts: int, seed: int, ties: float = 0.0):
    """Battles of a judge whose log-odds for the first-shown answer are `position` + `length` · the standardised
    length difference + the strength difference; with probability `ties` a verdict is a tie instead. Returns the
    battles and the expected share of pairs whose verdict flips with the positions (given the lengths)."""
    rng = np.random.default_rng(seed)
    pairs = list(itertools.combinations(THETA, 2))
    lens = {m: np.maximum(1.0, rng.normal(MEAN_LEN[m], 80.0, prompts)) for m in THETA}
    a = np.repeat([p[0] for p in pairs], prompts)
    b = np.repeat([p[1] for p in pairs], prompts)
    prompt = np.tile(np.arange(prompts), len(pairs))
    len_a = np.concatenate([lens[x][:] for x, _ in pairs])
    len_b = np.concatenate([lens[y][:] for _, y in pairs])
    d = len_a - len_b
    sd = np.concatenate([d, -d]).std(ddof=1)  # the scale the report standardises by
    strength = np.array([THETA[x] - THETA[y] for x, y in zip(a, b)])
    p_ab = 1 / (1 + np.exp(-(position + length * d / sd + strength)))  # model_a shown first wins
    p_ba = 1 / (1 + np.exp(-(position - length * d / sd - strength)))  # model_b shown first wins

    def verdicts(p):
        v = np.where(rng.random(len(p)) < p, "A>B", "B>A")
        return np.where(rng.random(len(p)) < ties, "A=B", v)

    battles = pd.DataFrame({"prompt_id": [f"p{k}" for k in prompt], "model_a": a, "model_b": b,
                            "verdict_ab": verdicts(p_ab), "verdict_ba": verdicts(p_ba), "len_a": len_a,
                            "len_b": len_b})
    # a flip: model_a wins in one order and loses in the other (no ties planted here)
    expected_flip = float(np.mean(p_ab * p_ba + (1 - p_ab) * (1 - p_ba)))
    return battles, expected_flip


def test_planted_position_and_length_bias_are_recovered_within_their_cis():
    battles, expected_flip = simulate(0.8, 0.5, prompts=300, seed=1)
    report = arena_reliability(battles)
    pos, length = report["position_bias"], report["length_bias"]
    assert pos.covers(0.8) and not pos.covers(0.0), pos
    assert length.covers(0.5) and not length.covers(0.0), length
    assert report["position_flip_rate"].covers(expected_flip)
    assert report["tie_rate"].value == 0 and report["tie_rate"].ci_high < 0.01
    assert pos.n == 2 * len(battles) and report["position_flip_rate"].n == len(battles)


def test_a_judge_without_bias_has_cis_covering_zero():
    report = arena_reliability(simulate(0.0, 0.0, prompts=300, seed=3)[0])  # calibration: the next test
    assert report["position_bias"].covers(0.0) and report["length_bias"].covers(0.0)
    assert report["position_bias"].ci_high - report["position_bias"].ci_low < 0.3  # informative, not just wide


def test_the_intervals_cover_at_about_their_level():
    # 40 small arenas each of a biased and an unbiased judge: the 95% CIs cover the planted values about 95% of
    # the time (a CI that ignored the clustering or the strengths would fall well short; 0.85 leaves room for chance)
    hits = np.zeros(4)
    for seed in range(40):
        biased = arena_reliability(simulate(0.5, -0.4, prompts=60, seed=100 + seed)[0])
        fair = arena_reliability(simulate(0.0, 0.0, prompts=60, seed=200 + seed)[0])
        hits += [biased["position_bias"].covers(0.5), biased["length_bias"].covers(-0.4),
                 fair["position_bias"].covers(0.0), fair["length_bias"].covers(0.0)]
    assert (hits / 40 >= 0.85).all(), hits / 40


def test_tie_rate_and_its_interval():
    report = arena_reliability(simulate(0.0, 0.0, prompts=200, seed=3, ties=0.2)[0])
    assert report["tie_rate"].covers(0.2) and 0.15 < report["tie_rate"].value < 0.25


def _hand_battles(judge: list[str]) -> pd.DataFrame:
    """One battle per prompt between x and y whose two verdicts give the outcome `judge` (x, y or tie)."""
    verdicts = {"x": ("A>B", "B>A"), "y": ("B>A", "A>B"), "tie": ("A=B", "A=B")}
    return pd.DataFrame([{"prompt_id": f"q{k}", "model_a": "x", "model_b": "y", "verdict_ab": verdicts[w][0],
                          "verdict_ba": verdicts[w][1], "len_a": 10 + k, "len_b": 12} for k, w in enumerate(judge)])


def test_kappa_and_accuracy_on_a_hand_computed_case(tmp_path):
    judge = ["x", "x", "x", "x", "y", "y", "y", "tie", "tie", "x"]
    human = ["x", "x", "x", "y", "y", "y", "x", "tie", "y", "x"]
    # agreement 7/10; marginals judge (x 5, y 3, tie 2), labels (x 5, y 4, tie 1): chance 0.39; kappa 0.31 / 0.61
    rows = []
    for k, w in enumerate(human):
        if k % 2:  # every other label names the pair the other way round
            rows.append({"prompt_id": f"q{k}", "model_a": "y", "model_b": "x",
                         "winner": {"x": "model_b", "y": "model_a", "tie": "tie"}[w]})
        else:
            rows.append({"prompt_id": f"q{k}", "model_a": "x", "model_b": "y",
                         "winner": {"x": "model_a", "y": "model_b", "tie": "tie (bothbad)"}[w]})
    rows.append({"prompt_id": "elsewhere", "model_a": "x", "model_b": "y", "winner": "tie"})
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = arena_reliability(_hand_battles(judge), labels=path, rounds=200)
    assert report["human_accuracy"].value == pytest.approx(0.7) and report["human_accuracy"].n == 10
    kappa = report["human_kappa"]
    assert kappa.value == pytest.approx(0.31 / 0.61) and kappa.ci_low < kappa.value < kappa.ci_high
    assert report.notes == ["1 of 11 labels name no judged pair and are left out"]
    code = {"x": 0, "tie": 1, "y": 2}
    assert cohen_kappa([code[w] for w in judge], [code[w] for w in human]) == pytest.approx(0.31 / 0.61)


def test_self_preference_against_the_labels():
    # x shares the judge's family: the judge gives x every pair, the labels only half of them
    battles = pd.concat([_hand_battles(["x"] * 8), pd.DataFrame([{
        "prompt_id": "q9", "model_a": "y", "model_b": "z", "verdict_ab": "A>B", "verdict_ba": "A>B", "len_a": 5,
        "len_b": 6}])], ignore_index=True)
    labels = pd.DataFrame({"prompt_id": [f"q{k}" for k in range(8)], "model_a": "x", "model_b": "y",
                           "winner": ["model_a", "model_b"] * 4})
    families = {"x": "judge-family", "y": "other", "z": "other"}
    report = arena_reliability(battles, judge_family="judge-family", families=families, labels=labels)
    assert report["self_family_score"].value == 1.0 and report["self_family_score"].n == 8
    assert report["self_preference"].value == pytest.approx(0.5) and report["self_preference"].ci_low > 0
    without = arena_reliability(battles, judge_family="judge-family", families=families)
    assert "self_preference" not in without.estimates
    assert "needs human labels" in without.unmeasured["self_preference"]
    none = arena_reliability(battles)
    assert none.missing_text().count("no families declared") == 1


def test_annotations_measure_length_and_ties_but_no_positions():
    rng = np.random.default_rng(0)
    n = 400
    out1 = ["w" * int(k) for k in rng.integers(50, 400, n)]
    out2 = ["w" * int(k) for k in rng.integers(50, 400, n)]
    d = np.array([len(b) - len(a) for a, b in zip(out1, out2)], dtype=float)
    p = 1 / (1 + np.exp(-(0.7 * d / d.std(ddof=1) - 0.3)))
    pref = np.where(rng.random(n) < 0.05, 1.5, 1 + (rng.random(n) < p))
    frame = pd.DataFrame({"instruction": [f"i{k}" for k in range(n)], "output_1": out1, "output_2": out2,
                          "generator_1": "base", "generator_2": "m", "preference": pref})
    report = annotations_reliability([frame])
    assert report["length_bias"].value > 0.3 and not report["length_bias"].covers(0.0)
    assert report["tie_rate"].covers(0.05)
    assert {"position_flip_rate", "position_bias"} <= set(report.unmeasured)
    assert "randomised by the annotator" in report.missing_text()


def test_metrics_round_trip_through_the_schema():
    report = arena_reliability(simulate(0.3, 0.2, prompts=50, seed=4)[0])
    metrics = report.metrics()
    assert metrics[schema.reliability_metric("position_bias")] == report["position_bias"].value
    assert metrics["reliability/length_bias/ci_low"] == report["length_bias"].ci_low
    back = Reliability.from_metrics({f"metrics.{k}": v for k, v in metrics.items()} | {"metrics.other/x": 1.0})
    assert back.estimates == report.estimates
    assert Reliability.from_metrics({"metrics.rating/a": 1000.0}) is None
    assert schema.parse_reliability_metric("reliability/tie_rate/se") == ("tie_rate", "se")
    assert schema.parse_reliability_metric("reliability/tie_rate/value") is None
    with pytest.raises(KeyError):
        schema.reliability_metric("accuracy")


@pytest.mark.parametrize("rows, message", [
    ([{"model_a": "x", "model_b": "y", "winner": "tie"}], "missing column prompt_id"),
    ([{"prompt_id": "q", "model_a": "x", "model_b": "x", "winner": "tie"}], "row 1: model 'x' battles itself"),
    ([{"prompt_id": "q", "model_a": "x", "model_b": "y", "winner": "x"}], "winner"),
])
def test_a_bad_labels_file_is_one_line(tmp_path, rows, message):
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(HarnessError, match=message) as info:
        read_labels(path)
    assert "\n" not in str(info.value)
    with pytest.raises(HarnessError, match="no such labels file"):
        read_labels(tmp_path / "absent.jsonl")


def test_arena_refuses_labels_and_families_that_fit_no_pair_before_model_work(tmp_path, capsys, no_model_work):
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"prompt_id": "nope", "model_a": "a", "model_b": "b", "winner": "tie"}) + "\n")
    # checked before the models are even looked for (these paths do not exist)
    base = ["arena", "--models", "a=no-such-a", "b=no-such-b", "--results", str(tmp_path / "r")]
    for extra, message in ((["--set", f"arena.labels={labels}"], "none of its 1 labels names a pair of this arena"),
                           (["--set", "arena.judge_family=l", "--set", "arena.families={c: l}"],
                            "arena.families: 'c' is not a model of this arena"),
                           (["--set", "arena.judge_family=l"], "arena.judge_family: set without arena.families")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def _annotations_file(tmp_path):
    rng = np.random.default_rng(5)
    records = [{"instruction": f"i{k}", "output_1": "b" * int(rng.integers(20, 200)),
                "output_2": "m" * int(rng.integers(20, 200)), "generator_1": "base", "generator_2": "m",
                "annotator": "tiny_judge", "preference": float(1 + rng.random())} for k in range(60)]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(records))
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"instruction": [r["instruction"] for r in records], "model_a": "base", "model_b": "m",
                  "winner": ["model_b" if r["preference"] > 1.5 else "model_a" for r in records]}).to_csv(labels,
                                                                                                    index=False)
    return path, labels


def test_winrate_prints_and_logs_the_annotator_s_reliability(results, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path, labels = _annotations_file(tmp_path)
    assert main(["winrate", str(path), "--labels", str(labels), "--judge-family", "j", "--family", "m=j",
                 "--mlflow", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "Judge reliability (annotator tiny_judge" in out
    for line in ("length bias", "tie rate", "own-family score", "self-preference vs labels"):
        assert line in out, line
    assert next(x for x in out.splitlines() if x.startswith("agreement with labels")).endswith(
        "1.000 [0.940, 1.000]  60")
    assert "not measured: position flip rate" in out
    client = store.client(store.tracking_uri(results))
    (run,) = client.search_runs([client.get_experiment_by_name("ratings").experiment_id])
    assert run.data.metrics["reliability/human_accuracy"] == 1.0
    assert "reliability/length_bias/ci_high" in run.data.metrics
    assert run.data.params["judge.model"] == "tiny_judge"
    assert main(["winrate", str(path), "--judge-family", "j"]) == 2
    assert "--judge-family and --family go together" in capsys.readouterr().err


def test_nightly_report_shows_the_judge_s_reliability():
    from harness.nightly.result import ArenaSummary
    from harness.report import nightly
    from test_report import _nightly_result

    result = _nightly_result()
    board = result.arena.leaderboard.copy()
    board.attrs["reliability"] = arena_reliability(simulate(0.8, 0.5, prompts=40, seed=6)[0])
    result.arena = ArenaSummary(board, result.arena.win_prob, elo_delta=20.0, p_win=0.53, judge="verifier",
                                run_id="a" * 32)
    md = nightly.markdown(result)
    assert "### Judge reliability" in md and "| position bias (log-odds, first shown) |" in md
    assert "not measured: " in md and "no labels file" in md
    page = nightly.html_page(result)
    assert "<h3>Judge reliability</h3>" in page and "position flip rate" in page


def test_dashboard_shows_the_arena_judge_s_reliability_from_mlflow(results, tmp_path, monkeypatch):
    from harness.report.dashboard import build_dashboard

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    report = arena_reliability(simulate(0.8, 0.5, prompts=40, seed=7)[0])
    board = pd.DataFrame({"rank": [1, 2], "model": ["a", "b"], "rating": [1010.0, 990.0], "ci_low": [1000.0, 980.0],
                          "ci_high": [1020.0, 1000.0], "battles": [20, 20], "win_rate": [0.6, 0.4]})
    with store.run("arena", schema.Kind.ARENA, results_dir=results, tags=schema.tags(judge="llm:j")) as run:
        run.write(schema.leaderboard(), board)
        run.write(schema.matrix("win_prob"), pd.DataFrame({"model": ["a", "b"], "a": [np.nan, 0.47],
                                                           "b": [0.53, np.nan]}))
        run.log_metrics(report.metrics())
        run.log_params({schema.judge_param("kind"): "llm", schema.judge_param("model"): "j",
                        schema.judge_param("prompt_version"): "abc123", schema.judge_param("temperature"): "0"})
    page = build_dashboard("harness", tmp_path / "site", results_dir=results).read_text()
    assert "<h3>Judge reliability</h3>" in page
    assert "judge fingerprint: kind llm, model j, prompt_version abc123, temperature 0" in page
    shown = f"{report['position_bias'].value:+.3f} [{report['position_bias'].ci_low:+.3f}, "
    assert shown in page


def test_the_pipeline_arena_records_its_judge_s_reliability(quick_pipeline):
    client = store.client(store.tracking_uri(quick_pipeline))
    exp = client.get_experiment_by_name("harness")
    (arena,) = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("harness.kind") == "arena"]
    metrics, params = arena.data.metrics, arena.data.params
    for stat in ("position_flip_rate", "tie_rate"):
        for part in ("value", "ci_low", "ci_high", "se", "n"):
            assert schema.reliability_metric(stat, part) in metrics, (stat, part)
    # the verifier grades each answer on its own, so the order of the answers never changes its verdict
    assert metrics["reliability/position_flip_rate"] == 0.0
    assert metrics["reliability/position_flip_rate/ci_high"] < 0.05
    assert params["judge.kind"] == "verifier" and params["judge.temperature"] == "0"
    assert params["judge.prompt_version"] == "none"
