"""Ray session management and a fault-tolerant actor pool.

Why Ray core actors and not Ray Data's actor-pool strategy: a work unit here is one
store chunk whose *writer* must be unique and whose completion must be observable
(``status`` written last). Ray Data streams blocks of rows through operators and
re-partitions them; it offers no "this exact index range, written by exactly one
task, retried as a whole" contract, and its backpressure and block sizing would add a
materialisation step we do not need. A small pool of long-lived actors (each holding
one generator replica, one GPU when present) fed chunk-aligned units gives us
one-writer-per-chunk by construction, per-unit retries on actor or node loss, and
progress reporting, in ~100 lines.

Sessions: ``address`` None/"local" starts an embedded Ray instance on this machine
(node address 127.0.0.1, dashboard on 127.0.0.1, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``)
and stops it at the end; ``auto`` or ``ray://…`` connects to a running cluster and
leaves it running.  Caveat, measured on Ray 2.60 (tests/pipeline/test_loopback.py): on a machine
with a routable address Ray's core services still *listen* on all interfaces (GCS,
raylet and workers on ``::``, the dashboard agent on ``0.0.0.0``); the environment
variable only changes the address Ray advertises, and Ray has no option to bind them to
loopback.  Only a network namespace whose sole interface is loopback keeps them off the
network (the test suite runs in one, see tests/conftest.py); on a shared network use a
firewall, or ``unshare -n`` as root.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

__all__ = ["ray_session", "ActorPool", "cluster_resources", "progress"]


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[Any]:
    """Yield an initialised ``ray`` module; stop Ray afterwards only if we started it."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    local = address in (None, "", "local")
    if local:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        kwargs: dict[str, Any] = dict(
            address="local",
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            log_to_driver=True,
            configure_logging=True,
            logging_level="WARNING",
        )
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        if num_gpus is not None:
            kwargs["num_gpus"] = num_gpus
        # Workers import lrgan_dist from the same environment as the driver.
        ray.init(**kwargs)
    else:
        ray.init(address=address, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_resources() -> dict[str, float]:
    import ray

    return dict(ray.cluster_resources())


@contextlib.contextmanager
def progress(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(n)``."""
    if not enabled or total <= 0:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(file=sys.stderr)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


@dataclass
class _Slot:
    actor: Any
    inflight: dict[Any, Any]  # object ref -> unit


class ActorPool:
    """Feed work units to a pool of actors; replace dead actors and retry their units.

    ``make_actor()`` returns a new actor handle; ``call(actor, unit)`` returns an
    object ref. Each actor has at most ``depth`` units in flight. A unit whose actor
    died (``RayActorError`` / node loss) is retried on a fresh actor up to
    ``max_retries`` times; any other exception is a bug in the unit and propagates.
    """

    def __init__(self, make_actor: Callable[[], Any], size: int, call: Callable[[Any, Any], Any],
                 max_retries: int = 3, depth: int = 2):
        self.make_actor = make_actor
        self.call = call
        self.max_retries = max_retries
        self.depth = depth
        self.slots = [_Slot(make_actor(), {}) for _ in range(max(1, size))]
        self.restarts = 0

    def run(self, units: Sequence[Any], on_result: Callable[[Any, Any], None]) -> None:
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        lost = (RayActorError, ActorDiedError, ActorUnavailableError)
        queue = list(units)
        attempts: dict[int, int] = {}
        while queue or any(s.inflight for s in self.slots):
            for slot in self.slots:
                while queue and len(slot.inflight) < self.depth:
                    unit = queue.pop(0)
                    slot.inflight[self.call(slot.actor, unit)] = unit
            refs = [r for s in self.slots for r in s.inflight]
            ready, _ = ray.wait(refs, num_returns=1, timeout=60.0)
            for ref in ready:
                slot = next(s for s in self.slots if ref in s.inflight)
                unit = slot.inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except lost as exc:
                    key = id(unit) if not isinstance(unit, tuple) else hash(unit)
                    attempts[key] = attempts.get(key, 0) + 1
                    if attempts[key] > self.max_retries:
                        raise RuntimeError(f"work unit {unit} failed {attempts[key]} times; last error: {exc}") from exc
                    # The actor is gone: requeue everything it held and replace it.
                    queue[:0] = [unit, *slot.inflight.values()]
                    slot.inflight.clear()
                    self._replace(slot)
                    continue
                on_result(unit, result)

    def _replace(self, slot: _Slot) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(slot.actor, no_restart=True)
        time.sleep(0.1)
        slot.actor = self.make_actor()
        self.restarts += 1

    def shutdown(self) -> None:
        import ray

        for slot in self.slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor, no_restart=True)
