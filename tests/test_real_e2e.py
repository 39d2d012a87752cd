"""End to end through the CLI on real-architecture generators with random weights.

``lrgan-dist submit`` (its own embedded Ray, bound to 127.0.0.1) on a small StyleGAN2 (space
w, and W+ on a layer subset) and a small BigGAN-deep (checkpoint directory in the
package's format, written by the test); every sample must finish with finite directions.
Also: the real-model job examples in ``jobs/`` validate without their checkpoints.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

SG2 = dict(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32, mapping_layers=2,
           perturb=0.1, seed=0)


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "lrgan_dist", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def write_job(tmp: Path, generator: dict, latent: dict, count: int = 4, chunk: int = 4, actors: int = 1,
              extra_methods: dict | None = None) -> Path:
    # One actor and few chunks: on 2 shared cores Ray start-up and worker imports dominate.
    job = {
        "name": "real-e2e",
        "generator": generator,
        "latent": latent,
        "samples": {"count": count, "seed": 0},
        "grid": {"resolution": 16, "channels": "mean"},
        "regions": {"centre": {"box": [0.25, 0.25, 0.75, 0.75]}},
        "methods": {"lowrankgan": {}, "jacobian_svd": {}, **(extra_methods or {})},
        "compute": {"actors": actors, "jvp_chunk": 16, "device": "cpu", "factorize_device": "cpu"},
        "store": {"uri": str(tmp / "store.zarr"), "chunk_samples": chunk},
        "transfer": {"sources": 2},
    }
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def submit_and_check(job: Path, count: int) -> dict:
    proc = run_cli("submit", str(job), "--json", "--no-progress")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    s = report["summary"]["samples"]
    assert (s["done"], s["failed"], s["pending"]) == (count, 0, 0), s
    import zarr

    spec = yaml.safe_load(job.read_text())
    g = zarr.open_group(spec["store"]["uri"], mode="r")
    assert (np.asarray(g["status"][:]) == 1).all()
    lat = np.asarray(g["latents"][:])
    assert np.isfinite(lat).all()
    for label in ("lowrankgan", "jacobian_svd"):
        grp = g[f"directions/centre/{label}"]
        assert (np.asarray(grp["status"][:]) == 1).all(), label
        V, rank = np.asarray(grp["vectors"][:]), np.asarray(grp["rank"][:])
        d = lat.shape[1]
        assert V.shape == (count, d, d)
        assert (rank >= 1).all(), (label, rank)
        for i in range(count):
            rows = V[i, : rank[i]]
            assert np.isfinite(rows).all(), (label, i)
            np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)
    gi = np.asarray(g["regions/centre/gram_in"][:])
    assert np.isfinite(gi).all() and gi.shape == (count, lat.shape[1], lat.shape[1])
    return report


@pytest.mark.slow
@pytest.mark.parametrize("latent", [{"space": "w", "truncation": 0.8},
                                    {"space": "wplus", "layers": [2, 3, 4], "truncation": 0.8}],
                         ids=["w", "wplus-subset"])
def test_submit_stylegan2_random(tmp_path, latent):
    job = write_job(tmp_path, {"kind": "stylegan2", "params": {"random_init": SG2}}, latent,
                    extra_methods={"sefa": {}})
    submit_and_check(job, 4)
    # the population stage ran SeFa on the generator's modulation weights (analysed layers)
    import zarr

    from lrgan_dist.apply.build import make_generator
    from lrgan_dist.core.methods.sefa import sefa_directions
    from lrgan_dist.spec import load_spec

    g = zarr.open_group(str(tmp_path / "store.zarr"), mode="r")
    V = np.asarray(g["population/_latent/sefa/vectors"][:])
    spec = load_spec(job)
    ref, _ = sefa_directions(make_generator(spec, "cpu"))
    k = 8  # leading directions, well separated in eigenvalue for random weights
    np.testing.assert_allclose(np.abs((V[:k] * ref[:k].numpy()).sum(1)), 1.0, atol=1e-4)


@pytest.mark.slow
def test_submit_biggan_random(tmp_path):
    pytest.importorskip("pytorch_pretrained_biggan")
    from lrgan_dist.generators.biggan import write_random_checkpoint

    ckpt = write_random_checkpoint(tmp_path / "biggan", seed=0)  # 32×32, z_dim 16, 10 classes
    job = write_job(tmp_path, {"kind": "biggan", "params": {"checkpoint": str(ckpt), "classes": "sample"}},
                    {"truncation": 0.5}, count=4, chunk=2)  # two work units
    submit_and_check(job, 4)
    # the store's generator provenance names the checkpoint and its hash
    import zarr

    info = zarr.open_group(str(tmp_path / "store.zarr"), mode="r").attrs["generator"]
    assert info["kind"] == "biggan" and len(info["checkpoint"]["weights_sha256"]) == 64


@pytest.mark.parametrize("name", ["stylegan2_ffhq1024", "biggan_deep256", "stylegan2_tiny_random"])
def test_job_examples_validate_without_checkpoints(name):
    """`lrgan-dist validate` never builds the generator, so a missing checkpoint is fine."""
    job = ROOT / "jobs" / f"{name}.yaml"
    raw = yaml.safe_load(job.read_text())
    ckpt = raw["generator"]["params"].get("checkpoint")
    if ckpt is not None:
        assert not (ROOT / ckpt).exists()  # the point of the test: it is the user's file
    proc = run_cli("validate", str(job), timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["valid"] and len(out["fingerprint"]) == 64
    spec = out["spec"]
    if name == "stylegan2_ffhq1024":
        assert spec["latent"]["layers"] == [4, 5, 6, 7] and spec["latent"]["space"] == "wplus"
        assert spec["grid"]["resolution"] == 256
        assert abs(spec["methods"]["lowrankgan"]["lam"] - 1 / 60) < 1e-12
        assert {r["preset"] for r in spec["regions"].values()} == {"ffhq:eyes", "ffhq:mouth", "ffhq:nose"}
    if name == "biggan_deep256":
        assert spec["generator"]["kind"] == "biggan" and spec["latent"]["truncation"] == 0.4
