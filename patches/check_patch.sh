#!/usr/bin/env bash
# Prove that patches/openrlhf-<version>.patch applies to that OpenRLHF release's source.
#
#   bash patches/check_patch.sh [SOURCE_DIR]
#
# SOURCE_DIR holds the `openrlhf/` package: a source checkout of the release, or (the default) the
# installed package's site-packages, which is the released source itself. The patch is applied to
# a temporary copy, never in place; the patched file must compile. With PATCHED_OUT=DIR the patched
# copy is kept there (the tests run OpenRLHF's own CLI from it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$here/../.venv/bin/python}
[ -x "$py" ] || py=python3
src=${1:-$("$py" -c 'import importlib.util, os; print(os.path.dirname(list(importlib.util.find_spec("openrlhf").submodule_search_locations)[0]))')}
# the release: OPENRLHF_VERSION, else the installed distribution's metadata (a bare checkout has none)
version=${OPENRLHF_VERSION:-$(PYTHONPATH="$src" "$py" -c 'import importlib.metadata as m; print(m.version("openrlhf"))')}
patch_file="$here/openrlhf-$version.patch"
if [ ! -f "$patch_file" ]; then
  echo "check_patch: no patch for openrlhf $version in $here" >&2
  exit 1
fi
work=${PATCHED_OUT:-$(mktemp -d)}
[ -n "${PATCHED_OUT:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
rm -rf "$work/openrlhf"
cp -r "$src/openrlhf" "$work/openrlhf"
patch -p1 -d "$work" --forward --quiet < "$patch_file"
"$py" -m py_compile "$work/openrlhf/cli/train_ppo_ray.py"
echo "check_patch: $(basename "$patch_file") applies to openrlhf $version from $src"
