"""``lrgan-dist`` command line (README and docs/spec.md): parse → call the library → print.

Exit codes: 0 success, 1 runtime failure, 2 bad input (the message names the field or
file, what was received and what was expected). Progress bars go to stderr,
machine-readable summaries to stdout. ``--debug`` shows tracebacks.
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="LowRankGAN local-edit directions as a distributed batch analysis (Ray + zarr).")

_STATE: dict[str, Any] = {"debug": False, "verbosity": 0}


def _bad_input_types() -> tuple[type, ...]:
    from lrgan_dist.generators.base import GeneratorError
    from lrgan_dist.spec import SpecError
    from lrgan_dist.store.zarrstore import StoreError

    types: list[type] = [SpecError, StoreError, GeneratorError]
    try:
        from lrgan_dist.regions import RegionError

        types.append(RegionError)
    except ImportError:  # pragma: no cover
        pass
    from lrgan_dist.landmarks import LandmarkError  # mediapipe missing, bad landmark set: exit 2

    types.append(LandmarkError)
    return tuple(types)


def _run(fn: Callable[[], Any]) -> Any:
    """Map exceptions to exit codes; one line unless --debug."""
    try:
        return fn()
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted: finished chunks are saved; run the same command again to resume", err=True)
        raise typer.Exit(1)
    except Exception as exc:  # noqa: BLE001
        if _STATE["debug"]:
            import traceback

            traceback.print_exc()
        bad = isinstance(exc, _bad_input_types())
        typer.echo(f"error: {exc}", err=True)
        if not bad and not _STATE["debug"]:
            typer.echo("(run with --debug for the traceback)", err=True)
        raise typer.Exit(2 if bad else 1)


def _version(value: bool) -> None:
    if value:
        from lrgan_dist import __version__

        typer.echo(f"lrgan-dist {__version__}")
        raise typer.Exit(0)


def setup_logging(verbosity: int) -> None:
    """``-q`` → warnings only, default → info, ``-v`` → debug; timestamped lines on stderr
    (a remote job's log shows when each line was written)."""
    import logging

    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z")
    logging.getLogger("lrgan_dist").setLevel(level)


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors on stderr."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log detail (debug) on stderr."),
) -> None:
    _STATE["debug"] = debug
    _STATE["verbosity"] = -1 if quiet else verbose
    setup_logging(-1 if quiet else verbose)


@app.command()
def validate(job: Path = typer.Argument(..., help="Job spec YAML.")) -> None:
    """Validate a job spec and print the resolved spec and its fingerprint."""
    from lrgan_dist.spec import load_spec

    spec = _run(lambda: load_spec(job))
    typer.echo(json.dumps({"valid": True, "fingerprint": spec.data_fingerprint(), "spec": spec.to_dict()}, indent=2))


@app.command()
def submit(
    job: Path = typer.Argument(..., help="Job spec YAML."),
    store: Optional[str] = typer.Option(None, "--store", help="Store URI (directory or s3://…); overrides store.uri."),
    address: Optional[str] = typer.Option(
        None, "--address",
        help="Ray address: local (default: an embedded Ray on this machine), auto, HOST:PORT, ray://HOST:10001 "
             "(Ray Client), or http://HEAD:8265 (submit the driver as a Ray Job through the Jobs API)."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Override samples.count."),
    actors: Optional[int] = typer.Option(None, "--actors", help="Override compute.actors."),
    stages: Optional[str] = typer.Option(None, "--stages", help="Comma-separated stages (default: all)."),
    fresh: bool = typer.Option(False, "--fresh", help="Delete an existing store and start over."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Recompute samples marked failed."),
    detach: bool = typer.Option(False, "--detach", help="With an http:// address: return the Ray job id at once."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide progress bars."),
    report_dir: Optional[str] = typer.Option(None, "--report", help="Report directory (default: <store>-report)."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write the report after the transfer stage."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Print units, actors, resources and the bytes the store will hold; write nothing."),
    verify: bool = typer.Option(False, "--verify",
                                help="Decode every chunk of an existing store before work (default: a cheap scan "
                                     "of status, chunk presence and sizes, and metadata)."),
) -> None:
    """Run a job: jacobians → factorize → transfer, write the report, print a summary."""
    from lrgan_dist.analysis.summary import format_summary
    from lrgan_dist.pipeline.scheduler import parse_stages
    from lrgan_dist.pipeline.scheduler import submit as run_submit
    from lrgan_dist.spec import SpecError, load_spec

    shown: dict[str, str] = {}

    def go() -> dict[str, Any]:
        import os

        from lrgan_dist.pipeline.cluster_paths import absolute_store_uri

        addr = address or os.environ.get("RAY_ADDRESS") or None  # like Ray's own CLI
        spec = load_spec(job).with_overrides(store=store, samples=samples, actors=actors)
        st = parse_stages(stages)
        shown["store"] = spec.store.uri  # the summary shows the store as the user wrote it
        if not (addr and addr.startswith(("http://", "https://"))):
            # made absolute on the driver before anything is shipped: a relative store is where the user is
            spec = spec.with_overrides(store=absolute_store_uri(spec.store.uri))
        if dry_run:
            from lrgan_dist.pipeline.plan import dry_run as plan_dry_run

            return {"dry_run": plan_dry_run(spec, address, st)}
        if addr and addr.startswith(("http://", "https://")):
            return {"remote": _submit_remote(job, addr)}
        if detach:
            raise SpecError("--detach", "requires --address http://HEAD:8265 (Ray Job submission)")
        # Ray prints worker and raylet log lines to the driver's stdout; keep stdout for the
        # summary (pure JSON with --json) and send them to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            return run_submit(spec, stages=st, address=addr, fresh=fresh, show_progress=not no_progress,
                              retry_failed=retry_failed, report_dir=False if no_report else report_dir,
                              verify=verify)

    def _submit_remote(job: Path, address: str) -> dict[str, Any]:
        from lrgan_dist.pipeline.remote import follow_logs, submit_job

        extra: list[str] = []
        for flag, val in (("--store", store), ("--samples", samples), ("--actors", actors), ("--stages", stages)):
            if val is not None:
                extra += [flag, str(val)]
        if report_dir is not None:
            extra += ["--report", report_dir]
        extra += ["--fresh"] * fresh + ["--retry-failed"] * retry_failed + ["--json"] * as_json
        extra += ["--no-report"] * no_report + ["--verify"] * verify + ["--no-progress"] * no_progress
        job_id = submit_job(job, address, extra)
        if detach:
            return {"job_id": job_id, "status": "SUBMITTED"}
        typer.echo(f"submitted Ray job {job_id}; streaming its logs", err=True)
        status = follow_logs(job_id, address, out=sys.stderr)
        return {"job_id": job_id, "status": status}

    report = _run(go)
    if "dry_run" in report:
        typer.echo(json.dumps(report["dry_run"], indent=2) if as_json else _format_dry_run(report["dry_run"]))
        return
    if "remote" in report:
        r = report["remote"]
        typer.echo(json.dumps(r) if as_json else f"job {r['job_id']}: {r['status']}")
        if r["status"] not in ("SUCCEEDED", "SUBMITTED"):
            raise typer.Exit(1)
        return
    typer.echo(json.dumps(report, indent=2, default=str) if as_json
               else format_summary({**report, "store": shown.get("store", report.get("store"))}))
    if report["summary"]["samples"]["pending"]:
        raise typer.Exit(1)


@app.command()
def inspect(
    store: str = typer.Argument(..., help="Store URI."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    verify: bool = typer.Option(False, "--verify", help="Check shapes, status against data, NaNs, fingerprint."),
) -> None:
    """Describe a store: arrays, sample status, regions, methods, resolved spec."""
    from lrgan_dist.store.zarrstore import Store

    def go() -> dict[str, Any]:
        st = Store.open(store)
        try:
            info = st.describe()
        except Exception as exc:  # noqa: BLE001 - a damaged chunk (status, result status) fails to decode
            if not verify:
                raise RuntimeError(f"{store}: cannot read the store ({type(exc).__name__}: {exc}); run "
                                   "'lrgan-dist inspect --verify' to list damaged arrays") from exc
            info = {"uri": store, "describe_error": f"{type(exc).__name__}: {exc}"}
        if verify:
            from lrgan_dist.store.verify import verify_store

            info["problems"] = verify_store(st)
        return info

    info = _run(go)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
    else:
        typer.echo(_format_inspect(info))
    if verify and info["problems"]:
        raise typer.Exit(1)


@app.command()
def report(
    store: str = typer.Argument(..., help="Store URI."),
    out: Path = typer.Option(..., "--out", help="Output directory for report.md, report.html, transfer.parquet, CSVs."),
    as_json: bool = typer.Option(False, "--json", help="Print paths and headline numbers as JSON."),
) -> None:
    """Write the cross-image transfer report of a store."""
    from lrgan_dist.analysis.report import write_report
    from lrgan_dist.store.zarrstore import Store

    def go() -> dict[str, Any]:
        Store.open(store)  # clear error for a missing or foreign store
        return write_report(store, out)

    res = _run(go)
    if as_json:
        typer.echo(json.dumps(res, indent=2, default=str))
    else:
        typer.echo(f"report: {out / 'report.html'}")
        for name, path in sorted(res.get("paths", {}).items()):
            typer.echo(f"  {name:<22} {path}")


@app.command()
def explore(
    store: str = typer.Argument(..., help="Store URI."),
    out: Path = typer.Option(..., "--out", help="Output directory for index.html and frames/ (PNG)."),
    as_json: bool = typer.Option(False, "--json", help="Print the page path, frame count and size as JSON."),
) -> None:
    """Write a static explorer of directions (open DIR/index.html; no server, no network)."""
    from lrgan_dist.analysis.explorer import write_explorer
    from lrgan_dist.store.zarrstore import Store

    def go() -> dict[str, Any]:
        Store.open(store)  # clear error for a missing or foreign store
        return write_explorer(store, out)

    res = _run(go)
    if as_json:
        typer.echo(json.dumps(res, indent=2, default=str))
    else:
        typer.echo(f"explorer: {res['index']} ({res['frames']} frames, {res['bytes'] / 1e6:.1f} MB)")


def _floats(text: str, flag: str) -> list[float]:
    from lrgan_dist.spec import SpecError

    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SpecError(flag, f"received {text!r}; expected comma-separated numbers such as -3,0,3") from None
    if not vals:
        raise SpecError(flag, f"received {text!r}; expected at least one number")
    return vals


@app.command()
def edit(
    store: str = typer.Argument(..., help="Store URI."),
    region: str = typer.Option(..., "--region", help="Region name."),
    method: str = typer.Option(..., "--method", help="Method label."),
    sample: str = typer.Option(..., "--sample", help="Sample index or list, e.g. 0 or 0,3,5 or 0-3."),
    direction: int = typer.Option(0, "--direction", help="Direction index k (0 = best)."),
    strengths: str = typer.Option("-3,3,7", "--strengths", help="START,STOP,COUNT: COUNT strengths evenly spaced."),
    source: Optional[int] = typer.Option(None, "--source", help="Take the direction from this sample (transfer)."),
    out: Path = typer.Option(..., "--out", help="Output PNG."),
    trust_code: bool = typer.Option(False, "--trust-code",
                                    help="Rebuild a generator that runs user code (kind: module) from the store's spec."),
) -> None:
    """Render an edit grid: rows = samples, columns = strengths, region outlined.

    The generator is rebuilt from the spec saved in the store; a store never runs code
    on its own, so a user-code generator (kind: module) needs --trust-code.
    """
    import numpy as np

    from lrgan_dist.apply.edit import edit_grid
    from lrgan_dist.apply.render import parse_seeds
    from lrgan_dist.spec import SpecError

    def go() -> Path:
        vals = _floats(strengths, "--strengths")
        if len(vals) != 3 or not vals[2].is_integer() or vals[2] < 1:
            raise SpecError("--strengths", f"received {strengths!r}; expected START,STOP,COUNT such as -3,3,7")
        alphas = [float(v) for v in np.linspace(vals[0], vals[1], int(vals[2]))]
        return edit_grid(store, region, method, list(parse_seeds(sample)), direction, alphas, out, source=source,
                         trust_code=trust_code)

    path = _run(go)
    typer.echo(str(path))


@app.command()
def render(
    job: Path = typer.Argument(..., help="Job spec YAML."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Sample indices, e.g. 0-7."),
    latents: Optional[Path] = typer.Option(None, "--latents", help="Latents .npy [n, d]."),
    space: Optional[str] = typer.Option(None, "--space", help="Space of --latents: z | w | wplus."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output .npz (images f32 NCHW in the generator's range)."),
    png: Optional[Path] = typer.Option(None, "--png", help="Also (or only) write one 8-bit PNG per image into this directory."),
) -> None:
    """Render images of a job's generator to an .npz file and/or PNGs.

    Without --seeds/--latents: the job's samples (its own samples.latents or samples.seeds when given).
    """
    import numpy as np

    from lrgan_dist.apply.render import parse_seeds
    from lrgan_dist.apply.render import render as do_render
    from lrgan_dist.spec import SpecError, load_spec

    def go() -> dict[str, Any]:
        spec = load_spec(job)
        if seeds is not None and latents is not None:
            raise SpecError("--seeds", "received both --seeds and --latents; expected one of them")
        lat = None
        if latents is not None:
            if not latents.exists():
                raise SpecError("--latents", f"file {str(latents)!r} does not exist; expected a .npy array [n, d]")
            try:
                lat = np.load(latents, allow_pickle=False)
            except ValueError as exc:
                raise SpecError("--latents", f"{latents}: {exc}; expected a numeric .npy array [n, d]") from None
        if out is None and png is None:
            raise SpecError("--out", "received neither --out nor --png; expected an output .npz file, a PNG "
                            "directory, or both")
        return do_render(spec, seeds=parse_seeds(seeds) if seeds is not None else None, latents=lat, space=space,
                         out=out, png_dir=png)

    res = _run(go)
    typer.echo(json.dumps(res, default=str))


@app.command()
def status(
    job_id: str = typer.Argument(..., help="Ray job id printed by submit --detach."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray dashboard address (default $RAY_API_SERVER_ADDRESS or http://127.0.0.1:8265)."),
) -> None:
    """Status of a job submitted with --address http://…."""
    from lrgan_dist.pipeline.remote import default_address, job_status

    info = _run(lambda: job_status(job_id, default_address(address)))
    typer.echo(json.dumps(info))


@app.command()
def logs(
    job_id: str = typer.Argument(..., help="Ray job id."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray dashboard address."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the job ends."),
) -> None:
    """Logs of a job submitted with --address http://…."""
    from lrgan_dist.pipeline.remote import default_address, follow_logs, job_logs

    addr = default_address(address)
    if follow:
        _run(lambda: follow_logs(job_id, addr))
    else:
        typer.echo(_run(lambda: job_logs(job_id, addr)), nl=False)


@app.command()
def export(
    store: str = typer.Argument(..., help="Store URI."),
    region: str = typer.Option(..., "--region", help="Region name."),
    method: str = typer.Option(..., "--method", help="Method label (label@hash8 for an older parameter set)."),
    fmt: str = typer.Option("reference", "--format", help="reference: one [k, d] .npy per sample (LowRankGAN/ReSeFa)."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    sample: Optional[str] = typer.Option(None, "--sample", help="Sample indices (default: all done), e.g. 0-7."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest (without the spec) as JSON."),
) -> None:
    """Export directions for other tools: OUT/<region>/<label>/sample_<i>.npy [k, d], latents.npy, manifest.json."""
    from lrgan_dist.apply.export import export_reference
    from lrgan_dist.apply.render import parse_seeds

    res = _run(lambda: export_reference(store, region, method, out,
                                        samples=list(parse_seeds(sample)) if sample else None, fmt=fmt))
    if as_json:
        typer.echo(json.dumps(res, indent=2, default=str))
    else:
        typer.echo(f"exported {res['exported']} samples of {region}/{method} to {res['out']} (manifest.json)")


@app.command()
def stop(
    job_id: str = typer.Argument(..., help="Ray job id."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray dashboard address (http://HEAD:8265)."),
) -> None:
    """Stop a job submitted with --address http://…."""
    from lrgan_dist.pipeline.remote import default_address, stop_job

    typer.echo(json.dumps(_run(lambda: stop_job(job_id, default_address(address)))))


@app.command("list")
def list_(
    address: Optional[str] = typer.Option(None, "--address", help="Ray dashboard address (http://HEAD:8265)."),
    all_jobs: bool = typer.Option(False, "--all", help="Every Ray job, not only lrgan-dist's."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the jobs of a cluster (submitted with --address http://…)."""
    from lrgan_dist.pipeline.remote import default_address, list_jobs

    jobs = _run(lambda: list_jobs(default_address(address), all_jobs=all_jobs))
    if as_json:
        typer.echo(json.dumps(jobs, indent=2, default=str))
        return
    for j in jobs:
        typer.echo(f"{j['job_id']:<28} {j['status']:<10} {j.get('spec') or '-':<24} {j.get('version') or '-'}")


def _format_dry_run(r: dict[str, Any]) -> str:
    res = r["resources_per_actor"]
    lines = [
        f"dry run (nothing written): store {r['store']}, address {r['address']}",
        f"samples:   {r['samples']} (d = {r['latent_dim']}, image {r['image_shape']}, grid {r['grid']})",
        f"units:     jacobians {r['units']['jacobians']} (chunks of {r['chunk_samples']}), "
        f"factorize {r['units']['factorize']}",
        f"actors:    {r['actors']} x (CPU {res['CPU']}, GPU {res['GPU']}, torch threads {res['torch_threads']}) "
        f"-- {r['resources_from']}",
        f"store:     {r['store_bytes_human']} uncompressed in {len(r['arrays'])} arrays "
        f"(not estimated: {', '.join(r['not_estimated']) or '-'})",
    ]
    return "\n".join(lines)


def _format_inspect(info: dict[str, Any]) -> str:
    if "samples" not in info:  # the store could not be described (damaged); --verify lists why
        lines = [f"store:       {info['uri']}", f"describe:    failed ({info.get('describe_error')})", "",
                 f"verify: {len(info['problems'])} problem(s)"]
        return "\n".join(lines + [f"  - {p}" for p in info["problems"]])
    s = info["samples"]
    lines = [
        f"store:       {info['uri']}",
        f"fingerprint: {info['fingerprint'][:16]}…  (lrgan-dist {info['lrgan_dist_version']}, created {info['created']})",
        f"generator:   {json.dumps(info['generator'], default=str)[:200]}",
        f"samples:     {s['done']} done · {s['failed']} failed · {s['pending']} pending of {s['total']}"
        + ("  (complete)" if info["complete"] else ""),
        f"regions:     {', '.join(info['regions'])}",
    ]
    for region, methods in info["methods"].items():
        for label, m in methods.items():
            lines.append(f"directions:  {region}/{label} ({m['method']}, params {m['param_hash'][:8]}): "
                         f"{m['done']} done, {m['failed']} failed")
    lines.append("")
    lines.append(f"{'array':<44} {'shape':<24} {'chunks':<24} {'dtype':<10} codecs")
    for a in info["arrays"]:
        lines.append(f"{a['path']:<44} {str(a['shape']):<24} {str(a['chunks']):<24} {a['dtype']:<10} {','.join(a['codecs'])}")
    if "problems" in info:
        lines.append("")
        lines.append("verify: " + ("OK" if not info["problems"] else f"{len(info['problems'])} problem(s)"))
        lines.extend(f"  - {p}" for p in info["problems"])
    return "\n".join(lines)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()  # main() returns None: sys.exit(main()) only ever exited with status 0
