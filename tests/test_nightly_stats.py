"""Tests of harness.nightly.stats: golden cases, then calibration and power of the nightly verdict by simulation.

The simulated suite has 10 binary tasks of 300 to 1000 items. Item i of a task has a difficulty p_i drawn from
Beta(m k, (1 - m) k) with mean m (the task accuracy), and each model answers it right with probability p_i,
independently given p_i. Both checkpoints share the difficulties, so they agree on most items; k sets how often
they disagree: E[flip rate] = 2 m (1 - m) k / (k + 1) when they are equally good. k = inf means independent items.
"""

import numpy as np
import pytest
from scipy import stats as sps

from harness.errors import HarnessError
from harness.nightly.stats import (
    PairedScores,
    adjust_p_values,
    align_items,
    compare_suite,
    mcnemar_exact,
    newcombe_paired_ci,
    overall_verdict,
    paired_bootstrap_ci,
    sign_flip_test,
)

SIZES = [1000, 300, 500, 800, 400, 1000, 600, 350, 900, 700]
ACCURACIES = [0.70, 0.55, 0.80, 0.45, 0.65, 0.90, 0.60, 0.75, 0.50, 0.85]


def _table(both: int, wins: int, losses: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Paired 0/1 scores with the given 2x2 counts; wins = candidate right and baseline wrong."""
    cand = np.repeat([1.0, 1.0, 0.0, 0.0], [both, wins, losses, neither])
    base = np.repeat([1.0, 0.0, 1.0, 0.0], [both, wins, losses, neither])
    return cand, base


def _difficulties(rng, trials: int, n: int, accuracy: float, flip_rate: float | None) -> np.ndarray:
    """(trials, n) per-item probabilities of a right answer; flip_rate None gives every item the same one."""
    if flip_rate is None:
        return np.full((trials, n), accuracy)
    r = flip_rate / (2 * accuracy * (1 - accuracy))
    k = r / (1 - r)
    return rng.beta(accuracy * k, (1 - accuracy) * k, size=(trials, n))


def _nightlies(trials: int, flip_rates, drop: float = 0.0, min_effect: float = 0.01, seed: int = 0):
    """Simulate `trials` nightlies of the suite; task 0 loses `drop` accuracy. Returns comparisons per nightly."""
    rng = np.random.default_rng(seed)
    scores = []
    for task, (n, acc, flip) in enumerate(zip(SIZES, ACCURACIES, flip_rates)):
        p = _difficulties(rng, trials, n, acc, flip)
        # The drop makes every item a little harder ("uniform forgetting"), keeping the shared difficulty.
        p_cand = p * (acc - drop) / acc if task == 0 else p
        scores.append((rng.random((trials, n)) < p_cand, rng.random((trials, n)) < p))
    return [
        compare_suite([PairedScores(f"task{j}", "acc", cand[t], base[t], min_effect=min_effect)
                       for j, (cand, base) in enumerate(scores)], seed=t, power=None)  # verdicts only
        for t in range(trials)
    ]


# ---------------------------------------------------------------- golden cases


def test_mcnemar_exact_matches_hand_computed_binomial_tail():
    # 6 wins, 16 losses: p = 2 * P(X <= 6), X ~ Bin(22, 1/2) = 2 * (1+22+231+1540+7315+26334+74613) / 2**22.
    cand, base = _table(59, 6, 16, 80)
    assert mcnemar_exact(cand, base) == pytest.approx(2 * 110056 / 2**22, rel=1e-12)
    assert mcnemar_exact(*_table(50, 7, 7, 30)) == 1.0
    assert mcnemar_exact(*_table(50, 0, 0, 30)) == 1.0


def test_newcombe_ci_matches_published_example():
    # Fagerland, Lydersen & Laake (2017), ch. 8, Cavo et al. (2012): estimate -0.0621, 95% CI -0.1186 to -0.0046.
    low, high = newcombe_paired_ci(*_table(59, 6, 16, 80))
    assert low == pytest.approx(-0.1186, abs=5e-5)
    assert high == pytest.approx(-0.0046, abs=5e-5)


def test_newcombe_ci_agrees_with_paired_bootstrap_on_large_sample():
    cand, base = _table(5000, 300, 400, 2300)
    low, high = newcombe_paired_ci(cand, base)
    b_low, b_high = paired_bootstrap_ci(cand - base, rounds=4000, seed=1)
    assert (low, high) == pytest.approx((b_low, b_high), abs=0.002)


def test_holm_and_bh_match_hand_computed_adjustments():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> 0.02, 0.03, 0.06, max(0.04, 0.06) = 0.06.
    np.testing.assert_allclose(adjust_p_values(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    # BH: sorted 0.005*4/1, 0.01*4/2, 0.03*4/3, 0.04*4/4 = 0.02, 0.02, 0.04, 0.04 (already monotone).
    np.testing.assert_allclose(adjust_p_values(p, "bh"), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(adjust_p_values([0.3, 0.6], "holm"), [0.6, 0.6])
    with pytest.raises(HarnessError, match="holm"):
        adjust_p_values(p, "bonferroni")


def test_sign_flip_is_exact_on_small_samples():
    # |sum| = 5.5; of the 16 sign vectors only (+,+,±,+) and their mirror images reach it: p = 4/16.
    assert sign_flip_test([1.0, 2.0, -0.5, 3.0]) == 0.25
    assert sign_flip_test([0.0, 0.0]) == 1.0


def test_sign_flip_agrees_with_scipy_permutation_test():
    rng = np.random.default_rng(3)
    diff = rng.normal(0.08, 1.0, 500)
    ours = sign_flip_test(diff, rounds=20_000, seed=0)
    scipy_p = sps.permutation_test((diff,), np.mean, permutation_type="samples", n_resamples=20_000,
                                   random_state=1).pvalue
    # Two Monte-Carlo estimates near p = 0.07: each has a standard error of about 0.002.
    assert ours == pytest.approx(scipy_p, abs=0.01)


def test_continuous_metric_detects_a_clear_shift_and_not_a_null():
    rng = np.random.default_rng(0)
    item_effect = rng.normal(0.0, 1.0, 400)  # shared difficulty: the two models' scores are correlated
    base = item_effect + rng.normal(0, 0.3, 400)
    shifted = PairedScores("rm", "reward", base - 0.15 + rng.normal(0, 0.3, 400), base, min_effect=0.05)
    null = PairedScores("rm2", "reward", item_effect + rng.normal(0, 0.3, 400), base, min_effect=0.05)
    shift, same = compare_suite([shifted, null], rounds=5000)
    assert shift.test == "sign_flip_permutation" and shift.ci_method == "paired_bootstrap_percentile"
    assert shift.verdict == "regression" and shift.p_adjusted < 0.001
    assert shift.ci_low < -0.15 < shift.ci_high < 0
    assert same.verdict == "no change" and same.p_value > 0.05
    assert same.ci_low < 0 < same.ci_high


def test_continuous_results_are_seeded():
    rng = np.random.default_rng(5)
    metric = [PairedScores("t", "f1", rng.random(300), rng.random(300))]
    assert compare_suite(metric, seed=7) == compare_suite(metric, seed=7)


def test_lower_is_better_flips_direction():
    rng = np.random.default_rng(1)
    base = rng.normal(10.0, 2.0, 500)
    cand = base + 0.5 + rng.normal(0, 0.2, 500)  # perplexity went up
    worse, = compare_suite([PairedScores("wikitext", "word_perplexity", cand, base, higher_is_better=False)])
    better, = compare_suite([PairedScores("wikitext", "word_perplexity", cand, base)])
    assert worse.delta > 0
    assert worse.verdict == "regression" and better.verdict == "improvement"
    assert overall_verdict([worse]) == "fail" and overall_verdict([better]) == "pass"


def test_min_effect_blocks_a_tiny_but_significant_drop():
    cand, base = _table(14000, 50, 150, 5800)  # 20000 items, a 0.5-point drop, p ~ 1e-12
    tiny, = compare_suite([PairedScores("mmlu", "acc", cand, base, min_effect=0.01)])
    gated_off, = compare_suite([PairedScores("mmlu", "acc", cand, base, min_effect=0.0)])
    assert tiny.delta == pytest.approx(-0.005) and tiny.p_adjusted < 1e-6
    assert tiny.verdict == "no change" and gated_off.verdict == "regression"
    assert overall_verdict([tiny]) == "pass"


def test_comparison_fields_of_a_binary_metric():
    cand, base = _table(59, 6, 16, 80)
    c, = compare_suite([PairedScores("cavo", "response", cand, base)])
    assert (c.n, c.test, c.ci_method, c.correction) == (161, "mcnemar_exact", "newcombe_paired_wilson", "holm")
    assert c.candidate_mean == pytest.approx(65 / 161) and c.baseline_mean == pytest.approx(75 / 161)
    assert c.delta == pytest.approx(-10 / 161)
    assert c.p_value == c.p_adjusted == pytest.approx(2 * 110056 / 2**22)
    assert c.verdict == "no change"


def test_align_items_pairs_by_doc_id():
    cand, base = align_items({"a": 1, "b": 0, "c": 1}, {"c": 0, "a": 1, "b": 1}, task="arc_easy")
    np.testing.assert_array_equal(cand, [1, 0, 1])
    np.testing.assert_array_equal(base, [1, 1, 0])


def test_align_items_accepts_pandas_series():
    pd = pytest.importorskip("pandas")
    cand, base = align_items(pd.Series([0.5, 0.25], index=[7, 3]), pd.Series({3: 1.0, 7: 0.0}), task="squad")
    np.testing.assert_array_equal(cand, [0.5, 0.25])
    np.testing.assert_array_equal(base, [0.0, 1.0])
    with pytest.raises(HarnessError, match="squad.*duplicate"):
        align_items(pd.Series([1.0, 0.0], index=[1, 1]), {1: 1.0}, task="squad")


def test_misaligned_items_raise_naming_the_task():
    with pytest.raises(HarnessError, match="'arc_easy'.*different items"):
        align_items({1: 1, 2: 0}, {1: 1, 3: 0}, task="arc_easy")
    with pytest.raises(HarnessError, match="'gsm8k'.*finite"):
        align_items({1: 1.0}, {1: float("nan")}, task="gsm8k")
    with pytest.raises(HarnessError, match="'hellaswag'.*same non-zero length"):
        PairedScores("hellaswag", "acc", np.ones(3), np.ones(4))


def test_bad_settings_raise():
    cand, base = _table(5, 1, 1, 5)
    with pytest.raises(HarnessError, match="mcnemar.*0 or 1"):
        PairedScores("t", "f1", cand * 0.5, base, test="mcnemar")
    with pytest.raises(HarnessError, match="unknown test"):
        PairedScores("t", "acc", cand, base, test="wilcoxon")
    with pytest.raises(HarnessError, match="min_effect"):
        PairedScores("t", "acc", cand, base, min_effect=-0.01)
    with pytest.raises(HarnessError, match="correction"):
        compare_suite([PairedScores("t", "acc", cand, base)], correction="none")
    with pytest.raises(HarnessError, match="more than once"):
        compare_suite([PairedScores("t", "acc", cand, base)] * 2)


# ---------------------------------------------------------------- calibration and power by simulation


def test_aa_false_alarm_rate_of_the_suite_is_at_most_5_percent():
    """Equal checkpoints, realistic and unrealistic flip rates: any-task regression alarms in <= 5% of nightlies.

    1000 nightlies: if the true rate were exactly 0.05 the observed rate has a standard error of 0.0069, so the
    bound 0.061 (0.05 + 1.6 SE) passes a procedure calibrated at 5% 95% of the time, and one at 8% fails it with
    probability ~0.99. Measured (seeded): 0.016 under Holm and under BH (0.03 counting improvements too). Without
    any adjustment the same data alarm in 0.18 of nightlies, which shows the bound has teeth.
    """
    flip_rates = [0.03, 0.05, 0.08, 0.10, 0.15, 0.05, 0.20, 0.10, 0.30, None]
    nightlies = _nightlies(1000, flip_rates)
    holm = np.mean([overall_verdict(n) == "fail" for n in nightlies])
    raw = np.array([[c.p_value for c in n] for n in nightlies])
    drop = np.array([[-c.delta >= c.min_effect for c in n] for n in nightlies])
    bh = np.mean([np.any((adjust_p_values(p, "bh") <= 0.05) & d) for p, d in zip(raw, drop)])
    unadjusted = np.mean(np.any((raw <= 0.05) & drop, axis=1))
    assert holm <= 0.061
    assert bh <= 0.061  # with no true change anywhere, BH's FDR is the chance of any alarm
    assert unadjusted > 0.10


def test_power_for_a_3_point_drop_with_correlated_checkpoints():
    """A true 0.70 -> 0.67 drop on the 1000-item task, the other 9 tasks unchanged, min_effect 0.01.

    Assumption: equally good checkpoints of the same model would disagree on 3% of items (flip rate 0.03); under
    the drop they disagree on ~6%. McNemar's power depends on discordant pairs: with Holm over 10 metrics, 80%
    needs roughly <= 6.5% of items discordant. Measured (seeded, 500 nightlies): power 0.86; at flip rates 0.05 /
    0.08 / 0.10 (8% / 10% / 12% discordant under the drop) it falls to 0.69 / 0.52 / 0.43. With min_effect 0.03,
    equal to the true drop, power is ~0.5 whatever the flip rate: the gate is on the observed delta.
    """
    nightlies = _nightlies(500, [0.03] + [0.10] * 9, drop=0.03)
    caught = np.mean([n[0].verdict == "regression" for n in nightlies])
    others = np.mean([any(c.verdict == "regression" for c in n[1:]) for n in nightlies])
    assert caught >= 0.80
    assert others <= 0.05


def test_power_is_low_with_independent_items():
    """The same 3-point drop when every item is equally hard (the models' answers independent): ~43% discordant
    pairs, so McNemar rarely sees it. Measured (seeded, 200 nightlies): power 0.075. This is why 1000 items only
    suffice for 3 points when checkpoints are strongly correlated."""
    nightlies = _nightlies(200, [None] * 10, drop=0.03)
    caught = np.mean([n[0].verdict == "regression" for n in nightlies])
    assert caught < 0.25
