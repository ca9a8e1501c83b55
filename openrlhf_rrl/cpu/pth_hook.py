"""The .pth file that loads the CPU mode in every process of the virtual environment.

Ray workers and vLLM's engine subprocess run no code of ours before OpenRLHF's, so the patches
must come in through site-packages: a .pth line runs at every interpreter start. It does nothing
unless RRL_CPU_MODE=1 is in the environment. `python -m openrlhf_rrl.cpu.pth_hook install` writes it
(scripts/bootstrap.sh does), `... uninstall` removes it, `... status` tells.
"""

from __future__ import annotations

import os
import sys
import sysconfig

PTH_NAME = "zz_openrlhf_rrl_cpu.pth"  # after the editable install's own .pth, so the package imports
PTH_LINE = ('import os; os.environ.get("RRL_CPU_MODE") == "1" and '
            '__import__("openrlhf_rrl.cpu.pth_hook").cpu.pth_hook.autoload()\n')


def autoload() -> None:
    """Called by the .pth line when RRL_CPU_MODE=1; must never break interpreter start-up."""
    try:
        from .patches import activate

        activate()
    except Exception as e:  # pragma: no cover - reported, not raised
        print(f"[openrlhf-rrl] CPU mode not loaded: {type(e).__name__}: {e}", file=sys.stderr)


def pth_path(site_dir: str | None = None) -> str:
    return os.path.join(site_dir or sysconfig.get_paths()["purelib"], PTH_NAME)


def installed(site_dir: str | None = None) -> bool:
    path = pth_path(site_dir)
    return os.path.isfile(path) and open(path, encoding="utf-8").read() == PTH_LINE


def install(site_dir: str | None = None) -> str:
    path = pth_path(site_dir)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(PTH_LINE)
    return path


def uninstall(site_dir: str | None = None) -> None:
    if os.path.exists(pth_path(site_dir)):
        os.unlink(pth_path(site_dir))


def main(argv=None) -> int:
    cmd = (argv if argv is not None else sys.argv[1:]) or ["status"]
    if cmd[0] == "install":
        print(f"[openrlhf-rrl] CPU-mode hook: {install()}")
    elif cmd[0] == "uninstall":
        uninstall()
    elif cmd[0] == "status":
        print(f"{pth_path()}: {'installed' if installed() else 'not installed'}")
    else:
        print("usage: python -m openrlhf_rrl.cpu.pth_hook [install|uninstall|status]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
