# Sourced by the project's scripts: every library cache and temp file stays inside .cache/
# (ignored by git), and nothing is ever fetched from a model hub at run time.
_rrl_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export RRL_CACHE_DIR=${RRL_CACHE_DIR:-$_rrl_root/.cache}
mkdir -p "$RRL_CACHE_DIR/tmp"
export TMPDIR=$RRL_CACHE_DIR/tmp \
  HF_HOME=$RRL_CACHE_DIR/hf HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  TORCH_EXTENSIONS_DIR=$RRL_CACHE_DIR/torch_extensions \
  TORCHINDUCTOR_CACHE_DIR=$RRL_CACHE_DIR/inductor TRITON_CACHE_DIR=$RRL_CACHE_DIR/triton \
  MPLCONFIGDIR=$RRL_CACHE_DIR/matplotlib \
  TOKENIZERS_PARALLELISM=false
