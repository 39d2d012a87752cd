"""The bad-input table (docs/errors.md): every case exits 2 with one line naming the
field or file, leaves nothing half-written, and finishes within time and memory caps.

Each case is one CLI call in a fresh subprocess with an address-space cap (2 GiB above
what the interpreter needs) and a wall-clock cap, run as a user would.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slow

BASE: dict[str, Any] = {
    "generator": {"kind": "synthetic", "params": {"latent_dim": 32, "resolution": 16, "seed": 0}},
    "samples": {"count": 4, "seed": 0},
    "grid": {"resolution": 16},
    "regions": {"eyes": {"box": [0.35, 0.28, 0.56, 0.72]}},
    "methods": {"jacobian_svd": {}},
    "compute": {"actors": 1},
    "store": {"chunk_samples": 4},
}
MEM_CAP = 6 << 30  # bytes of address space per CLI call (torch maps ~3 GiB of virtual memory)
TIME_CAP = 120


def _with(path: str, value: Any) -> dict[str, Any]:
    import copy

    spec = copy.deepcopy(BASE)
    node = spec
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return spec


def _spec(tmp: Path, spec: dict[str, Any] | str | bytes, name: str = "job.yaml") -> Path:
    p = tmp / name
    if isinstance(spec, bytes):
        p.write_bytes(spec)
    elif isinstance(spec, str):
        p.write_text(spec)
    else:
        p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEM_CAP, MEM_CAP))


# Each case: (id, builder(tmp) -> argv, expected words in the message).  Builders write
# their inputs under tmp; the store, when a command could create one, is tmp/store.zarr.
Case = tuple[str, Callable[[Path], list[str]], tuple[str, ...]]


def _validate(spec: Any) -> Callable[[Path], list[str]]:
    return lambda tmp: ["validate", str(_spec(tmp, spec))]


def _submit(spec: Any, *extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["submit", str(_spec(tmp, spec)), "--store", str(tmp / "store.zarr"), *extra]


def _alias_bomb() -> str:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return "\n".join(lines) + "\nname: *i\n"


def _fifo(tmp: Path) -> list[str]:
    p = tmp / "job.yaml"
    os.mkfifo(p)
    return ["validate", str(p)]


def _mask_to_devzero(tmp: Path) -> list[str]:
    (tmp / "m.npy").symlink_to("/dev/zero")
    return ["submit", str(_spec(tmp, {**BASE, "regions": {"eyes": {"mask": "m.npy"}}})), "--store", str(tmp / "store.zarr")]


def _mask_file(content: bytes, name: str = "m.png") -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        (tmp / name).write_bytes(content)
        return ["submit", str(_spec(tmp, {**BASE, "regions": {"eyes": {"mask": name}}})), "--store", str(tmp / "store.zarr")]
    return build


def _png_bomb() -> bytes:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("1", (60000, 60000)).save(buf, format="PNG")
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    from io import BytesIO

    buf = BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _render(*args: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["render", str(_spec(tmp, BASE)), *args, "--out", str(tmp / "out.npz")]


CASES: list[Case] = [
    ("malformed-yaml", _validate("generator: {kind: synthetic\n"), ("malformed YAML",)),
    ("binary-spec", _validate(b"\x00\x01\x02\xff\xfe binary"), ("expected a UTF-8 YAML text file",)),
    ("spec-not-mapping", _validate("- a\n- b\n"), ("expected a mapping",)),
    ("unknown-top-key", _validate({**BASE, "sampels": {}}), ("sampels",)),
    ("unknown-generator", _validate(_with("generator.kind", "stylegan9")), ("generator.kind",)),
    ("unknown-method", _validate({**BASE, "methods": {"foo": {}}}), ("methods.foo",)),
    ("method-bad-param", _validate({**BASE, "methods": {"lowrankgan": {"lam": -1}}}), ("lam",)),
    ("method-unknown-param", _validate({**BASE, "methods": {"resefa": {"colour": 1}}}), ("colour",)),
    ("samples-count-string", _validate(_with("samples.count", "many")), ("samples.count",)),
    ("samples-count-negative", _validate(_with("samples.count", -3)), ("samples.count",)),
    ("samples-count-huge", _validate(_with("samples.count", 10**12)), ("samples.count", "at most")),
    ("samples-count-float", _validate(_with("samples.count", 1e12)), ("samples.count",)),
    ("seed-string", _validate(_with("samples.seed", "abc")), ("samples.seed",)),
    ("latent-dim-huge", _validate(_with("generator.params.latent_dim", 10**9)), ("latent_dim",)),
    ("latent-dim-exp-string", _validate(_with("generator.params.latent_dim", "1e9")), ("latent_dim",)),
    ("grid-too-large", _submit(_with("grid.resolution", 64)), ("grid.resolution",)),
    ("grid-channels", _validate(_with("grid.channels", "cmyk")), ("grid.channels",)),
    ("box-reversed", _validate({**BASE, "regions": {"eyes": {"box": [0.5, 0.2, 0.3, 0.8]}}}), ("regions.eyes.box",)),
    ("box-three-values", _validate({**BASE, "regions": {"eyes": {"box": [0.5, 0.2, 0.3]}}}), ("regions.eyes.box",)),
    ("box-outside", _validate({**BASE, "regions": {"eyes": {"box": [0.5, 0.2, 1.3, 0.8]}}}), ("regions.eyes.box",)),
    ("region-two-kinds", _validate({**BASE, "regions": {"eyes": {"box": [0, 0, .5, .5], "preset": "ffhq:eyes"}}}),
     ("regions.eyes", "exactly one")),
    ("region-none", _validate({**BASE, "regions": {"eyes": {}}}), ("regions.eyes",)),
    ("region-bad-preset", _validate({**BASE, "regions": {"eyes": {"preset": "ffhq:ears"}}}), ("regions.eyes.preset",)),
    ("region-global-part", _validate({**BASE, "regions": {"light": {"part": "lighting"}}}), ("regions.light.part",)),
    ("region-unknown-part", _validate({**BASE, "regions": {"x": {"part": "tail"}}}), ("regions.x.part",)),
    ("region-mask-jpg", _validate({**BASE, "regions": {"eyes": {"mask": "m.jpg"}}}), ("regions.eyes.mask",)),
    ("region-slash-name", _validate({**BASE, "regions": {"a/b": {"box": [0, 0, .5, .5]}}}), ("regions",)),
    ("no-regions", _validate({**BASE, "regions": {}}), ("regions",)),
    ("compute-device", _validate(_with("compute.device", "tpu")), ("compute.device",)),
    ("compute-actors", _validate(_with("compute.actors", 0)), ("compute.actors",)),
    ("chunk-zero", _validate(_with("store.chunk_samples", 0)), ("store.chunk_samples",)),
    ("transfer-sources", _validate({**BASE, "transfer": {"sources": 99}}), ("transfer.sources",)),
    ("alias-bomb", _validate(_alias_bomb()), ("alias",)),
    ("huge-spec", _validate("name: x\n" + "# padding\n" * 300_000), ("larger than",)),
    ("fifo-spec", _fifo, ("regular file",)),
    ("devzero-spec", lambda tmp: ["validate", "/dev/zero"], ("regular file",)),
    ("missing-spec", lambda tmp: ["validate", str(tmp / "nope.yaml")], ("does not exist",)),
    ("dir-spec", lambda tmp: ["validate", str(tmp)], ("directory",)),
    ("mask-devzero", _mask_to_devzero, ("'eyes'", "regular file")),
    ("mask-missing", _submit({**BASE, "regions": {"eyes": {"mask": "none.npy"}}}), ("none.npy",)),
    ("mask-corrupt-png", _mask_file(b"\x89PNG\r\n\x1a\n garbage"), ("m.png",)),
    ("mask-png-bomb", _mask_file(_png_bomb()), ("m.png",)),
    ("mask-corrupt-npy", _mask_file(b"\x93NUMPY garbage", "m.npy"), ("m.npy",)),
    ("mask-wrong-shape", _mask_file(_npy(np.ones((5, 7), np.float32)), "m.npy"), ("m.npy", "shape")),
    ("mask-out-of-range", _mask_file(_npy(np.full((16, 16), 1.5, np.float32)), "m.npy"), ("[0, 1]",)),
    ("mask-nan", _mask_file(_npy(np.full((16, 16), np.nan, np.float32)), "m.npy"), ("NaN",)),
    ("store-bad-scheme", _submit(BASE, "--store", "foo://bucket/x"), ("--store", "foo://")),
    ("address-unreachable", _submit(BASE, "--address", "127.0.0.1:1"), ("127.0.0.1:1",)),
    ("samples-override-bad", _submit(BASE, "--samples", "0"), ("--samples",)),
    ("stages-unknown", _submit(BASE, "--stages", "jacobians,colour"), ("--stages",)),
    ("render-seeds-huge", _render("--seeds", "0-1000000000000"), ("--seeds",)),
    ("render-seeds-garbage", _render("--seeds", "a-b"), ("--seeds",)),
    ("inspect-missing-store", lambda tmp: ["inspect", str(tmp / "none.zarr")], ("no store",)),
    ("report-missing-store", lambda tmp: ["report", str(tmp / "none.zarr"), "--out", str(tmp / "rep")], ("no store",)),
    ("checkpoint-url", _validate({**BASE, "generator": {"kind": "stylegan2",
                                                        "params": {"checkpoint": "https://example.com/g.pkl"}}}),
     ("checkpoint",)),
]


@pytest.mark.parametrize("build,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, build, words):
    argv = build(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", LRGAN_CONNECT_TIMEOUT_S="10")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "lrgan_dist", *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIME_CAP, env=env, stdin=subprocess.DEVNULL, preexec_fn=_limit)
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = [ln for ln in err.splitlines() if ln.strip() and "WARNING" not in ln and "network_util" not in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and len(lines[0]) > len("error: ") + 10, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "store.zarr").exists(), "a half-written store was left behind"
    after = sorted(p.name for p in tmp_path.iterdir())
    assert set(after) - set(before) <= {"out.npz"} and not (tmp_path / "out.npz").exists()


def test_table_has_forty_cases():
    assert len(CASES) >= 40
