"""Hooks that the suites' lm-eval task YAML calls through ``!function``: data loading and scoring glue.

lm-eval owns prompting, filtering, generation and aggregation; these functions only bridge to the harness: read a
JSONL file of skill items, grade a completion with `harness.data.verifiers.verify` (the same function the RLVR
reward calls), and turn format items into IFEval documents so lm-eval's own instruction checks can grade them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.data.verifiers import verify
from harness.errors import HarnessError

# Format constraints that one of lm-eval's IFEval instructions checks exactly. "uppercase"/"lowercase" are left
# out on purpose: IFEval's change_case checks also require `langdetect` to call the text English, which a made-up
# word never reliably is; "brackets" has no IFEval instruction.
IFEVAL_INSTRUCTIONS = {"quotes": "startend:quotation"}


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file; a missing, empty or malformed file is a `HarnessError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"data file {str(path)!r} not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise HarnessError(f"data file {str(path)!r} line {number}: not JSON ({err.msg})") from None
    if not rows:
        raise HarnessError(f"data file {str(path)!r} is empty: no items to evaluate")
    return rows


def jsonl_dataset(path: str | Path, **_: Any):
    """A `datasets.DatasetDict` with one ``test`` split read from `path` (lm-eval's ``custom_dataset`` hook).

    lm-eval passes the task's metadata and dataset_kwargs as keyword arguments; they are not needed here.
    """
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(read_jsonl(path))})


def verifier_results(doc: dict, results: list[str]) -> dict[str, float]:
    """lm-eval ``process_results``: the verifier's grade of the (filtered) completion, as metric ``verifier``."""
    return {"verifier": verify(doc, results[0])}


def ifeval_docs(dataset):
    """lm-eval ``process_docs``: format items whose constraint IFEval can check, as IFEval documents."""
    import datasets

    rows = [row for row in dataset if row["constraint"] in IFEVAL_INSTRUCTIONS]
    return datasets.Dataset.from_list([
        {**row, "key": i, "instruction_id_list": [IFEVAL_INSTRUCTIONS[row["constraint"]]], "kwargs": [{}]}
        for i, row in enumerate(rows)
    ])
