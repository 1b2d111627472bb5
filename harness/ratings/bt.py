"""Bradley-Terry maximum likelihood on aggregated battle counts, reported on the Elo scale.

The model: P(x beats y) = σ(θ_x − θ_y [+ β·f]), with θ in natural log-odds units and optional covariates f (style
control, `harness.ratings.style`). A tie counts as half a win each way, as in Chatbot Arena. The fit works on
per-pair counts (`PairCounts`), so after aggregation its cost depends on the number of model pairs, not battles.

The solver is a damped Newton method on the exact log-likelihood with an analytic gradient and Hessian. The
likelihood only fixes rating differences, so the ratings are centred (mean θ = 0, i.e. mean rating = `init`);
`anchor` then shifts them so one model gets a chosen rating. An optional L2 penalty `l2/2 · Σθ²` (natural units) makes
every input identifiable. Without it an undefeated model or a disconnected comparison graph has no finite maximum:
`check_identifiable` raises `NotIdentifiableError` naming the models.

Reported ratings are `init + scale · θ / ln(base)` (400 · log10-odds, centred at 1000, by default).
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager, nullcontext
from typing import Iterator, Mapping

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph

from harness.errors import HarnessError
from harness.ratings.battles import BattlesLike, PairCounts, aggregate


class NotIdentifiableError(HarnessError):
    """The battles do not pin down finite ratings (an undefeated model, a disconnected comparison graph)."""


_blas_controller: list = []  # threadpoolctl's controller, created once: scanning the loaded libraries is slow


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run BLAS single-threaded for a while (when threadpoolctl is installed).

    The linear algebra here is small (models × models); a multi-threaded BLAS only adds spinning threads, which on a
    small or busy machine — or under our own worker threads — makes it several times slower.
    """
    if not _blas_controller:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _blas_controller.append(None)
        else:
            _blas_controller.append(ThreadpoolController())
    controller = _blas_controller[0]
    with nullcontext() if controller is None else controller.limit(limits=1, user_api="blas"):
        yield


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _margins(
    x: np.ndarray, i: np.ndarray, j: np.ndarray, n_models: int, features: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The ratings θ = x[:n_models] and each pair's logit θ_i − θ_j (+ style features · coefficients)."""
    theta = x[:n_models]
    z = theta[i] - theta[j]
    if features is not None:
        z = z + features @ x[n_models:]
    return theta, z


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def objective(
    x: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    score: np.ndarray,
    n: np.ndarray,
    *,
    n_models: int,
    features: np.ndarray | None = None,
    l2: float = 0.0,
) -> float:
    """Negative log-likelihood (plus the L2 penalty) of Bradley-Terry on rows of counts.

    Each row says: models `i` and `j` met `n` times and `i` scored `score` (wins + half the ties). With `features`
    (rows × K) the logit of each row also gets `features @ beta`.

    Args:
        x: parameters, `θ` (n_models, natural units) followed by `beta` (K).
        i, j: model indices per row.
        score: model i's score per row.
        n: battles per row.
        n_models: number of models.
        features: optional covariates per row.
        l2: penalty `l2/2 · Σθ²` (not applied to `beta`).

    Returns:
        The objective value.
    """
    theta, z = _margins(x, i, j, n_models, features)
    return float(np.sum(n * _softplus(z) - score * z) + 0.5 * l2 * theta @ theta)


def gradient(
    x: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    score: np.ndarray,
    n: np.ndarray,
    *,
    n_models: int,
    features: np.ndarray | None = None,
    l2: float = 0.0,
) -> np.ndarray:
    """Analytic gradient of `objective` (same arguments)."""
    theta, z = _margins(x, i, j, n_models, features)
    r = n * _sigmoid(z) - score
    g_theta = np.bincount(i, r, n_models) - np.bincount(j, r, n_models) + l2 * theta
    if features is None:
        return g_theta
    return np.concatenate([g_theta, features.T @ r])


def hessian(
    x: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    score: np.ndarray,
    n: np.ndarray,
    *,
    n_models: int,
    features: np.ndarray | None = None,
    l2: float = 0.0,
) -> np.ndarray:
    """Analytic Hessian of `objective` (same arguments); singular along "shift all θ" when `l2` is 0."""
    theta, z = _margins(x, i, j, n_models, features)
    p = _sigmoid(z)
    return _hessian_from_weights(n * p * (1.0 - p), i, j, n_models, features, l2)


def _hessian_from_weights(
    w: np.ndarray, i: np.ndarray, j: np.ndarray, m: int, features: np.ndarray | None, l2: float
) -> np.ndarray:
    off = np.bincount(i * m + j, w, m * m).reshape(m, m)
    off = off + off.T
    h_tt = np.diag(off.sum(axis=1)) - off + l2 * np.eye(m)
    if features is None:
        return h_tt
    wf = w[:, None] * features
    h_tb = np.stack([np.bincount(i, c, m) - np.bincount(j, c, m) for c in wf.T], axis=1).reshape(m, -1)
    h_bb = features.T @ wf
    return np.block([[h_tt, h_tb], [h_tb.T, h_bb]])


def _derivatives(
    x: np.ndarray, i: np.ndarray, j: np.ndarray, score: np.ndarray, n: np.ndarray, m: int,
    features: np.ndarray | None, l2: float,
) -> tuple[float, np.ndarray, np.ndarray]:
    """`objective`, `gradient` and `hessian` from one pass over the rows."""
    theta = x[:m]
    z = theta[i] - theta[j]
    if features is not None:
        z = z + features @ x[m:]
    p = _sigmoid(z)
    f = float(np.sum(n * _softplus(z) - score * z) + 0.5 * l2 * theta @ theta)
    r = n * p - score
    g = np.bincount(i, r, m) - np.bincount(j, r, m) + l2 * theta
    if features is not None:
        g = np.concatenate([g, features.T @ r])
    return f, g, _hessian_from_weights(n * p * (1.0 - p), i, j, m, features, l2)


def _regularised(h: np.ndarray, n_models: int, l2: float) -> np.ndarray:
    """Add `c · 1 1ᵀ` on the θ block when unpenalised, so the Hessian is invertible and Newton steps keep Σθ fixed."""
    if l2 > 0:
        return h
    h = h.copy()
    c = max(float(np.mean(np.diag(h)[:n_models])), 1e-12) / n_models
    h[:n_models, :n_models] += c
    return h


def newton(
    i: np.ndarray,
    j: np.ndarray,
    score: np.ndarray,
    n: np.ndarray,
    *,
    n_models: int,
    features: np.ndarray | None = None,
    l2: float = 0.0,
    start: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> tuple[np.ndarray, int]:
    """Minimise `objective` by damped Newton steps (Armijo backtracking).

    Args:
        i, j, score, n, n_models, features, l2: as for `objective`.
        start: starting parameters (default: each model's log-odds of scoring, β = 0); any start reaches the same
            optimum.
        tol: stop when the largest step is below this (natural log-odds units).
        max_iter: give up (with a `RuntimeWarning`) after this many steps.

    Returns:
        `(x, iterations)` with θ centred to mean zero.
    """
    k = 0 if features is None else features.shape[1]
    if start is not None:
        x = np.array(start, dtype=float)
    else:  # each model's own log-odds of scoring: close to the answer when schedules are balanced
        x = np.zeros(n_models + k)
        won = np.bincount(i, score, n_models) + np.bincount(j, n - score, n_models)
        lost = np.bincount(i, n - score, n_models) + np.bincount(j, score, n_models)
        x[:n_models] = np.log((won + 0.5) / (lost + 0.5))
        x[:n_models] -= x[:n_models].mean()
    args = (i, j, score, n)
    kw = dict(n_models=n_models, features=features, l2=l2)
    for it in range(1, max_iter + 1):
        f, g, h = _derivatives(x, i, j, score, n, n_models, features, l2)
        h = _regularised(h, n_models, l2)
        if l2 == 0:  # keep the step off the null direction even if the start was not centred
            g[:n_models] -= g[:n_models].mean()
        try:  # numpy's LAPACK, not scipy's: mixing the two BLAS thread pools stalls both on small machines
            step = -np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            step = -np.linalg.lstsq(h, g, rcond=None)[0]
        t, slope = 1.0, float(g @ step)
        while True:
            x_new = x + t * step
            if objective(x_new, *args, **kw) <= f + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        x = x_new
        if np.max(np.abs(t * step)) < tol:
            break
    else:
        warnings.warn(
            f"Bradley-Terry fit did not converge in {max_iter} Newton steps (last step {np.max(np.abs(t * step)):.2e})",
            RuntimeWarning,
            stacklevel=2,
        )
    x[:n_models] -= x[:n_models].mean()
    return x, it


def _names(models: list[str], idx, limit: int = 8) -> str:
    idx = list(idx)
    shown = ", ".join(models[k] for k in idx[:limit])
    return "{" + shown + (f", … {len(idx) - limit} more" if len(idx) > limit else "") + "}"


def check_identifiable(counts: PairCounts) -> None:
    """Raise `NotIdentifiableError` unless the battles pin down finite ratings.

    Finite maximum-likelihood ratings exist exactly when the "scored against" graph (x → y when x beat or tied y at
    least once) is strongly connected: every group of models has both won (or tied) and lost (or tied) against the
    rest. The error names the offending models: disconnected groups, groups that never lost to the others (an
    undefeated model), and groups that never won against the others.
    """
    m = len(counts.models)
    if m < 2:
        raise NotIdentifiableError(f"need battles between at least two models, got {m}: {_names(counts.models, range(m))}")
    seen = np.zeros(m, dtype=bool)
    seen[counts.i] = seen[counts.j] = True
    if not seen.all():
        raise NotIdentifiableError(f"models without battles: {_names(counts.models, np.flatnonzero(~seen))}")
    und = sparse.coo_matrix((np.ones(len(counts.i)), (counts.i, counts.j)), shape=(m, m))
    n_groups, label = csgraph.connected_components(und, directed=False)
    if n_groups > 1:
        groups = " | ".join(_names(counts.models, np.flatnonzero(label == g), 5) for g in range(min(n_groups, 4)))
        raise NotIdentifiableError(
            f"the comparison graph is disconnected ({n_groups} groups that never met: {groups}"
            f"{' | …' if n_groups > 4 else ''}); ratings across groups are not comparable — add battles between "
            "the groups, rate each group separately, or regularise (l2 > 0)"
        )
    src = np.concatenate([counts.i[counts.score_i > 0], counts.j[counts.score_i < counts.n]])
    dst = np.concatenate([counts.j[counts.score_i > 0], counts.i[counts.score_i < counts.n]])
    scored = sparse.coo_matrix((np.ones(len(src)), (src, dst)), shape=(m, m)).tocsr()
    n_comp, comp = csgraph.connected_components(scored, directed=True, connection="strong")
    if n_comp == 1:
        return
    cross = comp[src] != comp[dst]
    lost = np.zeros(n_comp, dtype=bool)  # the component was scored against by an outsider
    won = np.zeros(n_comp, dtype=bool)  # the component scored against an outsider
    lost[comp[dst[cross]]] = True
    won[comp[src[cross]]] = True
    parts = []
    for c in np.flatnonzero(~lost)[:3]:
        parts.append(f"{_names(counts.models, np.flatnonzero(comp == c))} never lost to the other models")
    for c in np.flatnonzero(~won)[:3]:
        parts.append(f"{_names(counts.models, np.flatnonzero(comp == c))} never beat or tied the other models")
    raise NotIdentifiableError(
        "ratings are not identifiable (their maximum-likelihood values are infinite): " + "; ".join(parts)
        + " — add battles or regularise (l2 > 0)"
    )


def to_elo(theta: np.ndarray, *, scale: float = 400.0, base: float = 10.0, init: float = 1000.0) -> np.ndarray:
    """Natural log-odds ratings → rating points: `init + scale · (θ − mean θ) / ln(base)` (works on any last axis)."""
    theta = np.asarray(theta, dtype=float)
    return init + (scale / math.log(base)) * (theta - theta.mean(axis=-1, keepdims=True))


def anchor_shift(ratings: np.ndarray, models: list[str], anchor: Mapping[str, float] | None) -> np.ndarray:
    """Shift ratings (last axis = models) so the anchor model gets its rating; `anchor` is `{model: rating}`."""
    if not anchor:
        return ratings
    if len(anchor) != 1:
        raise HarnessError(f"anchor takes exactly one MODEL=RATING, got {dict(anchor)}")
    (model, value), = anchor.items()
    if model not in models:
        raise HarnessError(f"anchor model {model!r} is not among the rated models: {_names(models, range(len(models)), 12)}")
    k = models.index(model)
    return ratings + (float(value) - ratings[..., [k]])


def fit_counts(
    counts: PairCounts,
    *,
    l2: float = 0.0,
    start: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
    check: bool = True,
) -> np.ndarray:
    """Fit θ (natural units, mean zero) on aggregated counts.

    Args:
        counts: per-pair counts.
        l2: L2 penalty on θ; with `l2 > 0` no identifiability check is needed.
        start: starting θ (any start gives the same answer).
        tol: convergence tolerance on the Newton step.
        max_iter: Newton step limit.
        check: run `check_identifiable` first when `l2 == 0`.

    Returns:
        θ, one value per model in `counts.models` order.
    """
    if l2 < 0 or not math.isfinite(l2):
        raise HarnessError(f"l2 must be a non-negative number, got {l2}")
    if check and l2 == 0:
        check_identifiable(counts)
    with single_threaded_blas():
        theta, _ = newton(
            counts.i, counts.j, counts.score_i, counts.n,
            n_models=len(counts.models), l2=l2, start=start, tol=tol, max_iter=max_iter,
        )
    return theta


def fit_bt(
    battles: BattlesLike | PairCounts,
    *,
    anchor: Mapping[str, float] | None = None,
    l2: float = 0.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
) -> pd.Series:
    """Bradley-Terry ratings on the Elo scale.

    Args:
        battles: battles (DataFrame, list of dicts, path) or pre-aggregated `PairCounts`.
        anchor: optional `{model: rating}` fixing one model's rating; otherwise the mean rating is `init`.
        l2: L2 penalty `l2/2 · Σθ²` on natural-unit ratings (0 = plain maximum likelihood).
        scale: rating points per `base`-fold change in the odds.
        base: the odds base.
        init: the mean rating (before anchoring).

    Returns:
        Ratings indexed by model, highest first (name "rating").
    """
    counts = aggregate(battles)
    theta = fit_counts(counts, l2=l2)
    ratings = anchor_shift(to_elo(theta, scale=scale, base=base, init=init), counts.models, anchor)
    return pd.Series(ratings, index=counts.models, name="rating").sort_values(ascending=False)
