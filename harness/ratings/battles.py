"""Battle records: read them from files, check them, and aggregate them to pair counts.

A battle is one row with `model_a`, `model_b` and `winner`, where `winner` is one of `model_a`, `model_b`, `tie` or
`tie (bothbad)` — the Chatbot Arena format, which the harness's own arena records share (they may carry extra fields
such as `prompt_id`, `judge`, `verdict_ab`, `verdict_ba`, `len_a`, `len_b`; extra fields are kept, not required).
Files may be JSON (a list of records), JSON lines, Parquet or CSV.

Ratings only need, for every unordered pair of models, how often each side won and how often they tied, so
`aggregate` turns any number of battles into a `PairCounts` table whose size depends on the number of pairs, not on
the number of battles. Ties count as half a win each way, as Chatbot Arena counts them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from harness.errors import HarnessError, not_utf8

REQUIRED_COLUMNS = ("model_a", "model_b", "winner")
# Outcome codes: 2 = model_a won, 1 = tie, 0 = model_b won (so code / 2 is model_a's score).
WINNER_CODES = {"model_a": 2, "tie": 1, "tie (bothbad)": 1, "model_b": 0}

BattlesLike = pd.DataFrame | Sequence[Mapping[str, Any]] | str | Path


@dataclass(frozen=True)
class PairCounts:
    """Battle outcomes aggregated per unordered pair of models (`i < j`, indices into `models`).

    Attributes:
        models: model names, sorted.
        i, j: model indices of each pair, `i < j`.
        wins_i, ties, wins_j: how often `models[i]` won, the two tied, and `models[j]` won.
    """

    models: list[str]
    i: np.ndarray
    j: np.ndarray
    wins_i: np.ndarray
    ties: np.ndarray
    wins_j: np.ndarray

    @property
    def n(self) -> np.ndarray:
        """Battles per pair."""
        return self.wins_i + self.ties + self.wins_j

    @property
    def score_i(self) -> np.ndarray:
        """`models[i]`'s score per pair: wins plus half the ties."""
        return self.wins_i + 0.5 * self.ties

    @property
    def n_battles(self) -> int:
        return int(round(float(self.n.sum())))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise not_utf8("battle file", path, err) from None


def _read_json(path: Path) -> pd.DataFrame:
    text = _read_text(path)
    if not text.strip():
        raise HarnessError(f"{path}: the file is empty; expected battles with columns {', '.join(REQUIRED_COLUMNS)}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if "Extra data" not in err.msg:
            raise HarnessError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
        return _read_jsonl_text(path, text)  # a JSON-lines file named .json
    if isinstance(data, dict):
        data = data.get("battles", data)
    if isinstance(data, dict):  # columns: {"model_a": [...], "model_b": [...], "winner": [...]}
        if not all(isinstance(v, list) for v in data.values()):
            raise HarnessError(f"{path}: expected a JSON list of battle objects, or a mapping of columns to lists, "
                               f"with {', '.join(REQUIRED_COLUMNS)}")
        try:
            return pd.DataFrame(data)
        except ValueError as err:
            raise HarnessError(f"{path}: the columns cannot form a table ({err})") from None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise HarnessError(f"{path}: expected a JSON list of battle objects with {', '.join(REQUIRED_COLUMNS)}")
    return pd.DataFrame.from_records(data)


def _read_jsonl_text(path: Path, text: str) -> pd.DataFrame:
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise HarnessError(f"{path}: line {lineno} is not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise HarnessError(f"{path}: line {lineno} is not a JSON object; expected one battle per line")
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def _read_jsonl(path: Path) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise HarnessError(f"{path}: the file is empty; expected battles with columns {', '.join(REQUIRED_COLUMNS)}")
    try:  # the fast reader; on any surprise fall back to line-by-line parsing, which can name the bad line
        return pd.read_json(path, lines=True, engine="pyarrow")
    except Exception:
        return _read_jsonl_text(path, _read_text(path))


def read_battle_file(path: str | Path) -> pd.DataFrame:
    """Read one battle file (JSON, JSON lines, Parquet or CSV) into a checked DataFrame.

    Args:
        path: the file; the format follows the extension (`.json`, `.jsonl`, `.parquet`, `.csv`).

    Returns:
        The battles, one row each, rows in file order, at least `model_a, model_b, winner` (see `check_battles`).
    """
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: no such battle file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        frame = _read_json(path)
    elif suffix in (".jsonl", ".ndjson"):
        frame = _read_jsonl(path)
    elif suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as err:
            raise HarnessError(f"{path}: cannot read as Parquet ({type(err).__name__}: {err})") from None
    elif suffix == ".csv":
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise HarnessError(f"{path}: the file is empty; expected a header with {', '.join(REQUIRED_COLUMNS)}") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise HarnessError(f"{path}: cannot read as CSV ({str(err).splitlines()[0]})") from None
    else:
        raise HarnessError(f"{path}: unknown battle file type {suffix!r}; use .json, .jsonl, .parquet or .csv")
    try:
        return check_battles(frame, source=str(path))
    except UnicodeDecodeError:  # pyarrow's JSON reader does not check the encoding: name the bad byte
        _read_text(path)
        raise


def read_battles(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Read and concatenate battle files.

    Args:
        paths: one path or several.

    Returns:
        All battles, checked, in file order, with a `battle_file` column naming the file each came from.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise HarnessError("no battle files given")
    frames = [read_battle_file(path).assign(battle_file=str(path)) for path in paths]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def locate(frame: pd.DataFrame, row: int, source: str = "battles") -> str:
    """`"<file>: row <n>"` for 0-based `row` of a (possibly concatenated) battle table, 1-based within its file."""
    if "battle_file" in frame.columns:
        files = frame["battle_file"].to_numpy()
        name = files[row]
        return f"{name}: row {row - int(np.argmax(files == name)) + 1}"
    return f"{source}: row {row + 1}"


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0]) + 1


def _factorize(column: pd.Series, source: str, valid: str) -> tuple[np.ndarray, pd.Index]:
    """`pd.factorize` of a column; a list or an object where a name belongs (unhashable) is one line naming its row.

    A categorical column is read from its codes (no hashing: a 10M-row log encodes in milliseconds); categories no
    row uses are dropped, as `pd.factorize` would never see them.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        categories = column.cat.categories
        used = np.bincount(codes.astype(np.intp) + 1, minlength=len(categories) + 1)[1:] > 0
        if used.all():
            return codes, categories
        lookup = np.full(len(categories) + 1, -1, dtype=codes.dtype)  # the last slot maps code -1 (missing) to -1
        lookup[np.flatnonzero(used)] = np.arange(int(used.sum()))
        return lookup[codes], categories[used]
    try:
        return pd.factorize(column, use_na_sentinel=True)
    except TypeError:
        bad = column.map(lambda v: isinstance(v, (list, dict, set, np.ndarray))).to_numpy()
        row = _first_row(bad) if bad.any() else 1
        value = column.iloc[row - 1]
        raise HarnessError(f"{source}: row {row}: column {column.name} is a {type(value).__name__} ({value!r}); "
                           f"it must be {valid}") from None


def _encode_frame(frame: pd.DataFrame, source: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Check and integer-encode a battle table; all checks run on factorized codes, so they stay cheap."""
    if len(frame) == 0:
        raise HarnessError(f"{source}: no battles (0 rows); expected rows with {', '.join(REQUIRED_COLUMNS)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:12])) or "none"
        raise HarnessError(
            f"{source}: missing column(s) {', '.join(missing)}; battles need {', '.join(REQUIRED_COLUMNS)} "
            f"(found: {found})"
        )
    side = {}
    for col in ("model_a", "model_b"):
        codes, uniques = _factorize(frame[col], source, "a model name")
        if (codes < 0).any():
            raise HarnessError(
                f"{source}: row {_first_row(codes < 0)}: column {col} is missing (null/NaN); it must name a model"
            )
        names = [str(u) for u in uniques]
        for k, name in enumerate(names):
            if not name.strip():
                raise HarnessError(
                    f"{source}: row {_first_row(codes == k)}: column {col} is an empty string; it must name a model"
                )
        side[col] = (codes, names)
    models = sorted(set(side["model_a"][1]) | set(side["model_b"][1]))
    pos = {m: k for k, m in enumerate(models)}
    index = np.int32 if len(models) < 2**31 else np.int64  # half the memory traffic of int64 on long logs
    a = np.array([pos[m] for m in side["model_a"][1]], dtype=index)[side["model_a"][0]]
    b = np.array([pos[m] for m in side["model_b"][1]], dtype=index)[side["model_b"][0]]
    codes, labels = _factorize(frame["winner"], source, f"one of {', '.join(WINNER_CODES)}")
    if (codes < 0).any():
        raise HarnessError(
            f"{source}: row {_first_row(codes < 0)}: column winner is missing (null/NaN); "
            f"valid: {', '.join(WINNER_CODES)}"
        )
    for k, label in enumerate(labels):
        if label not in WINNER_CODES:
            raise HarnessError(
                f"{source}: row {_first_row(codes == k)}: column winner has unknown label {label!r}; "
                f"valid: {', '.join(WINNER_CODES)}"
            )
    same = a == b
    if same.any():
        row = _first_row(same)
        raise HarnessError(
            f"{source}: row {row}: model {models[a[row - 1]]!r} battles itself (model_a == model_b); "
            "a battle needs two different models"
        )
    outcome = np.array([WINNER_CODES[label] for label in labels], dtype=np.int8)[codes]
    return models, a, b, outcome


def check_battles(frame: pd.DataFrame, source: str = "battles") -> pd.DataFrame:
    """Check a battle table and return it with model names as strings.

    Raises `HarnessError` naming the source, the (1-based) row and the column for: missing columns, no rows, missing
    or empty model names, a model battling itself, and winner labels other than model_a, model_b, tie, tie (bothbad).

    Args:
        frame: the battles.
        source: how to name the input in error messages (usually the file path).

    Returns:
        The same battles (a new frame with a fresh 0..n-1 index).
    """
    _encode_frame(frame, source)
    frame = frame.reset_index(drop=True).copy()
    for col in ("model_a", "model_b"):
        if not pd.api.types.is_string_dtype(frame[col]):
            frame[col] = frame[col].astype(str)
    return frame


def as_battles(battles: BattlesLike) -> pd.DataFrame:
    """Accept a DataFrame, a list of battle dicts, or a path, and return the checked DataFrame."""
    if isinstance(battles, (str, Path)):
        return read_battle_file(battles)
    if isinstance(battles, pd.DataFrame):
        return check_battles(battles)
    return check_battles(pd.DataFrame.from_records(list(battles)))


def encode(battles: BattlesLike) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Check and integer-encode battles.

    Args:
        battles: a DataFrame, a list of battle dicts, or a path.

    Returns:
        `(models, a, b, outcome)`: sorted model names; per battle the indices of model_a and model_b and the outcome
        code (2 = model_a won, 1 = tie, 0 = model_b won).
    """
    if isinstance(battles, (str, Path)):
        battles = read_battle_file(battles)
    elif not isinstance(battles, pd.DataFrame):
        battles = pd.DataFrame.from_records(list(battles))
    return _encode_frame(battles, "battles")


def _fold(models: list[str], ordered: np.ndarray) -> PairCounts:
    """Per-pair counts from ordered `(model_a, model_b, outcome)` counts (m × m × 3): (b, a) folds onto (a, b) with
    the outcome flipped."""
    m = len(models)
    folded = ordered + ordered.transpose(1, 0, 2)[:, :, ::-1]
    table = np.triu(np.ones((m, m), dtype=bool), k=1)[:, :, None] * folded
    table = table.reshape(m * m, 3).astype(np.float64)
    pair = np.flatnonzero(table.sum(axis=1))
    return PairCounts(
        models=list(models),
        i=pair // m,
        j=pair % m,
        wins_i=table[pair, 2],
        ties=table[pair, 1],
        wins_j=table[pair, 0],
    )


def _cells(a: np.ndarray, b: np.ndarray, c: np.ndarray, nb: int, nc: int) -> np.ndarray:
    """Counts of every `(a, b, c)` code triple, `(max a + 1) × nb × nc` flattened: one `np.bincount` pass, the key
    built in place in the narrowest integer type that holds it."""
    na = int(a.max()) + 1 if len(a) else 0
    key = np.int32 if na * nb * nc < 2**31 else np.int64
    cell = a.astype(key, copy=True)
    cell *= nb
    cell += b
    cell *= nc
    cell += c
    return np.bincount(cell, minlength=na * nb * nc)


def aggregate_codes(models: list[str], a: np.ndarray, b: np.ndarray, outcome: np.ndarray) -> PairCounts:
    """Aggregate integer-encoded battles (see `encode`) to per-pair win/tie/loss counts."""
    m = len(models)
    ordered = np.zeros(m * m * 3, dtype=np.int64)
    counts = _cells(a, b, outcome, m, 3)
    ordered[: len(counts)] = counts
    return _fold(models, ordered.reshape(m, m, 3))


def _aggregate_categorical(frame: pd.DataFrame) -> PairCounts | None:
    """`aggregate` of a frame whose model and winner columns are categoricals, in one pass over their codes.

    All checks run on the aggregated counts. Anything that needs a row named (a missing value, an unknown winner
    label, an empty name, a self-battle) returns None, so that the general path raises its error.
    """
    if len(frame) == 0 or any(c not in frame.columns for c in REQUIRED_COLUMNS):
        return None
    cols = [frame[c] for c in REQUIRED_COLUMNS]
    if not all(isinstance(c.dtype, pd.CategoricalDtype) for c in cols):
        return None
    ca, cb, cw = (np.asarray(c.array.codes) for c in cols)  # views, no copies
    if min(int(ca.min()), int(cb.min()), int(cw.min())) < 0:
        return None
    cats_a, cats_b = ([str(x) for x in c.cat.categories] for c in cols[:2])
    labels = list(cols[2].cat.categories)
    counts = _cells(ca, cb, cw, len(cats_b), len(labels))
    table = np.zeros(len(cats_a) * len(cats_b) * len(labels), dtype=np.int64)
    table[: len(counts)] = counts
    table = table.reshape(len(cats_a), len(cats_b), len(labels))
    used_label = table.sum(axis=(0, 1)) > 0
    if any(used and label not in WINNER_CODES for label, used in zip(labels, used_label)):
        return None
    used_a, used_b = np.flatnonzero(table.sum(axis=(1, 2))), np.flatnonzero(table.sum(axis=(0, 2)))
    names = {cats_a[k] for k in used_a} | {cats_b[k] for k in used_b}
    if any(not n.strip() for n in names):
        return None
    models = sorted(names)
    pos = {n: k for k, n in enumerate(models)}
    ia = np.array([pos[cats_a[k]] for k in used_a], dtype=np.intp)
    ib = np.array([pos[cats_b[k]] for k in used_b], dtype=np.intp)
    sub = table[np.ix_(used_a, used_b)]
    if (sub.sum(axis=2)[ia[:, None] == ib[None, :]] > 0).any():  # a model battling itself
        return None
    ordered = np.zeros((len(models), len(models), 3), dtype=np.int64)
    for k, label in enumerate(labels):
        if used_label[k]:
            ordered[np.ix_(ia, ib, [WINNER_CODES[label]])] += sub[:, :, [k]]
    return _fold(models, ordered)


def aggregate(battles: BattlesLike | PairCounts) -> PairCounts:
    """Aggregate battles to per-pair counts; its cost after reading grows with the number of pairs, not battles.

    A frame with categorical `model_a`, `model_b` and `winner` columns (as Parquet's dictionary-encoded columns
    load) is aggregated in one `np.bincount` pass over the codes, with no per-row encoding.

    Args:
        battles: battles in any form `as_battles` accepts, or an existing `PairCounts` (returned as is).

    Returns:
        The `PairCounts` table.
    """
    if isinstance(battles, PairCounts):
        return battles
    if isinstance(battles, pd.DataFrame):
        fast = _aggregate_categorical(battles)
        if fast is not None:
            return fast
    return aggregate_codes(*encode(battles))


def pair_counts_from_matrix(models: Sequence[str], wins: np.ndarray, ties: np.ndarray | None = None) -> PairCounts:
    """Build `PairCounts` from a wins matrix (`wins[x, y]` = times x beat y) and an optional symmetric ties matrix."""
    wins = np.asarray(wins, dtype=np.float64)
    ties = np.zeros_like(wins) if ties is None else np.asarray(ties, dtype=np.float64)
    i, j = np.triu_indices(len(models), k=1)
    n = wins[i, j] + wins[j, i] + ties[i, j]
    keep = n > 0
    if not math.isfinite(float(wins.sum() + ties.sum())) or (wins < 0).any() or (ties < 0).any():
        raise HarnessError("win and tie counts must be finite and non-negative")
    return PairCounts(list(models), i[keep], j[keep], wins[i, j][keep], ties[i, j][keep], wins[j, i][keep])
