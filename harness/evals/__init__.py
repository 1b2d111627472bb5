"""Eval suites through lm-eval, recorded in MLflow: every checkpoint scored per skill, with CIs, cached.

Public surface (heavy imports — lm-eval, torch, pandas, MLflow — happen inside the functions):

- `evaluate(model, suite, cfg=, results_dir=, parent=, label=, experiment=)` → `SuiteResult`
- `import_lm_eval(path, suite=, label=, results_dir=, experiment=)` → `SuiteResult`: lm-eval's own output
  (``--output_path --log_samples``) recorded as the same eval run
- `stage_skill_table(results)`, `format_stage_skill_table(table)`, `log_stage_skill_table(run, results)`
- `compare(refs, results_dir=, experiment=)` → side-by-side scores with CIs and deltas

Modules: `suite` (suite files, task index), `backends` (lm-eval model arguments), `cache`, `run` (evaluate),
`checks` (checks before model work), `offline` (what lm-eval's tasks would fetch: punkt_tab, code_eval),
`importer` (lm-eval's own output), `result` (score/sample/skill tables), `table` (stage × skill table), `compare`,
`lm_tasks` (task YAML hooks), `sweep` (``harness sweep``: every (model, entry) as a task, in this process or
on a Ray cluster), `cli` (``harness eval``, ``harness import``, ``harness compare``, ``harness sweep``).
"""

from harness.evals.compare import compare
from harness.evals.importer import import_lm_eval
from harness.evals.result import SuiteResult
from harness.evals.run import evaluate
from harness.evals.table import format_stage_skill_table, log_stage_skill_table, stage_skill_table

__all__ = [
    "SuiteResult",
    "compare",
    "evaluate",
    "format_stage_skill_table",
    "import_lm_eval",
    "log_stage_skill_table",
    "stage_skill_table",
]
