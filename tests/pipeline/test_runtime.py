"""Runtime: breadth-first actor pool, worker errors as the worker's own exception, the caller's
signal handlers back after a session (SIGTERM and Ctrl-C during a run: tests/test_fault_matrix.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from lrgan_dist.pipeline.runtime import ActorPool, Hosted, actor_class, ray_session
from lrgan_dist.store.zarrstore import StoreError


class _Ref:
    pass


def test_pool_gives_every_actor_a_unit_before_any_gets_a_second():
    pool = ActorPool(lambda: object(), 3, lambda actor, unit: _Ref(), depth=2)
    queue = [(0, 4), (4, 8), (8, 12), (12, 16)]
    pool._fill(queue)
    assert [slot for slot, _ in pool.assigned] == [0, 1, 2, 0]
    assert queue == []
    two = ActorPool(lambda: object(), 2, lambda actor, unit: _Ref(), depth=2)
    two._fill([(0, 4), (4, 8)])
    assert sorted(slot for slot, _ in two.assigned) == [0, 1]  # both actors busy, none idle


def test_hosted_keeps_constructor_error_and_raises_it_on_every_call():
    def bad(path: str) -> None:
        raise StoreError(f"{path}: no store; expected an lrgan-dist store")

    h = Hosted(bad, "/nowhere")
    for _ in range(2):
        with pytest.raises(StoreError, match="no store"):
            h.call("run", (0, 4))


class _Recorder:
    def __init__(self, tag: str):
        self.tag = tag

    def run(self, unit):
        time.sleep(0.5)  # both units in flight at once
        return os.getpid()


class _Broken:
    def __init__(self, counter: str):
        with open(counter, "a") as f:
            f.write("x")
        raise StoreError(f"{counter}: bad store; expected a readable one")

    def run(self, unit):  # pragma: no cover - never reached
        return unit


@pytest.mark.slow
def test_two_actors_two_units_and_constructor_errors_fail_once(tmp_path):
    with ray_session(num_cpus=2) as ray:
        Remote = ray.remote(actor_class(_Recorder))
        pool = ActorPool(lambda: Remote.options(num_cpus=0.5).remote(_Recorder, "t"), 2,
                         lambda a, u: a.call.remote("run", u))
        ran: dict[tuple, int] = {}
        try:
            pool.run([(0, 1), (1, 2)], lambda u, pid: ran.__setitem__(u, pid))
        finally:
            pool.shutdown()
        assert len(ran) == 2 and len(set(ran.values())) == 2, ran  # each actor ran one unit

        counter = tmp_path / "constructed"
        Broken = ray.remote(actor_class(_Broken))
        bad = ActorPool(lambda: Broken.options(num_cpus=0.5).remote(_Broken, str(counter)), 1,
                        lambda a, u: a.call.remote("run", u), max_retries=3)
        with pytest.raises(StoreError) as info:
            try:
                with ray_session() as r2:  # the already-initialised session: unwraps worker errors
                    assert r2 is ray
                    bad.run([(0, 1), (1, 2)], lambda u, r: None)
            finally:
                bad.shutdown()
        assert counter.read_text() == "x"  # constructed once: a worker's error is not a lost actor
        assert bad.restarts == 0
        assert "\n" not in str(info.value) and "bad store" in str(info.value)
        assert type(info.value) is StoreError


# the caller's handlers record the signals; Ray's would sys.exit (SIGTERM) and, with the OS
# handler reset after ray.shutdown, a SIGTERM would kill the process
_HANDLERS_BACK = """
import os, signal, sys, time
from lrgan_dist.pipeline.runtime import ray_session

got = []
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda s, f: got.append(s))
before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
with ray_session(num_cpus=1):
    pass
assert all(signal.getsignal(sig) is h for sig, h in before.items()), signal.getsignal(signal.SIGTERM)
for sig in (signal.SIGTERM, signal.SIGINT):
    os.kill(os.getpid(), sig)
time.sleep(0.2)
print(sorted(got))
"""


@pytest.mark.slow
def test_ray_session_gives_the_signal_handlers_back():
    from lrgan_dist.testing.cli import ROOT
    from lrgan_dist.testing.ray_local import ray_env

    env = dict(ray_env(), PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _HANDLERS_BACK], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[2, 15]" in proc.stdout.splitlines(), proc.stdout
