"""How far a judge can be trusted, from its raw verdicts: position consistency, position and length bias, tie rate,
self-preference and agreement with human labels, each with a 95% CI.

Two sources of verdicts:

- an arena's battles (`arena_reliability`): every pair judged twice with the positions swapped, each record holding
  both verdicts (``verdict_ab``: model_a shown first; ``verdict_ba``: model_b shown first) and both answers' lengths;
- AlpacaEval annotations (`annotations_reliability`): one preference per (instruction, model) against the baseline.
  AlpacaEval's annotators randomise which output is shown first and the file records the preference with the
  positions undone, so neither the position consistency nor the position bias can be measured there; the length
  bias, the tie rate, self-preference and agreement with labels can.

The statistics (`STATS`; each an `Estimate`, `Reliability.unmeasured` says why one is missing):

- ``position_flip_rate``: the share of pairs whose verdict flips when the positions swap (the winner, or a tie,
  read from the same model's side differs between the two orders; ``A>>B`` and ``A>B`` count alike).
- ``position_bias`` and ``length_bias``: coefficients of one logistic fit of each verdict's score for the answer
  shown first (1 win, 1/2 tie, 0 loss: soft labels, as AlpacaEval's GLM fits them) on an intercept (the position
  bias: log-odds in favour of the first position), the standardised length difference first − second in characters
  (the length bias: log-odds per standard deviation of the difference) and one strength per model, so that a
  stronger model's longer answers do not count as bias. Annotations have no position, so the intercept goes; the
  strengths carry each model's edge over the baseline. A weak ridge (`STRENGTH_RIDGE`) on the strengths keeps an
  undefeated model finite.
- ``tie_rate``: the share of verdicts that are ties (``A=B``; for annotations a preference of exactly 1.5 or 0).
- ``self_family_score``: with the judge's family and each model's family declared, the judge's mean score for the
  answer of its own family in pairs where exactly one answer is of that family (1/2: no preference). It mixes the
  family's quality with the judge's bias; ``self_preference`` separates them where human labels exist: the judge's
  score for its family's answer minus the labels' score for the same answer on the same labelled pairs (0: no bias).
- ``human_accuracy`` and ``human_kappa``: agreement of the judge's pair outcome (model_a, tie, model_b; for an arena
  the outcome over both orders) with human labels: the share that match and Cohen's kappa over the three classes.

Standard errors are clustered by prompt (an arena's prompt id, an annotation's instruction): the pairs and orders of
one prompt share its answers. Rates get Wilson intervals at the clustered effective sample size, means and
coefficients Wald intervals (the coefficients' covariance is the cluster-robust sandwich of the logistic fit),
kappa a percentile bootstrap over prompts (seeded). Everything is a pure function of the records.

A labels file (`read_labels`) is a battle file (JSON, JSON lines, CSV or Parquet) with ``prompt_id, model_a,
model_b, winner`` (``model_a``, ``model_b``, ``tie`` or ``tie (bothbad)``); for annotations ``prompt_id`` may be
the instruction text, or the column may be called ``instruction``. Several labels of one pair (several raters)
each count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from harness.errors import HarnessError
from harness.tracking import schema

STATS = schema.RELIABILITY_STATS
LABELS = {
    "position_flip_rate": "position flip rate",
    "position_bias": "position bias (log-odds, first shown)",
    "length_bias": "length bias (log-odds per SD)",
    "tie_rate": "tie rate",
    "self_family_score": "own-family score",
    "self_preference": "self-preference vs labels",
    "human_accuracy": "agreement with labels",
    "human_kappa": "Cohen's kappa with labels",
}
SIGNED = {"position_bias", "length_bias", "self_preference", "human_kappa"}  # shown with a sign
STRENGTH_RIDGE = 0.01  # L2 on the per-model strengths (logit units): a N(0, 10^2) prior, bounds an undefeated model
OUTCOMES = ("model_a", "tie", "model_b")
_WINNER = {"model_a": 0, "tie": 1, "tie (bothbad)": 1, "model_b": 2}
_SCORE_FIRST = {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B>A": 0.0, "B>>A": 0.0}  # the first-shown answer's score


@dataclass(frozen=True)
class Estimate:
    """One statistic with its standard error, its interval at the report's level and how many units it rests on."""

    value: float
    se: float
    ci_low: float
    ci_high: float
    n: int

    def covers(self, x: float) -> bool:
        return bool(self.ci_low <= x <= self.ci_high)


@dataclass
class Reliability:
    """A judge's reliability report.

    Attributes:
        source: ``arena`` or ``annotations``.
        estimates: statistic (one of `STATS`) → `Estimate`, for those that could be measured.
        unmeasured: statistic → why it could not be measured.
        notes: caveats (labels that matched no judged pair...).
        level: the intervals' confidence level.
    """

    source: str
    estimates: dict[str, Estimate] = field(default_factory=dict)
    unmeasured: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    level: float = 0.95

    def __getitem__(self, stat: str) -> Estimate:
        return self.estimates[stat]

    def metrics(self) -> dict[str, float]:
        """The MLflow metrics: ``reliability/<stat>`` and its ``/se``, ``/ci_low``, ``/ci_high``, ``/n``."""
        out = {}
        for stat, est in self.estimates.items():
            for part in schema.RELIABILITY_PARTS:
                out[schema.reliability_metric(stat, part)] = float(getattr(est, part))
        return out

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any], source: str = "arena") -> "Reliability | None":
        """Read a report back from a run's metrics (a mapping or a `search_runs` row's ``metrics.*``); None when the
        run has none."""
        parts: dict[str, dict[str, float]] = {}
        for name, value in metrics.items():
            parsed = schema.parse_reliability_metric(str(name).removeprefix("metrics."))
            if parsed is not None and isinstance(value, (int, float)) and value == value:
                parts.setdefault(parsed[0], {})[parsed[1]] = float(value)
        estimates = {stat: Estimate(p["value"], p.get("se", np.nan), p.get("ci_low", np.nan),
                                    p.get("ci_high", np.nan), int(p.get("n", 0)))
                     for stat in STATS if "value" in (p := parts.get(stat, {}))}
        return cls(source, estimates) if estimates else None

    def display(self) -> list[dict[str, str | int]]:
        """The report as table rows for every view: ``statistic``, ``estimate`` (value [CI]) and ``n``."""
        from harness.report.tables import estimate

        return [{"statistic": r["statistic"], "estimate": estimate(r["value"], r["ci_low"], r["ci_high"],
                                                                   signed=r["stat"] in SIGNED),
                 "n": r["n"]} for r in self.rows()]

    def missing_text(self) -> str:
        """``not measured: <statistics> (<why>); ...``, statistics sharing a reason named together; "" when none."""
        by_reason: dict[str, list[str]] = {}
        for stat in STATS:
            if stat in self.unmeasured and stat not in self.estimates:
                by_reason.setdefault(self.unmeasured[stat], []).append(LABELS[stat])
        if not by_reason:
            return ""
        return "not measured: " + "; ".join(f"{', '.join(names)} ({why})" for why, names in by_reason.items())

    def rows(self) -> list[dict[str, Any]]:
        """One row per measured statistic, in `STATS` order: ``stat, statistic, value, ci_low, ci_high, n``."""
        return [{"stat": s, "statistic": LABELS[s], "value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high,
                 "n": e.n} for s in STATS if (e := self.estimates.get(s)) is not None]


# --- the arena's battles and the annotations, as games and pairs ------------------------------------------------


def _arena_games(battles: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(games: one row per verdict, the first-shown answer's score; pairs: one row per battle)."""
    need = ["prompt_id", "model_a", "model_b", "verdict_ab", "verdict_ba", "len_a", "len_b"]
    missing = [c for c in need if c not in battles.columns]
    if missing:
        raise HarnessError(f"battles: missing column(s) {', '.join(missing)}; judge reliability needs both "
                           "position orders' verdicts and the answers' lengths, as the arena records them")
    b = battles.reset_index(drop=True)
    bad = ~b["verdict_ab"].isin(list(_SCORE_FIRST)) | ~b["verdict_ba"].isin(list(_SCORE_FIRST))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise HarnessError(f"battles: row {row + 1}: verdicts {b['verdict_ab'][row]!r}, {b['verdict_ba'][row]!r}; "
                           f"valid: {', '.join(_SCORE_FIRST)}")
    cluster = b["prompt_id"].astype(str).to_numpy()
    len_a, len_b = b["len_a"].to_numpy(float), b["len_b"].to_numpy(float)
    s_ab, s_ba = b["verdict_ab"].map(_SCORE_FIRST).to_numpy(), b["verdict_ba"].map(_SCORE_FIRST).to_numpy()
    games = pd.DataFrame({
        "cluster": np.concatenate([cluster, cluster]),
        "first": np.concatenate([b["model_a"], b["model_b"]]).astype(str),
        "second": np.concatenate([b["model_b"], b["model_a"]]).astype(str),
        "y": np.concatenate([s_ab, s_ba]),
        "dlen": np.concatenate([len_a - len_b, len_b - len_a]),
    })
    score_a = (s_ab + 1.0 - s_ba) / 2.0
    pairs = pd.DataFrame({"cluster": cluster, "model_a": b["model_a"].astype(str), "model_b": b["model_b"].astype(str),
                          "score_a": score_a, "outcome": np.where(score_a > 0.5, 0, np.where(score_a < 0.5, 2, 1)),
                          # the winner read from model_a's side in each order: flipped when they differ
                          "flip": np.sign(s_ab - 0.5) != np.sign(0.5 - s_ba)})
    return games, pairs


def _annotation_games(frames: Sequence[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Games with the model's output as "first" (no position: the strengths absorb the orientation), and pairs."""
    parts = []
    for f in frames:
        missing = [c for c in ("instruction", "preference", "output_1", "output_2") if c not in f.columns]
        if missing:
            raise HarnessError(f"annotations: missing field(s) {', '.join(missing)}")
        pref = np.asarray(f["preference"], dtype=float)
        pref = np.where(pref == 0, 1.5, pref)  # AlpacaEval's old encoding of a draw
        parts.append(pd.DataFrame({
            "cluster": f["instruction"].astype(str).to_numpy(),
            "model": (f["generator_2"] if "generator_2" in f.columns else pd.Series(["model"] * len(f))).astype(str)
            .to_numpy(),
            "baseline": (f["generator_1"] if "generator_1" in f.columns else pd.Series(["baseline"] * len(f)))
            .astype(str).to_numpy(),
            "y": pref - 1.0,
            "dlen": f["output_2"].astype(str).str.len().to_numpy(float) - f["output_1"].astype(str).str.len()
            .to_numpy(float),
        }))
    if not parts:
        raise HarnessError("no annotations given")
    a = pd.concat(parts, ignore_index=True)
    games = pd.DataFrame({"cluster": a["cluster"], "first": a["model"], "second": a["baseline"], "y": a["y"],
                          "dlen": a["dlen"]})
    pairs = pd.DataFrame({"cluster": a["cluster"], "model_a": a["baseline"], "model_b": a["model"],
                          "score_a": 1.0 - a["y"],
                          "outcome": np.where(a["y"] < 0.5, 0, np.where(a["y"] > 0.5, 2, 1))})
    return games, pairs


# --- estimators ---------------------------------------------------------------------------------------------------


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


def _cluster_var_of_mean(x: np.ndarray, cluster: np.ndarray) -> float:
    """The cluster-robust variance of mean(x) (CR1: small-sample factor C/(C−1)); NaN with one cluster."""
    codes, _ = pd.factorize(cluster)
    c = int(codes.max()) + 1 if len(codes) else 0
    if c < 2:
        return float("nan")
    r = np.bincount(codes, weights=x - x.mean(), minlength=c)
    return float(c / (c - 1) * np.sum(r ** 2) / len(x) ** 2)


def _rate(hit: np.ndarray, cluster: np.ndarray, level: float) -> Estimate:
    """A share with its clustered SE and the Wilson interval at the design-effect-adjusted sample size."""
    x = np.asarray(hit, dtype=float)
    n, p = len(x), float(x.mean())
    var = _cluster_var_of_mean(x, cluster)
    iid = p * (1 - p) / n
    n_eff = n if not (iid > 0 and var > 0) else p * (1 - p) / var  # no spread: the count of units
    z = _z(level)
    centre = (p + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z * np.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff ** 2)) / (1 + z * z / n_eff)
    se = float(np.sqrt(var)) if var == var else float(np.sqrt(iid))
    low = 0.0 if p == 0 else max(0.0, float(centre - half))
    high = 1.0 if p == 1 else min(1.0, float(centre + half))
    return Estimate(p, se, low, high, n)


def _mean(x: np.ndarray, cluster: np.ndarray, level: float, lo: float = -np.inf, hi: float = np.inf) -> Estimate:
    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    se = float(np.sqrt(_cluster_var_of_mean(x, cluster)))
    z = _z(level)
    return Estimate(m, se, max(lo, m - z * se), min(hi, m + z * se), len(x))


def _logit_fit(X: np.ndarray, y: np.ndarray, penalty: np.ndarray,
               cluster: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Soft-label logistic regression with an L2 `penalty` per coefficient; (coefficients, sandwich covariance
    clustered by `cluster`), or None when the fit does not converge."""

    def f(b):
        eta = X @ b
        loss = np.sum(np.logaddexp(0.0, eta) - y * eta) + 0.5 * np.sum(penalty * b * b)
        return loss, X.T @ (_sigmoid(eta) - y) + penalty * b

    def hess(b):
        p = _sigmoid(X @ b)
        return (X * (p * (1 - p))[:, None]).T @ X + np.diag(penalty)

    res = optimize.minimize(f, np.zeros(X.shape[1]), jac=True, hess=hess, method="trust-exact")
    if not res.success and np.linalg.norm(f(res.x)[1]) > 1e-4 * len(y):
        return None
    b = res.x
    bread = np.linalg.inv(hess(b))
    codes, _ = pd.factorize(cluster)
    c = int(codes.max()) + 1
    scores = X * (_sigmoid(X @ b) - y)[:, None]
    per_cluster = np.zeros((c, X.shape[1]))
    np.add.at(per_cluster, codes, scores)
    meat = per_cluster.T @ per_cluster * (c / (c - 1) if c > 1 else np.nan)
    return b, bread @ meat @ bread


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _biases(games: pd.DataFrame, positions: bool, level: float, out: Reliability) -> None:
    """Position bias (with `positions`) and length bias from one logistic fit with per-model strengths."""
    models = pd.Index(sorted(set(games["first"]) | set(games["second"])))
    n, m = len(games), len(models)
    sd = float(games["dlen"].std(ddof=1)) if n > 1 else 0.0
    if not sd > 0:
        out.unmeasured["length_bias"] = "every pair's answers are equally long"
    columns = ([np.ones(n)] if positions else []) + ([games["dlen"].to_numpy(float) / sd] if sd > 0 else [])
    if not columns:
        return
    if np.ptp(games["y"].to_numpy(float)) == 0:  # one verdict throughout: nothing for a bias to explain
        for name in (["position_bias"] if positions else []) + (["length_bias"] if sd > 0 else []):
            out.unmeasured[name] = "every verdict is the same"
        return
    strength = np.zeros((n, m))
    strength[np.arange(n), models.get_indexer(games["first"])] += 1.0
    strength[np.arange(n), models.get_indexer(games["second"])] -= 1.0
    X = np.column_stack(columns + [strength])
    penalty = np.r_[np.zeros(len(columns)), np.full(m, STRENGTH_RIDGE)]
    cluster = games["cluster"].to_numpy()
    names = (["position_bias"] if positions else []) + (["length_bias"] if sd > 0 else [])
    fit = _logit_fit(X, games["y"].to_numpy(float), penalty, cluster)
    if fit is None:
        for name in names:
            out.unmeasured[name] = "the logistic fit did not converge"
        out.notes.append("the position / length fit did not converge; its biases are left out")
        return
    b, cov = fit
    z = _z(level)
    for k, name in enumerate(names):
        se = float(np.sqrt(cov[k, k]))
        out.estimates[name] = Estimate(float(b[k]), se, float(b[k] - z * se), float(b[k] + z * se), n)


def _families(pairs: pd.DataFrame, judge_family: str | None, families: Mapping[str, str] | None) -> np.ndarray | None:
    """+1 where model_a alone is of the judge's family, −1 where model_b alone is, 0 otherwise; None when no
    families are declared."""
    if not judge_family or not families:
        return None
    same = {m: families.get(m) == judge_family for m in set(pairs["model_a"]) | set(pairs["model_b"])}
    a = pairs["model_a"].map(same).to_numpy(bool)
    b = pairs["model_b"].map(same).to_numpy(bool)
    return a.astype(int) - b.astype(int)


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read and check a human labels file (see the module docstring).

    Returns:
        ``prompt_id, model_a, model_b, winner`` as strings, one row per label.

    Raises:
        HarnessError: a missing file, what the battle reader refuses (columns, winners, a model against itself), no
            prompt id.
    """
    from harness.ratings.battles import read_battle_file

    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: no such labels file (expected prompt_id, model_a, model_b, winner per label)")
    frame = read_battle_file(path)
    if "prompt_id" not in frame.columns and "instruction" in frame.columns:
        frame = frame.rename(columns={"instruction": "prompt_id"})
    if "prompt_id" not in frame.columns:
        raise HarnessError(f"{path}: missing column prompt_id (or instruction); each label names the prompt, "
                           "model_a, model_b and the winner")
    if frame["prompt_id"].isna().any():
        row = int(np.flatnonzero(frame["prompt_id"].isna().to_numpy())[0])
        raise HarnessError(f"{path}: row {row + 1}: prompt_id is missing")
    return pd.DataFrame({c: frame[c].astype(str) for c in ("prompt_id", "model_a", "model_b", "winner")})


def _match_labels(pairs: pd.DataFrame, labels: pd.DataFrame, out: Reliability) -> pd.DataFrame | None:
    """The labelled pairs: one row per label that names a judged pair, with the judge's and the label's outcome and
    model_a's score, oriented to the pair's model_a."""
    index = {(c, a, b): k for k, (c, a, b) in enumerate(zip(pairs["cluster"], pairs["model_a"], pairs["model_b"]))}
    rows = []
    for p, a, b, w in labels.itertuples(index=False):
        k, flip = index.get((p, a, b)), False
        if k is None:
            k, flip = index.get((p, b, a)), True
        if k is None:
            continue
        human = _WINNER[w]
        rows.append((k, 2 - human if flip else human))
    if not rows:
        out.notes.append(f"none of the {len(labels)} labels names a judged pair (matched by prompt id and the two "
                         "models)")
        return None
    if len(rows) < len(labels):
        out.notes.append(f"{len(labels) - len(rows)} of {len(labels)} labels name no judged pair and are left out")
    k, human = map(np.asarray, zip(*rows))
    picked = pairs.iloc[k].reset_index(drop=True)
    return picked.assign(human=human, human_score_a=(2 - human) / 2.0)


def _kappa(confusion: np.ndarray) -> np.ndarray:
    """Cohen's kappa of 3×3 confusion counts, flattened on the last axis (any leading shape)."""
    c = confusion.reshape(*confusion.shape[:-1], 3, 3).astype(float)
    total = c.sum(axis=(-1, -2))
    po = np.trace(c, axis1=-2, axis2=-1) / total
    pe = np.sum(c.sum(axis=-1) * c.sum(axis=-2), axis=-1) / total ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return (po - pe) / (1.0 - pe)


def cohen_kappa(judge: Sequence[int], human: Sequence[int]) -> float:
    """Cohen's kappa of two raters' classes 0, 1, 2 (model_a, tie, model_b); NaN when both always say one class."""
    conf = np.zeros(9)
    np.add.at(conf, np.asarray(judge, dtype=int) * 3 + np.asarray(human, dtype=int), 1.0)
    return float(_kappa(conf))


def _agreement(labelled: pd.DataFrame, level: float, rounds: int, seed: int, out: Reliability) -> None:
    cluster = labelled["cluster"].to_numpy()
    judge, human = labelled["outcome"].to_numpy(int), labelled["human"].to_numpy(int)
    out.estimates["human_accuracy"] = _rate(judge == human, cluster, level)
    codes, _ = pd.factorize(cluster)
    c = int(codes.max()) + 1
    per_cluster = np.zeros((c, 9))
    np.add.at(per_cluster, (codes, judge * 3 + human), 1.0)
    kappa = float(_kappa(per_cluster.sum(axis=0)))
    if not np.isfinite(kappa):
        out.unmeasured["human_kappa"] = "the judge and the labels each give one class only"
        return
    low = high = se = float("nan")
    if rounds > 0 and c > 1:
        rng = np.random.default_rng(seed)
        weights = rng.multinomial(c, np.full(c, 1.0 / c), size=rounds)
        boot = _kappa(weights @ per_cluster)
        boot = boot[np.isfinite(boot)]
        low, high = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
        se = float(boot.std(ddof=1))
    out.estimates["human_kappa"] = Estimate(kappa, se, float(low), float(high), len(labelled))


def _report(source: str, games: pd.DataFrame, pairs: pd.DataFrame, *, positions: bool, judge_family: str | None,
            families: Mapping[str, str] | None, labels: pd.DataFrame | str | Path | None, rounds: int, seed: int,
            level: float) -> Reliability:
    out = Reliability(source, level=level)
    if not len(games):
        raise HarnessError(f"judge reliability: no verdicts in the {source}")
    if positions:
        out.estimates["position_flip_rate"] = _rate(pairs["flip"].to_numpy(), pairs["cluster"].to_numpy(), level)
    else:
        why = "one verdict per pair, positions randomised by the annotator and undone in the record"
        out.unmeasured["position_flip_rate"] = out.unmeasured["position_bias"] = why
    _biases(games, positions, level, out)
    out.estimates["tie_rate"] = _rate(games["y"].to_numpy() == 0.5, games["cluster"].to_numpy(), level)

    side = _families(pairs, judge_family, families)
    labelled = None
    if labels is not None:
        table = labels if isinstance(labels, pd.DataFrame) else read_labels(labels)
        labelled = _match_labels(pairs, table, out)
    if labelled is None:
        why = "no labels file" if labels is None else "no label names a judged pair"
        out.unmeasured["human_accuracy"] = out.unmeasured["human_kappa"] = why
    else:
        _agreement(labelled, level, rounds, seed, out)

    if side is None:
        why = "no families declared"
        out.unmeasured["self_family_score"] = out.unmeasured["self_preference"] = why
        return out
    mixed = side != 0
    if not mixed.any():
        why = f"no pair has exactly one answer of the judge's family {judge_family!r}"
        out.unmeasured["self_family_score"] = out.unmeasured["self_preference"] = why
        return out
    own = np.where(side == 1, pairs["score_a"], 1.0 - pairs["score_a"])
    out.estimates["self_family_score"] = _mean(own[mixed], pairs["cluster"].to_numpy()[mixed], level, 0.0, 1.0)
    if labelled is None:
        out.unmeasured["self_preference"] = "needs human labels as the reference"
        return out
    lside = _families(labelled, judge_family, families)
    lmixed = lside != 0
    if not lmixed.any():
        out.unmeasured["self_preference"] = "no labelled pair has exactly one answer of the judge's family"
        return out
    judge_own = np.where(lside == 1, labelled["score_a"], 1.0 - labelled["score_a"])
    human_own = np.where(lside == 1, labelled["human_score_a"], 1.0 - labelled["human_score_a"])
    diff = (judge_own - human_own)[lmixed]
    out.estimates["self_preference"] = _mean(diff, labelled["cluster"].to_numpy()[lmixed], level, -1.0, 1.0)
    return out


def arena_reliability(battles: pd.DataFrame, *, judge_family: str | None = None,
                      families: Mapping[str, str] | None = None, labels: pd.DataFrame | str | Path | None = None,
                      rounds: int = 1000, seed: int = 0, level: float = 0.95) -> Reliability:
    """The reliability of an arena's judge from its battle records (see the module docstring).

    Args:
        battles: the arena's battles (``prompt_id, model_a, model_b, verdict_ab, verdict_ba, len_a, len_b``).
        judge_family: the judge's model family; with `families` it gives the self-preference statistics.
        families: model name → family.
        labels: human labels (a `read_labels` table or its file).
        rounds: bootstrap rounds for kappa's interval (0: none).
        seed: the bootstrap's seed.
        level: confidence level of the intervals.

    Returns:
        The `Reliability` report.
    """
    games, pairs = _arena_games(battles)
    return _report("arena", games, pairs, positions=True, judge_family=judge_family, families=families,
                   labels=labels, rounds=rounds, seed=seed, level=level)


def annotations_reliability(annotations: Sequence[pd.DataFrame], *, judge_family: str | None = None,
                            families: Mapping[str, str] | None = None,
                            labels: pd.DataFrame | str | Path | None = None, rounds: int = 1000, seed: int = 0,
                            level: float = 0.95) -> Reliability:
    """The reliability of an AlpacaEval annotator from annotations (`harness.ratings.alpaca.read_annotations`
    frames): length bias, tie rate, self-preference and agreement with labels; no position statistics.

    Args and Returns: as `arena_reliability`; a label's ``model_a`` / ``model_b`` are generator_1 / generator_2 (either
    order) and its ``prompt_id`` the instruction.
    """
    games, pairs = _annotation_games(list(annotations))
    return _report("annotations", games, pairs, positions=False, judge_family=judge_family, families=families,
                   labels=labels, rounds=rounds, seed=seed, level=level)
