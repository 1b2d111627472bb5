"""The command line: fast help, and bad input as one line on stderr with exit code 2 and no run left RUNNING."""

from __future__ import annotations

import subprocess
import sys

from harness.cli import main
from harness.tracking import store


def test_help_imports_no_heavy_library():
    code = (
        "import sys, contextlib, io\n"
        "from harness.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'mlflow', 'lm_eval', 'trl', 'transformers', 'pandas', 'scipy') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _one_line_error(capsys, argv):
    code = main(argv)
    stderr = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in stderr
    # progress lines may come first; the error is the last line, and a single one
    err = stderr.splitlines()[-1]
    assert err.startswith("harness: error:") and stderr.count("harness: error:") == 1
    return err


def test_unknown_config_key(capsys, tmp_path):
    err = _one_line_error(capsys, ["run", "--results", str(tmp_path), "--set", "sft.lr=1"])
    assert "'sft.lr'" in err and "learning_rate" in err


def test_bad_config_file(capsys, tmp_path):
    bad = tmp_path / "exp.yaml"
    bad.write_bytes(b"sft: [\x00\x01")
    assert "exp.yaml" in _one_line_error(capsys, ["run", str(bad), "--results", str(tmp_path)])
    assert "not found" in _one_line_error(capsys, ["run", str(tmp_path / "none.yaml")])


def test_missing_checkpoint_starts_nothing(capsys, tmp_path):
    err = _one_line_error(
        capsys,
        ["run", "--results", str(tmp_path), "--set", "pretrain.enabled=false", "--set", f"sft.init={tmp_path}/nope"],
    )
    assert "nope" in err and "no such folder" in err
    assert store.search_runs(store.tracking_uri(tmp_path), "harness").empty


def test_inconsistent_config(capsys, tmp_path):
    err = _one_line_error(capsys, ["run", "--results", str(tmp_path), "--set", "rlvr.batch_size=10"])
    assert "config key rlvr.batch_size: 10 is not a multiple of rlvr.num_generations=8" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_failing_stage_leaves_runs_failed_and_no_partial_checkpoint(capsys, tmp_path, tiny_checkpoint):
    # A folder that passes the up-front checks (config.json, whole *.safetensors files) but whose tensors do not fit
    # the model: the SFT stage fails while loading it, inside its MLflow run.
    import torch
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    for f in tiny_checkpoint.glob("tokenizer*"):
        (broken / f.name).write_bytes(f.read_bytes())
    names = load_file(tiny_checkpoint / "model.safetensors")
    save_file({name: torch.zeros(1) for name in names}, broken / "model.safetensors", metadata={"format": "pt"})
    results = tmp_path / "results"
    err = _one_line_error(
        capsys,
        ["run", "--quick", "--results", str(results), "--set", "pretrain.enabled=false", "--set", f"sft.init={broken}"],
    )
    assert "broken" in err
    runs = store.search_runs(store.tracking_uri(results), "harness")
    assert set(runs["status"]) == {"FAILED"}
    assert sorted(runs["tags.harness.kind"]) == ["pipeline", "train"]
    assert not (results / "checkpoints" / "embedded" / "sft").exists()
    assert not list((results / "checkpoints" / "embedded").glob(".*"))


def test_public_api_resolves():
    import harness

    for name in harness.__all__:
        assert callable(getattr(harness, name)), name
