"""Power, minimum detectable effect, drift and the reproducibility fingerprint, without models: `harness power`
against a simulation of the nightly's own McNemar test, hand-computed cases, the drift rule, fingerprints taken,
cached and compared, and what the report says of them. End to end (--aa, refusals) in test_nightly_e2e.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.cli import main
from harness.config import EvalConfig
from harness.errors import HarnessError
from harness.evals import cache, fingerprint
from harness.nightly import power, records
from harness.nightly.stats import PairedScores, compare_suite, drift, mcnemar_exact
from harness.report import nightly as report
from harness.tracking import schema


def _simulated_power(rng, n: int, effect: float, disagreement: float, alpha: float, trials: int) -> float:
    """How often `mcnemar_exact` (the nightly's test) finds a true drop of `effect` in `trials` simulated nightlies:
    each of n items is only-baseline-right, only-candidate-right, both right (0.3) or neither, independently. The
    test sees only the two discordant counts, so it runs once per distinct (losses, wins) drawn, on those items."""
    losses, wins = (disagreement + effect) / 2, (disagreement - effect) / 2
    counts = rng.multinomial(n, [losses, wins, 0.3, 1 - losses - wins - 0.3], size=trials)
    distinct, which = np.unique(counts[:, :2], axis=0, return_inverse=True)
    caught = np.zeros(len(distinct), bool)
    for i, (lost, won) in enumerate(distinct):
        if won >= lost:
            continue  # not a drop: never caught as one
        cand = np.repeat([0.0, 1.0, 1.0], [lost, won, n - lost - won])  # both right or both wrong: the same to it
        base = np.repeat([1.0, 0.0, 1.0], [lost, won, n - lost - won])
        caught[i] = mcnemar_exact(cand, base) <= alpha and cand.mean() < base.mean()
    return float(caught[which.ravel()].mean())


@pytest.mark.parametrize("n, effect, disagreement, alpha", [
    (300, 0.05, 0.15, 0.05),  # a mid-sized task, ~45 discordant items
    (1000, 0.03, 0.06, 0.005),  # the nightly's 10-metric Holm level
    (120, 0.10, 0.10, 0.01),  # every discordant item one way: the exact tail of few items
])
def test_exact_power_matches_a_simulation_of_the_nightly_s_mcnemar_within_2_points(n, effect, disagreement, alpha):
    """20000 seeded trials: the simulated power's standard error is at most 0.0036, so 2 points is more than 5 of
    them (at 100000 trials the first case simulates to 0.560-0.563 against the exact 0.564)."""
    simulated = _simulated_power(np.random.default_rng(7), n, effect, disagreement, alpha, 20000)
    exact = power.mcnemar_power(n, effect, disagreement, alpha=alpha)
    print(f"n={n} effect={effect} d={disagreement} alpha={alpha}: exact {exact:.3f}, simulated {simulated:.3f}")
    assert abs(exact - simulated) <= 0.02


def test_items_needed_reaches_the_power_and_one_fewer_does_not():
    n = power.items_needed(0.03, 0.06, alpha=0.005, power=0.8)
    assert n == 902  # exact; the normal approximation says 885
    assert power.mcnemar_power(n, 0.03, 0.06, alpha=0.005) >= 0.8 > power.mcnemar_power(n - 1, 0.03, 0.06,
                                                                                         alpha=0.005)
    simulated = _simulated_power(np.random.default_rng(1), n, 0.03, 0.06, 0.005, 20000)
    assert abs(simulated - 0.8) <= 0.02  # the simulation agrees: that many items catch it 80% of the time


def test_detectable_effect_of_a_hand_computed_case():
    """6 items, all discordant, two-sided alpha 0.05: only 0 wins of 6 rejects (2·(1/2)^6 = 0.031; 1 win gives
    0.22), so power is (1 − q)^6 with q = (1 − Δ)/2, and 80% needs Δ = 2·0.8^(1/6) − 1 = 0.92700."""
    assert power.detectable_effect(6, 1.0, alpha=0.05, power=0.8) == pytest.approx(2 * 0.8 ** (1 / 6) - 1, abs=1e-4)
    assert math.isinf(power.detectable_effect(5, 1.0, alpha=0.05))  # 2·(1/2)^5 = 0.0625: never rejects
    # the nightly reports the same for a 0/1 metric of 6 items that all flip (one metric: alpha / 1)
    (c,) = compare_suite([PairedScores("t", "acc,none", np.array([1.0, 1, 1, 0, 0, 0]),
                                       np.array([0.0, 0, 0, 1, 1, 1]))])
    assert c.discordant == 1.0 and c.mde == pytest.approx(0.92700, abs=1e-4)
    z = sps.norm.isf(0.025)
    wilson_low = (1 + z * z / 12 - z * math.sqrt(z * z / 144)) / (1 + z * z / 6)
    assert c.discordant_ci_low == pytest.approx(wilson_low) and c.discordant_ci_high == 1.0


def test_detectable_shift_of_continuous_scores_is_the_normal_formula():
    diff = np.tile([1.0, -1.0], 50)  # mean 0, sample sd sqrt(100/99)
    expected = (sps.norm.isf(0.025) + sps.norm.ppf(0.8)) * math.sqrt(100 / 99) / 10
    assert power.detectable_shift(diff) == pytest.approx(expected)
    assert math.isnan(power.detectable_shift(np.zeros(10)))  # no spread to estimate it from
    (c,) = compare_suite([PairedScores("t", "f1", np.full(100, 0.5) + diff / 4, np.full(100, 0.5))], rounds=200)
    assert c.test == "sign_flip_permutation" and c.mde == pytest.approx(expected / 4) and c.discordant == 1.0


def test_power_cli_prints_items_needed_and_the_detectable_effect(capsys):
    assert main(["power", "--accuracy", "0.7", "--effect", "0.03", "--disagreement", "0.06", "--metrics", "10"]) == 0
    out = capsys.readouterr().out
    assert "alpha 0.05 / 10 metrics = 0.005" in out and "items needed for 80% power: 902" in out
    assert main(["power", "--accuracy", "0.7", "--items", "1000", "--disagreement", "0.06", "--metrics", "10"]) == 0
    out = capsys.readouterr().out
    assert "smallest drop caught with 80% power on 1,000 items: 0.0285" in out
    # without a disagreement rate the answers are taken as independent: far more items
    found = power.design(accuracy=0.7, effect=0.03)
    assert found["used_disagreement"] == pytest.approx(0.7 * 0.33 + 0.67 * 0.3) and found["items"] > 3000
    assert found["power"] >= 0.8


def test_drift_is_a_significant_metric_or_too_many_changed_items():
    rng = np.random.default_rng(0)
    base = (rng.random(500) < 0.6).astype(float)
    same, few, many = base.copy(), base.copy(), base.copy()
    few[:2] = 1 - few[:2]  # 0.4% of the items flip both ways: noise
    flip = np.flatnonzero(many == 1)[:40]
    many[flip] = 0.0  # 8% of the items lose a point: significant
    comparisons = compare_suite([PairedScores("a", "acc,none", same, base), PairedScores("b", "acc,none", few, base),
                                 PairedScores("c", "acc,none", many, base)])
    found = drift(comparisons, tolerance=0.01)
    assert len(found) == 1 and found[0].startswith("c acc,none: -0.0800") and "significant" in found[0]
    assert drift(comparisons, tolerance=0.001)[0].startswith("b acc,none: 0.4% of 500 items changed score")
    assert comparisons[0].discordant == 0 and comparisons[0].mde > 0  # an A/A that held: nothing changed


# --- the reproducibility fingerprint --------------------------------------------------------------------------


def test_fingerprint_of_the_tiny_checkpoint_reads_files_and_metadata_only(tiny_checkpoint):
    taken = fingerprint.take(EvalConfig(), "hf", {"pretrained": str(tiny_checkpoint)}, str(tiny_checkpoint))
    assert set(taken) == set(schema.FINGERPRINT_FIELDS)
    assert taken["backend"] == "hf" and taken["batch_size"] == str(EvalConfig().batch_size)
    assert taken["dtype"] == "auto (float32)" and len(taken["chat_template"]) == 12  # chat_template.jinja's hash
    assert taken["chat_template"] == fingerprint.chat_template_hash(tiny_checkpoint) != "none"
    from importlib.metadata import version

    assert taken["lm_eval"] == version("lm_eval") and taken["backend_version"] == version("transformers")
    assert taken["hardware"]
    assert fingerprint.take(EvalConfig(), "hf", {"dtype": "bfloat16"}, "org/hub-model")["chat_template"] == "unknown"


def test_fingerprint_travels_with_the_cache_entry_and_combines_per_run(tmp_path):
    stamp = {"backend": "hf", "hardware": "1 x NVIDIA H200", "batch_size": "64"}
    cache.save(tmp_path, "k1", {"task": "t"}, {"results": {"t": {}}}, fingerprint=stamp)
    cache.save(tmp_path, "k2", {"task": "u"}, {"results": {"u": {}}})  # written without one (a sweep worker)
    assert cache.entry(tmp_path, "k1") == ({"results": {"t": {}}}, stamp)
    assert cache.entry(tmp_path, "k2")[1] is None and cache.load(tmp_path, "k1") == {"results": {"t": {}}}
    both = fingerprint.combine([stamp, {**stamp, "batch_size": "8"}, None])  # a task cached without one: unknown
    assert (both["backend"], both["batch_size"]) == ("hf | unknown", "64 | 8 | unknown")
    assert fingerprint.combine([stamp, stamp]) == stamp
    tags = schema.fingerprint_tags(fingerprint.combine([stamp]))
    assert tags == {"fingerprint.backend": "hf", "fingerprint.hardware": "1 x NVIDIA H200",
                    "fingerprint.batch_size": "64"}
    assert schema.parse_fingerprint({**tags, "fingerprint.dtype": float("nan")}) == fingerprint.combine([stamp])


def _record(**stamp) -> records.EvalRecord:
    return records.EvalRecord(run_id="r", model="m", model_hash="h", suite="tiny", settings={},
                              scores=pd.DataFrame(), lm_eval={}, fingerprint=stamp)


def test_fingerprint_differences_name_each_field_and_skip_unknowns():
    a = _record(backend="hf", batch_size="64", hardware="2 x NVIDIA A100", torch="2.5.1", dtype="unknown")
    b = _record(backend="hf", batch_size="8", hardware="1 x NVIDIA H200", torch="2.5.1", dtype="auto (float32)")
    assert records.fingerprint_differences(a, b) == [
        "batch_size: 64 (candidate) vs 8 (baseline)",
        "hardware: 2 x NVIDIA A100 (candidate) vs 1 x NVIDIA H200 (baseline)"]
    assert records.fingerprint_differences(a, _record()) == []  # a run without a fingerprint (an import)


def test_report_warns_of_a_fingerprint_mismatch_and_shows_drift_and_mde():
    from test_nightly import _result

    result = _result(0.0)
    result.fingerprint = ["batch_size: 64 (candidate) vs 8 (baseline)"]
    md = report.markdown(result)
    assert "- warning: the two sides were computed differently (reproducibility fingerprint): batch_size: 64 " \
           "(candidate) vs 8 (baseline)" in md
    assert "| disagree [95% CI] | MDE | verdict |" in md and "0.000 [0.000, 0.010]" in md
    result.aa, result.verdict = True, "fail"
    result.drift = ["tiny_arithmetic_gen verifier,none: 3.0% of 400 items changed score"]
    md = report.markdown(result)
    assert md.startswith("# Nightly tiny: A/A FAIL: infrastructure drift")
    assert "## Infrastructure drift" in md and "- tiny_arithmetic_gen verifier,none: 3.0% of 400" in md
    page = report.html_page(result)
    assert "A/A FAIL: infrastructure drift" in page and "3.0% of 400 items changed score" in page
    assert "reproducibility fingerprint" in page and "disagree [95% CI]" in page


def test_bad_power_inputs_raise_one_line():
    with pytest.raises(HarnessError, match=r"give --effect .* or --items"):
        power.design(accuracy=0.7)
    with pytest.raises(HarnessError, match=r"needs more than 10,000,000 items"):
        power.items_needed(1e-4, 0.5)
    with pytest.raises(HarnessError, match=r"power=1.5; must be between 0 and 1"):
        compare_suite([PairedScores("t", "acc", np.ones(3), np.ones(3))], power=1.5)
