"""Ray processes for tests, bound to 127.0.0.1 and stopped by the test that started them."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env.pop("RAY_ADDRESS", None)
    return env


@contextlib.contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[tuple[str, str]]:
    """Start ``ray start --head --block`` in its own session; yield (gcs, dashboard URL)."""
    port, dport = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="rl", dir="/tmp")
    ray_bin = Path(sys.executable).with_name("ray")
    cmd = [str(ray_bin) if ray_bin.exists() else "ray", "start", "--head", "--block", f"--port={port}",
           "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", f"--dashboard-port={dport}",
           f"--num-cpus={num_cpus}", "--num-gpus=0", f"--temp-dir={tmp}", "--include-dashboard=true",
           "--disable-usage-stats"]
    log = open(Path(tmp) / "head.log", "w")
    # Token authentication on, with a token of our own that the clients (this process and
    # the CLI subprocesses, which inherit os.environ) present.
    import secrets

    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    proc = subprocess.Popen(cmd, env=ray_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dport}"
    try:
        import requests

        # Ready when the Jobs API answers with our token. Plain HTTP, not Ray's client: Ray
        # caches the first token a process loads, which may be an earlier test's.
        headers = {"Authorization": f"Bearer {os.environ['RAY_AUTH_TOKEN']}"}
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray head exited: {(Path(tmp) / 'head.log').read_text()[-2000:]}")
            try:
                requests.get(f"{url}/api/jobs/", headers=headers, timeout=5).raise_for_status()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        yield f"127.0.0.1:{port}", url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        _kill_session_leftovers(tmp)
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _kill_session_leftovers(tmp: str) -> None:
    """Kill Ray processes whose command line names our temp dir (and only those)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if tmp in args and int(pid) != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
