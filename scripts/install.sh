#!/usr/bin/env bash
# Install packages into a Python environment with uv, from the sources pip is configured with.
#
#   bash scripts/install.sh PYTHON REQUIREMENT [REQUIREMENT ...]     # e.g. bash scripts/install.sh python -e '.[test]'
#
# uv resolves, downloads and unpacks in parallel and compiles no bytecode up front (Python compiles what it imports):
# measured here, the test environment in about 1 minute where `pip install` took 6, and the vLLM venv in 40 s where
# pip took 4 to 9 minutes. uv reads no pip configuration, so pip's own (`pip config list`, the PIP_* variables: a
# local wheel folder, extra indexes, a constraints file) is passed on as uv options; sources that do not exist on this
# machine (a file:// index or folder that is not there) are left out, and versions are picked over all indexes as pip
# picks them. uv itself comes from PyPI through pip the first
# time (into PYTHON's environment, about 10 s), unless it is already on PATH.
#
# Exit status: pip's or uv's.
set -euo pipefail
python=${1:?usage: bash scripts/install.sh PYTHON REQUIREMENT [REQUIREMENT ...]}
shift
[ "$#" -gt 0 ] || { echo "usage: bash scripts/install.sh PYTHON REQUIREMENT [REQUIREMENT ...]" >&2; exit 2; }

if command -v uv >/dev/null; then
  uv=(uv)
else
  "$python" -m uv --version >/dev/null 2>&1 || "$python" -m pip install -q --disable-pip-version-check uv >&2
  uv=("$python" -m uv)
fi

# pip's configured sources as uv options, one per line.
mapfile -t sources < <("$python" - <<'PY'
import os
import subprocess
import sys

listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
options = {}
for line in listed.splitlines():  # global.find-links='/opt/wheels', :env:.find-links='...'
    key, _, value = line.partition("=")
    options.setdefault(key.rpartition(".")[2], []).extend(value.strip("'\"").split())


def exists(source: str) -> bool:
    path = source[len("file://"):] if source.startswith("file://") else source
    return "://" in source and not source.startswith("file://") or os.path.exists(path)


flags = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
         "constraint": "--constraint"}
for key, flag in flags.items():
    for source in dict.fromkeys(options.get(key, [])):
        if exists(source):
            print(flag)
            print(source)
PY
)

# uv asks for --system to install outside a virtual environment (pip installs wherever PYTHON is).
target=(--python "$("$python" -c 'import sys; print(sys.executable)')")
"$python" -c 'import sys; sys.exit(sys.prefix != sys.base_prefix)' && target+=(--system)
# pip takes the best match over all its indexes; uv by default only the first index that has a package.
exec "${uv[@]}" pip install "${target[@]}" --index-strategy unsafe-best-match "${sources[@]}" "$@"
