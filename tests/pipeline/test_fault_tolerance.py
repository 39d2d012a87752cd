"""Fault tolerance on a multi-node Ray cluster simulated on this machine.

(a) an actor killed mid-run, (b) a worker node removed mid-run and a replacement
added, (c) the driver killed mid-run and the job resubmitted to the same store. In
every case every sample ends done, each work unit is accounted for once by the
driver, and the store's arrays are identical to an undisturbed run's.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from lrgan_dist.testing.cli import write_spec
from lrgan_dist.testing.faults import Faults, cli_command, interrupt
from lrgan_dist.testing.ray_local import descendants, local_cluster, ray_env

DELAY = 0.6  # seconds per jacobians unit, so faults strike mid-run

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

N, CHUNK = 24, 4
STAGES = "jacobians,factorize"  # the stages whose arrays are compared


def _spec(tmp: Path, store: Path) -> Path:
    return write_spec(tmp / "job.yaml", samples={"count": N, "seed": 7}, methods={"jacobian_svd": {}},
                      compute={"actors": 2, "cpus_per_actor": 1, "max_retries": 5},
                      store={"uri": str(store), "chunk_samples": CHUNK})


def _arrays(store: Path) -> dict[str, np.ndarray]:
    g = zarr.open_group(str(store), mode="r")
    out = {}

    def walk(grp, prefix):
        for name, arr in grp.arrays():
            out[prefix + name] = np.asarray(arr[...])
        for name, sub in grp.groups():
            walk(sub, prefix + name + "/")

    walk(g, "")
    return out


def _assert_same(a: Path, b: Path) -> None:
    A, B = _arrays(a), _arrays(b)
    assert sorted(A) == sorted(B)
    for k in A:
        if A[k].dtype.kind in "fc":
            assert np.array_equal(A[k], B[k], equal_nan=True), k
        else:
            assert np.array_equal(A[k], B[k]), k


@pytest.fixture()
def cluster():
    with local_cluster(num_cpus=1) as c:  # a SIGTERM to pytest stops every node and the session
        yield c


def _status(store: Path) -> np.ndarray:
    try:
        return zarr.open_group(str(store), mode="r")["status"][:]
    except Exception:  # store not created yet
        return np.zeros(N, dtype=np.uint8)


def _wait_done(store: Path, at_least: int, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while (_status(store) == 1).sum() < at_least:
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("run made no progress")
        time.sleep(0.1)


def _worker_actor_pids(cluster) -> list[int]:
    """PIDs of JacobianWorker actor processes started by *this* cluster's raylets."""
    roots = []
    for node in [cluster.head_node, *cluster.worker_nodes]:
        for info in node.all_processes.get("raylet", []):
            roots.append(info.process.pid)
    pids = []
    for r in roots:
        for p in descendants(r):
            try:
                cmd = Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="ignore")
            except OSError:
                continue
            if "JacobianWorker" in cmd:
                pids.append(p)
    return pids


def _run_in_process(job: Path, address: str) -> dict:
    from lrgan_dist.pipeline.scheduler import submit
    from lrgan_dist.spec import load_spec

    return submit(load_spec(job), address=address, show_progress=False, stages=STAGES.split(","),
                  hooks=Faults(unit_delay=DELAY))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An undisturbed run of the same spec (embedded local Ray)."""
    tmp = tmp_path_factory.mktemp("ref")
    store = tmp / "ref.zarr"
    job = _spec(tmp, store)
    from lrgan_dist.testing.cli import cli

    proc = cli("submit", str(job), "--no-progress", "--stages", STAGES)
    assert proc.returncode == 0, proc.stderr
    return store


def test_actor_killed_mid_run(cluster, tmp_path, reference):
    cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
    store = tmp_path / "a.zarr"
    job = _spec(tmp_path, store)
    killed: list[int] = []

    def killer():
        _wait_done(store, CHUNK)
        for _ in range(200):
            pids = _worker_actor_pids(cluster)
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    report = _run_in_process(job, cluster.address)
    t.join(timeout=5)
    assert killed, "no actor process was found to kill"
    jac = report["stages"]["jacobians"]
    assert jac["restarts"] >= 1
    assert jac["computed"] == N  # every unit accounted for exactly once by the driver
    assert (_status(store) == 1).all()
    _assert_same(reference, store)


def test_node_removed_and_replaced(cluster, tmp_path, reference):
    # Ray's node start-up installs signal handlers, which only the main thread may do, so
    # the driver runs as a subprocess here and the main thread removes and adds the nodes.
    worker = cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
    store = tmp_path / "b.zarr"
    job = _spec(tmp_path, store)
    cmd = cli_command("submit", str(job), "--address", cluster.address, "--no-progress", "--stages", STAGES,
                      "--json", unit_delay=DELAY)
    driver = subprocess.Popen(cmd, env=ray_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        _wait_done(store, CHUNK)
        cluster.remove_node(worker, allow_graceful=False)
        time.sleep(1.0)
        replacement = cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
        out, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
    assert driver.returncode == 0, err
    import json

    report = json.loads(out)  # stdout holds the JSON summary only, even with raylets dying
    jac = report["stages"]["jacobians"]
    assert jac["restarts"] >= 1  # the removed node's actors were replaced
    assert jac["computed"] == N  # every unit accounted for exactly once by the driver
    assert replacement.all_processes.get("raylet"), "replacement node did not start"
    assert (_status(store) == 1).all()
    _assert_same(reference, store)


def test_driver_killed_and_resubmitted(cluster, tmp_path, reference):
    cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
    store = tmp_path / "c.zarr"
    job = _spec(tmp_path, store)
    cmd = cli_command("submit", str(job), "--address", cluster.address, "--no-progress", "--stages", STAGES,
                      unit_delay=DELAY)
    interrupt(cmd, lambda: bool((_status(store) == 1).sum() >= CHUNK), signal.SIGKILL, timeout=120)
    partial = int((_status(store) == 1).sum())
    assert 0 < partial < N, partial
    proc = subprocess.run(cmd + ["--json"], env=ray_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads(proc.stdout)
    # the resubmission computed only what the killed driver had not finished
    assert report["stages"]["jacobians"]["computed"] <= N - partial + CHUNK * 2
    assert (_status(store) == 1).all()
    _assert_same(reference, store)
