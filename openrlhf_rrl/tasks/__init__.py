"""The tasks both front ends may use: the embedded runner trains on them, and the OpenRLHF glue's CPU
assets (cpu/tiny_assets.py) write their prompts, model vocabulary and reward file from them.

`ChainTask` (chain.py) is the hard-exploration task RRL is meant for; `ArithmeticTask` (arithmetic.py)
a GSM8K-style stand-in; text_task.py holds what they share; tokenizer.py the word tokenizer built in
code (no hub download).
"""

from .arithmetic import ArithmeticTask, arithmetic_reward_func
from .chain import ChainTask, chain_reward_func
from .text_task import PromptItem, TextTask, in_eval_split, reward_dict

__all__ = ["ArithmeticTask", "ChainTask", "PromptItem", "TextTask", "arithmetic_reward_func", "chain_reward_func",
           "in_eval_split", "reward_dict"]
