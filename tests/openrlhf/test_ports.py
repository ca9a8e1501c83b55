"""Master ports for DeepSpeed groups in CPU mode: outside the kernel's ephemeral range, free when picked."""

from __future__ import annotations

import socket

from openrlhf_rrl.cpu import ports


def test_the_port_is_free_and_outside_the_ephemeral_range():
    lo, hi = ports.ephemeral_range()
    for _ in range(20):
        port = ports.free_master_port()
        assert ports.LOWEST <= port <= 65535 and not lo <= port <= hi
        with socket.socket() as sock:
            sock.bind(("", port))  # free: binds


def test_a_port_in_use_is_not_bindable():
    with socket.socket() as held:
        held.bind(("", 0))
        held.listen()
        assert not ports._bindable(held.getsockname()[1])


def test_the_range_is_read_from_the_kernels_file(tmp_path):
    f = tmp_path / "ip_local_port_range"
    f.write_text("40000\t50000\n")
    assert ports.ephemeral_range(str(f)) == (40000, 50000)
    assert ports.ephemeral_range(str(tmp_path / "missing")) == (32768, 60999)  # Linux's default


def test_no_room_outside_the_range_falls_back_to_port_0(monkeypatch):
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (ports.LOWEST, 65535))
    picked = []
    monkeypatch.setattr(ports, "_bindable", lambda port: picked.append(port) or True)
    assert 1 <= ports.free_master_port() <= 65535
    assert picked == []  # nothing was left to try outside the range


def test_the_patch_replaces_openrlhfs_port_picker(monkeypatch):
    import openrlhf.trainer.ray.launcher as launcher

    from openrlhf_rrl.cpu.patches import PATCHES

    monkeypatch.setattr(launcher.BaseDistributedActor, "_get_free_port", launcher.BaseDistributedActor._get_free_port)
    (patch,) = [p for p in PATCHES if p.name == "master_port_outside_ephemeral_range"]
    patch.apply(launcher)
    lo, hi = ports.ephemeral_range()
    assert not lo <= launcher.BaseDistributedActor._get_free_port() <= hi
