"""The end-to-end runs' harness (conftest.run_module): a stuck run is stopped and says so; a slow one is not."""


def test_a_silent_run_is_stopped_with_its_output_and_the_reason(pipeline, tmp_path):
    (tmp_path / "hangs.py").write_text("print('Global step 1: {\"x\": 1.0}')\nimport time\ntime.sleep(60)\n")
    run = pipeline.run_module("hangs", [], {"PYTHONPATH": str(tmp_path)}, silence=3)
    assert run.rc != 0 and run.steps == [{"x": 1.0}] and run.seconds < 30
    assert run.output.endswith(": no output for 3 s: stuck\n")
    assert "[test harness] stopped the run after" in run.tail()


def test_a_slow_run_that_keeps_printing_finishes(pipeline, tmp_path):
    (tmp_path / "slow.py").write_text("import time\nfor i in range(4):\n    print('step', i)\n    time.sleep(1.5)\n")
    run = pipeline.run_module("slow", [], {"PYTHONPATH": str(tmp_path)}, silence=3)
    assert run.rc == 0 and "[test harness]" not in run.output and run.output.count("step") == 4


def test_a_stuck_run_shows_where_it_is_stuck(pipeline, tmp_path):
    (tmp_path / "waits.py").write_text("import time\n\ndef wait_for_the_engine():\n    time.sleep(60)\n\n"
                                       "print('started', flush=True)\nwait_for_the_engine()\n")
    run = pipeline.run_module("waits", [], {"PYTHONPATH": str(tmp_path)}, silence=3)
    assert run.rc != 0 and "wait_for_the_engine" in run.stacks
    assert "stacks of the stuck run (py-spy)" in run.tail() and "wait_for_the_engine" in run.tail()
