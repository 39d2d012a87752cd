"""Population stage: distributed tree reduction, population directions, consensus."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from lrgan_dist.testing.cli import write_spec
from lrgan_dist.core.subspaces import carrying, subspace_sines
from lrgan_dist.pipeline.scheduler import submit
from lrgan_dist.spec import load_spec
from lrgan_dist.apply.build import make_generator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pop_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pop")
    job = write_spec(tmp / "job.yaml", samples={"count": 24, "seed": 3},
                     generator={"kind": "synthetic", "params": {"latent_dim": 64, "resolution": 64, "seed": 0}},
                     grid={"resolution": 64},
                     # faces move (layout factor), so the population's eye region is the
                     # per-sample ground-truth eye mask, not one fixed box
                     regions={"eyes": {"part": "eyes"}},
                     # the population rest Gram spans 20 directions with eigenvalues down to 3e-4 of the
                     # largest (faces move), so the relative rank tolerance must sit below that
                     methods={"lowrankgan": {"lam": 0.25, "rank_tol": 1e-4}, "jacobian_svd": {}, "ganspace": {}},
                     store={"uri": str(tmp / "s.zarr"), "chunk_samples": 4}, compute={"actors": 2})
    spec = load_spec(job)
    submit(spec, stages=("jacobians",), show_progress=False)
    return spec, tmp


def _single_process_mean(store_path, region, key):
    g = zarr.open_group(str(store_path), mode="r")
    ok = g["status"][:] == 1
    return g[f"regions/{region}/{key}"][:][ok].astype(np.float64).sum(axis=0) / ok.sum()


def test_tree_reduction_equals_single_process_sum_even_when_a_task_dies(pop_store, monkeypatch, tmp_path):
    spec, tmp = pop_store
    marker = tmp_path / "killed"
    monkeypatch.setenv("LRGAN_TEST_FAIL_REDUCE_ONCE", str(marker))  # inherited by the Ray workers
    rep = submit(spec, stages=("population",), show_progress=False, report_dir=False)
    assert marker.exists(), "the test hook did not kill a reduction task"
    assert rep["stages"]["population"]["samples"] == 24
    g = zarr.open_group(str(tmp / "s.zarr"), mode="r")
    for key in ("gram_in", "gram_out"):
        ref = _single_process_mean(tmp / "s.zarr", "eyes", key)
        got = g[f"population/eyes/lowrankgan/{key}"][:]
        assert np.linalg.norm(got - ref) <= 1e-10 * np.linalg.norm(ref)


def test_population_lowrankgan_eye_directions_in_eye_subspace(pop_store):
    spec, tmp = pop_store
    g = zarr.open_group(str(tmp / "s.zarr"), mode="r")
    if "population/eyes/lowrankgan/vectors" not in g:
        submit(spec, stages=("population",), show_progress=False, report_dir=False)
        g = zarr.open_group(str(tmp / "s.zarr"), mode="r")
    V = g["population/eyes/lowrankgan/vectors"][:].astype(np.float64)
    M = g["population/eyes/lowrankgan/gram_in"][:]
    sel = carrying(V[None], M[None])[0]
    Q = make_generator(spec).ground_truth_subspaces()["eyes"].double().numpy()
    sines = subspace_sines(V[sel], Q)
    print("population eye-region LowRankGAN sines:", np.round(sines, 4))
    assert sel.sum() >= 1
    assert (sines < 0.05).all()
    # ganspace is population-only: PCA of the latents
    assert g["population/_latent/ganspace/vectors"].shape == (64, 64)


def test_consensus_subspace_after_factorize(pop_store):
    spec, tmp = pop_store
    js = spec.replace(methods=tuple(m for m in spec.methods if m.label == "jacobian_svd"))
    submit(js, stages=("factorize", "population"), show_progress=False, report_dir=False)
    g = zarr.open_group(str(tmp / "s.zarr"), mode="r")
    spec_c = g["population/eyes/jacobian_svd/consensus/spectrum"][:]
    assert spec_c.shape == (64,)
    assert np.all(np.diff(spec_c) <= 1e-6) and spec_c[0] <= 1 + 1e-6 and spec_c[-1] >= -1e-6
    assert g["population/eyes/jacobian_svd/consensus"].attrs["samples"] == 24
