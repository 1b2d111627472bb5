"""lm-eval hooks for the tasks in this folder: items from eval.jsonl beside this file, graded by harness's verifier
(format_gen) or, for the items IFEval can check, by lm-eval's own IFEval code (format_ifeval)."""

from functools import partial
from pathlib import Path

from harness.evals.lm_tasks import ifeval_docs, jsonl_dataset, verifier_results

load = partial(jsonl_dataset, Path(__file__).with_name("eval.jsonl"))
process_results = verifier_results
process_ifeval_docs = ifeval_docs
