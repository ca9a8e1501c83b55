import subprocess
import sys


def test_core_and_config_import_neither_openrlhf_nor_transformers():
    code = ("import sys, openrlhf_rrl.config, openrlhf_rrl.core.replay, openrlhf_rrl.core.policies;"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('openrlhf', 'transformers', 'deepspeed', 'ray'));"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr



def _imported_modules(root, rel):
    """Every module the source file root/rel imports, relative imports resolved against its package."""
    import ast

    package = list(rel.with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse((root / rel).read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names += [module] + [f"{module}.{a.name}" for a in node.names]
    return names


def test_the_two_front_ends_do_not_import_each_other():
    """docs/architecture.md: the runner and the OpenRLHF glue share only core/, config.py, atomic.py and
    tasks/; core/ and tasks/ import neither front end."""
    from pathlib import Path

    import openrlhf_rrl

    root = Path(openrlhf_rrl.__file__).parent.parent
    runner = ("openrlhf_rrl.runner",)
    glue = ("openrlhf_rrl.openrlhf", "openrlhf_rrl.cli", "openrlhf_rrl.cpu", "openrlhf_rrl.patches")
    shared = ("openrlhf_rrl.core", "openrlhf_rrl.tasks")
    crossings = []
    for path in sorted((root / "openrlhf_rrl").rglob("*.py")):
        rel = path.relative_to(root)
        module = ".".join(rel.with_suffix("").parts)
        forbidden = (runner if module.startswith(glue) else glue if module.startswith(runner)
                     else runner + glue if module.startswith(shared) else ())
        crossings += [f"{rel} imports {m}" for m in _imported_modules(root, rel) if forbidden and m.startswith(forbidden)]
    assert crossings == []
