"""Shared pytest configuration.

Network isolation.  Ray 2.60's core services (GCS, raylet, agents) bind to every interface
of a machine that has a routable address, whatever ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``
says (that variable only makes Ray *advertise* 127.0.0.1; tests/pipeline/test_loopback.py shows the
difference).  So before anything starts a thread or a server, the test session moves
itself into a private network namespace whose only interface is loopback (Linux,
``unshare(CLONE_NEWNET)``, root or user namespaces), and every Ray, S3 and CLI process the
tests start inherits it: nothing they open is reachable from outside this machine, and
the suite needs no network.  ``LRGAN_TEST_NETNS=0`` turns it off; where the kernel
refuses, the session runs as before and test_loopback.py reports why.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def _isolate_network() -> str:
    if os.environ.get("LRGAN_TEST_NETNS", "1") == "0":
        return "disabled (LRGAN_TEST_NETNS=0)"
    if os.environ.get("LRGAN_TEST_NETNS_ACTIVE") == "1":
        return "active (inherited)"
    if not sys.platform.startswith("linux"):
        return f"unavailable on {sys.platform}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        return f"unavailable: unshare(CLONE_NEWNET) failed: {os.strerror(ctypes.get_errno())}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # bring lo up
        ifr = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, _SIOCGIFFLAGS, ifr)[:18])[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | _IFF_UP))
    os.environ["LRGAN_TEST_NETNS_ACTIVE"] = "1"
    return "active"


NETNS = _isolate_network()

import pytest  # noqa: E402
import torch  # noqa: E402  (after the namespace switch: torch may start threads)

from lrgan_dist.testing.ray_local import sigterm_interrupts  # noqa: E402

# Two cores are shared by every test; keep torch from oversubscribing them.
torch.set_num_threads(int(os.environ.get("LRGAN_TEST_THREADS", "1")))


def pytest_report_header(config):  # noqa: ARG001
    return f"lrgan-dist tests: private network namespace {NETNS}"


@pytest.fixture(autouse=True)
def _sigterm_stops_the_session():
    """An external SIGTERM (a CI timeout) stops the session, tearing fixtures down, even
    after a test's Ray installed its own handler (issue 14, defect 10)."""
    with sigterm_interrupts():
        yield
