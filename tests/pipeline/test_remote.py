"""Ray Job submission through the Jobs API to a local head started by the test."""
from __future__ import annotations

import json

import pytest
import zarr

from lrgan_dist.testing.cli import cli, write_spec
from lrgan_dist.testing.ray_local import ray_head

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


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
