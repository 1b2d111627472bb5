"""Hooks that the suites' lm-eval task YAML calls through ``!function``: data loading and scoring glue.

lm-eval owns prompting, filtering, generation and aggregation; these functions only bridge to the harness: read a
JSONL file of skill items, grade a completion with `harness.data.verifiers.verify` (the same function the RLVR
reward calls), and turn format items into IFEval documents so lm-eval's own instruction checks can grade them.

The verifiers for real tasks (`harness.data.task_verifiers`) are ``process_results`` hooks too, each the function
that rewards GRPO: ``exact_match_results``, ``math_verify_results`` (a GSM8K-style task graded by math-verify) and
``ifeval_results``, named in a task YAML as ``process_results: !function harness.evals.lm_tasks.math_verify_results``
with a ``metric_list`` entry of the same metric name (``exact_match``, ``math_verify``, ``ifeval``), aggregation
``mean``. They grade the filtered completion, so keep the filters that would cut the answer out (a task's
``take_first`` alone gives the verifier the whole completion). For a reasoning model that completion is already its
answer part, the reasoning block split off before lm-eval's filters (`harness.evals.request_cache.thinking`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.data import task_verifiers
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


def _graded(verifier, name: str, doc: dict, results: list[str]) -> dict[str, float]:
    value = task_verifiers.score(verifier, doc, results[0])
    if value is None:
        raise HarnessError(f"verifier {name!r} does not apply to document {str(doc)[:80]!r}: it has no gold answer "
                           "(or instructions) to grade against")
    return {name: value}


def exact_match_results(doc: dict, results: list[str]) -> dict[str, float]:
    """lm-eval ``process_results``: `task_verifiers.exact_match` of the completion, as metric ``exact_match``."""
    return _graded(task_verifiers.exact_match, "exact_match", doc, results)


def math_verify_results(doc: dict, results: list[str]) -> dict[str, float]:
    """lm-eval ``process_results``: `task_verifiers.math` (math-verify equivalence with the doc's ``answer``), as
    metric ``math_verify``."""
    return _graded(task_verifiers.math, "math_verify", doc, results)


def ifeval_results(doc: dict, results: list[str]) -> dict[str, float]:
    """lm-eval ``process_results``: `task_verifiers.ifeval` (every instruction followed, strict), as metric
    ``ifeval``."""
    return _graded(task_verifiers.ifeval, "ifeval", doc, results)
