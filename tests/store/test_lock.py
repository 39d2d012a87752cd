"""The store lease (issue 14 item 5): one submit per store, stale leases taken over."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from lrgan_dist.store.lock import lease_path, store_lease
from lrgan_dist.store.zarrstore import StoreError

HOLD = """
import sys, time
from lrgan_dist.store.lock import store_lease
with store_lease(sys.argv[1], timeout=2.0, owner="alice"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_second_holder_in_another_process_is_refused_then_admitted(tmp_path):
    uri = str(tmp_path / "s.zarr")
    other = subprocess.Popen([sys.executable, "-c", HOLD, uri, "4"], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        time.sleep(1.2)  # past a heartbeat: the holder keeps the lease fresh beyond the timeout
        with pytest.raises(StoreError) as err:
            with store_lease(uri, timeout=2.0):
                pass
        msg = str(err.value)
        assert f"in use by alice@{socket.gethostname()} pid {other.pid}" in msg and lease_path(uri) in msg
    finally:
        other.wait(timeout=30)
    assert other.returncode == 0
    assert not (tmp_path / "s.zarr.lease").exists()  # released at the end
    with store_lease(uri, timeout=2.0) as lease:
        assert json.loads((tmp_path / "s.zarr.lease").read_text())["token"] == lease.token


def test_lease_of_a_dead_process_is_taken_over_with_a_message(tmp_path):
    uri = str(tmp_path / "s.zarr")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    now = time.time()
    (tmp_path / "s.zarr.lease").write_text(json.dumps({"owner": "bob", "host": socket.gethostname(), "pid": pid,
                                                       "token": "t", "acquired": now, "heartbeat": now}))
    said: list[str] = []
    with store_lease(uri, timeout=60.0, log=said.append):
        pass
    assert len(said) == 1 and f"taking over from bob@{socket.gethostname()} pid {pid}" in said[0]
    assert f"process {pid} on this host is gone" in said[0]


def test_lease_without_heartbeat_is_taken_over(tmp_path):
    uri = str(tmp_path / "s.zarr")
    old = time.time() - 600
    (tmp_path / "s.zarr.lease").write_text(json.dumps({"owner": "carol", "host": "elsewhere", "pid": 1,
                                                       "token": "t", "acquired": old, "heartbeat": old}))
    said: list[str] = []
    with store_lease(uri, timeout=120.0, log=said.append):
        assert json.loads((tmp_path / "s.zarr.lease").read_text())["owner"] != "carol"
    assert "no heartbeat for 600 s (timeout 120 s)" in said[0]
