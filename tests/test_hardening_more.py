"""Hardening, continued: bad checkpoints, latent sizes, region masks, damaged stores.

Every bad input is run the way a user meets it -- the CLI (``submit``, ``inspect``,
``render``) or the checkpoint loader -- and must give exit code 2 with one ``error:``
line naming the field or file, what was received and what was expected, and leave no
store behind (or the existing one byte-for-byte unchanged).  Damaged stores: ``inspect
--verify`` lists the damage (exit 1) and ``submit`` recomputes it (resume).

Models are built here (random-weight StyleGAN2 snapshots in NVIDIA's pickle format and
rosinality's ``.pt``, the built-in synthetic generator); nothing is downloaded.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrgan_dist.generators import GeneratorError
from lrgan_dist.generators.checkpoints import UnsafeCheckpointError, load_checkpoint, official_to_rosinality
from lrgan_dist.generators.stylegan2.adapter import StyleGAN2Generator, random_network
from lrgan_dist.pipeline.scheduler import prepare_store
from lrgan_dist.pipeline.stages.factorize import factorize_unit, result_groups
from lrgan_dist.pipeline.stages.jacobians import JacobianWorker
from lrgan_dist.regions import RegionError, region_mask
from lrgan_dist.spec import SpecError, load_spec, parse_spec
from lrgan_dist.store.verify import repair_for_resume, verify_store
from lrgan_dist.store.zarrstore import DONE, PENDING, Store, StoreError
from lrgan_dist.testing.cli import cli, cli_json, write_spec

sys.path.insert(0, str(Path(__file__).resolve().parent / "generators"))
from lrgan_dist.testing.nvidia import write_snapshot  # noqa: E402  (tiny NVIDIA snapshots, no NVIDIA code)


def bad_input(proc, *fragments: str) -> str:
    """Exit 2, exactly one ``error:`` line holding every fragment, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


def tree(path: Path) -> dict[str, bytes]:
    """Every file of a store with its bytes (to prove a command left it unchanged)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# =========================================================================== checkpoints


def tiny_sg2(z_dim: int = 16, seed: int = 0):
    net, _ = random_network(z_dim=z_dim, w_dim=z_dim, mapping_layers=2, img_resolution=16, channel_base=128,
                            channel_max=16, perturb=0.1, seed=seed)
    return net


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """A real (tiny, random-weight) StyleGAN2 in all three on-disk formats."""
    d = tmp_path_factory.mktemp("ckpts")
    net = tiny_sg2()
    write_snapshot(d / "snap.pkl", net, net, net.init_kwargs)
    sd = net.state_dict()
    ros = {"g_ema": official_to_rosinality(sd), "latent_avg": sd["mapping.w_avg"]}
    torch.save(ros, d / "ros.pt")
    torch.save(ros, d / "ros_legacy.pt", _use_new_zipfile_serialization=False)
    return d, net


def sg2_job(tmp: Path, checkpoint: str, **params) -> Path:
    return write_spec(tmp / "job.yaml", generator={"kind": "stylegan2", "params": {"checkpoint": checkpoint, **params}},
                      samples={"count": 4}, grid={"resolution": 8}, regions={"eyes": {"box": [0.3, 0.2, 0.6, 0.8]}},
                      methods={"jacobian_svd": {}}, compute={"actors": 1},
                      store={"uri": str(tmp / "s.zarr"), "chunk_samples": 4}, transfer={"sources": 1})


def test_intact_checkpoints_load(ckpts):
    d, net = ckpts
    z = torch.randn(2, 16)
    for name in ("snap.pkl", "ros.pt", "ros_legacy.pt"):
        g = StyleGAN2Generator(checkpoint=str(d / name), space="z")
        assert (g.forward(z) - net(z, None)).abs().max() < 1e-4, name


def _cut(src: Path, dst: Path, keep: float | int) -> Path:
    data = src.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    dst.write_bytes(data[:n])
    return dst


CLI_CASES = {
    # name: (make the file in dir d from the intact checkpoints, fragments of the one-line message)
    "missing": (lambda d, t: t / "nope.pkl",
                ["generator.params.checkpoint", "file not found", "nope.pkl", "expected an NVIDIA snapshot .pkl"]),
    "directory": (lambda d, t: t,
                  ["generator.params.checkpoint", "is a directory", "expected an NVIDIA snapshot .pkl"]),
    "pkl-cut-in-half": (lambda d, t: _cut(d / "snap.pkl", t / "half.pkl", 0.5),
                        ["half.pkl", "not a readable pickle", "truncated", "expected a complete NVIDIA snapshot"]),
    "pt-cut-in-half": (lambda d, t: _cut(d / "ros.pt", t / "half.pt", 0.5),
                       ["half.pt", "starts like a zip archive", "truncated or corrupt", "expected"]),
    "legacy-pt-cut": (lambda d, t: _cut(d / "ros_legacy.pt", t / "half.pt", 0.5),
                      ["half.pt", "cannot read with torch.load", "expected a complete rosinality .pt"]),
    "random-bytes": (lambda d, t: (t / "rand.pkl").write_bytes(np.random.default_rng(0).bytes(4096)) and t / "rand.pkl",
                     ["rand.pkl", "neither a pickle", "first bytes", "expected an NVIDIA snapshot .pkl"]),
    "npz": (lambda d, t: np.savez(t / "w.npz", a=np.zeros(3)) or t / "w.npz",
            ["w.npz", "zip archive", ".npz", "not a torch.save file", "expected"]),
    "text": (lambda d, t: (t / "notes.pkl").write_text("weights: tomorrow\n") and t / "notes.pkl",
             ["notes.pkl", "looks like text", "expected an NVIDIA snapshot .pkl"]),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_bad_checkpoint_cli(ckpts, tmp_path, case):
    make, fragments = CLI_CASES[case]
    (tmp_path / "in").mkdir()
    path = make(ckpts[0], tmp_path / "in")
    job = sg2_job(tmp_path, str(path))
    bad_input(cli("submit", str(job), "--stages", "jacobians", "--no-progress"), *fragments)
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("name", ["snap.pkl", "ros.pt", "ros_legacy.pt"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frac=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_any_truncation_is_a_clear_error(ckpts, tmp_path, name, frac):
    """A checkpoint cut anywhere never loads and never looks like an unsafe file."""
    src = ckpts[0] / name
    size = src.stat().st_size
    path = _cut(src, tmp_path / f"cut-{name}", max(1, min(size - 1, int(size * frac))))
    with pytest.raises(GeneratorError) as info:
        load_checkpoint(path)
    assert not isinstance(info.value, UnsafeCheckpointError), info.value
    msg = str(info.value)
    assert str(path) in msg and "expected" in msg and "\n" not in msg


def test_corrupt_checkpoints_loader(ckpts, tmp_path):
    d, net = ckpts
    data = bytearray((d / "snap.pkl").read_bytes())
    garbled = bytearray(data)
    garbled[2:200] = b"\xff" * 198  # opcodes overwritten
    (tmp_path / "garbled.pkl").write_bytes(bytes(garbled))
    with pytest.raises(GeneratorError, match=r"garbled\.pkl: not a readable pickle .*truncated or corrupt"):
        load_checkpoint(tmp_path / "garbled.pkl")
    (tmp_path / "rand80.pkl").write_bytes(b"\x80" + np.random.default_rng(1).bytes(4096))
    with pytest.raises(GeneratorError, match="not a readable pickle"):
        load_checkpoint(tmp_path / "rand80.pkl")
    # Corrupt tensor bytes: undetectable unless they decode to NaN/Inf -- which the builder refuses.
    const = net.synthesis.b4.const.detach().numpy().tobytes()
    assert bytes(data).count(const) == 2  # G and G_ema
    (tmp_path / "nan.pkl").write_bytes(bytes(data).replace(const, b"\xff" * len(const)))
    with pytest.raises(GeneratorError, match=r"synthesis\.b4\.const: received NaN/Inf values; expected finite"):
        StyleGAN2Generator(checkpoint=str(tmp_path / "nan.pkl"))
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(GeneratorError, match="looks like an empty file"):
        load_checkpoint(tmp_path / "empty.pkl")
    np.save(tmp_path / "w.npy", np.zeros(3))
    with pytest.raises(GeneratorError, match=r"looks like a numpy \.npy array"):
        load_checkpoint(tmp_path / "w.npy")


# --------------------------------------------------------------------------- latent size


def test_spec_cannot_state_a_checkpoint_latent_size(ckpts, tmp_path):
    """The latent size of a checkpoint generator comes from the file; stating one is an unknown parameter."""
    job = sg2_job(tmp_path, str(ckpts[0] / "snap.pkl"), z_dim=32)
    bad_input(cli("submit", str(job), "--stages", "jacobians", "--no-progress"),
              "generator.params", "unknown parameters ['z_dim']", "expected some of", "'checkpoint'")
    assert not (tmp_path / "s.zarr").exists()


def test_synthetic_latent_dim_below_its_parts(tmp_path):
    job = write_spec(tmp_path / "job.yaml", generator={"kind": "synthetic", "params": {"latent_dim": 8}},
                     store={"uri": str(tmp_path / "s.zarr"), "chunk_samples": 4})
    bad_input(cli("submit", str(job), "--stages", "jacobians", "--no-progress"),
              "generator.params.latent_dim", "expected an integer in [24, 16384]", "received 8")
    assert not (tmp_path / "s.zarr").exists()


def test_render_latents_of_another_size(ckpts, tmp_path):
    job = sg2_job(tmp_path, str(ckpts[0] / "ros.pt"))
    np.save(tmp_path / "z.npy", np.zeros((2, 7), np.float32))
    out = tmp_path / "img.npz"
    bad_input(cli("render", str(job), "--latents", str(tmp_path / "z.npy"), "--space", "z", "--out", str(out)),
              "--latents", "received latents [2, 7]", "expected [n, 16]")
    assert not out.exists()


@pytest.mark.parametrize("swap", ["other-latent-size", "other-weights"])
def test_checkpoint_replaced_under_a_store(tmp_path, swap):
    """Same spec, same path, other file: refused before any worker mixes two models in one store."""
    ckpt = tmp_path / "g.pkl"
    net = tiny_sg2()
    write_snapshot(ckpt, net, net, net.init_kwargs)
    job = sg2_job(tmp_path, "g.pkl")  # relative: next to the spec
    prepare_store(load_spec(job))  # the store of the first checkpoint (nothing computed yet)
    other = tiny_sg2(z_dim=8) if swap == "other-latent-size" else tiny_sg2(seed=1)
    write_snapshot(ckpt, other, other, other.init_kwargs)
    before = tree(tmp_path / "s.zarr")
    want = ["latent dimension d: store 16, generator now 8"] if swap == "other-latent-size" else ["sha256: store"]
    bad_input(cli("submit", str(job), "--stages", "jacobians", "--no-progress"),
              "the generator differs from the one that created this store", *want, "expected the same checkpoint",
              "--fresh")
    assert tree(tmp_path / "s.zarr") == before


# =========================================================================== regions


def synth_job(tmp: Path, regions: dict, **kw) -> Path:
    base = dict(generator={"kind": "synthetic", "params": {"latent_dim": 24, "resolution": 16, "seed": 0}},
                samples={"count": 8}, grid={"resolution": 16}, regions=regions, methods={"jacobian_svd": {}},
                compute={"actors": 1, "jvp_chunk": 24}, store={"uri": str(tmp / "s.zarr"), "chunk_samples": 4},
                transfer={"sources": 2})
    base.update(kw)
    return write_spec(tmp / "job.yaml", **base)


def _m(*box: int) -> np.ndarray:
    m = np.zeros((16, 16), np.float32)
    y0, x0, y1, x1 = box
    m[y0:y1, x0:x1] = 1.0
    return m


BAD_MASKS = {
    "shape": (np.zeros((5, 7), np.float32), ["region 'm'", "m.npy", "received shape [5, 7]", "expected a mask [16, 16]"]),
    "3d-shape": (np.zeros((4, 16, 9), np.float32), ["region 'm'", "received shape [4, 16, 9]", "expected a mask"]),
    "too-few-samples": (np.stack([_m(2, 2, 8, 8)] * 3), ["region 'm'", "expected per-sample masks for 8 samples",
                                                          "received 3"]),
    "above-one": (_m(2, 2, 8, 8) * 1.5, ["region 'm'", "m.npy", "expected values in [0, 1]", "received range [0, 1.5]"]),
    "negative": (_m(2, 2, 8, 8) - 0.2, ["region 'm'", "expected values in [0, 1]", "received range [-0.2, 0.8]"]),
    "nan": (np.where(_m(2, 2, 8, 8) > 0, np.nan, 0).astype(np.float32), ["region 'm'", "expected finite values in [0, 1]",
                                                                          "received NaN/Inf"]),
}


@pytest.mark.parametrize("case", sorted(BAD_MASKS))
def test_bad_mask_cli(tmp_path, case):
    arr, fragments = BAD_MASKS[case]
    np.save(tmp_path / "m.npy", arr)
    job = synth_job(tmp_path, {"m": {"mask": "m.npy"}})
    if case == "shape":
        assert cli("validate", str(job)).returncode == 0  # validate reads no mask file (it builds no generator) ...
    bad_input(cli("submit", str(job), "--stages", "jacobians", "--no-progress"), *fragments)  # ... submit does
    assert not (tmp_path / "s.zarr").exists()


# =========================================================================== stores

A, B = _m(2, 3, 7, 10), _m(9, 4, 14, 12)  # disjoint boxes
SOFT = 0.5 * A + 0.25 * B  # a soft mask: no cell is 1


def _compute(spec, uri: str) -> Store:
    """What submit does, without Ray: jacobians and factorize of every unit."""
    store = Store.open(uri, mode="a")
    w = JacobianWorker(spec, uri, torch_threads=1)
    for u in store.pending_units():
        w.run(u)
    groups = result_groups(spec, Store.open(uri, mode="a"))
    for u in store.layout.chunks():
        factorize_unit(spec, uri, u, groups, torch_threads=1)
    return Store.open(uri)


@pytest.fixture(scope="module")
def ref_store(tmp_path_factory):
    """A finished store with a soft-mask region (and the two boxes it is made of)."""
    tmp = tmp_path_factory.mktemp("ref")
    for name, m in (("soft", SOFT), ("a", A), ("b", B)):
        np.save(tmp / f"{name}.npy", m)
    job = synth_job(tmp, {"soft": {"mask": "soft.npy"}, "a": {"mask": "a.npy"}, "b": {"mask": "b.npy"}})
    spec = load_spec(job)
    prepare_store(spec)
    _compute(spec, spec.store.uri)
    return job, tmp / "s.zarr"


def test_soft_mask_runs_and_weighs_cells(ref_store):
    """Masks with values in (0, 1) are soft masks: M_R·ΣR = Σ_p R_p J_pᵀJ_p is linear in R."""
    job, path = ref_store
    assert cli("validate", str(job)).returncode == 0
    s = Store.open(str(path))
    assert (s.status() == DONE).all()
    np.testing.assert_array_equal(s.region_mask("soft"), SOFT)  # stored as given, not binarized
    g = {r: s.read(f"regions/{r}/gram_in").astype(np.float64) for r in ("soft", "a", "b")}
    lhs = g["soft"] * SOFT.sum()
    rhs = 0.5 * A.sum() * g["a"] + 0.25 * B.sum() * g["b"]
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4 * np.abs(rhs).max())
    # rest B = 1 - R: M_R·ΣR + M_B·ΣB = JᵀJ whatever the mask
    go = s.read("regions/soft/gram_out").astype(np.float64)
    total_a = g["a"] * A.sum() + s.read("regions/a/gram_out") * (1 - A).sum()
    np.testing.assert_allclose(lhs + go * (1 - SOFT).sum(), total_a, rtol=1e-4, atol=1e-4 * np.abs(total_a).max())
    for region in ("soft", "a", "b"):
        v = s.read(f"directions/{region}/jacobian_svd/vectors")[:, 0]
        assert np.isfinite(v).all()


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 4
    path.write_bytes(data[: len(data) // 2])


def test_verify_lists_truncated_chunks(ref_store, tmp_path):
    _, ref = ref_store
    s = _copy(ref, tmp_path / "t.zarr")
    _truncate(s / "regions" / "soft" / "gram_in" / "c" / "1" / "0" / "0")
    _truncate(s / "directions" / "a" / "jacobian_svd" / "vectors" / "c" / "0" / "0" / "0")
    before = tree(s)
    proc = cli("inspect", str(s), "--verify", "--json")
    assert proc.returncode == 1, proc.stderr
    problems = json.loads(proc.stdout)["problems"]
    assert len(problems) == 2, problems
    assert any(p.startswith("regions/soft/gram_in[4:8]: chunk unreadable") and "truncated or corrupt" in p
               for p in problems)
    assert any(p.startswith("directions/a/jacobian_svd/vectors[0:4]: chunk unreadable") for p in problems)
    assert tree(s) == before


def test_verify_lists_truncated_status_chunk(ref_store, tmp_path):
    """The status array itself damaged: plain inspect fails in one line, --verify still lists."""
    _, ref = ref_store
    s = _copy(ref, tmp_path / "u.zarr")
    _truncate(s / "status" / "c" / "0")
    before = tree(s)
    plain = cli("inspect", str(s))
    assert plain.returncode == 1
    assert "cannot read the store" in plain.stderr and "inspect --verify" in plain.stderr
    proc = cli("inspect", str(s), "--verify")
    assert proc.returncode == 1, proc.stderr
    assert "status[0:4]: chunk unreadable" in proc.stdout and "1 problem(s)" in proc.stdout
    assert tree(s) == before


def _same_data(a: Path, b: Path, keys) -> None:
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    for k in keys:
        np.testing.assert_array_equal(ga[k][:], gb[k][:], err_msg=k)


STAGE1 = ["status", "latents", "images", "regions/soft/gram_in", "regions/soft/gram_out", "regions/a/gram_out"]


def test_submit_recomputes_a_truncated_chunk(ref_store, tmp_path):
    job, ref = ref_store
    s = _copy(ref, tmp_path / "t.zarr")
    _truncate(s / "regions" / "soft" / "gram_in" / "c" / "1" / "0" / "0")
    # A chunk cut in half is found only by decoding it: submit --verify (the default scan is cheap).
    proc = cli("submit", str(job), "--store", str(s), "--stages", "jacobians", "--json", "--no-progress", "--verify")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["stages"]["jacobians"]["computed"] == 4  # only the damaged unit
    assert len(report["repaired"]) == 1 and "regions/soft/gram_in[4:8]: chunk unreadable" in report["repaired"][0]
    assert "store damaged, recomputing: regions/soft/gram_in[4:8]" in proc.stderr
    _same_data(s, ref, STAGE1)
    assert verify_store(Store.open(str(s))) == []


def test_factorize_only_on_a_damaged_store_is_refused_untouched(ref_store, tmp_path):
    """Without the jacobians stage nothing can recompute a Gram: exit 2, one line, untouched."""
    job, ref = ref_store
    s = _copy(ref, tmp_path / "f.zarr")
    _truncate(s / "regions" / "soft" / "gram_in" / "c" / "1" / "0" / "0")
    before = tree(s)
    proc = cli("submit", str(job), "--store", str(s), "--stages", "factorize", "--no-progress", "--verify")
    assert proc.returncode == 2, proc.stderr
    assert "store is damaged: regions/soft/gram_in[4:8]: chunk unreadable" in proc.stderr
    assert "run with the jacobians stage" in proc.stderr and "Traceback" not in proc.stderr
    assert tree(s) == before


def test_submit_recreates_a_missing_array(ref_store, tmp_path):
    job, ref = ref_store
    s = _copy(ref, tmp_path / "m.zarr")
    shutil.rmtree(s / "regions" / "soft" / "gram_out")
    (s / "latents" / "c" / "0" / "0").unlink()  # and a chunk deleted by hand
    report = cli_json("submit", str(job), "--store", str(s), "--stages", "jacobians", "--json", "--no-progress")
    assert report["stages"]["jacobians"]["computed"] == 8
    assert any(r.startswith("regions/soft/gram_out: array missing") for r in report["repaired"])
    # the cheap default scan finds the deleted chunk from the store listing alone
    assert any(r.startswith("latents[0:4]: chunk missing for samples marked done") for r in report["repaired"])
    _same_data(s, ref, STAGE1)
    assert verify_store(Store.open(str(s))) == []


def test_repair_status_and_result_damage(ref_store, tmp_path):
    """Library level (what submit runs): every kind of per-sample damage becomes pending work."""
    job, ref = ref_store
    s = _copy(ref, tmp_path / "r.zarr")
    _truncate(s / "status" / "c" / "1")
    _truncate(s / "directions" / "a" / "jacobian_svd" / "vectors" / "c" / "0" / "0" / "0")
    shutil.rmtree(s / "directions" / "b" / "jacobian_svd" / "rank")
    store = Store.open(str(s), mode="a")
    actions = repair_for_resume(store, full=True)
    assert any(a.startswith("status[4:8]: chunk unreadable") and a.endswith("samples 4-7 recomputed") for a in actions)
    assert "directions/b/jacobian_svd: result arrays missing; group removed, refactorized" in actions
    assert any(a.startswith("directions/a/jacobian_svd: 1 damaged result chunk") for a in actions)
    assert store.status().tolist() == [DONE] * 4 + [PENDING] * 4
    fst = np.asarray(store.group["directions/a/jacobian_svd/status"][:])
    assert fst.tolist() == [PENDING] * 8  # chunk 0 damaged, chunk 1 recomputed upstream
    assert repair_for_resume(store, full=True) == []  # idempotent: nothing else to reset
    _compute(load_spec(job).with_overrides(store=str(s)), str(s))
    _same_data(s, ref, [*STAGE1, "directions/a/jacobian_svd/vectors", "directions/b/jacobian_svd/rank"])
    assert verify_store(Store.open(str(s))) == []


def test_damaged_static_mask_is_not_resumable(ref_store, tmp_path):
    """A static mask is written once, at creation: a resume cannot recompute it -> exit 2, store untouched."""
    job, ref = ref_store
    s = _copy(ref, tmp_path / "k.zarr")
    _truncate(s / "regions" / "a" / "mask" / "c" / "0" / "0")
    before = tree(s)
    proc = cli("inspect", str(s), "--verify", "--json")
    assert proc.returncode == 1
    assert any(p.startswith("regions/a/mask: unreadable") for p in json.loads(proc.stdout)["problems"])
    bad_input(cli("submit", str(job), "--store", str(s), "--stages", "jacobians", "--no-progress"),
              "damaged beyond what a resume recomputes", "regions/a/mask: unreadable", "--fresh")
    assert tree(s) == before


def test_repair_missing_status_resets_everything(ref_store, tmp_path):
    _, ref = ref_store
    s = _copy(ref, tmp_path / "s.zarr")
    shutil.rmtree(s / "status")
    assert verify_store(Store.open(str(s))) == ["status: array missing"]
    store = Store.open(str(s), mode="a")
    assert repair_for_resume(store) == ["status: array missing or misshapen; recreated, every sample recomputed"]
    assert (store.status() == PENDING).all()
    for region in ("soft", "a", "b"):
        assert (np.asarray(store.group[f"directions/{region}/jacobian_svd/status"][:]) == PENDING).all()


def test_repair_refuses_what_it_cannot_recompute(ref_store, tmp_path):
    _, ref = ref_store
    s = _copy(ref, tmp_path / "x.zarr")
    shutil.rmtree(s / "regions" / "b" / "mask")
    with pytest.raises(StoreError, match=r"regions/b/mask: array missing.*--fresh"):
        repair_for_resume(Store.open(str(s), mode="a"))


# =========================================================================== property-based


@settings(max_examples=80, deadline=None)
@given(box=st.lists(st.floats(min_value=-0.5, max_value=1.5, allow_nan=False, width=32), min_size=4, max_size=4),
       res=st.integers(min_value=1, max_value=24))
def test_any_spec_box_is_refused_by_field_or_rasterized_within_a_cell(box, res):
    """Spec parsing + rasterization: any box is a SpecError naming regions.r.box, or a mask
    whose area matches the box area within one cell row/column."""
    try:
        spec = parse_spec({"regions": {"r": {"box": box}}, "grid": {"resolution": res}})
    except SpecError as exc:
        assert exc.field == "regions.r.box"
        y0, x0, y1, x1 = box
        assert not (y1 > y0 and x1 > x0 and all(0 <= v <= 1 for v in box))
        return
    y0, x0, y1, x1 = box
    try:
        m = region_mask(spec.resolve_region(spec.region("r")), (res, res), (64, 64))
    except RegionError as exc:  # a box covering the whole image leaves no rest B
        assert "'r'" in str(exc) and ("whole image" in str(exc) or "no area" in str(exc))
        return
    assert m.shape == (res, res) and 0 <= m.min() and m.max() <= 1
    area = (y1 - y0) * (x1 - x0) * res * res
    assert abs(float(m.sum()) - area) <= max((y1 - y0) * res, (x1 - x0) * res) + 1e-3
