"""Ray runtime: session, resources, actor pool, task waiting — the one place for each.

Every stage (:mod:`lrgan_dist.pipeline.stages`) schedules its work through this module:
:func:`worker_resources` decides actors, CPUs, GPUs and torch threads once per run;
:class:`ActorPool` feeds work units to long-lived actors (generator replicas);
:func:`run_tasks` submits stateless Ray tasks and waits for them; :func:`ray_session`
owns the session, turns a worker's exception back into the worker's own exception
(one line for the CLI, the remote traceback kept as ``__cause__`` for ``--debug``), and
maps SIGTERM to the same path as Ctrl-C (:class:`KeyboardInterrupt`).

Why Ray core actors and not Ray Data's actor-pool strategy: a work unit here is one
store chunk whose *writer* must be unique and whose completion must be observable
(``status`` written last). Ray Data streams blocks of rows through operators and
re-partitions them; it offers no "this exact index range, written by exactly one
task, retried as a whole" contract, and its backpressure and block sizing would add a
materialisation step we do not need. A small pool of long-lived actors (each holding
one generator replica, one GPU when present) fed chunk-aligned units gives us
one-writer-per-chunk by construction, per-unit retries on actor or node loss, and
progress reporting.

Sessions: ``address`` None/"local" starts an embedded Ray instance on this machine
(node address 127.0.0.1, dashboard off, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``)
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
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

__all__ = ["ray_session", "ActorPool", "Resources", "StageContext", "StageHooks", "worker_resources",
           "run_tasks", "remote_cause", "cluster_resources", "progress", "actor_class", "connect", "prepare_auth",
           "auth_token_source", "auth_error", "on_every_node", "check_cluster_versions", "version_mismatch",
           "driver_versions"]


# ----------------------------------------------------------------------------- session


def remote_cause(exc: BaseException) -> BaseException:
    """The worker's own exception behind a Ray error (itself when there is none)."""
    from ray.exceptions import RayTaskError

    seen = 0
    while isinstance(exc, RayTaskError) and getattr(exc, "cause", None) is not None and seen < 10:
        exc = exc.cause
        seen += 1
    return exc


#: Set by SIGINT / SIGTERM during a session. The handler also raises KeyboardInterrupt, but a
#: signal that lands while the main thread runs a destructor (Ray's ObjectRef.__del__, ...)
#: has its exception printed and dropped by Python; the driver's wait loops check this
#: flag (:func:`check_interrupted`), so such a Ctrl-C still stops the run.
_INTERRUPTED = threading.Event()


def _interrupt(signum: int, frame: Any) -> None:
    _INTERRUPTED.set()
    raise KeyboardInterrupt(f"signal {signum}")


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if SIGINT or SIGTERM arrived in this session (see :data:`_INTERRUPTED`)."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt("interrupted")


#: the signals a session turns into KeyboardInterrupt
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def _handlers_restored() -> Iterator[None]:
    """On leaving, put the SIGTERM and SIGINT handlers back as they were on entry (main
    thread only: Python delivers signals there). ``signal.signal`` reinstalls the handler in
    the OS too, over whatever a native library set meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt in the main thread and set the session's
    interrupt flag (Ray's own SIGTERM handler would exit the process mid-write and dump a
    native stack); the previous handlers are restored on leaving."""
    with _handlers_restored():
        if threading.current_thread() is threading.main_thread():
            _INTERRUPTED.clear()
            for sig in _SIGNALS:
                signal.signal(sig, _interrupt)
        yield


@contextlib.contextmanager
def _worker_errors() -> Iterator[None]:
    from ray.exceptions import RayTaskError

    try:
        yield
    except RayTaskError as exc:
        cause = remote_cause(exc)
        if cause is exc or not isinstance(cause, Exception):
            raise
        raise cause from exc  # the remote traceback stays reachable (--debug prints the chain)


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[Any]:
    """Yield an initialised ``ray`` module; stop Ray afterwards only if we started it.

    The SIGTERM and SIGINT handlers are the caller's again when this returns (``ray.init``
    installs a SIGTERM handler of its own, ``sys.exit``, that would otherwise outlive the session)."""
    local = address in (None, "", "local")
    if not local:
        prepare_auth()  # before ray is imported: Ray reads RAY_AUTH_MODE once, when it loads
    import ray

    if ray.is_initialized():
        with _sigterm_as_interrupt(), _worker_errors():
            yield ray
        return
    with _handlers_restored():  # restored after ray.shutdown: not Ray's handler
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
            connect(ray, str(address))
        try:
            # installed after ray.init, which sets a SIGTERM handler of its own for drivers
            with _sigterm_as_interrupt(), _worker_errors():
                yield ray
        finally:
            ray.shutdown()


# ----------------------------------------------------------------------------- cluster connection


def auth_token_source() -> str | None:
    """Where a Ray client finds its token, in Ray's own order (docs.ray.io, "Ray token
    authentication"): ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``.
    Returns the source's name (never the token), or None."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return os.environ["RAY_AUTH_TOKEN_PATH"]
    default = os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    return default if os.path.isfile(default) else None


def prepare_auth() -> str | None:
    """Token authentication for every address form (HOST:PORT, auto, ray://, http://).

    Ray 2.59+ heads enforce a token by default, but a Ray 2.60 client presents its token only
    when ``RAY_AUTH_MODE=token`` is set: without it an explicit address fails ("Failed to
    connect", or the Jobs API's "no authentication token was found") although the token is
    there.  When the mode is unset and a token is found (:func:`auth_token_source`), set
    ``RAY_AUTH_MODE=token`` for this process and the ones it starts; an explicit mode is
    left as it is.  Returns the token's source, or None."""
    src = auth_token_source()
    if src is not None and not os.environ.get("RAY_AUTH_MODE"):
        os.environ["RAY_AUTH_MODE"] = "token"
    return src


def auth_error(address: str, exc: BaseException) -> Exception:
    """The one-line error for a connection Ray refused, naming what to set (SpecError: exit 2)."""
    from lrgan_dist.spec import SpecError

    src = auth_token_source()
    why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    has = (f"the token from {src} was not accepted; expected the cluster's token" if src and
           os.environ.get("RAY_AUTH_MODE") == "token" else "no Ray auth token was found")
    return SpecError("--address", f"cannot connect to the Ray cluster at {address} ({why}): {has} -- export "
                                  "RAY_AUTH_TOKEN=<token> (or RAY_AUTH_TOKEN_PATH=<file>, or put it in "
                                  "~/.ray/auth_token; 'ray get-auth-token' on the head prints it)")


def connect(ray: Any, address: str) -> None:
    """``ray.init`` to a running cluster: reachable (:func:`check_address`), a refused token
    one line naming RAY_AUTH_TOKEN, and the cluster's lrgan_dist, torch and ray the driver's
    (:func:`check_cluster_versions`). Token mode is set by :func:`prepare_auth`, which must
    run before ``ray`` is imported (:func:`ray_session` calls it first)."""
    check_address(address)
    try:
        ray.init(address=address, logging_level="WARNING")
    except ConnectionError as exc:
        raise auth_error(address, exc) from None
    try:
        check_cluster_versions(ray, address)
    except BaseException:
        ray.shutdown()
        raise


def on_every_node(ray: Any, fn: Callable[..., Any], *args: Any, timeout: float = 120) -> dict[str, Any]:
    """node id → ``fn(*args)`` run once on every alive node (a zero-CPU task pinned to it).
    ``fn`` should be a nested function: it travels by value, so it runs on nodes whatever
    their lrgan_dist."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0)(fn)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = {nid: task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=False)).remote(*args)
            for nid in nodes}
    return {nid: ray.get(ref, timeout=timeout) for nid, ref in refs.items()}


#: the packages whose versions must agree between the driver and the cluster's nodes: lrgan_dist
#: exactly (it computes and writes the store), torch and ray by major.minor
VERSIONED = ("lrgan_dist", "torch", "ray")


def driver_versions() -> dict[str, str | None]:
    """This process's lrgan_dist, torch and ray versions (the probe the nodes run, run here;
    torch and ray from their metadata: nothing imported)."""
    return _node_versions_probe()()


def _node_versions_probe() -> Callable[[], dict[str, str | None]]:
    """The task that reports the versions a node's workers import.  Nested, so that it travels
    by value: it runs on a node without lrgan_dist (and says so)."""

    def node_versions() -> dict[str, str | None]:
        import importlib
        import importlib.metadata as md

        out: dict[str, str | None] = {}
        try:
            out["lrgan_dist"] = str(importlib.import_module("lrgan_dist").__version__)
        except Exception:  # noqa: BLE001 - not installed there
            out["lrgan_dist"] = None
        for dist in ("torch", "ray"):
            try:
                out[dist] = md.version(dist)
            except md.PackageNotFoundError:
                out[dist] = None
        return out

    return node_versions


def _major_minor(v: str | None) -> str | None:
    return ".".join(v.split("+")[0].split(".")[:2]) if v else v


def version_mismatch(driver: dict[str, str | None], node: dict[str, str | None], shipped: bool) -> str | None:
    """The first disagreement between the driver's and a node's versions, as one phrase, or None.
    lrgan_dist must match exactly unless the job ships its code (runtime_env ``py_modules``);
    torch and ray by major.minor."""
    for name in VERSIONED:
        if name == "lrgan_dist" and shipped:
            continue
        want, got = driver.get(name), node.get(name)
        same = want == got if name == "lrgan_dist" else _major_minor(want) == _major_minor(got)
        if not same:
            return f"{name} {got or 'not installed'} on the cluster, {want} on this driver"
    return None


def code_shipped(ray: Any) -> bool:
    """Whether this job's runtime_env ships Python modules (``py_modules``), as Jobs API
    submissions do (:func:`lrgan_dist.pipeline.remote.submit_job`): then every worker imports
    the driver's own lrgan_dist."""
    try:
        env = dict(ray.get_runtime_context().runtime_env or {})
    except Exception:  # noqa: BLE001 - no runtime context: nothing shipped
        return False
    return bool(env.get("py_modules"))


def check_cluster_versions(ray: Any, address: str) -> None:
    """Refuse (SpecError, exit 2) a cluster whose nodes run another lrgan_dist (unless the code
    is shipped) or another torch/ray major.minor than this driver: one line naming both."""
    from lrgan_dist.spec import SpecError

    driver, shipped = driver_versions(), code_shipped(ray)
    for nid, node in on_every_node(ray, _node_versions_probe()).items():
        why = version_mismatch(driver, node, shipped)
        if why:
            raise SpecError("--address", f"{why} (node {nid[:8]} of {address}); expected the same versions: install "
                                         f"lrgan-dist=={driver['lrgan_dist']} with the same torch and ray on every node, "
                                         "or submit through the Jobs API (--address http://HEAD:8265), which ships this code")


def check_address(address: str) -> None:
    """Refuse a ``HOST:PORT`` (or ``ray://HOST:PORT``) address nobody listens on, within a
    timeout (``LRGAN_CONNECT_TIMEOUT_S``, default 10 s), instead of letting Ray retry for minutes."""
    import socket

    from lrgan_dist.spec import SpecError

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or address == "auto":
        return
    timeout = float(os.environ.get("LRGAN_CONNECT_TIMEOUT_S", "10"))
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise SpecError("--address", f"cannot reach a Ray head at {address} ({why} within {timeout:g} s); expected "
                                     "the address of a running cluster ('ray start --head' prints it), or no "
                                     "--address for a local run") from None


def cluster_resources() -> dict[str, float]:
    import ray

    return dict(ray.cluster_resources())


@contextlib.contextmanager
def progress(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(n)``."""
    if not enabled or total <= 0:
        def advance_nothing(n: int = 1) -> None:
            return None

        yield advance_nothing
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

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


# ----------------------------------------------------------------------------- resources and context


@dataclass(frozen=True)
class Resources:
    actors: int  # generator replicas the cluster can hold
    cpus: float  # per actor or task
    gpus: float  # per actor
    threads: int  # torch threads per actor or task


def worker_resources(spec: Any, ray: Any) -> Resources:
    """Actors, CPUs, GPUs per actor and torch threads, from the spec's compute section and the cluster."""
    res = ray.cluster_resources()
    gpus_total = int(res.get("GPU", 0))
    c = spec.compute
    gpus = c.gpus_per_actor if c.gpus_per_actor is not None else (1.0 if gpus_total and c.device != "cpu" else 0.0)
    if c.actors is not None:
        actors = c.actors
    elif gpus > 0:
        actors = max(1, int(gpus_total / gpus))
    else:
        actors = max(1, int(res.get("CPU", 1) // c.cpus_per_actor))
    threads = c.torch_threads or max(1, int(c.cpus_per_actor))
    return Resources(actors=actors, cpus=c.cpus_per_actor, gpus=gpus, threads=threads)


class StageHooks:
    """Called by workers at the start of every work unit; the default does nothing.

    Injected through :func:`~lrgan_dist.pipeline.scheduler.submit` (``hooks=``) and shipped
    to the workers with their arguments, so it must pickle. Fault-injection tests pass a
    subclass (:mod:`lrgan_dist.testing.faults`); production code never reads test settings.
    """

    def on_worker_start(self) -> None:
        """Called once in every worker process (actor or task replica) before it builds its generator."""
        return None

    def before_unit(self, stage: str, unit: Any) -> None:
        return None


@dataclass
class StageContext:
    """What a stage's ``run(ctx)`` gets: the job, its store, the Ray session and options."""

    spec: Any
    store: Any
    ray: Any
    show_progress: bool = True
    retry_failed: bool = False
    hooks: StageHooks = field(default_factory=StageHooks)
    _resources: Resources | None = None

    @property
    def resources(self) -> Resources:
        if self._resources is None:
            self._resources = worker_resources(self.spec, self.ray)
        return self._resources


# ----------------------------------------------------------------------------- tasks


def run_tasks(ctx: StageContext, fn: Callable[..., Any], calls: Sequence[tuple[Any, tuple]], description: str,
              weight: Callable[[Any], int] = lambda key: 1, on_result: Callable[[Any, Any], None] | None = None) -> int:
    """Run ``fn(*args)`` as one Ray task per ``(key, args)``; advance a progress bar by
    ``weight(key)`` as each finishes (in completion order). Returns the number of tasks."""
    ray = ctx.ray
    if not calls:
        return 0
    task = ray.remote(fn).options(num_cpus=ctx.resources.cpus, max_retries=ctx.spec.compute.max_retries)
    refs = {task.remote(*args): key for key, args in calls}
    with progress(description, sum(weight(k) for k in refs.values()), ctx.show_progress) as advance:
        pending = list(refs)
        while pending:
            check_interrupted()
            ready, pending = ray.wait(pending, num_returns=1, timeout=60.0)
            for r in ready:
                out = ray.get(r)
                if on_result is not None:
                    on_result(refs[r], out)
                advance(weight(refs[r]))
    return len(refs)


# ----------------------------------------------------------------------------- actors


class Hosted:
    """Hosts one plain worker object inside an actor.

    A constructor error (bad store, spec or checkpoint) is kept and raised by every call,
    so the driver receives the worker's own exception — deterministic, not retried —
    instead of a "lost actor" that the pool would replace and retry.
    """

    def __init__(self, factory: Callable[..., Any], *args: Any):
        self.obj: Any = None
        self.error: BaseException | None = None
        try:
            self.obj = factory(*args)
        except Exception as exc:  # noqa: BLE001 - re-raised by every call
            self.error = exc

    def call(self, method: str, *args: Any) -> Any:
        if self.error is not None:
            raise self.error
        return getattr(self.obj, method)(*args)


def actor_class(cls: type) -> type:
    """A :class:`Hosted` subclass named after ``cls`` (process titles read ``ray::<cls>.call``)."""
    return type(cls.__name__, (Hosted,), {"__module__": __name__, "__qualname__": cls.__name__})


@dataclass
class _Slot:
    actor: Any
    name: int
    inflight: dict[Any, Any]  # object ref -> unit


class ActorPool:
    """Feed work units to a pool of actors; replace dead actors and retry their units.

    ``make_actor()`` returns a new actor handle; ``call(actor, unit)`` returns an
    object ref. Units go out breadth first: every actor gets one before any gets a
    second, up to ``depth`` in flight each. A unit whose actor died (``RayActorError`` /
    node loss) is retried on a fresh actor up to ``max_retries`` times; an exception
    raised by the worker itself (including its constructor's) is deterministic and
    propagates at once.
    """

    def __init__(self, make_actor: Callable[[], Any], size: int, call: Callable[[Any, Any], Any],
                 max_retries: int = 3, depth: int = 2):
        self.make_actor = make_actor
        self.call = call
        self.max_retries = max_retries
        self.depth = depth
        self.slots = [_Slot(make_actor(), i, {}) for i in range(max(1, size))]
        self.restarts = 0
        self.assigned: list[tuple[int, Any]] = []  # (slot, unit) in submission order

    def _fill(self, queue: list[Any]) -> None:
        for level in range(1, self.depth + 1):
            for slot in self.slots:
                if queue and len(slot.inflight) < level:
                    unit = queue.pop(0)
                    slot.inflight[self.call(slot.actor, unit)] = unit
                    self.assigned.append((slot.name, unit))

    def run(self, units: Sequence[Any], on_result: Callable[[Any, Any], None]) -> None:
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        lost = (RayActorError, ActorDiedError, ActorUnavailableError)
        queue = list(units)
        attempts: dict[Any, int] = {}
        while queue or any(s.inflight for s in self.slots):
            check_interrupted()
            self._fill(queue)
            refs = [r for s in self.slots for r in s.inflight]
            ready, _ = ray.wait(refs, num_returns=1, timeout=60.0)
            for ref in ready:
                slot = next(s for s in self.slots if ref in s.inflight)
                unit = slot.inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except lost as exc:
                    key = unit if isinstance(unit, tuple) else id(unit)
                    attempts[key] = attempts.get(key, 0) + 1
                    if attempts[key] > self.max_retries:
                        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        raise RuntimeError(f"work unit {unit} failed {attempts[key]} times (actor lost); "
                                           f"last error: {first}") from exc
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


def run_actors(ctx: StageContext, worker: type, args: tuple, units: Sequence[Any], description: str,
               weight: Callable[[Any], int] = lambda u: 1,
               on_result: Callable[[Any, Any], None] | None = None) -> dict[str, Any]:
    """Run ``worker(*args).run(unit)`` for every unit on a pool of actors (one generator
    replica each). Returns ``{"actors", "restarts"}``."""
    if not units:
        return {"actors": 0, "restarts": 0}
    res = ctx.resources
    n_act = max(1, min(res.actors, len(units)))
    Remote = ctx.ray.remote(actor_class(worker))

    def make() -> Any:
        return Remote.options(num_cpus=res.cpus, num_gpus=res.gpus, max_concurrency=1).remote(worker, *args)

    pool = ActorPool(make, n_act, lambda a, u: a.call.remote("run", u), max_retries=ctx.spec.compute.max_retries)
    with progress(f"{description} ({n_act} actor{'s' if n_act > 1 else ''})", sum(weight(u) for u in units),
                  ctx.show_progress) as advance:
        def done(unit: Any, result: Any) -> None:
            if on_result is not None:
                on_result(unit, result)
            advance(weight(unit))

        try:
            pool.run(units, done)
        finally:
            pool.shutdown()
    return {"actors": n_act, "restarts": pool.restarts}
