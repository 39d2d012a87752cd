"""Issue 15: ``list``, ``logs --follow`` and ``stop`` against a real Jobs API server — a local Ray
head with its dashboard (lrgan_dist.testing.ray_local.ray_head: 127.0.0.1 inside the test's
private network namespace, token auth on), not a recording client."""
from __future__ import annotations

import json
import time

import pytest

from lrgan_dist.testing.cli import cli, write_spec
from lrgan_dist.testing.ray_local import ray_head

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def _status(job_id: str, url: str) -> str:
    return json.loads(cli("status", job_id, "--address", url, check=True).stdout)["status"]


def test_list_follow_and_stop_on_a_local_head(tmp_path):
    small = tmp_path / "small"
    big = tmp_path / "big"
    small.mkdir()
    big.mkdir()
    quick = write_spec(small / "job.yaml", samples={"count": 4}, methods={"jacobian_svd": {}}, compute={"actors": 1},
                       store={"uri": str(tmp_path / "small.zarr"), "chunk_samples": 4},
                       transfer={"sources": 2, "similarity_samples": 2, "realized_pairs": 0})
    # long enough to be running when it is stopped (minutes of work on 2 cores)
    slow = write_spec(big / "long.yaml", samples={"count": 2000}, compute={"actors": 1},
                      store={"uri": str(tmp_path / "big.zarr"), "chunk_samples": 4})
    with ray_head() as (_, url):
        sub = cli("submit", str(quick), "--address", url, "--detach", "--json", "--stages", "jacobians,factorize",
                  timeout=300)
        assert sub.returncode == 0, sub.stderr[-3000:]
        job_id = json.loads(sub.stdout)["job_id"]
        jobs = json.loads(cli("list", "--address", url, "--json", check=True).stdout)
        mine = [j for j in jobs if j["job_id"] == job_id]
        assert len(mine) == 1 and mine[0]["spec"] == "job.yaml" and mine[0]["version"]
        assert mine[0]["status"] in ("PENDING", "RUNNING", "SUCCEEDED")
        # --follow tails the log stream until the job ends, then returns
        t0 = time.monotonic()
        out = cli("logs", job_id, "--address", url, "--follow", timeout=600)
        print(f"logs --follow returned after {time.monotonic() - t0:.1f} s")
        assert out.returncode == 0, out.stderr[-3000:]
        # the job's own JSON summary (--json travels with the job), the last thing it prints
        assert '"done": 4' in out.stdout
        assert _status(job_id, url) == "SUCCEEDED"  # it returned because the job had ended
        assert out.stdout.count('"pending": 0') == 1  # each line once (tailed, not re-read)
        # stop: a second detached job, stopped while it runs
        sub = cli("submit", str(slow), "--address", url, "--detach", "--json", timeout=300)
        assert sub.returncode == 0, sub.stderr[-3000:]
        long_id = json.loads(sub.stdout)["job_id"]
        deadline = time.monotonic() + 300
        while _status(long_id, url) == "PENDING" and time.monotonic() < deadline:
            time.sleep(2)
        assert _status(long_id, url) == "RUNNING"
        stopped = json.loads(cli("stop", long_id, "--address", url, check=True).stdout)
        assert stopped == {"job_id": long_id, "stopped": True}
        deadline = time.monotonic() + 120
        while (st := _status(long_id, url)) not in ("STOPPED", "FAILED", "SUCCEEDED") and time.monotonic() < deadline:
            time.sleep(2)
        assert st == "STOPPED"
        jobs = {j["job_id"]: j["status"] for j in json.loads(cli("list", "--address", url, "--json", check=True).stdout)}
        assert jobs[job_id] == "SUCCEEDED" and jobs[long_id] == "STOPPED"
        # stopping a job that has ended reports it
        assert json.loads(cli("stop", job_id, "--address", url, check=True).stdout)["stopped"] is False
