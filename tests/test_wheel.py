"""The wheel works anywhere: built from a copy of the source tree, it ships the suites (suite files, task YAML, eval
data, ``utils.py`` hooks), the arena prompt set, the config presets and the report templates; installed
non-editable into a fresh venv, it runs ``harness eval``, ``harness arena`` and ``harness dashboard`` from a folder
outside the checkout, with ``$HARNESS_SUITES`` unset.

The venv has no system site packages, so the base environment's editable install of harness (a ``.pth`` import
hook) never runs in it; a ``.pth`` file lists the base site-packages folders so that torch, lm-eval and the rest
are not reinstalled. Those folders come after the venv's own, and the venv has its own harness.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness.resources import resource_path

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# Outputs and build leftovers of a checkout: never wheel material (a stale build/lib would leak into the wheel).
_NOT_SOURCE = (".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "results", "mlruns",
               "mlartifacts", "*.db", ".venv", ".gl", ".whl", "site")


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300):
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _packaged_files(*parts: str) -> list[str]:
    """Wheel names of the files the checkout has under ``harness/<parts>`` (what must ship)."""
    root = resource_path(*parts)
    return sorted(f"harness/{p.relative_to(resource_path()).as_posix()}" for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built offline from a clean copy of the checkout."""
    src = tmp_path_factory.mktemp("src") / "harness"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    out = tmp_path_factory.mktemp("wheel")
    done = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                 "--disable-pip-version-check", "-w", str(out), "."], cwd=src)
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("harness-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (no editable harness in it); the base environment supplies the rest."""
    root = tmp_path_factory.mktemp("venv") / "env"
    done = _run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    assert done.returncode == 0, done.stderr
    (site_packages,) = root.glob("lib/python*/site-packages")
    base = [p for p in [*site.getsitepackages(), site.getusersitepackages()]
            if Path(p).is_dir() and not Path(p).resolve().is_relative_to(REPO)]
    # Plain path lines: the folders join sys.path, but their own .pth files (the editable finder) are not run.
    (site_packages / "_base_environment.pth").write_text("".join(f"{p}\n" for p in base))
    python = root / "bin" / "python"
    # --ignore-installed: pip sees the base environment's harness through the .pth and must not touch it.
    done = _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
                 "--disable-pip-version-check", "--no-warn-script-location", str(wheel)], cwd=root.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture(scope="module")
def outside(venv, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A working folder outside the checkout and the environment to run the venv's `harness` in."""
    cwd = tmp_path_factory.mktemp("elsewhere")
    assert not cwd.resolve().is_relative_to(REPO)
    env = {k: v for k, v in os.environ.items()
           if k not in {"HARNESS_SUITES", "MLFLOW_TRACKING_URI", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    return cwd, env


@pytest.fixture(scope="module")
def other_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """A second tiny checkpoint (other initial weights), so the arena has two models that answer differently."""
    from transformers import AutoTokenizer

    from harness.models import tiny

    out = tmp_path_factory.mktemp("tiny_other") / "other"
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    tiny.save(tiny.build_model(tok, hidden_size=32, layers=2, heads=2, seed=1), tok, out)
    return out


@pytest.fixture(scope="module")
def commands(venv, outside, tiny_checkpoint, other_checkpoint) -> dict[str, subprocess.CompletedProcess]:
    """`harness eval` and `harness arena` run once from the venv, into one results folder ``R``."""
    cwd, env = outside
    harness = str(venv / "bin" / "harness")
    return {
        "eval": _run([harness, "eval", "--model", str(tiny_checkpoint), "--suite", "tiny", "--limit", "3",
                      "--results", "R", "--json", "R/tiny.json"], cwd, env),
        "arena": _run([harness, "arena", "--models", f"base={tiny_checkpoint}", f"other={other_checkpoint}",
                       "--judge", "verifier", "--limit", "4", "--results", "R",
                       "--set", "arena.max_new_tokens=6", "--set", "arena.bootstrap=20"], cwd, env),
    }


def test_wheel_ships_package_data_and_nothing_of_the_checkout(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    suites = _packaged_files("suites")
    assert {"harness/suites/tiny.yaml", "harness/suites/tulu3_dev.yaml", "harness/suites/tulu3_unseen.yaml",
            "harness/suites/README.md", "harness/suites/arena/tiny.jsonl"} <= set(suites)
    for skill in ("arithmetic", "format", "knowledge", "safety"):
        folder = f"harness/suites/tiny/{skill}"
        assert {f"{folder}/eval.jsonl", f"{folder}/utils.py"} <= set(suites), skill
        assert any(n.startswith(f"{folder}/") and n.endswith(".yaml") for n in suites), skill
    missing = [n for n in suites + _packaged_files("configs") if n not in names]
    assert not missing, f"package data left out of the wheel: {missing}"
    assert {"harness/configs/default.yaml", "harness/configs/quick.yaml"} <= names
    top = {n.split("/")[0] for n in names}
    assert top == {"harness", "harness-0.1.0.dist-info"}, top  # no tests/, results/, suites/, dashboards/
    assert not any(".pyc" in n or "__pycache__" in n for n in names)


def test_wheel_ships_the_report_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = _packaged_files("report", "templates") if resource_path("report", "templates").is_dir() else []
    assert templates, "harness/report/templates/ holds no report templates"
    assert set(templates) <= names, f"templates left out of the wheel: {sorted(set(templates) - names)}"


def test_installed_wheel_is_not_the_checkout(venv, outside):
    cwd, env = outside
    code = ("import json, harness; from harness.evals import suite; from harness.arena.prompts import TINY_PROMPTS; "
            "print(json.dumps({'module': harness.__file__, 'suites': str(suite.suites_dir()), "
            "'tasks': [str(p) for p in suite.load('tiny').task_paths], 'prompts': str(TINY_PROMPTS)}))")
    done = _run([str(venv / "bin" / "python"), "-c", code], cwd, env)
    assert done.returncode == 0, done.stderr
    where = json.loads(done.stdout)
    tasks = where.pop("tasks")
    assert tasks
    for key, path in [*where.items(), *(("task_paths", p) for p in tasks)]:
        assert Path(path).resolve().is_relative_to(venv.resolve()), f"{key}: {path} is not inside the venv"


def test_installed_wheel_evaluates_the_packaged_tiny_suite(commands, outside):
    cwd, _ = outside
    done = commands["eval"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.split()[:2] == ["overall", "score"] for line in lines), done.stdout
    assert any("tiny_arithmetic_gen" in line and "verifier" in line for line in lines), done.stdout
    assert "MLflow run:" in done.stdout
    assert (cwd / "R" / "mlflow.db").is_file() and (cwd / "R" / "eval_cache").is_dir()
    assert (cwd / "R" / "tiny.json").stat().st_size > 0


def test_installed_wheel_runs_an_arena_on_the_packaged_prompts(commands, outside):
    cwd, _ = outside
    done = commands["arena"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Arena: 4 prompts, 2 models, judge verifier" in done.stdout
    board = [line.split() for line in done.stdout.splitlines()]
    assert {"base", "other"} <= {row[1] for row in board if len(row) > 2 and row[0].isdigit()}
    assert (cwd / "R" / "cache" / "arena").is_dir()


def test_installed_wheel_builds_the_dashboard(commands, venv, outside):
    cwd, env = outside
    assert commands["eval"].returncode == commands["arena"].returncode == 0
    done = _run([str(venv / "bin" / "harness"), "dashboard", "--experiment", "harness", "--out", "SITE",
                 "--results", "R"], cwd, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    index = cwd / "SITE" / "index.html"
    assert index.is_file() and "<html" in index.read_text().lower()
