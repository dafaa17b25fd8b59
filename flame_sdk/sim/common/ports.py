"""Loopback ports for services whose port another process must know before it binds it.

A service the simulator starts itself binds port 0 and reads its port back. Some ports must be chosen first and
bound later by someone else: the embedded analysis API of a node process (``FLAME_API_PORT``), and the compose
services run as processes in the tests. The classic trick (bind port 0, close, hand the number out) races: until
the other process binds it, the kernel may give the same port to any socket that binds port 0 or connects out,
since both draw from the ephemeral range. ``port_for_another_process`` therefore picks a port outside that range
(``/proc/sys/net/ipv4/ip_local_port_range`` on Linux), at random so that simulations in separate processes rarely
pick the same one, that is free now and that this process has not handed out before.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

#: The lowest port handed out: above the ports that local servers usually listen on (databases, 8000, 8080, ...).
LOWEST = 20000
#: Linux's default ephemeral range (used where the kernel's setting cannot be read).
DEFAULT_EPHEMERAL = (32768, 60999)
#: The IANA dynamic range, the ephemeral range of macOS and Windows.
IANA_DYNAMIC = (49152, 65535)
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_TRIES = 200

_random = random.SystemRandom()  # independent of random.seed() calls, so separate processes pick differently
_handed_out: set[int] = set()
_lock = threading.Lock()


def ephemeral_range(path: Path = _RANGE_FILE) -> tuple[int, int]:
    """The ports the kernel hands to sockets that bind port 0 or connect out (inclusive bounds)."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        # not Linux (or not readable): stay clear of both Linux's default and the IANA range
        return DEFAULT_EPHEMERAL[0], IANA_DYNAMIC[1]
    return low, high


def candidate_ranges(ephemeral: tuple[int, int]) -> list[range]:
    """The ports from ``LOWEST`` up that lie outside ``ephemeral``."""
    low, high = ephemeral
    ranges = [range(LOWEST, min(low, 65536)), range(max(high + 1, LOWEST), 65536)]
    return [r for r in ranges if len(r)]


def _nth(ranges: list[range], index: int) -> int:
    for r in ranges:
        if index < len(r):
            return r[index]
        index -= len(r)
    raise IndexError(index)


def _is_free(host: str, port: int) -> bool:
    """Nothing is bound to ``port`` (strictly: without SO_REUSEADDR, so a lingering TIME_WAIT counts as used)."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_for_another_process(host: str = "127.0.0.1") -> int:
    """A port for a server that another process (or a later step) binds: outside the ephemeral range, free now,
    and never handed out before by this process.

    Falls back to an ephemeral port (bind 0) only where the kernel's ephemeral range leaves no other ports.
    """
    ranges = candidate_ranges(ephemeral_range())
    total = sum(len(r) for r in ranges)
    with _lock:
        for _ in range(_TRIES if total else 0):
            port = _nth(ranges, _random.randrange(total))
            if port not in _handed_out and _is_free(host, port):
                _handed_out.add(port)
                return port
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        _handed_out.add(port)
        return port
