"""SeFa (Shen & Zhou, CVPR 2021) on a random StyleGAN2, against independent numpy computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrgan_dist.core.methods.sefa import SeFa, sefa_directions, sefa_from_weights
from lrgan_dist.generators.stylegan2.adapter import make_stylegan2

SG2 = dict(z_dim=32, w_dim=32, img_resolution=16, channel_base=256, channel_max=16, mapping_layers=2,
           perturb=0.1, seed=1)


@pytest.fixture(scope="module")
def G():
    return make_stylegan2(random_init=SG2, space="wplus", layers=[2, 3, 4])


def raw_affine_rows(G, layers, torgb=False) -> np.ndarray:
    """A from the raw affine parameters (no run-time gains), as genforce/sefa reads style.weight."""
    rows = []
    for slot, name in G.net.synthesis.layer_slots():
        if slot in layers and (torgb or not name.endswith("torgb")):
            rows.append(G.net.synthesis.get_submodule(name).affine.weight.detach().double().numpy())
    return np.concatenate(rows, axis=0)


def reference_factorize(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """genforce/sefa utils.factorize_weight: W = Aᵀ, columns normalised, eig(W Wᵀ), then sorted."""
    weight = A.T
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    vals, vecs = np.linalg.eig(weight.dot(weight.T))
    vals, vecs = vals.real, vecs.real
    order = np.argsort(-vals)
    return vecs.T[order], vals[order]


@pytest.mark.parametrize("layers", [[2, 3], [0, 1, 2, 3, 4, 5], [4]])
def test_matches_numpy_eigh_of_the_same_matrix(G, layers):
    V, ev = sefa_directions(G, layers)
    A = G.modulation_weights(layers).double().numpy()  # the same matrix
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    M = An.T @ An
    w, U = np.linalg.eigh(M)
    w, U = w[::-1], U[:, ::-1].T
    Vn, evn = V.numpy(), ev.numpy()
    assert V.shape == (32, 32) and ev.shape == (32,)
    np.testing.assert_allclose(evn, w, rtol=1e-10, atol=1e-10 * w[0])
    # eigenvectors agree up to sign where the eigenvalue is simple
    gaps = np.minimum(np.abs(np.diff(w, prepend=np.inf)), np.abs(np.diff(w, append=-np.inf)))
    simple = gaps > 1e-6 * w[0]
    dots = np.abs(np.sum(Vn * U, axis=1))
    np.testing.assert_allclose(dots[simple], 1.0, atol=1e-8)
    np.testing.assert_allclose(Vn.T @ np.diag(evn) @ Vn, M, atol=1e-10 * w[0])
    # the authors' procedure on the raw parameters (np.linalg.eig of W Wᵀ, then sorted) gives
    # the same up to float32 rounding of the gains
    R, rv = reference_factorize(raw_affine_rows(G, layers))
    np.testing.assert_allclose(rv, evn, rtol=1e-6, atol=1e-6 * w[0])
    well = gaps > 1e-3 * w[0]
    np.testing.assert_allclose(np.abs(np.sum(R * Vn, axis=1))[well], 1.0, atol=1e-4)


def test_orthonormal_sorted_sign_fixed(G):
    V, ev = sefa_directions(G)
    np.testing.assert_allclose((V @ V.T).numpy(), np.eye(32), atol=1e-12)
    assert torch.all(ev[:-1] >= ev[1:])
    assert torch.all(ev >= -1e-10)
    idx = V.abs().argmax(dim=1)
    assert torch.all(V[torch.arange(32), idx] > 0)
    assert V.dtype == torch.float64
    # default layers = the generator's analysed W+ slots
    V2, _ = sefa_directions(G, [2, 3, 4])
    assert torch.equal(V, V2)


def test_gains_do_not_matter(G):
    """Row normalisation makes per-layer gains irrelevant: with-gain weights == raw parameters."""
    A_gain = G.modulation_weights([1, 2, 3], include_torgb=True)
    A_raw = torch.as_tensor(raw_affine_rows(G, [1, 2, 3], torgb=True))
    V1, e1 = sefa_from_weights(A_gain)
    V2, e2 = sefa_from_weights(A_raw)
    torch.testing.assert_close(e1, e2, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close((V1 @ V2.T).abs().diagonal(), torch.ones(32, dtype=torch.float64), atol=1e-5, rtol=0)


def test_top_k_and_errors(G):
    V, ev = sefa_directions(G, [2], k=5)
    assert V.shape == (5, 32) and ev.shape == (5,)
    with pytest.raises(ValueError, match="k"):
        sefa_directions(G, [2], k=0)
    Gz = make_stylegan2(random_init=SG2, space="z")
    with pytest.raises(ValueError, match="'z'"):
        sefa_directions(Gz)
    with pytest.raises(ValueError, match="modulation weights"):
        sefa_directions(object())
    with pytest.raises(ValueError, match="all-zero rows"):
        sefa_from_weights(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\[m, d\]"):
        sefa_from_weights(torch.zeros(3))


def test_population_method_wrapper(G):
    from lrgan_dist.core.methods import DirectionResult, available_methods, get_method

    assert "sefa" in available_methods()
    m = get_method("sefa", layers=[3, 2])
    assert isinstance(m, SeFa) and m.population_only
    assert m.params.layers == (2, 3)
    assert m.param_hash() == get_method("sefa", layers=[2, 3]).param_hash()
    res = m.from_generator(G)
    assert isinstance(res, DirectionResult)
    assert res.vectors.shape == (1, 32, 32) and res.vectors.dtype == torch.float32
    assert res.rank.tolist() == [32]
    V, ev = sefa_directions(G, [2, 3])
    torch.testing.assert_close(res.vectors[0], V.float())
    torch.testing.assert_close(res.spectrum[0], ev.float())
    with pytest.raises(TypeError, match="population-only"):
        m(torch.zeros(1, 32, 32), torch.zeros(1, 32, 32))
    for bad in ({"layers": []}, {"layers": [-1]}, {"layers": "4-7"}, {"include_torgb": 1}, {"rank_tol": 0}):
        with pytest.raises(ValueError, match="sefa"):
            get_method("sefa", **bad)


def test_method_in_a_job_spec():
    from lrgan_dist.spec import parse_spec

    spec = parse_spec({"generator": {"kind": "stylegan2", "params": {"random_init": SG2}},
                       "latent": {"space": "wplus", "layers": [4, 5]},
                       "regions": {"all": {"box": [0, 0, 1, 1]}},
                       "methods": {"sefa": {"layers": [4, 5]}, "lowrankgan": {}}})
    assert spec.methods[0].method == "sefa"
