"""Ports another process binds later: outside the kernel's ephemeral range, free, never handed out twice."""

from __future__ import annotations

import socket

from flame_sdk.sim.common import ports


def test_the_ephemeral_range_is_read_from_the_kernel_setting(tmp_path):
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("32768\t60999\n")
    assert ports.ephemeral_range(setting) == (32768, 60999)
    assert ports.ephemeral_range(tmp_path / "missing") == (32768, 65535)  # clear of Linux's and the IANA range
    assert ports.candidate_ranges((32768, 60999)) == [range(20000, 32768), range(61000, 65536)]
    assert ports.candidate_ranges((1024, 65535)) == []  # nothing left: bind 0 is the fallback


def test_ports_for_another_process_are_outside_the_ephemeral_range_free_and_distinct():
    low, high = ports.ephemeral_range()
    picked = [ports.port_for_another_process() for _ in range(50)]
    assert len(set(picked)) == 50
    if ports.candidate_ranges((low, high)):
        assert not any(low <= port <= high for port in picked)
    with socket.socket() as sock:  # free: a server can bind it
        sock.bind(("127.0.0.1", picked[0]))
