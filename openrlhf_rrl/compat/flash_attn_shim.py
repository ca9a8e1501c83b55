"""A pure-torch stand-in for the four `flash_attn` helpers OpenRLHF imports at module load.

Stand-in, on purpose: flash-attn is a CUDA-only build, yet `openrlhf/models/ring_attn_utils.py`
imports `flash_attn.bert_padding` (index_first_axis, pad_input, rearrange, unpad_input) and
`flash_attn.utils.distributed.all_gather` unconditionally, so without them not even OpenRLHF's loss
functions import on a CPU machine. These helpers are plain tensor reshuffles, written here from
their documented behaviour. `install()` registers them only when the real package is absent, so
a GPU machine with flash-attn keeps the real one.
"""

import importlib.machinery
import importlib.util
import sys
import types

import torch
import torch.distributed as dist
from einops import rearrange


def index_first_axis(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Rows `indices` of the first axis (flash-attn's gather of the unpadded tokens)."""
    return tensor[indices]


def unpad_input(hidden_states: torch.Tensor, attention_mask: torch.Tensor, unused_mask=None):
    """(batch, seqlen, ...) -> (tokens, ...) keeping only attended positions.

    Returns (unpadded, indices, cu_seqlens, max_seqlen, seqused) like flash-attn >= 2.7."""
    mask = attention_mask if unused_mask is None else attention_mask + unused_mask
    seqlens = mask.sum(dim=-1, dtype=torch.int32)
    used = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(mask.flatten(), as_tuple=False).flatten()
    cu_seqlens = torch.nn.functional.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    flat = hidden_states.reshape(-1, *hidden_states.shape[2:])
    return index_first_axis(flat, indices), indices, cu_seqlens, int(seqlens.max().item()), used


def pad_input(hidden_states: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """Inverse of `unpad_input`: scatter tokens back into a zero-padded (batch, seqlen, ...)."""
    out = torch.zeros(batch * seqlen, *hidden_states.shape[1:], dtype=hidden_states.dtype, device=hidden_states.device)
    out[indices] = hidden_states
    return out.reshape(batch, seqlen, *hidden_states.shape[1:])


def all_gather(tensor: torch.Tensor, group=None) -> torch.Tensor:
    """Concatenate `tensor` from every rank along dim 0 (identity without a process group)."""
    if not dist.is_available() or not dist.is_initialized():
        return tensor
    world = dist.get_world_size(group)
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.contiguous(), group=group)
    return torch.cat(parts, dim=0)


def install() -> bool:
    """Register the stand-in as `flash_attn` when the real package is not installed; True if it did."""
    if "flash_attn" in sys.modules or importlib.util.find_spec("flash_attn") is not None:
        return False
    def module(name: str, package: bool = False) -> types.ModuleType:
        # A spec without a file and a version: transformers' availability probe then reads
        # "not installed", so nothing ever routes attention to this stand-in.
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=package)
        if package:
            mod.__path__ = []
        return mod

    root = module("flash_attn", package=True)
    root.__doc__ = "openrlhf-rrl CPU stand-in for flash_attn (see openrlhf_rrl.compat.flash_attn_shim)"
    bert_padding = module("flash_attn.bert_padding")
    for fn in (index_first_axis, pad_input, unpad_input):
        setattr(bert_padding, fn.__name__, fn)
    bert_padding.rearrange = rearrange
    utils = module("flash_attn.utils", package=True)
    distributed = module("flash_attn.utils.distributed")
    distributed.all_gather = all_gather
    root.bert_padding, root.utils, utils.distributed = bert_padding, utils, distributed
    sys.modules.update(
        {
            "flash_attn": root,
            "flash_attn.bert_padding": bert_padding,
            "flash_attn.utils": utils,
            "flash_attn.utils.distributed": distributed,
        }
    )
    return True
