# shellcheck shell=bash
# Sourced by the project's scripts: every library cache and temp file stays inside .cache/
# (ignored by git), and nothing is ever fetched from a model hub at run time.
_rrl_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export RRL_CACHE_DIR=${RRL_CACHE_DIR:-$_rrl_root/.cache}
mkdir -p "$RRL_CACHE_DIR/tmp"
export TMPDIR=$RRL_CACHE_DIR/tmp \
  HF_HOME=$RRL_CACHE_DIR/hf HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
  TORCH_EXTENSIONS_DIR=$RRL_CACHE_DIR/torch_extensions \
  TORCHINDUCTOR_CACHE_DIR=$RRL_CACHE_DIR/inductor TRITON_CACHE_DIR=$RRL_CACHE_DIR/triton \
  MPLCONFIGDIR=$RRL_CACHE_DIR/matplotlib \
  XDG_CACHE_HOME=$RRL_CACHE_DIR/xdg XDG_CONFIG_HOME=$RRL_CACHE_DIR/xdg-config \
  VLLM_CACHE_ROOT=$RRL_CACHE_DIR/vllm VLLM_CONFIG_ROOT=$RRL_CACHE_DIR/vllm-config \
  VLLM_RPC_BASE_PATH=$RRL_CACHE_DIR/tmp VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 \
  RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RRL_RAY_TMPDIR=$RRL_CACHE_DIR/ray \
  WANDB_MODE=offline WANDB_DIR=$RRL_CACHE_DIR/wandb \
  TOKENIZERS_PARALLELISM=false
