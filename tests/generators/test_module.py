"""``kind: module`` user generators: explicit factory import, protocol checks, clear errors."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lrgan_dist.apply.build import make_generator
from lrgan_dist.generators.base import GeneratorError, build_generator
from lrgan_dist.generators.module import check_protocol, resolve_factory
from lrgan_dist.spec import parse_spec

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _helper_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))


def test_builds_the_named_factory_with_kwargs():
    G = build_generator("module", {"factory": "tiny_module_gen:make", "kwargs": {"latent_dim": 5, "seed": 2}})
    assert type(G).__name__ == "TinyConvGen"
    assert G.latent_dim == 5 and G.image_shape == (3, 16, 16) and G.seed == 2
    x = G.sample_latents(0, [0, 1])
    assert G.forward(x).shape == (2, 3, 16, 16)


def test_factory_can_be_a_class_or_attribute_path():
    G = build_generator("module", {"factory": "tiny_module_gen:TinyConvGen", "kwargs": {"latent_dim": 3}})
    assert G.latent_dim == 3
    assert resolve_factory("tiny_module_gen:TinyConvGen.sample_latents")  # dotted attribute path


def test_latent_section_is_forwarded_through_the_spec():
    spec = parse_spec({"generator": {"kind": "module", "params": {"factory": "tiny_module_gen:make"}},
                       "latent": {"space": "z"}, "regions": {"all": {"box": [0, 0, 1, 1]}}})
    assert make_generator(spec).latent_dim == 8
    bad = parse_spec({"generator": {"kind": "module", "params": {"factory": "tiny_module_gen:make"}},
                      "latent": {"space": "w"}, "regions": {"all": {"box": [0, 0, 1, 1]}}})
    with pytest.raises(GeneratorError, match="only the latent space 'z'"):
        make_generator(bad)


def test_validation_does_not_import_user_code(tmp_path, monkeypatch):
    """Parsing a spec never imports the factory (lrgan-dist validate builds no generator)."""
    marker = tmp_path / "imported"
    (tmp_path / "sideeffect_gen.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef make(): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    parse_spec({"generator": {"kind": "module", "params": {"factory": "sideeffect_gen:make"}},
                "regions": {"all": {"box": [0, 0, 1, 1]}}})
    assert not marker.exists()
    sys.modules.pop("sideeffect_gen", None)


@pytest.mark.parametrize("factory", ["tiny_module_gen", "tiny_module_gen:", ":make", "tiny module:make",
                                     "tiny_module_gen:make:x", "1abc:make", "tiny_module_gen:ma-ke", 42, None])
def test_bad_factory_strings(factory):
    with pytest.raises(GeneratorError, match="generator.params.factory"):
        build_generator("module", {"factory": factory})


def test_missing_module():
    with pytest.raises(GeneratorError, match="cannot import module 'no_such_pkg_xyz.gen'.*no module named 'no_such_pkg_xyz'"):
        build_generator("module", {"factory": "no_such_pkg_xyz.gen:make"})


def test_module_whose_own_import_fails(tmp_path, monkeypatch):
    (tmp_path / "broken_dep_gen.py").write_text("import not_installed_dependency_qq\ndef make(): pass\n")
    (tmp_path / "raising_gen.py").write_text("raise RuntimeError('kaboom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(GeneratorError, match="its own import of 'not_installed_dependency_qq' is missing"):
        build_generator("module", {"factory": "broken_dep_gen:make"})
    with pytest.raises(GeneratorError, match="raised RuntimeError: kaboom at import"):
        build_generator("module", {"factory": "raising_gen:make"})
    for m in ("broken_dep_gen", "raising_gen"):
        sys.modules.pop(m, None)


def test_missing_or_uncallable_attribute():
    with pytest.raises(GeneratorError, match="has no attribute 'nope'"):
        build_generator("module", {"factory": "tiny_module_gen:nope"})
    with pytest.raises(GeneratorError, match="has no attribute 'missing'"):
        build_generator("module", {"factory": "tiny_module_gen:TinyConvGen.missing"})
    with pytest.raises(GeneratorError, match="is a int, expected a callable"):
        build_generator("module", {"factory": "tiny_module_gen:NOT_CALLABLE"})


def test_factory_errors_are_wrapped():
    with pytest.raises(GeneratorError, match="raised RuntimeError: boom from user code"):
        build_generator("module", {"factory": "tiny_module_gen:raises"})
    with pytest.raises(GeneratorError, match="generator.params.kwargs: calling"):
        build_generator("module", {"factory": "tiny_module_gen:TinyConvGen", "kwargs": {"no_such_arg": 1}})
    with pytest.raises(GeneratorError, match="expected a mapping"):
        build_generator("module", {"factory": "tiny_module_gen:make", "kwargs": [1, 2]})
    with pytest.raises(GeneratorError, match="unknown parameters \\['extra'\\]"):
        build_generator("module", {"factory": "tiny_module_gen:make", "extra": 1})
    with pytest.raises(GeneratorError, match="required"):
        build_generator("module", {})


def test_protocol_violations_are_listed():
    with pytest.raises(GeneratorError, match="does not follow the generator protocol") as ei:
        build_generator("module", {"factory": "tiny_module_gen:not_a_generator"})
    assert "latent_dim" in str(ei.value) and "sample_latents" in str(ei.value)
    with pytest.raises(GeneratorError) as ei:
        build_generator("module", {"factory": "tiny_module_gen:half_generator"})
    msg = str(ei.value)
    assert "image_shape" in msg and "image_range" in msg and "sample_latents" in msg and "info" in msg
    assert "latent_dim" not in msg and "forward" not in msg.split("protocol:")[1]


def test_check_protocol_accepts_a_conforming_object():
    import tiny_module_gen

    g = tiny_module_gen.make()
    assert check_protocol(g) is g
    assert torch.isfinite(g.forward(g.sample_latents(0, [0]))).all()
