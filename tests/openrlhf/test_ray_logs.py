"""A failed CPU-mode run names its root cause from Ray's per-process logs (openrlhf_rrl/cpu/ray_logs.py)."""

import os
import time

from openrlhf_rrl.cpu.ray_logs import report, root_cause

# lines as Ray and vLLM 0.32 write them (the rollout actor's log of a run whose engine worker died)
ROLLOUT_ACTOR_ERR = """:actor_name:ReplayRolloutActor
(EngineCore pid=10871) INFO 11-30 12:00:01 [core.py:95] Initializing a V1 LLM engine
(VllmWorker pid=10873) Fatal Python error: Illegal instruction
(VllmWorker pid=10873)
(VllmWorker pid=10873) Current thread 0x00007f938aa2bb80 (most recent call first):
(VllmWorker pid=10873)   File "/venv/lib/python3.11/site-packages/vllm/v1/attention/backends/cpu_attn.py", line 700 in forward
(VllmWorker pid=10873)   File "/venv/lib/python3.11/site-packages/vllm/attention/layer.py", line 400 in forward
(VllmWorker pid=10873)   File "/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1780 in _call_impl
(VllmWorker pid=10873)   File "/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1790 in _wrapped_call_impl
(EngineCore pid=10871) ERROR 11-30 12:00:09 [multiproc_executor.py:315] Worker proc VllmWorker-0 died unexpectedly (exit code: -4), shutting down executor.
(EngineCore pid=10871) ERROR 11-30 12:00:09 [core.py:1512] Traceback (most recent call last):
(EngineCore pid=10871) ERROR 11-30 12:00:09 [core.py:1512]   File "/venv/lib/python3.11/site-packages/vllm/v1/engine/core.py", line 1496, in run_engine_core
(EngineCore pid=10871) ERROR 11-30 12:00:09 [core.py:1512]     engine_core.run_busy_loop()
(EngineCore pid=10871) ERROR 11-30 12:00:09 [core.py:1512] RuntimeError: cancelled
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/vllm/v1/engine/core_client.py", line 750, in get_output
    raise self._format_exception(outputs) from None
vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause.
"""
# what every run prints at shutdown, failed or not
SHUTDOWN_NOISE = """:actor_name:ReplayRolloutActor
/usr/lib/python3.11/multiprocessing/resource_tracker.py:123: UserWarning: resource_tracker: process died unexpectedly, relaunching.  Some resources might leak.
Traceback (most recent call last):
  File "/usr/lib/python3.11/multiprocessing/resource_tracker.py", line 239, in main
    cache[rtype].remove(name)
KeyError: '/psm_c18a51aa'
(raylet) Agent process with name dashboard_agent exited, exit code 0.
"""


def write_logs(root, session, files, age=0.0):
    logs = root / session / "logs"
    logs.mkdir(parents=True)
    for name, text in files.items():
        (logs / name).write_text(text)
        os.utime(logs / name, (time.time() - age, time.time() - age))


def test_the_dead_engine_workers_exit_signal_and_the_drivers_exception_are_named(tmp_path):
    write_logs(tmp_path, "session_a", {"worker-ab-01000000-2563.err": ROLLOUT_ACTOR_ERR + SHUTDOWN_NOISE,
                                       "worker-cd-01000000-2600.out": SHUTDOWN_NOISE})
    text = report(str(tmp_path), since=time.time() - 60)
    lines = text.splitlines()
    assert lines[0] == f"root cause, from Ray's process logs under {tmp_path}:"
    # the dying worker's own report (faulthandler, on in every CPU-mode process): the signal and where it hit
    where = "  worker-ab-01000000-2563.err (ReplayRolloutActor): "
    assert lines[1:5] == [
        where + "Fatal Python error: Illegal instruction",
        where + '    at File "/venv/lib/python3.11/site-packages/vllm/v1/attention/backends/cpu_attn.py", line 700 in forward',
        where + '    at File "/venv/lib/python3.11/site-packages/vllm/attention/layer.py", line 400 in forward',
        where + '    at File "/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1780 in _call_impl']
    del lines[1:5]
    assert lines[1] == ("  worker-ab-01000000-2563.err (ReplayRolloutActor): ERROR 11-30 12:00:09 [multiproc_executor.py:315] "
                        "Worker proc VllmWorker-0 died unexpectedly (exit code: -4), shutting down executor."
                        "  [exit code -4 = SIGILL]")
    # a traceback vLLM logged line by line gives its exception, not its first frame
    assert lines[2] == "  worker-ab-01000000-2563.err (ReplayRolloutActor): RuntimeError: cancelled"
    assert lines[3].endswith("(ReplayRolloutActor): vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered "
                             "an issue. See stack trace (above) for the root cause.")
    assert len(lines) == 4  # the resource tracker's shutdown noise and exit code 0 are left out


def test_a_passing_run_and_older_runs_give_nothing(tmp_path):
    write_logs(tmp_path, "session_old", {"worker-ab-01000000-1.err": ROLLOUT_ACTOR_ERR}, age=3600)
    write_logs(tmp_path, "session_new", {"worker-cd-01000000-2.err": SHUTDOWN_NOISE})
    since = time.time() - 60
    assert report(str(tmp_path), since) == ""
    # the older session's failure is found only when asked from before it
    assert len(root_cause(sorted(str(p) for p in tmp_path.glob("session_old/logs/*")))) == 7
    assert "SIGILL" in report(str(tmp_path), since - 7200)
