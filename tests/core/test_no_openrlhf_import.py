import subprocess
import sys


def test_core_and_config_import_neither_openrlhf_nor_transformers():
    code = ("import sys, openrlhf_rrl.config, openrlhf_rrl.core.replay, openrlhf_rrl.core.policies;"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('openrlhf', 'transformers', 'deepspeed', 'ray'));"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
