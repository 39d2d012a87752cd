"""Ray Job submission: run the driver on the cluster (``--address http://HEAD:8265``).

The job spec's directory is shipped as the job's ``working_dir`` (so mask files next
to the spec travel with it) and the entrypoint is ``lrgan-dist submit <spec> --address
auto …`` on the head node, with every flag of the local command forwarded. This
installation's ``lrgan_dist`` package travels with the job as a runtime_env
``py_modules`` entry, so the cluster runs the same code as the submitting machine (its
dependencies -- torch, ray, zarr -- come from the cluster's image; see docs/cluster.md).
``logs --follow`` tails the job's log stream (``tail_job_logs``) instead of re-reading it;
``stop`` and ``list`` wrap the client's ``stop_job``/``list_jobs``.

Addresses: ``--address`` or, like Ray's CLI, ``RAY_API_SERVER_ADDRESS`` / an ``http://``
``RAY_ADDRESS``. Token authentication: when a token is found (``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) and ``RAY_AUTH_MODE`` is unset, the mode is
set to ``token`` for this process (:func:`lrgan_dist.pipeline.runtime.prepare_auth`: a Ray
2.60 client sends no token without it), and a refused connection is one line naming
``RAY_AUTH_TOKEN`` (docs/cluster.md); the token itself is never read here, and a token that
would travel over plain ``http://`` to another host draws a warning.

Upload hygiene: the working directory is shipped without :data:`UPLOAD_EXCLUDES`
(dotfiles and dot-folders such as ``.ssh/``, ``.aws/`` and ``.git/``; stores and their
leases; checkpoints and weight files; caches), so a spec kept in a home folder does not
upload credentials or gigabytes of weights. Checkpoints belong where every node can read
them (``s3://`` or a shared filesystem); a spec that names an excluded local file gets a
warning naming it.
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["submit_job", "job_status", "job_logs", "follow_logs", "default_address", "stop_job", "list_jobs",
           "entrypoint_args", "UPLOAD_EXCLUDES", "upload_warnings"]

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}

#: gitignore-style patterns never uploaded with a job's working directory
UPLOAD_EXCLUDES = [
    ".?*", "**/.?*",  # .ssh/, .aws/credentials, .git/, .env, ... (".*" would match "." itself: the whole folder)
    "*.zarr", "**/*.zarr", "*.lease", "**/*.lease",   # stores and their leases
    "*-report", "**/__pycache__", "runs",             # outputs
    "*.pkl", "*.pt", "*.pth", "*.ckpt", "*.safetensors", "*.tar", "*.bin", "*.h5",  # weights
]


def _excluded(rel: str) -> bool:
    import fnmatch

    parts = Path(rel).parts
    for pat in UPLOAD_EXCLUDES:
        bare = pat.removeprefix("**/")
        if any(fnmatch.fnmatch(part, bare) for part in parts):
            return True
    return False


def upload_warnings(spec_path: Path, address: str) -> list[str]:
    """Warnings for a remote submit: excluded files the spec names, a token over plain http."""
    from urllib.parse import urlparse

    out: list[str] = []
    try:
        import yaml

        raw = yaml.safe_load(spec_path.read_text()) or {}
    except Exception:  # noqa: BLE001 - the head validates the spec; this is advice only
        raw = {}
    params = ((raw.get("generator") or {}).get("params") or {}) if isinstance(raw, dict) else {}
    named = [params.get("checkpoint")] + [r.get("mask") for r in (raw.get("regions") or {}).values()
                                          if isinstance(r, dict)] if isinstance(raw, dict) else []
    for name in named:
        if isinstance(name, str) and "://" not in name and not Path(name).is_absolute() and _excluded(name):
            out.append(f"{name!r} next to the spec is not uploaded (excluded: dotfiles, stores, weight files); "
                       "put it where every node can read it (s3:// or a shared filesystem)")
    url = urlparse(address)
    from lrgan_dist.pipeline.runtime import auth_token_source

    token = auth_token_source() is not None
    if url.scheme == "http" and token and url.hostname not in ("127.0.0.1", "localhost", "::1"):
        out.append(f"the Ray auth token is sent to {url.hostname} over plain http; use https or an SSH tunnel "
                   "(ray dashboard cluster.yaml) — docs/cluster.md")
    return out


def default_address(address: str | None) -> str:
    import os

    env = os.environ.get("RAY_ADDRESS", "")
    return (address or os.environ.get("RAY_API_SERVER_ADDRESS")
            or (env if env.startswith(("http://", "https://")) else None) or "http://127.0.0.1:8265")


def _client(address: str) -> Any:
    """A Jobs API client; token authentication handled like every other address form
    (:func:`lrgan_dist.pipeline.runtime.prepare_auth`), a refusal one line naming RAY_AUTH_TOKEN."""
    from lrgan_dist.pipeline.runtime import auth_error, prepare_auth

    prepare_auth()  # before ray is imported: Ray reads RAY_AUTH_MODE once, when it loads
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001 - Ray raises RuntimeError/ConnectionError/ValueError variants
        text = str(exc).lower()
        if "authentication" in text or "auth token" in text or "unauthorized" in text or "401" in text:
            raise auth_error(address, exc) from None
        raise


def entrypoint_args(spec_name: str, extra_args: Sequence[str]) -> list[str]:
    """The job's command line: ``python -m lrgan_dist submit SPEC --address auto`` + the forwarded flags."""
    extra = list(extra_args)
    return ["python", "-m", "lrgan_dist", "submit", spec_name, "--address", "auto",
            *(["--no-progress"] if "--no-progress" not in extra else []), *extra]


def submit_job(spec_path: Path, address: str, extra_args: Sequence[str], ship_code: bool = True) -> str:
    """Submit ``lrgan-dist submit`` as a Ray Job; return its id.

    ``ship_code``: this installation's ``lrgan_dist`` package goes with the job
    (runtime_env ``py_modules``), so the head runs the submitting machine's version."""
    import lrgan_dist

    spec_path = Path(spec_path).resolve()
    entry = entrypoint_args(spec_path.name, extra_args)
    for line in upload_warnings(spec_path, address):
        print(f"warning: {line}", file=sys.stderr)
    runtime_env: dict[str, Any] = {"working_dir": str(spec_path.parent), "excludes": list(UPLOAD_EXCLUDES),
                                   "env_vars": {"PYTHONUNBUFFERED": "1"}}
    if ship_code:
        runtime_env["py_modules"] = [str(Path(lrgan_dist.__file__).resolve().parent)]
    client = _client(address)
    return client.submit_job(
        entrypoint=" ".join(shlex.quote(a) for a in entry),
        runtime_env=runtime_env,
        metadata={"lrgan_dist": "submit", "spec": spec_path.name, "lrgan_dist_version": lrgan_dist.__version__},
    )


def stop_job(job_id: str, address: str) -> dict[str, Any]:
    """Ask the cluster to stop a job; returns ``{job_id, stopped}`` (False when it had already ended)."""
    return {"job_id": job_id, "stopped": bool(_client(address).stop_job(job_id))}


def list_jobs(address: str, all_jobs: bool = False) -> list[dict[str, Any]]:
    """Jobs on the cluster (only lrgan-dist's unless ``all_jobs``), oldest first."""
    out = []
    for info in _client(address).list_jobs():
        meta = dict(getattr(info, "metadata", None) or {})
        if not all_jobs and meta.get("lrgan_dist") != "submit":
            continue
        status = getattr(info, "status", "")
        out.append({"job_id": getattr(info, "submission_id", None) or getattr(info, "job_id", None),
                    "status": str(getattr(status, "value", status)), "spec": meta.get("spec"),
                    "version": meta.get("lrgan_dist_version"), "start_time": getattr(info, "start_time", None),
                    "end_time": getattr(info, "end_time", None), "message": getattr(info, "message", None)})
    return sorted(out, key=lambda j: j["start_time"] or 0)


def job_status(job_id: str, address: str) -> dict[str, Any]:
    info = _client(address).get_job_info(job_id)
    return {"job_id": job_id, "status": str(info.status.value if hasattr(info.status, "value") else info.status),
            "message": info.message, "entrypoint": info.entrypoint}


def job_logs(job_id: str, address: str) -> str:
    return _client(address).get_job_logs(job_id)


def follow_logs(job_id: str, address: str, out: Any = sys.stdout, poll: float = 1.0, timeout: float | None = None) -> str:
    """Stream a job's logs until it ends (the client's ``tail_job_logs``: each line once, no
    re-download); return its final status. Falls back to polling when tailing is unavailable."""
    client = _client(address)
    if hasattr(client, "tail_job_logs"):
        import asyncio

        async def _tail() -> None:
            async for lines in client.tail_job_logs(job_id):
                out.write(lines)
                out.flush()

        try:
            asyncio.run(asyncio.wait_for(_tail(), timeout) if timeout is not None else _tail())
        except asyncio.TimeoutError:
            pass
        return str(getattr(client.get_job_status(job_id), "value", client.get_job_status(job_id)))
    shown = 0
    t0 = time.monotonic()
    while True:
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            out.write(logs[shown:])
            out.flush()
            shown = len(logs)
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL:
            logs = client.get_job_logs(job_id)
            if len(logs) > shown:
                out.write(logs[shown:])
            return status
        if timeout is not None and time.monotonic() - t0 > timeout:
            return status
        time.sleep(poll)
