"""lm-eval hooks for the tasks in this folder: items from eval.jsonl beside this file, graded by harness's verifier."""

from functools import partial
from pathlib import Path

from harness.evals.lm_tasks import jsonl_dataset, verifier_results

load = partial(jsonl_dataset, Path(__file__).with_name("eval.jsonl"))
process_results = verifier_results
