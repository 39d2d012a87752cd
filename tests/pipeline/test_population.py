"""Population stage: distributed tree reduction, population directions, consensus."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from lrgan_dist.apply.build import make_generator
from lrgan_dist.core.subspaces import carrying, orth, subspace_sines
from lrgan_dist.pipeline.scheduler import submit
from lrgan_dist.spec import load_spec
from lrgan_dist.testing.cli import write_spec
from lrgan_dist.testing.faults import Faults

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


def test_tree_reduction_equals_single_process_sum_even_when_a_task_dies(pop_store, tmp_path):
    spec, tmp = pop_store
    marker = tmp_path / "killed"
    # the first leaf task to run creates the marker and kills its own worker process
    rep = submit(spec, stages=("population",), show_progress=False, report_dir=False,
                 hooks=Faults(fail_once=str(marker), fail_stage="population"))
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


def _old_consensus(V, M):
    """The pre-reduction formula: every done sample's directions and Grams in one process."""
    sel = carrying(V, M, 0.01)
    d = V.shape[-1]
    P = np.zeros((d, d))
    used = 0
    for i in range(V.shape[0]):
        B = orth(V[i][sel[i]])
        if B.shape[0]:
            P += B.T @ B
            used += 1
    return P / used, used


def test_consensus_from_the_reduction_equals_the_all_in_driver_formula(pop_store):
    spec, tmp = pop_store
    js = spec.replace(methods=tuple(m for m in spec.methods if m.label == "jacobian_svd"))
    submit(js, stages=("factorize", "population"), show_progress=False, report_dir=False)
    g = zarr.open_group(str(tmp / "s.zarr"), mode="r")
    ok = (g["status"][:] == 1) & (g["directions/eyes/jacobian_svd/status"][:] == 1)
    V = g["directions/eyes/jacobian_svd/vectors"][:][ok].astype(np.float64)
    M = g["regions/eyes/gram_in"][:][ok].astype(np.float64)
    P_old, used = _old_consensus(V, M)
    c = g["population/eyes/jacobian_svd/consensus"]
    assert c.attrs["samples"] == used == 24
    U = c["vectors"][:].astype(np.float64)  # rows: eigenvectors
    w = c["spectrum"][:].astype(np.float64)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(P_old)[::-1], atol=1e-6)
    np.testing.assert_allclose(U.T @ np.diag(w) @ U, P_old, atol=1e-5)  # float32 storage


def test_population_with_unchanged_inputs_is_skipped(pop_store):
    spec, tmp = pop_store
    js = spec.replace(methods=tuple(m for m in spec.methods if m.label == "jacobian_svd"))
    first = submit(js, stages=("factorize", "population"), show_progress=False, report_dir=False)
    again = submit(js, stages=("factorize", "population"), show_progress=False, report_dir=False)
    assert again["stages"]["factorize"]["units"] == 0
    assert again["stages"]["population"].get("skipped") is True
    assert again["stages"]["population"]["samples"] == 24
    del first


def test_factorize_resumes_per_chunk_and_group(pop_store):
    """A pending group in one chunk recomputes that (chunk, group) only."""
    from lrgan_dist.pipeline.runtime import StageContext
    from lrgan_dist.pipeline.stages import factorize
    from lrgan_dist.store.zarrstore import Store

    spec, tmp = pop_store
    two = spec.replace(methods=tuple(m for m in spec.methods if m.label == "jacobian_svd")
                       + tuple(m for m in load_spec_methods(tmp) if m.label == "resefa"))
    submit(two, stages=("factorize",), show_progress=False, report_dir=False)
    g = zarr.open_group(str(tmp / "s.zarr"), mode="a")
    before = g["directions/eyes/resefa/vectors"][4:8].copy()
    other = g["directions/eyes/jacobian_svd/vectors"][:].copy()
    g["directions/eyes/resefa/status"][4:8] = np.zeros(4, dtype=np.uint8)  # one chunk of one group pending
    store = Store.open(str(tmp / "s.zarr"), mode="a")
    groups, units = factorize.plan(StageContext(two, store, ray=None))
    assert [(a, b, grp[2]) for a, b, grp in units] == [(4, 8, "directions/eyes/resefa")]
    rep = submit(two, stages=("factorize",), show_progress=False, report_dir=False)
    assert rep["stages"]["factorize"]["units"] == 1 and rep["stages"]["factorize"]["chunks"] == 1
    g = zarr.open_group(str(tmp / "s.zarr"), mode="r")
    assert (g["directions/eyes/resefa/status"][:] == 1).all()
    np.testing.assert_array_equal(g["directions/eyes/resefa/vectors"][4:8], before)
    np.testing.assert_array_equal(g["directions/eyes/jacobian_svd/vectors"][:], other)  # untouched


def load_spec_methods(tmp):
    job = write_spec(tmp / "job_resefa.yaml", samples={"count": 24, "seed": 3},
                     generator={"kind": "synthetic", "params": {"latent_dim": 64, "resolution": 64, "seed": 0}},
                     grid={"resolution": 64}, regions={"eyes": {"part": "eyes"}},
                     methods={"resefa": {}}, store={"uri": str(tmp / "s.zarr"), "chunk_samples": 4},
                     compute={"actors": 2})
    return load_spec(job).methods
