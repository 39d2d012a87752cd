"""Run a job: open/create the store, run the requested stages on Ray, summarise.

    submit ──► jacobians ──► factorize ──► population ──► transfer ──► previews ──► report   (docs/architecture.md)

The one scheduler: every stage is a module of :mod:`lrgan_dist.pipeline.stages` with
``plan(ctx)`` (the pending work units, from the store) and ``run(ctx)`` (schedule them
through :mod:`~lrgan_dist.pipeline.runtime`, return a summary); this module opens the
store and calls the requested stages in order. A sample index flows one way:
cli → scheduler → stage worker → core → store.

The driver only plans and schedules: workers open the store themselves and write
whole chunks, so the driver never holds more than the status vector (and, before the
jacobians stage of an existing store, one chunk at a time while
:func:`~.verify.repair_for_resume` turns missing or unreadable chunks into pending work).
"""
from __future__ import annotations

import importlib
import logging
import sys
import time
from pathlib import Path
from typing import Any, Literal, Sequence

from lrgan_dist.pipeline.runtime import StageContext, StageHooks
from lrgan_dist.spec import JobSpec, SpecError
from lrgan_dist.store.zarrstore import Store, StoreError, remove_store, store_exists

__all__ = ["STAGES", "submit", "prepare_store", "parse_stages", "stage_module", "run_stage", "default_report_dir"]

_log = logging.getLogger("lrgan_dist.pipeline")  # timestamped on stderr by the CLI (-q/-v)

STAGES = ("jacobians", "factorize", "population", "transfer", "previews")
#: stages that read the per-sample Grams: not run on ``compute.jacobian: matfree`` stores (issue 17)
MATFREE_UNSUPPORTED = ("population", "transfer", "previews")


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


def stage_module(name: str) -> Any:
    """The module of stage ``name``: it exposes ``plan(ctx)`` and ``run(ctx) -> summary``."""
    if name not in STAGES:
        raise SpecError("--stages", f"received {name!r}; expected one of {list(STAGES)}")
    return importlib.import_module(f"lrgan_dist.pipeline.stages.{name}")


def run_stage(name: str, spec: JobSpec, store: Store, ray: Any, show_progress: bool = True,
              retry_failed: bool = False, hooks: StageHooks | None = None) -> dict[str, Any]:
    """Run one stage inside an initialised Ray session (tests, benches)."""
    ctx = StageContext(spec, store, ray, show_progress, retry_failed, hooks or StageHooks())
    return stage_module(name).run(ctx)


def _computed(name: str, rep: dict[str, Any]) -> bool:
    """Did stage ``name`` compute or write anything (from its summary)?"""
    if name == "jacobians":
        return bool(rep.get("computed"))
    if name == "factorize":
        return bool(rep.get("units"))
    if name == "population":
        return bool(rep.get("samples")) and not rep.get("skipped")
    if name == "transfer":
        return any(rep.get(part, {}).get(k) for part, k in (("linear", "units"), ("linear", "reset"),
                                                              ("realized", "units"), ("realized", "reset"),
                                                              ("similarity", "groups")))
    if name == "previews":
        return bool(rep.get("units"))
    return True


def default_report_dir(uri: str) -> str:
    """``runs/x.zarr`` → ``runs/x-report`` (local stores); ``./<name>-report`` for remote ones."""
    base = uri.rstrip("/")
    if "://" in base:
        base = base.rsplit("/", 1)[-1]
    return (base[:-5] if base.endswith(".zarr") else base) + "-report"


def submit(spec: JobSpec, *, stages: Sequence[str] = STAGES, address: str | None = None, fresh: bool = False,
           show_progress: bool = True, retry_failed: bool = False, report_dir: str | None | Literal[False] = None,
           hooks: StageHooks | None = None, verify: bool = False) -> dict[str, Any]:
    """Run ``stages`` of ``spec`` in order; returns a JSON-able summary.

    The run holds the store's lease (:func:`lrgan_dist.store.lock.store_lease`): a second
    submit on the same store is refused while this one lives. Before work, the store is
    checked cheaply (status, chunk presence and sizes, metadata against the layout
    table); ``verify=True`` (``submit --verify``) decodes every chunk instead. After every
    stage the store's consolidated metadata is rewritten.

    When the transfer stage ran, the report is written to ``report_dir`` (default
    :func:`default_report_dir`) — unless no stage computed anything and the default
    report already exists (a no-op resubmit rewrites nothing); an explicit
    ``report_dir`` is always written, ``report_dir=False`` skips it. ``hooks`` are
    handed to every worker (fault-injection tests).
    """
    from lrgan_dist.store.lock import store_lease

    t0 = time.perf_counter()
    with store_lease(spec.store.uri, log=lambda m: print(m, file=sys.stderr)):
        report = _submit_locked(spec, stages, address, fresh, show_progress, retry_failed, report_dir, hooks, verify)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report


def _submit_locked(spec: JobSpec, stages: Sequence[str], address: str | None, fresh: bool, show_progress: bool,
                   retry_failed: bool, report_dir: str | None | Literal[False], hooks: StageHooks | None,
                   verify: bool) -> dict[str, Any]:
    from lrgan_dist.analysis.summary import summarize
    from lrgan_dist.pipeline.runtime import check_address, ray_session

    if address not in (None, "", "local"):
        check_address(str(address))  # before the store is created: an unreachable head leaves nothing behind
    if "jacobians" not in stages:
        if fresh:
            raise SpecError("--fresh", "cannot start a fresh store without the jacobians stage; "
                            "expected --stages to include jacobians")
        store = Store.open(spec.store.uri, mode="a")
        if store.fingerprint != spec.data_fingerprint():
            raise StoreError(f"{spec.store.uri}: store was created by another job spec (fingerprint mismatch); "
                             "expected the spec that created it")
        from lrgan_dist.store.verify import refuse_if_damaged

        refuse_if_damaged(store, ",".join(stages), full=verify)
    else:
        store = prepare_store(spec, fresh=fresh)
        from lrgan_dist.pipeline.stages.jacobians import ensure_matfree_arrays

        ensure_matfree_arrays(store, spec)  # matrix-free rows bind k here, before the resume check reads them
    report: dict[str, Any] = {"store": spec.store.uri, "stages": {}}
    if "jacobians" in stages:
        from lrgan_dist.store.verify import repair_for_resume

        # Missing or unreadable chunks of an existing store become pending work again.
        repaired = repair_for_resume(store, full=verify)
        if repaired:
            report["repaired"] = repaired
            for line in repaired:
                print(f"store damaged, recomputing: {line}", file=sys.stderr)
    with ray_session(address) as ray:
        from lrgan_dist.pipeline.cluster_paths import check_paths_visible

        check_paths_visible(ray, spec)  # a local path some node cannot see: refused before any actor starts
        ctx = StageContext(spec, store, ray, show_progress, retry_failed, hooks or StageHooks())
        for name in STAGES:
            if name in stages and name in MATFREE_UNSUPPORTED and spec.compute.jacobian == "matfree":
                # these stages read the per-sample Grams, which a matrix-free store does not hold
                note = (f"stage {name} skipped: compute.jacobian: matfree stores hold eigenpairs, not the Grams "
                        f"this stage reads (run it on a dense store; see docs/store.md)")
                _log.warning(note)
                report["stages"][name] = {"skipped": note}
                continue
            if name in stages:
                _log.info("stage %s: started (store %s)", name, spec.store.uri)
                report["stages"][name] = stage_module(name).run(ctx)
                _log.info("stage %s: finished %s", name, {k: v for k, v in report["stages"][name].items()
                                                          if isinstance(v, (int, float, str))})
                store.consolidate()
    report["summary"] = summarize(spec, store)
    if "transfer" in stages and "skipped" not in report["stages"].get("transfer", {}) and report_dir is not False:
        out = report_dir or default_report_dir(spec.store.uri)
        changed = any(_computed(n, r) for n, r in report["stages"].items())
        if report_dir or changed or not (Path(out) / "report.md").exists():
            from lrgan_dist.analysis.report import write_report

            rep = write_report(spec.store.uri, out)
            report["report"] = {"dir": str(out), "headline": rep.get("headline")}
        else:
            report["report"] = {"dir": str(out), "unchanged": True}
    return report
