"""Run a job: open/create the store, run the requested stages on Ray, summarise.

    submit ──► jacobians ──► factorize ──► population ──► transfer ──► report   (DESIGN.md §2)

The driver only plans and schedules: workers open the store themselves and write
whole chunks, so the driver never holds more than the status vector (and, before the
jacobians stage of an existing store, one chunk at a time while
:func:`~.verify.repair_for_resume` turns missing or unreadable chunks into pending work).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Sequence

from lrgan_dist.spec import JobSpec, SpecError
from lrgan_dist.store.zarrstore import Store, StoreError, remove_store, store_exists

__all__ = ["STAGES", "submit", "prepare_store"]

STAGES = ("jacobians", "factorize", "population", "transfer")


def parse_stages(text: str | Sequence[str] | None) -> tuple[str, ...]:
    if text is None:
        return STAGES
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    bad = [s for s in items if s not in STAGES]
    if bad or not items:
        raise SpecError("--stages", f"received {text!r}; expected a comma-separated list of {list(STAGES)}")
    return tuple(s for s in STAGES if s in items)


def prepare_store(spec: JobSpec, fresh: bool = False) -> Store:
    """Open the spec's store, creating it (or re-creating it with ``fresh``)."""
    from lrgan_dist.apply.build import make_generator
    from lrgan_dist.pipeline.stages.jacobians import plan_layout

    uri = spec.store.uri
    gen = make_generator(spec, "cpu")
    layout, masks = plan_layout(spec, gen)
    if fresh and store_exists(uri):
        remove_store(uri)
    info = gen.info()
    store = Store.create(
        uri,
        layout=layout,
        spec=spec.to_dict(),
        fingerprint=spec.data_fingerprint(),
        generator_info=info,
        static_masks=masks,
        fresh=fresh,
        spec_base_dir=spec.base_dir,
    )
    from lrgan_dist.store.verify import check_same_generator

    check_same_generator(store, layout, info)  # a checkpoint replaced under an existing store
    return store


def _worker_resources(spec: JobSpec, ray: Any) -> tuple[int, float, float, int]:
    """(actors, cpus, gpus per actor, torch threads) from the spec and the cluster."""
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
    return actors, c.cpus_per_actor, gpus, threads


def run_jacobians(spec: JobSpec, store: Store, ray: Any, show_progress: bool = True,
                  retry_failed: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    from lrgan_dist.pipeline.runtime import ActorPool, progress
    from lrgan_dist.pipeline.stages.jacobians import JacobianWorker

    units = store.pending_units(retry_failed=retry_failed)
    if not units:
        return {"units": 0, "computed": 0, "restarts": 0, "seconds": 0.0}
    actors, cpus, gpus, threads = _worker_resources(spec, ray)
    actors = min(actors, len(units))
    Remote = ray.remote(JacobianWorker)

    def make() -> Any:
        return Remote.options(num_cpus=cpus, num_gpus=gpus, max_concurrency=1).remote(spec, store.uri, threads)

    t0 = time.perf_counter()
    pool = ActorPool(make, actors, lambda a, u: a.run.remote(u), max_retries=spec.compute.max_retries)
    computed = 0
    with progress(f"jacobians ({actors} actor{'s' if actors > 1 else ''})", sum(b - a for a, b in units),
                  show_progress) as advance:
        def on_result(unit: tuple[int, int], res: Any) -> None:
            nonlocal computed
            computed += res.stop - res.start
            advance(res.stop - res.start)

        try:
            pool.run(units, on_result)
        finally:
            pool.shutdown()
    return {"units": len(units), "computed": computed, "actors": actors, "restarts": pool.restarts,
            "seconds": time.perf_counter() - t0}


def run_factorize(spec: JobSpec, store: Store, ray: Any, show_progress: bool = True) -> dict[str, Any]:
    from lrgan_dist.pipeline.runtime import progress
    from lrgan_dist.pipeline.stages.factorize import factorize_unit, pending_units, result_groups

    groups = result_groups(spec, store)
    units = pending_units(store, groups)
    if not units:
        return {"units": 0, "groups": [g[2] for g in groups], "seconds": 0.0}
    _, cpus, _, threads = _worker_resources(spec, ray)
    task = ray.remote(factorize_unit).options(num_cpus=cpus, max_retries=spec.compute.max_retries)
    t0 = time.perf_counter()
    refs = {task.remote(spec, store.uri, u, groups, threads): u for u in units}
    peak = 0.0
    with progress("factorize", sum(b - a for a, b in units), show_progress) as advance:
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for r in ready:
                out = ray.get(r)
                peak = max(peak, float(out.get("peak_rss_mb", 0.0)))
                a, b = refs[r]
                advance(b - a)
    return {"units": len(units), "groups": [g[2] for g in groups], "seconds": time.perf_counter() - t0,
            "peak_worker_rss_mb": round(peak, 1)}


def default_report_dir(uri: str) -> str:
    """``runs/x.zarr`` → ``runs/x-report`` (local stores); ``./<name>-report`` for remote ones."""
    base = uri.rstrip("/")
    if "://" in base:
        base = base.rsplit("/", 1)[-1]
    return (base[:-5] if base.endswith(".zarr") else base) + "-report"


def submit(spec: JobSpec, *, stages: Sequence[str] = STAGES, address: str | None = None, fresh: bool = False,
           show_progress: bool = True, retry_failed: bool = False, report_dir: str | None | bool = None) -> dict[str, Any]:
    """Run ``stages`` of ``spec``; returns a JSON-able summary.

    When the transfer stage ran, the report is written to ``report_dir`` (default
    :func:`default_report_dir`); ``report_dir=False`` skips it.
    """
    from lrgan_dist.pipeline.runtime import ray_session
    from lrgan_dist.analysis.summary import summarize

    t0 = time.perf_counter()
    if "jacobians" not in stages:
        if fresh:
            raise SpecError("--fresh", "cannot start a fresh store without the jacobians stage; expected --stages to include jacobians")
        store = Store.open(spec.store.uri, mode="a")
        if store.fingerprint != spec.data_fingerprint():
            raise StoreError(f"{spec.store.uri}: store was created by another job spec (fingerprint mismatch); "
                             "expected the spec that created it")
        from lrgan_dist.store.verify import refuse_if_damaged

        refuse_if_damaged(store, ",".join(stages))
    else:
        store = prepare_store(spec, fresh=fresh)
    report: dict[str, Any] = {"store": spec.store.uri, "stages": {}}
    if "jacobians" in stages:
        from lrgan_dist.store.verify import repair_for_resume

        # Missing or unreadable chunks of an existing store become pending work again.
        repaired = repair_for_resume(store)
        if repaired:
            report["repaired"] = repaired
            for line in repaired:
                print(f"store damaged, recomputing: {line}", file=sys.stderr)
    with ray_session(address) as ray:
        if "jacobians" in stages:
            report["stages"]["jacobians"] = run_jacobians(spec, store, ray, show_progress, retry_failed)
        if "factorize" in stages:
            report["stages"]["factorize"] = run_factorize(spec, store, ray, show_progress)
        if "population" in stages:
            from lrgan_dist.pipeline.stages.population import run_population

            report["stages"]["population"] = run_population(spec, store, ray, show_progress)
        if "transfer" in stages:
            from lrgan_dist.pipeline.stages.transfer import run_transfer

            report["stages"]["transfer"] = run_transfer(spec, store, ray, show_progress)
    report["summary"] = summarize(spec, store)
    if "transfer" in stages and report_dir is not False:
        from lrgan_dist.analysis.report import write_report

        out = report_dir or default_report_dir(spec.store.uri)
        rep = write_report(spec.store.uri, out)
        report["report"] = {"dir": str(out), "headline": rep.get("headline")}
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report
