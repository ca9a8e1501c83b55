import importlib.util
import pathlib

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "bench_buffer.py"


def test_benchmark_runs_and_prints_a_table(capsys):
    spec = importlib.util.spec_from_file_location("bench_buffer", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick", "--ops", "2000"]) == 0
    out = capsys.readouterr().out
    assert "insert ops/s" in out and "10,000" in out and "100%" in out
