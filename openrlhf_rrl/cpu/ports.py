"""A master port for a DeepSpeed group that no other socket of the machine can be handed meanwhile.

OpenRLHF picks each model group's MASTER_PORT when the group's first actor starts (bind to port 0,
read the port, close it) and torch binds it only when the model is initialised, seconds later. Port 0
hands out ports from the kernel's ephemeral range, the same range every outgoing connection (Ray's,
vLLM's) draws from, so in between another socket can take it: the run then dies with EADDRINUSE in
init_process_group (seen in a CPU-mode end-to-end run, in the critic's group). A port below the
ephemeral range (and above Ray's worker ports, 10002-19999 by default) is never handed out implicitly;
it is checked free when picked, at random, so two groups picking at once rarely meet.
"""

from __future__ import annotations

import random
import socket

LOWEST = 20000  # above Ray's default worker ports
_EPHEMERAL_DEFAULT = (32768, 60999)  # Linux's default net.ipv4.ip_local_port_range


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    try:
        with open(path, encoding="ascii") as fh:
            lo, hi = (int(x) for x in fh.read().split()[:2])
        return lo, hi
    except (OSError, ValueError):
        return _EPHEMERAL_DEFAULT


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def free_master_port(tries: int = 200) -> int:
    """A free port outside the ephemeral range, or (no room there) one from port 0 as OpenRLHF does."""
    lo, hi = ephemeral_range()
    ports = [p for p in range(LOWEST, 65536) if not lo <= p <= hi]
    rng = random.SystemRandom()
    for _ in range(min(tries, len(ports))):
        port = rng.choice(ports)
        if _bindable(port):
            return port
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]
