"""The docs say what the code does: generated flag docs are current, every metric is explained,
every link and figure resolves."""

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from openrlhf_rrl.config import RRLConfig
from openrlhf_rrl.core.metrics import StepMetrics

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_flag_docs_are_generated_from_the_current_flags():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_flag_docs.py"), "--check"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    text = (DOCS / "flags.md").read_text(encoding="utf-8")
    for f in fields(RRLConfig):
        assert f"| `--rrl_{f.name}` |" in text
    assert "## Other" not in text  # a new flag must be put in its knob's group in scripts/gen_flag_docs.py


def test_every_metric_is_explained():
    text = (DOCS / "metrics.md").read_text(encoding="utf-8")
    missing = [k for k in StepMetrics().to_dict() if f"`{k}`" not in text]
    assert not missing, f"docs/metrics.md does not explain: {', '.join(missing)}"


def test_links_and_figures_resolve():
    missing = []
    for md in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([^)\s]+)\)", md.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if not path or "://" in path:
                continue
            if not (md.parent / path).exists():
                missing.append(f"{md.name} -> {path}")
    pending = [m for m in missing if m.endswith("-> openrlhf.md")]
    assert sorted(set(missing) - set(pending)) == []
    for svg in ("rrl-restart.svg", "buffer-lifecycle.svg"):
        assert (DOCS / "figures" / svg).read_text(encoding="utf-8").lstrip().startswith("<?xml")
    if pending:
        pytest.skip("docs/openrlhf.md (the OpenRLHF launcher's guide) is not written yet; linked from "
                    + ", ".join(sorted({m.split(' ')[0] for m in pending})))
