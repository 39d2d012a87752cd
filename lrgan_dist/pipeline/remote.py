"""Ray Job submission: run the driver on the cluster (``--address http://HEAD:8265``).

The job spec's directory is shipped as the job's ``working_dir`` (so mask files next
to the spec travel with it) and the entrypoint is ``lrgan-dist submit <spec> --address
auto …`` on the head node; the cluster must have lrgan-dist installed (see
``cluster.yaml``'s setup commands). Token authentication: Ray's
``JobSubmissionClient`` reads the token the same way the Ray CLI does
(``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``); nothing here handles secrets.
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["submit_job", "job_status", "job_logs", "follow_logs", "default_address"]

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def default_address(address: str | None) -> str:
    import os

    env = os.environ.get("RAY_ADDRESS", "")
    return (address or os.environ.get("RAY_API_SERVER_ADDRESS")
            or (env if env.startswith(("http://", "https://")) else None) or "http://127.0.0.1:8265")


def _client(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def submit_job(spec_path: Path, address: str, extra_args: Sequence[str]) -> str:
    """Submit ``lrgan-dist submit`` as a Ray Job; return its id."""
    spec_path = Path(spec_path).resolve()
    entry = ["python", "-m", "lrgan_dist", "submit", spec_path.name, "--address", "auto", "--no-progress", *extra_args]
    client = _client(address)
    return client.submit_job(
        entrypoint=" ".join(shlex.quote(a) for a in entry),
        runtime_env={"working_dir": str(spec_path.parent),
                     "env_vars": {"PYTHONUNBUFFERED": "1"}},
        metadata={"lrgan_dist": "submit", "spec": spec_path.name},
    )


def job_status(job_id: str, address: str) -> dict[str, Any]:
    info = _client(address).get_job_info(job_id)
    return {"job_id": job_id, "status": str(info.status.value if hasattr(info.status, "value") else info.status),
            "message": info.message, "entrypoint": info.entrypoint}


def job_logs(job_id: str, address: str) -> str:
    return _client(address).get_job_logs(job_id)


def follow_logs(job_id: str, address: str, out: Any = sys.stdout, poll: float = 1.0, timeout: float | None = None) -> str:
    """Stream a job's logs until it ends; return its final status."""
    client = _client(address)
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
