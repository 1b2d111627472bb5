"""The text of training files: JSONL, JSON, Parquet or CSV (JSONL, JSON and CSV also gzipped), read lazily, each
row as the list of its text fields: every string and every message content it holds (``messages``,
``prompt``/``completion``, ``chosen``/``rejected``, ``text``, ``question``/``answer`` ...). Bad files are one-line
`HarnessError`s naming the file: missing, of another format, not JSON on a line, or without any text.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError, first_line

BATCH = 100_000  # Parquet rows decoded at a time


def texts_of(value: Any, out: list[str] | None = None) -> list[str]:
    """Every string in a row's value: strings, message lists (their contents), nested lists and mappings."""
    out = [] if out is None else out
    if isinstance(value, str):
        if value.strip():
            out.append(value)
    elif isinstance(value, dict) or isinstance(value, Mapping):
        if "content" in value:
            texts_of(value["content"], out)
        else:
            for v in value.values():
                texts_of(v, out)
    elif isinstance(value, (list, tuple, np.ndarray)):
        for v in value:
            texts_of(v, out)
    return out


def _rows(path: Path) -> Iterator[dict]:
    name = path.name.removesuffix(".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH):
            yield from batch.to_pylist()
    elif name.endswith(".csv"):
        import csv

        with opener(path, "rt", encoding="utf-8", newline="") as f:
            yield from csv.DictReader(f)
    elif name.endswith(".jsonl"):
        decode = json.JSONDecoder().decode
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    yield decode(line)
                except json.JSONDecodeError as err:
                    if line.strip():
                        raise HarnessError(f"training file {str(path)!r} line {number}: not JSON ({err.msg})") \
                            from None
    elif name.endswith(".json"):
        with opener(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
        yield from (data if isinstance(data, list) else [data])
    else:
        raise HarnessError(f"training file {str(path)!r}: not .jsonl, .json, .parquet or .csv (optionally .gz)")


def check_train(path: str | Path) -> None:
    """Before any work: the training file exists, has a known format, and its first rows hold text."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise HarnessError(f"training file {str(path)!r} not found")
    for _ in read_train(path, stop_at_text=True):
        pass


def read_train(path: str | Path, stop_at_text: bool = False) -> Iterator[list[str]]:
    """The examples of a training file, each as its list of text fields, read lazily.

    Raises:
        HarnessError: the file is missing, not a known format, unreadable, or none of its rows has text.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise HarnessError(f"training file {str(path)!r} not found")
    seen_text, columns = False, set()
    try:
        for row in _rows(path):
            fields = texts_of(row) if isinstance(row, Mapping) else texts_of([row])
            seen_text = seen_text or bool(fields)
            if not seen_text and isinstance(row, Mapping):
                columns |= set(row)
            if seen_text and stop_at_text:
                return
            yield fields
    except HarnessError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise HarnessError(f"training file {str(path)!r} could not be read: {first_line(err)}") from None
    if not seen_text:
        raise HarnessError(f"training file {str(path)!r} has no text: no row has a string field or messages "
                           f"(columns: {', '.join(sorted(map(str, columns))) or 'none'}; expected e.g. messages, "
                           "prompt/completion, chosen/rejected, text)")
