"""Cluster paths (issue 15.1): relative stores resolved on the driver, local paths a node
cannot see refused up front, RAY_ADDRESS honoured."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrgan_dist.pipeline import cluster_paths
from lrgan_dist.pipeline.cluster_paths import absolute_store_uri, check_paths_visible, job_paths
from lrgan_dist.spec import SpecError, load_spec
from lrgan_dist.testing.cli import write_spec


def test_absolute_store_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_store_uri("rel.zarr") == str(tmp_path / "rel.zarr")
    assert absolute_store_uri("s3://bucket/x.zarr") == "s3://bucket/x.zarr"
    assert absolute_store_uri("file:///data/x.zarr") == "/data/x.zarr"


class _FakeRay:
    def __init__(self, n):
        self._n = n

    def nodes(self):
        return [{"NodeID": f"{i:02d}" * 10, "Alive": True} for i in range(self._n)]


def test_local_path_invisible_on_a_node_is_refused(tmp_path, monkeypatch):
    spec = load_spec(write_spec(tmp_path / "job.yaml"))
    paths = job_paths(spec)
    assert paths["store.uri"] == str(tmp_path / "store.zarr")
    calls = []

    def probe(ray, ps):
        calls.append(ps)
        return {"00" * 10: [], "01" * 10: [paths["store.uri"]]}

    monkeypatch.setattr(cluster_paths, "_probe_nodes", probe)
    check_paths_visible(_FakeRay(1), spec)  # one node: nothing to check
    assert not calls
    with pytest.raises(SpecError) as e:
        check_paths_visible(_FakeRay(2), spec)
    msg = str(e.value)
    assert "s3://" in msg and "shared" in msg and str(tmp_path / "store.zarr") in msg and "1 of the 2 nodes" in msg
    monkeypatch.setattr(cluster_paths, "_probe_nodes", lambda ray, ps: {"00" * 10: [], "01" * 10: []})
    check_paths_visible(_FakeRay(2), spec)  # a shared filesystem is fine


def test_ray_address_env_names_the_jobs_api(monkeypatch):
    from lrgan_dist.pipeline.remote import default_address

    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert default_address(None) == "http://head:8265"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert default_address(None) == "http://127.0.0.1:8265"
    assert default_address("http://x:1") == "http://x:1"


def test_relative_store_from_a_second_directory_on_a_running_head(tmp_path):
    from lrgan_dist.testing.ray_local import ray_head

    (tmp_path / "spec").mkdir()
    job = write_spec(tmp_path / "spec" / "job.yaml", samples={"count": 4},
                     transfer={"sources": 2, "similarity_samples": 2, "realized_pairs": 0})
    work = tmp_path / "second"
    work.mkdir()
    with ray_head(num_cpus=2) as (gcs, _url):
        env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONUNBUFFERED="1")
        env.pop("RAY_ADDRESS", None)
        proc = subprocess.run([sys.executable, "-m", "lrgan_dist", "submit", str(job), "--address", gcs,
                               "--store", "rel.zarr", "--stages", "jacobians,factorize", "--no-progress",
                               "--actors", "1"],
                              cwd=work, capture_output=True, text=True, timeout=600, env=env,
                              stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (work / "rel.zarr" / "zarr.json").is_file()
    assert "store: rel.zarr" in proc.stdout
    assert not (Path(job).parent / "rel.zarr").exists()


class _Recorder:
    """A JobSubmissionClient stand-in that records what it is asked."""

    def __init__(self, address):
        self.address = address
        self.calls = []

    def submit_job(self, **kw):
        self.calls.append(("submit_job", kw))
        return "raysubmit_test"

    def stop_job(self, job_id):
        self.calls.append(("stop_job", job_id))
        return True

    def list_jobs(self):
        from types import SimpleNamespace

        return [SimpleNamespace(submission_id="a", status="RUNNING", metadata={"lrgan_dist": "submit", "spec": "j.yaml"},
                                start_time=2, end_time=None, message=""),
                SimpleNamespace(submission_id="b", status="SUCCEEDED", metadata={}, start_time=1, end_time=3,
                                message="")]


def test_jobs_api_forwards_every_submit_flag(tmp_path, monkeypatch):
    """Every option of `submit` reaches the remote entrypoint (introspected: a new flag must be forwarded too)."""
    import shlex

    import typer.main
    from typer.testing import CliRunner

    from lrgan_dist import cli as cli_mod
    from lrgan_dist.pipeline import remote

    clients: list[_Recorder] = []

    def make(address):
        clients.append(_Recorder(address))
        return clients[-1]

    monkeypatch.setattr(remote, "_client", make)
    job = write_spec(tmp_path / "job.yaml")
    cmd = typer.main.get_command(cli_mod.app).commands["submit"]
    local_only = {"job", "address", "detach", "dry_run"}
    args: list[str] = []
    expect: list[list[str]] = []
    for p in cmd.params:
        if p.name in local_only or not p.opts:
            continue
        flag = p.opts[0]
        if p.is_flag:
            args.append(flag)
            expect.append([flag])
        else:
            val = {"--samples": "4", "--actors": "1", "--stages": "jacobians,factorize"}.get(flag, f"v-{p.name}")
            args += [flag, val]
            expect.append([flag, val])
    assert len(expect) >= 10, expect
    res = CliRunner().invoke(cli_mod.app, ["submit", str(job), "--address", "http://head:8265", "--detach", *args])
    assert res.exit_code == 0, res.output
    (name, kw), = clients[-1].calls
    entry = shlex.split(kw["entrypoint"])
    assert entry[:7] == ["python", "-m", "lrgan_dist", "submit", "job.yaml", "--address", "auto"]
    for e in expect:
        i = entry.index(e[0])
        assert entry[i:i + len(e)] == e, (e, entry)
    assert kw["runtime_env"]["working_dir"] == str(tmp_path)
    assert kw["runtime_env"]["py_modules"][0].endswith("lrgan_dist")
    # stop and list
    res = CliRunner().invoke(cli_mod.app, ["stop", "raysubmit_test", "--address", "http://head:8265"])
    assert res.exit_code == 0 and clients[-1].calls == [("stop_job", "raysubmit_test")]
    res = CliRunner().invoke(cli_mod.app, ["list", "--address", "http://head:8265", "--json"])
    assert res.exit_code == 0
    import json

    assert [j["job_id"] for j in json.loads(res.output)] == ["a"]


def test_follow_logs_tails_instead_of_polling():
    import io

    from lrgan_dist.pipeline import remote

    class Tail:
        gets = 0

        async def _gen(self):
            for chunk in ("line 1\n", "line 2\n"):
                yield chunk

        def tail_job_logs(self, job_id):
            return self._gen()

        def get_job_logs(self, job_id):
            Tail.gets += 1
            return ""

        def get_job_status(self, job_id):
            return "SUCCEEDED"

    orig = remote._client
    remote._client = lambda address: Tail()
    try:
        out = io.StringIO()
        assert remote.follow_logs("j", "http://x", out=out) == "SUCCEEDED"
    finally:
        remote._client = orig
    assert out.getvalue() == "line 1\nline 2\n" and Tail.gets == 0


def _tiny_dcgan(path: Path) -> None:
    import torch

    from lrgan_dist.generators import build_generator

    G = build_generator("dcgan", {"nz": 8, "ngf": 4, "resolution": 16, "random_init": {"seed": 0}})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"netG_state_dict": G.net.state_dict()}, path)


def _dcgan_job(spec_dir: Path, checkpoint: str) -> Path:
    gen = {"kind": "dcgan", "params": {"checkpoint": checkpoint, "nz": 8, "ngf": 4, "resolution": 16}}
    spec_dir.mkdir(parents=True, exist_ok=True)
    return write_spec(spec_dir / "job.yaml", generator=gen, samples={"count": 2}, grid={"resolution": 16},
                      regions={"eyes": {"box": [0.3, 0.2, 0.5, 0.8]}}, methods={"jacobian_svd": {}},
                      compute={"actors": 1}, store={"uri": "s.zarr", "chunk_samples": 2},
                      transfer={"sources": 2, "similarity_samples": 2, "realized_pairs": 0})


def test_relative_checkpoint_resolved_for_execution_only(tmp_path, monkeypatch):
    """A checkpoint relative to the directory the command runs in is absolute for the workers
    (generator_params, job_paths); the spec, its stored form and its fingerprint keep it as written."""
    _tiny_dcgan(tmp_path / "work" / "ckpt" / "g.pt")
    job = _dcgan_job(tmp_path / "spec", "ckpt/g.pt")
    monkeypatch.chdir(tmp_path / "work")
    spec = load_spec(job)
    monkeypatch.chdir(tmp_path)  # a worker's working directory is not the driver's
    assert spec.generator_params()["checkpoint"] == str(tmp_path / "work" / "ckpt" / "g.pt")
    assert job_paths(spec)["generator.params.checkpoint"] == str(tmp_path / "work" / "ckpt" / "g.pt")
    assert spec.to_dict()["generator"]["params"]["checkpoint"] == "ckpt/g.pt"
    from lrgan_dist.spec import parse_spec

    as_written = parse_spec(spec.to_dict(), base_dir=spec.base_dir)
    assert as_written.work_dir is None and spec.data_fingerprint() == as_written.data_fingerprint()
    # beside the spec wins (what make_generator did before), an absolute path is left alone
    _tiny_dcgan(tmp_path / "spec" / "ckpt" / "g.pt")
    assert spec.generator_params()["checkpoint"] == str(tmp_path / "spec" / "ckpt" / "g.pt")
    absolute = dataclasses.replace(spec, generator=dataclasses.replace(
        spec.generator, params={**spec.generator.params, "checkpoint": "/data/g.pt"}))
    assert absolute.generator_params()["checkpoint"] == "/data/g.pt"


def test_relative_checkpoint_from_another_directory_on_a_running_head(tmp_path):
    """The acceptance case: spec in one folder, checkpoint relative to the folder the user runs in,
    actors on a local Ray head started elsewhere (their working directory is the head's)."""
    from lrgan_dist.testing.ray_local import ray_head

    work = tmp_path / "work"
    _tiny_dcgan(work / "ckpt" / "g.pt")
    job = _dcgan_job(tmp_path / "spec", "ckpt/g.pt")
    with ray_head(num_cpus=2) as (gcs, _url):
        env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONUNBUFFERED="1")
        env.pop("RAY_ADDRESS", None)
        proc = subprocess.run([sys.executable, "-m", "lrgan_dist", "submit", str(job), "--address", gcs, "--stages",
                               "jacobians,factorize", "--no-progress", "--json"], cwd=work, capture_output=True,
                              text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    assert json.loads(proc.stdout)["summary"]["samples"]["done"] == 2
    import zarr

    g = zarr.open_group(str(work / "s.zarr"), mode="r")  # the store keeps the spec as written
    assert g.attrs["spec"]["generator"]["params"]["checkpoint"] == "ckpt/g.pt"
