"""Ray Job submission through the Jobs API to a local head started by the test."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zarr

from lrgan_dist.testing.cli import cli, write_spec
from lrgan_dist.testing.ray_local import ray_head

CLUSTER = [pytest.mark.slow, pytest.mark.cluster]


@CLUSTER[0]
@CLUSTER[1]
def test_submit_as_ray_job_detach_status_logs(tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    store = tmp_path / "remote.zarr"
    job = write_spec(job_dir / "job.yaml", samples={"count": 4}, methods={"jacobian_svd": {}},
                     compute={"actors": 1}, store={"uri": str(store), "chunk_samples": 4})
    with ray_head() as (_, url):
        # attached: streams the logs and waits
        proc = cli("submit", str(job), "--address", url, "--json", timeout=600)
        assert proc.returncode == 0, proc.stderr
        res = json.loads(proc.stdout)
        assert res["status"] == "SUCCEEDED"
        assert "samples: 4 done" in proc.stderr or '"done": 4' in proc.stderr
        g = zarr.open_group(str(store), mode="r")
        assert g["status"][:].tolist() == [1, 1, 1, 1]
        # detached: returns the id; status and logs find the job
        proc = cli("submit", str(job), "--address", url, "--detach", "--json", timeout=300)
        assert proc.returncode == 0, proc.stderr
        job_id = json.loads(proc.stdout)["job_id"]
        out = cli("logs", job_id, "--address", url, "--follow", timeout=300)
        assert out.returncode == 0
        st = json.loads(cli("status", job_id, "--address", url).stdout)
        assert st["status"] == "SUCCEEDED"
        logs = cli("logs", job_id, "--address", url).stdout
        assert "samples: 4 done" in logs or '"done": 4' in logs  # the resubmission found the store complete


# ----------------------------------------------------------------------------- versions and token auth (issue 15)


def test_version_mismatch_rules():
    from lrgan_dist.pipeline.runtime import version_mismatch

    here = {"lrgan_dist": "0.2.0", "torch": "2.13.1+cpu", "ray": "2.60.0"}
    assert version_mismatch(here, dict(here), shipped=False) is None
    assert version_mismatch(here, {**here, "torch": "2.13.0", "ray": "2.60.1"}, shipped=False) is None  # patch level
    assert version_mismatch(here, {**here, "lrgan_dist": "0.1.0"}, shipped=False) == \
        "lrgan_dist 0.1.0 on the cluster, 0.2.0 on this driver"
    assert version_mismatch(here, {**here, "lrgan_dist": "0.1.0"}, shipped=True) is None  # py_modules: our code runs
    assert version_mismatch(here, {**here, "lrgan_dist": None}, shipped=False) == \
        "lrgan_dist not installed on the cluster, 0.2.0 on this driver"
    assert version_mismatch(here, {**here, "torch": "2.12.0"}, shipped=True) == \
        "torch 2.12.0 on the cluster, 2.13.1+cpu on this driver"
    assert version_mismatch(here, {**here, "ray": "2.59.0"}, shipped=False) == "ray 2.59.0 on the cluster, 2.60.0 on this driver"


@pytest.mark.parametrize("setup, source", [
    ({"RAY_AUTH_TOKEN": "t0k"}, "RAY_AUTH_TOKEN"),
    ({"RAY_AUTH_TOKEN_PATH": "/run/secrets/ray"}, "/run/secrets/ray"),
    ({"_default_file": True}, "~/.ray/auth_token"),
    ({}, None),
])
def test_prepare_auth_sets_the_mode_when_a_token_is_found(monkeypatch, tmp_path, setup, source):
    from lrgan_dist.pipeline.runtime import prepare_auth

    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if setup.pop("_default_file", False):
        (tmp_path / ".ray").mkdir()
        (tmp_path / ".ray" / "auth_token").write_text("x")
    for k, v in setup.items():
        monkeypatch.setenv(k, v)
    got = prepare_auth()
    assert got == (source.replace("~", str(tmp_path)) if source else None)
    assert os.environ.get("RAY_AUTH_MODE") == ("token" if source else None)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # an explicit mode is the user's
    prepare_auth()
    assert os.environ["RAY_AUTH_MODE"] == "disabled"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONUNBUFFERED="1", **extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrgan_dist", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@CLUSTER[0]
@CLUSTER[1]
def test_token_auth_for_every_address_form_and_version_check(tmp_path):
    """A local head with token auth (lrgan_dist.testing.ray_local.ray_head): with the token in
    RAY_AUTH_TOKEN but RAY_AUTH_MODE unset (what failed on Ray 2.60), HOST:PORT and http:// work;
    without any token both give one line naming RAY_AUTH_TOKEN, exit 2.  A driver whose
    lrgan_dist differs from the cluster's is refused with both versions, exit 2."""
    home = tmp_path / "home"  # no ~/.ray/auth_token
    home.mkdir()
    job = write_spec(tmp_path / "job.yaml", samples={"count": 2}, methods={"jacobian_svd": {}},
                     compute={"actors": 1}, store={"uri": str(tmp_path / "s.zarr"), "chunk_samples": 2},
                     transfer={"sources": 2, "similarity_samples": 2, "realized_pairs": 0})
    root = Path(__file__).resolve().parents[2]
    with ray_head() as (gcs, url):
        token = os.environ["RAY_AUTH_TOKEN"]
        ok = _env(HOME=str(home), RAY_AUTH_TOKEN=token)
        proc = _run(["submit", str(job), "--address", gcs, "--stages", "jacobians", "--no-progress", "--json"], ok, root)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout)["summary"]["samples"]["done"] == 2
        proc = _run(["list", "--address", url, "--json"], ok, root, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        none = _env(HOME=str(home))
        for args in (["submit", str(job), "--address", gcs, "--stages", "jacobians", "--no-progress"],
                     ["list", "--address", url]):
            t0 = time.monotonic()
            proc = _run(args, none, root, timeout=300)
            print(args[0], f"{time.monotonic() - t0:.1f} s:", proc.stderr.strip())
            assert proc.returncode == 2, proc.stderr[-3000:]
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
            assert len(lines) == 1 and "RAY_AUTH_TOKEN" in lines[0] and "no Ray auth token was found" in lines[0]
        # the cluster runs this lrgan_dist; a driver that claims another one is refused
        fake = ("import sys, lrgan_dist.pipeline.runtime as rt; v = rt.driver_versions(); "
                "rt.driver_versions = lambda: {**v, 'lrgan_dist': '9.9.9'}; from lrgan_dist.cli import app; "
                "app(sys.argv[1:], prog_name='lrgan-dist')")
        proc = subprocess.run([sys.executable, "-c", fake, "submit", str(job), "--address", gcs, "--stages",
                               "jacobians", "--no-progress"], env=ok, cwd=root, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
        import lrgan_dist

        err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert proc.returncode == 2 and len(err) == 1, proc.stderr[-3000:]
        assert f"lrgan_dist {lrgan_dist.__version__} on the cluster, 9.9.9 on this driver" in err[0]
        assert "--address http://HEAD:8265" in err[0]
