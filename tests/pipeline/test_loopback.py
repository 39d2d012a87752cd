"""Ray started by the tests listens on loopback only.

Checks every listening TCP socket of every process in the driver's process tree (GCS,
raylet, dashboard, agents, workers), read from /proc.  Measured on Ray 2.60:
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` alone does *not* do it on a machine with a routable
address -- the GCS, raylet and workers listened on ``::`` (all interfaces), the dashboard
agent on ``0.0.0.0`` and the runtime-env agent on the machine's address -- it only makes
Ray advertise 127.0.0.1.  In a network namespace whose only interface is loopback (which
tests/conftest.py sets up for the whole session) every one of them binds 127.0.0.1.
"""
from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

from lrgan_dist.pipeline.runtime import ray_session

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


def _descendants(root: int) -> set[int]:
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    out, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in out]
        out.update(kids)
        frontier.extend(kids)
    return out


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _listening() -> dict[str, str]:
    """inode → 'addr:port' of every listening TCP socket on this machine."""
    out = {}
    for name, fam in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path(f"/proc/net/{name}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":  # TCP_LISTEN
                continue
            hexaddr, hexport = f[1].split(":")
            raw = bytes.fromhex(hexaddr)
            # /proc stores each 32-bit word in host (little-endian) order
            raw = b"".join(struct.pack("<I", struct.unpack(">I", raw[i:i + 4])[0]) for i in range(0, len(raw), 4))
            out[f[9]] = f"{socket.inet_ntop(fam, raw)}:{int(hexport, 16)}"
    return out


def _interfaces() -> list[str]:
    """Interfaces of this process's network namespace (/proc/net/dev is per namespace)."""
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


def test_embedded_ray_listens_on_loopback_only():
    with ray_session(num_cpus=1) as ray:
        @ray.remote
        def pid() -> int:
            return os.getpid()

        worker = ray.get(pid.remote())
        tree = _descendants(os.getpid())
        assert worker in tree  # the tree really contains Ray's processes
        listening = _listening()
        ours = {listening[i] for p in tree for i in _socket_inodes(p) if i in listening}
    # the namespace state conftest.py set up (tests import no other test module)
    netns_active = os.environ.get("LRGAN_TEST_NETNS_ACTIVE", "0") == "1"
    print("network namespace active:", netns_active, "interfaces:", _interfaces())
    print("listening sockets of the Ray session:", sorted(ours))
    assert len(ours) >= 3  # GCS, raylet, dashboard/agents at least
    loopback = ("127.", "::1:", "::ffff:127.")
    off_loopback = [a for a in ours if not a.startswith(loopback)]
    if off_loopback and not netns_active:
        pytest.xfail(f"Ray 2.60 binds its services to all interfaces {off_loopback} and the test "
                     "session could not isolate itself (tests/conftest.py)")
    assert not off_loopback, f"Ray services listening beyond loopback: {off_loopback}"
