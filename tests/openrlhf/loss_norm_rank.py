"""One data-parallel rank of test_loss_norm's check that the counting normaliser gives the same gradient
on 2 ranks as on 1 (run as a script, one process per rank, over torch.distributed's gloo).

The batch, the model, OpenRLHF's replay buffer, normaliser (iter_grad_accum_global_norm, whose token
counts are all-reduced over the data-parallel ranks) and PolicyLoss are the real ones, built as
test_loss_norm builds them. DeepSpeed's two gradient scalings are written out here, because its CPU
engine is what the end-to-end runs use and cannot be driven micro-batch by micro-batch from a test:
each backward is scaled by 1/gas, and the ranks' gradients are averaged.

    python tests/openrlhf/loss_norm_rank.py RANK WORLD INIT_FILE MODEL_DIR OUT (counting|own)
"""

import copy
import importlib.util
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

from openrlhf_rrl.compat.flash_attn_shim import install  # noqa: E402

install()

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402


def main(rank: int, world: int, init_file: str, model_dir: str, out: str, norm: str) -> None:
    from openrlhf.models import Actor
    from openrlhf.trainer.ppo_utils.replay_buffer import NaiveReplayBuffer
    from transformers import AutoTokenizer

    spec = importlib.util.spec_from_file_location("loss_norm_tests", os.path.join(os.path.dirname(__file__),
                                                                                  "test_loss_norm.py"))
    tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tests)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.cuda.current_device = lambda: 0  # OpenRLHF's buffer names a cuda device; nothing is moved there
    args = tests.make_args()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    experiences = tests.make_experiences(args, tokenizer, tests.rollout(args, tokenizer))  # 2 micro-batches of 2
    # OpenRLHF's async_run_method_batch: one contiguous chunk of micro-batches per rank
    chunk = len(experiences) // world
    buffer = NaiveReplayBuffer(2, cpu_offload=True)
    for e in copy.deepcopy(experiences[rank * chunk:(rank + 1) * chunk]):
        buffer.append(e)
    loader = torch.utils.data.DataLoader(buffer, batch_size=2, shuffle=False, collate_fn=buffer.collate_fn)
    gas = chunk  # train batch 4 samples = micro-batch 2 x gas x ranks
    torch.manual_seed(0)
    actor = Actor(model_dir, attn_implementation="eager").float()
    grad = tests.grads(actor, tests.normalised(loader, norm == "counting", gas)) / gas  # DeepSpeed: 1/gas
    dist.all_reduce(grad)
    grad /= world  # DeepSpeed: the mean over data-parallel ranks
    if rank == 0:
        torch.save(grad, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    r, w, f, m, o, n = sys.argv[1:7]
    main(int(r), int(w), f, m, o, n)
