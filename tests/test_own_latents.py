"""Own latents (issue 15.3): samples.latents / samples.space / NVIDIA samples.seeds, render --png,
checkpoint URLs refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lrgan_dist.apply.build import make_generator
from lrgan_dist.apply.latents import check_job_latents, job_latents, nvidia_z
from lrgan_dist.spec import SpecError, load_spec, parse_spec
from lrgan_dist.testing.cli import ROOT, cli, write_spec

SYN = {"kind": "synthetic", "params": {"latent_dim": 64, "resolution": 32, "seed": 0}}


def _spec(tmp_path: Path, samples: dict, generator: dict | None = None, **kw) -> Path:
    p = write_spec(tmp_path / "job.yaml", generator=generator or SYN, **kw)
    raw = yaml.safe_load(p.read_text())
    raw["samples"] = samples  # replaced as a whole (write_spec merges sections)
    raw["transfer"] = {"sources": 2, "similarity_samples": 2, "realized_pairs": 0}
    p.write_text(yaml.safe_dump(raw))
    return p


def _tiny_sg2(tmp_path: Path, samples: dict) -> Path:
    raw = yaml.safe_load((ROOT / "jobs" / "stylegan2_tiny_random.yaml").read_text())
    raw["samples"] = samples
    raw["store"]["uri"] = str(tmp_path / "sg2.zarr")
    raw["compute"]["actors"] = 1
    raw["transfer"] = {"sources": 2, "similarity_samples": 2, "realized_pairs": 0}
    p = tmp_path / "sg2.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_latent_file_gives_count_and_content_fingerprint(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "mine.npy", rng.standard_normal((6, 64)).astype(np.float32))
    spec = load_spec(_spec(tmp_path, {"latents": "mine.npy"}))
    assert spec.samples.count == 6
    assert spec.samples.latents == str((tmp_path / "mine.npy").resolve())
    fp = spec.data_fingerprint()
    # same content elsewhere, other name: same fingerprint; other content: another one
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "copy.npy", np.load(tmp_path / "mine.npy"))
    assert load_spec(_spec(tmp_path, {"latents": "sub/copy.npy"})).data_fingerprint() == fp
    np.save(tmp_path / "mine.npy", rng.standard_normal((6, 64)).astype(np.float32))
    assert load_spec(_spec(tmp_path, {"latents": "mine.npy"})).data_fingerprint() != fp
    # a stored spec (file gone) parses and keeps its fingerprint
    d = spec.to_dict()
    (tmp_path / "sub" / "copy.npy").unlink()
    d["samples"]["latents"] = str(tmp_path / "sub" / "copy.npy")
    assert parse_spec(d).data_fingerprint() == fp
    # specs without own latents keep their previous stored form
    assert load_spec(ROOT / "jobs" / "quickstart.yaml").to_dict()["samples"] == {"count": 64, "seed": 0}


@pytest.mark.parametrize("samples, field, words", [
    ({"latents": "missing.npy"}, "samples.latents", "does not exist"),
    ({"latents": "bad4d.npy"}, "samples.latents", "[2, 3, 4, 5]"),
    ({"latents": "ints.npy"}, "samples.latents", "float"),
    ({"latents": "mine.npy", "count": 5}, "samples.count", "holds 6 rows"),
    ({"space": "w"}, "samples.space", "without samples.latents"),
    ({"seeds": [1, 2], "latents": "mine.npy"}, "samples", "both"),
    ({"seeds": [-1]}, "samples.seeds", "[0, 2**32)"),
    ({"seeds": [1], "space": "w"}, "samples.space", "seeds give z"),
    ({"latents": "https://example.org/w.npy"}, "samples.latents", "URL"),
])
def test_sample_section_errors(tmp_path, samples, field, words):
    np.save(tmp_path / "mine.npy", np.zeros((6, 64), np.float32))
    np.save(tmp_path / "bad4d.npy", np.zeros((2, 3, 4, 5), np.float32))
    np.save(tmp_path / "ints.npy", np.zeros((6, 64), np.int64))
    with pytest.raises(SpecError) as e:
        load_spec(_spec(tmp_path, samples))
    assert e.value.field == field and words in str(e.value), str(e.value)


@pytest.mark.parametrize("url, hint", [("https://x.org/ffhq.pkl", "curl"), ("hf://user/repo/g.pkl", "huggingface-cli"),
                                       ("http://x.org/ffhq.pkl", "curl")])
def test_checkpoint_url_refused_with_how_to_fetch(tmp_path, url, hint):
    p = _spec(tmp_path, {"count": 4}, generator={"kind": "stylegan2", "params": {"checkpoint": url}})
    proc = cli("validate", str(p))
    assert proc.returncode == 2
    assert "generator.params.checkpoint" in proc.stderr and hint in proc.stderr and "never downloads" in proc.stderr


def test_shape_and_space_checked_against_the_generator(tmp_path):
    np.save(tmp_path / "w32.npy", np.zeros((3, 32), np.float32))
    spec = load_spec(_spec(tmp_path, {"latents": "w32.npy"}))
    gen = make_generator(spec)
    with pytest.raises(SpecError) as e:
        check_job_latents(spec, gen)
    msg = str(e.value)
    assert e.value.field == "samples.latents" and "[3, 32]" in msg and "[N, 64]" in msg
    spec = load_spec(_spec(tmp_path, {"latents": "w32.npy", "space": "w"}))
    with pytest.raises(SpecError) as e:
        check_job_latents(spec, gen)
    assert e.value.field == "samples.space" and "'w'" in str(e.value) and "['z']" in str(e.value)
    # the CLI: exit 2 before anything is written
    proc = cli("submit", str(_spec(tmp_path, {"latents": "w32.npy"})), "--no-report", "--no-progress")
    assert proc.returncode == 2, proc.stderr
    assert "samples.latents" in proc.stderr and "[3, 32]" in proc.stderr
    assert not (tmp_path / "store.zarr").exists()


def test_nvidia_seeds_convention(tmp_path):
    p = _tiny_sg2(tmp_path, {"seeds": [7, 42, 123]})
    spec = load_spec(p)
    assert spec.samples.count == 3 and spec.samples.space == "z"
    gen = make_generator(spec)
    x = job_latents(spec, gen, [2, 0])
    z = np.stack([np.random.RandomState(s).randn(32) for s in (123, 7)])
    np.testing.assert_array_equal(nvidia_z([123, 7], 32), z)
    assert torch.equal(x, gen.latents_from_z(z))
    # a z file in a w+ job goes through the same mapping
    np.save(tmp_path / "z.npy", z)
    spec_z = load_spec(_tiny_sg2(tmp_path, {"latents": str(tmp_path / "z.npy"), "space": "z"}))
    assert torch.equal(job_latents(spec_z, gen, [0, 1]), x)


def test_per_slot_wplus_codes_with_layers_all(tmp_path):
    raw = yaml.safe_load(_tiny_sg2(tmp_path, {"count": 2}).read_text())
    raw["latent"] = {"space": "wplus", "layers": "all", "truncation": 0.8}
    ws = np.random.default_rng(1).standard_normal((3, 8, 32)).astype(np.float32)  # [N, num_ws, w_dim]
    np.save(tmp_path / "ws_plus.npy", ws)
    raw["samples"] = {"latents": str(tmp_path / "ws_plus.npy"), "space": "wplus"}
    spec = parse_spec(raw, base_dir=str(tmp_path))
    gen = make_generator(spec)
    assert gen.latent_dim == 8 * 32
    check_job_latents(spec, gen)
    x = job_latents(spec, gen, [2, 0])
    np.testing.assert_array_equal(x.numpy(), ws[[2, 0]].reshape(2, -1))
    # one w per sample into every slot
    np.save(tmp_path / "w.npy", ws[:, 0])
    spec_w = parse_spec(dict(raw, samples={"latents": str(tmp_path / "w.npy"), "space": "w"}), base_dir=str(tmp_path))
    np.testing.assert_array_equal(job_latents(spec_w, gen, [1]).numpy(), np.tile(ws[1, 0], 8)[None])
    # per-slot codes without layers: all are refused with the hint
    spec_sub = load_spec(_tiny_sg2(tmp_path, {"latents": str(tmp_path / "ws_plus.npy"), "space": "wplus"}))
    with pytest.raises(SpecError) as e:
        check_job_latents(spec_sub, make_generator(spec_sub))
    assert "layers: all" in str(e.value) and "[3, 8, 32]" in str(e.value)


def _dirs(store: str, n: int) -> None:
    from lrgan_dist.store.zarrstore import Store

    st = Store.open(store, mode="r")
    assert st.layout.n == n
    assert (st.status() == 1).all()
    groups = st.direction_groups()
    assert groups
    for _, _, path in groups:
        g = st.group[path]
        assert g["vectors"].shape[0] == n
        assert (np.asarray(g["status"][:]) == 1).all()
    return st


def test_submit_six_own_latents_synthetic_and_render_png(tmp_path):
    lat = np.random.default_rng(5).standard_normal((6, 64)).astype(np.float32)
    np.save(tmp_path / "six.npy", lat)
    p = _spec(tmp_path, {"latents": "six.npy"})
    proc = cli("submit", str(p), "--report", str(tmp_path / "rep"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    st = _dirs(str(tmp_path / "store.zarr"), 6)
    np.testing.assert_array_equal(st.read("latents"), lat)
    # the report's parquet files carry the store fingerprint and the spec
    import json

    import pandas as pd

    attrs = pd.read_parquet(tmp_path / "rep" / "transfer.parquet").attrs
    assert attrs["lrgan_dist_fingerprint"] == st.fingerprint
    assert json.loads(attrs["lrgan_dist_spec"])["samples"]["count"] == 6
    # export in the reference layout: [k, d] per sample and region
    proc = cli("export", str(tmp_path / "store.zarr"), "--region", "eyes_mask", "--method", "lowrankgan",
               "--format", "reference", "--out", str(tmp_path / "ref"), "--json")
    assert proc.returncode == 0, proc.stderr
    man = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    assert man["fingerprint"] == st.fingerprint and len(man["samples"]) == 6
    rank = np.asarray(st.group["directions/eyes_mask/lowrankgan/rank"][:])
    for e in man["samples"]:
        v = np.load(tmp_path / "ref" / e["file"])
        assert v.shape == (rank[e["sample"]], 64) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    np.testing.assert_array_equal(np.load(tmp_path / "ref" / "latents.npy"), lat)
    proc = cli("export", str(tmp_path / "store.zarr"), "--region", "nose", "--method", "lowrankgan",
               "--out", str(tmp_path / "ref2"))
    assert proc.returncode == 2 and "--region" in proc.stderr and "eyes_mask" in proc.stderr
    proc = cli("render", str(p), "--png", str(tmp_path / "png"), "--seeds", "0-5")
    assert proc.returncode == 0, proc.stderr
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [q.name for q in pngs] == [f"sample_{i:06d}.png" for i in range(6)]
    from PIL import Image

    assert Image.open(pngs[0]).size == (32, 32)
    proc = cli("render", str(p), "--seeds", "6", "--png", str(tmp_path / "png"))
    assert proc.returncode == 2 and "[0, 6)" in proc.stderr


def test_submit_six_own_ws_tiny_stylegan2_and_edit(tmp_path):
    p0 = _tiny_sg2(tmp_path, {"count": 6, "seed": 3})
    gen = make_generator(load_spec(p0))
    ws = gen.sample_latents(3, range(6)).numpy() + 0.01  # six w's of the user's own
    np.save(tmp_path / "ws.npy", ws)
    p = _tiny_sg2(tmp_path, {"latents": "ws.npy", "space": "w"})
    proc = cli("submit", str(p), "--stages", "jacobians,factorize", "--no-report", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    st = _dirs(str(tmp_path / "sg2.zarr"), 6)
    import re

    # -q/-v logging: stage lines with timestamps on stderr (remote logs read the same)
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S* INFO lrgan_dist.pipeline: stage jacobians: started",
                     proc.stderr, re.M), proc.stderr[-2000:]
    np.testing.assert_allclose(st.read("latents"), ws, rtol=0, atol=0)
    proc = cli("edit", str(tmp_path / "sg2.zarr"), "--region", "centre", "--method", "lowrankgan", "--sample", "0-1",
               "--out", str(tmp_path / "grid.png"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "grid.png").stat().st_size > 0
