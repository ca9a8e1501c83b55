from openrlhf_rrl.core.buffer import RETIRE_REASONS
from openrlhf_rrl.core.metrics import StepMetrics, is_informative

KEYS = {"rrl/buffer_size", "rrl/replay_share", "rrl/target_share", "rrl/restart_groups", "rrl/retry_groups",
        "rrl/restart_success",
        "rrl/revived_prompts", "rrl/new_tokens_saved", "rrl/overhead_s", "rrl/informative_restart_groups",
        "rrl/informative_fresh_groups", "rrl/untried", "rrl/candidates", "rrl/admitted", "rrl/cuts_moved_later",
        "rrl/cuts_moved_earlier", "rrl/idle_steps"} | {
        f"rrl/retired_{r}" for r in ("solved", "dead", "prompt_solved", "evicted", "banned", "stale", "untried")}


def test_metric_keys():
    d = StepMetrics().to_dict()
    assert set(d) == KEYS
    assert all(isinstance(v, (int, float)) for v in d.values())
    assert set(RETIRE_REASONS) == {"solved", "dead", "prompt_solved", "evicted", "banned", "stale", "untried"}


def test_values_pass_through():
    m = StepMetrics(buffer_size=3, restart_groups=2, admitted=1)
    m.retired["dead"] = 4
    d = m.to_dict()
    assert (d["rrl/buffer_size"], d["rrl/restart_groups"], d["rrl/admitted"], d["rrl/retired_dead"]) == (3, 2, 1, 4)


def test_informative_means_mixed_outcomes():
    assert is_informative([True, False, False])
    assert not is_informative([True, True]) and not is_informative([False] * 4)
    assert not is_informative([]) and not is_informative([True])
