"""Issue 14, defect 10: a SIGTERM to a pytest process (a CI timeout) stops the session
promptly, tears its fixtures down and leaves none of the Ray processes it started behind
-- while a test runs an in-process Ray cluster
(:func:`lrgan_dist.testing.ray_local.local_cluster`), and after a test started and
stopped an embedded Ray (tests/conftest.py's autouse
:func:`~lrgan_dist.testing.ray_local.sigterm_interrupts`).

Measured without the fix (the same generated sessions): with a plain ``Cluster`` Ray's node
handler took the SIGTERM (drain, kill that node only, ``sys.exit``, which pytest records as
one failed test) and pytest was still running 20 s later; after ``ray_session`` the
SIGTERM killed pytest outright (exit -15, no fixture torn down).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrgan_dist.testing.cli import ROOT
from lrgan_dist.testing.ray_local import descendants, still_running

pytestmark = pytest.mark.slow

# Two generated sessions. ``cluster``: a test sleeps inside local_cluster (head and one
# node). ``after-ray``: a test starts and stops an embedded Ray (ray_session, as the pipeline
# does), the next one sleeps: Ray's handler outlived ray.shutdown and would catch the SIGTERM.
# Either way the test after the sleeper must never start.
_SESSIONS = {
    "cluster": '''
from lrgan_dist.testing.ray_local import local_cluster


def test_sleeps():
    with local_cluster(num_cpus=1) as cluster:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")  # Ray installs a node handler per node
        Path(os.environ["LRGAN_READY"]).write_text("ready")
        time.sleep(300)
''',
    "after-ray": '''
from lrgan_dist.pipeline.runtime import ray_session


def test_ray_and_back():
    with ray_session(num_cpus=1):
        pass


def test_sleeps():
    Path(os.environ["LRGAN_READY"]).write_text("ready")
    time.sleep(300)
''',
}
_HEAD = '''
import os, time
from pathlib import Path
'''
_NEXT = '''

def test_must_not_start():
    Path(os.environ["LRGAN_READY"] + ".next").write_text("the session went on after SIGTERM")
    time.sleep(300)
'''
#: the generated session's conftest: the autouse fixture of tests/conftest.py
_CONFTEST = '''
import pytest

from lrgan_dist.testing.ray_local import sigterm_interrupts


@pytest.fixture(autouse=True)
def _sigterm_stops_the_session():
    with sigterm_interrupts():
        yield
'''


def _alive(procs: dict[int, str]) -> list[str]:
    out = []
    for pid in still_running(procs):
        with contextlib.suppress(OSError):
            out.append(f"{pid} " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()[:120])
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("session", sorted(_SESSIONS))
def test_sigterm_stops_a_pytest_session_and_its_ray_processes(session, tmp_path):
    (tmp_path / "test_sleepy_cluster.py").write_text(_HEAD + _SESSIONS[session] + _NEXT)
    (tmp_path / "conftest.py").write_text(_CONFTEST)
    ready = tmp_path / "ready"
    env = dict(os.environ, LRGAN_READY=str(ready), PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("RAY_ADDRESS", None)
    p = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:timeout",
                          "test_sleepy_cluster.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    ray_procs: dict[int, str] = {}
    try:
        t0 = time.monotonic()
        while not ready.exists():
            assert p.poll() is None, p.communicate()[0]
            assert time.monotonic() - t0 < 240, "the cluster did not start"
            time.sleep(0.2)
        ray_procs.update(descendants(p.pid))
        if session == "cluster":
            assert any("raylet" in c or "gcs_server" in c for c in _alive(ray_procs)), _alive(ray_procs)
        p.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            out = p.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            pytest.fail(f"pytest still running 20 s after SIGTERM; descendants alive: {_alive(ray_procs)}")
        while _alive(ray_procs) and time.monotonic() - t0 < 20:
            time.sleep(0.2)
        assert _alive(ray_procs) == [], "Ray processes outlived the session"
        assert not Path(str(ready) + ".next").exists(), out  # the session stopped: the next test never started
        assert p.returncode == 2, out  # pytest: interrupted
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        if p.poll() is None:
            p.wait(timeout=30)
        for line in _alive(ray_procs):  # only after a failure above: what the session left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
