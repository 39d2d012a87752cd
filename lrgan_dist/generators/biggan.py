"""``generator.kind: biggan`` -- BigGAN-deep (Brock et al., ICLR 2019) through ``pytorch-pretrained-biggan``.

The network is the ``pytorch-pretrained-biggan`` package's :class:`BigGAN` (Hugging Face's
PyTorch port of the TF-Hub BigGAN-deep generators; ``pip install pytorch-pretrained-biggan``,
our ``biggan`` extra).  We build it ourselves from a local checkpoint directory and never
call ``BigGAN.from_pretrained`` (which downloads, and unpickles with plain ``torch.load``).

Checkpoint (``params.checkpoint``): a directory holding the package's two files

* ``config.json`` -- :class:`BigGANConfig` fields: ``output_dim``, ``z_dim``,
  ``class_embed_dim``, ``channel_width``, ``num_classes``, ``layers`` (list of
  ``[upsample, in_mult, out_mult]``), ``attention_layer_position``, ``eps``, ``n_stats``;
  checked for structural consistency before anything is built;
* ``pytorch_model.bin`` -- the model's ``state_dict`` saved with ``torch.save``, read with
  ``torch.load(weights_only=True)`` (tensors only: no code from the file runs) and loaded
  strictly (every missing / unexpected / mis-shaped key is reported).

See ``docs/generators.md`` for the exact layouts and how to fetch the official files.

Parameters (``generator.params``)
---------------------------------
* ``checkpoint`` -- the directory above (required).
* ``truncation`` (ψ, default 0.4) -- in (0, 1]: z is the package's truncated noise times ψ,
  and ψ selects the batch-norm statistics (the model was exported with 51 precomputed
  statistics for ψ ∈ [0, 1]).  ``latent.truncation`` in the job spec sets the same value.
* ``classes`` -- the ImageNet class of each sample (see *Classes* below): an integer
  (every sample), a non-empty list of integers, or ``"sample"`` (random classes).
* ``space`` -- only ``z`` (BigGAN has no intermediate latent); ``layers`` must be null.
* ``dtype`` -- ``float32`` (default) or ``float64``; ``device`` -- torch device (cpu).

Latents
-------
``sample_latents(seed, indices)`` draws z_i [z_dim] from ``latent_rng(seed, i)`` with the
semantics of the package's ``truncated_noise_sample``: a standard normal truncated to
[-2, 2] (values outside are redrawn from the same per-sample stream until they fall inside),
times ψ.  Row i depends on ``(seed, i)`` only.

Classes -- decision
-------------------
The protocol's ``forward(x, anchor)`` receives latents only, yet each sample needs its
own class, and the class must be the same in every process that ever renders that sample
(the Jacobian actors, the transfer workers, ``lrgan-dist edit`` / ``render``), none of
which knows the sample's index.  The class is therefore a **pure function of the sample's
own latent**, the ``anchor``:

* ``classes: K`` -- class K for every sample;
* ``classes: [K0, K1, ...]`` or ``"sample"`` -- class ``pool[h(anchor) mod len(pool)]``
  where ``pool`` is the list (or ``range(num_classes)``) and ``h`` is the first 8 bytes of
  the SHA-256 of the anchor's float32 bytes.  Since z_i is a function of ``(seed, i)``,
  so is the class: seeded, random-looking, independent of batch, actor and order, and
  recoverable from any stored latent.  (Index-cycled lists are not offered: a replica
  that renders a stored latent cannot know its index.)

``forward(x, anchor)`` uses the anchor's class (``anchor`` defaults to ``x``); the Jacobian
engine always passes the sample's latent as anchor, and edits ``forward(x + α·v, anchor=x)``
keep the class of x.  The class is read from the anchor's *values*, which exist under
``torch.func.jvp`` and the engine's ``vmap`` over tangents (the primal is not batched), but
not when vmapping over samples (a batched anchor): that raises a GeneratorError.
:meth:`BigGANGenerator.class_of` exposes the rule.

Forward-mode AD: checked in ``tests/generators/test_biggan.py``: ``vmap(jvp)`` works through
the package's model in eval mode (the conditional batch norm uses stored statistics
and the class embedding; the spectral-norm hooks do no power iteration in eval mode, so
nothing is updated in place); the dual-tensor loop (``vectorize=False``) gives the same J.

Cost: one forward pass of BigGAN-deep-256 is ≈ 69 GFLOP per image (``FlopCounterMode``,
multiply-add = 2; ≈ 2 s on one busy CPU core); its weights take 227 MB in float32.  A full
Jacobian in z (d = 128) costs ≈ d primal-equivalent passes plus one primal per
``jvp_chunk`` (see :mod:`lrgan_dist.core.jacobian`); computing the per-sample classes costs one
SHA-256 of d floats per sample.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

import numpy as np
import torch
from torch import Tensor, nn

from lrgan_dist.core.digest import file_sha256
from lrgan_dist.generators.base import GeneratorError, assert_shape, latent_rng, register, state_dict_mismatch

__all__ = ["BigGANGenerator", "make_biggan", "truncated_normal", "load_biggan_checkpoint",
           "check_config", "write_random_checkpoint", "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "pytorch_model.bin"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_CONFIG_KEYS = ("output_dim", "z_dim", "class_embed_dim", "channel_width", "num_classes", "layers",
                "attention_layer_position", "eps", "n_stats")
TRUNC_BOUND = 2.0  # truncated_noise_sample: truncnorm(-2, 2)


def _package() -> Any:
    try:
        import pytorch_pretrained_biggan as pkg
    except ImportError as exc:  # the package itself, or scipy, which its __init__ imports undeclared
        raise GeneratorError("generator.kind 'biggan' needs the pytorch-pretrained-biggan package and scipy; "
                             "install them with `pip install pytorch-pretrained-biggan scipy` "
                             f"(or `pip install lrgan-dist[biggan]`); import failed: {exc}") from None
    return pkg


def truncated_normal(rng: np.random.Generator, size: int, truncation: float, bound: float = TRUNC_BOUND) -> np.ndarray:
    """[size] float64: N(0, 1) truncated to [-bound, bound] by redrawing, times ``truncation``.

    The distribution of ``pytorch_pretrained_biggan.truncated_noise_sample`` (scipy's
    ``truncnorm(-2, 2)``), drawn from our own per-sample stream for reproducibility.
    """
    v = rng.standard_normal(size)
    bad = np.abs(v) > bound
    while bad.any():  # P(|v| > 2) ≈ 4.6 %: a couple of rounds at most
        v[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(v) > bound
    return v * truncation


# ------------------------------------------------------------------------------- checkpoints


def check_config(cfg: Mapping[str, Any], where: str = "config.json") -> dict[str, Any]:
    """Validate a BigGANConfig dict structurally; returns it with ``layers`` as lists."""
    missing = [k for k in _CONFIG_KEYS if k not in cfg]
    if missing:
        raise GeneratorError(f"{where}: missing keys {missing}; expected all of {list(_CONFIG_KEYS)}")

    def posint(k: str) -> int:
        v = cfg[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise GeneratorError(f"{where}: {k}: expected a positive integer, received {v!r}")
        return v

    for k in ("output_dim", "z_dim", "class_embed_dim", "channel_width", "num_classes", "n_stats"):
        posint(k)
    if cfg["n_stats"] < 2:
        raise GeneratorError(f"{where}: n_stats: expected >= 2 (statistics per truncation), received {cfg['n_stats']}")
    if isinstance(cfg["eps"], bool) or not isinstance(cfg["eps"], (int, float)) or not cfg["eps"] > 0:
        raise GeneratorError(f"{where}: eps: expected a positive number, received {cfg['eps']!r}")
    ch = cfg["channel_width"]
    if ch < 3:
        raise GeneratorError(f"{where}: channel_width: expected >= 3 (RGB is sliced from ch channels), received {ch}")
    layers = cfg["layers"]
    if not isinstance(layers, (list, tuple)) or not layers:
        raise GeneratorError(f"{where}: layers: expected a non-empty list of [upsample, in, out], received {layers!r}")
    out_layers: list[list[Any]] = []
    prev = 16  # the first block reads gen_z's 16·ch channels
    ups = 0
    for i, layer in enumerate(layers):
        ok = isinstance(layer, (list, tuple)) and len(layer) == 3 and isinstance(layer[0], bool) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in layer[1:])
        if not ok:
            raise GeneratorError(f"{where}: layers[{i}]: expected [upsample: bool, in: int, out: int], received {layer!r}")
        up, cin, cout = layer
        if cin != prev:
            raise GeneratorError(f"{where}: layers[{i}]: input multiplier {cin} does not match the previous output "
                                 f"{prev} (the first block reads 16·channel_width channels)")
        if cout != cin and ch * cout != (ch * cin) // 2:
            raise GeneratorError(f"{where}: layers[{i}]: a block may keep or halve its channels; received {cin} -> {cout}")
        # middle = in·ch // 4 (bottleneck)
        if (ch * cin) // 4 < 1:
            raise GeneratorError(f"{where}: layers[{i}]: bottleneck of {ch * cin} // 4 channels is empty")
        ups += bool(up)
        prev = cout
        out_layers.append([bool(up), int(cin), int(cout)])
    if prev != 1:
        raise GeneratorError(f"{where}: layers: the last block must output 1·channel_width channels, received {prev}")
    if 4 * 2 ** ups != cfg["output_dim"]:
        raise GeneratorError(f"{where}: output_dim {cfg['output_dim']} does not match the layers: "
                             f"4·2^{ups} upsampling blocks = {4 * 2 ** ups}")
    att = cfg["attention_layer_position"]
    if isinstance(att, bool) or not isinstance(att, int):
        raise GeneratorError(f"{where}: attention_layer_position: expected an integer, received {att!r}")
    if 0 <= att < len(layers) and (ch * layers[att][1]) // 8 < 1:
        raise GeneratorError(f"{where}: attention at layer {att} needs >= 8 channels, has {ch * layers[att][1]}")
    return {**dict(cfg), "layers": out_layers}


def load_biggan_checkpoint(directory: str | os.PathLike, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, dict[str, Any]]:
    """Build ``BigGAN`` from ``<dir>/config.json`` and ``<dir>/pytorch_model.bin`` without running file code.

    Returns (model in eval mode without gradients, checkpoint info for provenance).
    """
    pkg = _package()
    d = Path(directory).expanduser()
    where = f"generator.params.checkpoint: {str(d)!r}"
    if not d.is_dir():
        raise GeneratorError(f"{where}: expected a directory with {CONFIG_NAME} and {WEIGHTS_NAME} "
                             f"(pytorch-pretrained-biggan format); {'it is a file' if d.exists() else 'it does not exist'}")
    cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise GeneratorError(f"{where}: missing {p.name}; expected {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        raw = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GeneratorError(f"{where}: {CONFIG_NAME} is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise GeneratorError(f"{where}: {CONFIG_NAME}: expected a JSON object, received {type(raw).__name__}")
    cfg = check_config(raw, f"{cfg_path}")
    try:
        state = torch.load(w_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling refusal or corruption
        raise GeneratorError(f"{where}: {WEIGHTS_NAME} could not be read as a weights-only state_dict "
                             f"({type(exc).__name__}: {str(exc)[:300]})") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise GeneratorError(f"{where}: {WEIGHTS_NAME}: expected a state_dict (str -> tensor), "
                             f"received {type(state).__name__}")
    config = pkg.BigGANConfig.from_dict(cfg)
    with torch.random.fork_rng(devices=[]):  # construction draws random init we overwrite
        model = pkg.BigGAN(config)
    own = model.state_dict()
    problem = state_dict_mismatch(state, own)
    if problem:
        raise GeneratorError(f"{where}: {WEIGHTS_NAME} does not match {CONFIG_NAME}: {problem}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    model = model.to(dtype).eval().requires_grad_(False)
    info = {"source": str(d), "format": "pytorch-pretrained-biggan", "config": cfg,
            "weights_sha256": file_sha256(w_path), "config_sha256": file_sha256(cfg_path)}
    return model, info


def write_random_checkpoint(directory: str | os.PathLike, seed: int = 0, perturb: float = 0.1,
                            **config: Any) -> Path:
    """Write a random-weight checkpoint directory (tests, demos) in the package's format.

    ``config`` overrides BigGANConfig fields (defaults: a 32×32 model with
    ``channel_width`` 8 and 10 classes).  ``perturb`` adds ``perturb·N(0, 1)`` to the
    batch-norm statistics and the attention gain (the package initialises them to
    0 / 1 / 0, which would leave those code paths untested).
    """
    pkg = _package()
    cfg: dict[str, Any] = {"output_dim": 32, "z_dim": 16, "class_embed_dim": 16, "channel_width": 8, "num_classes": 10,
                           "layers": [[False, 16, 16], [True, 16, 8], [True, 8, 4], [False, 4, 2], [True, 2, 1]],
                           "attention_layer_position": 3, "eps": 1e-4, "n_stats": 51}
    cfg.update(config)
    cfg = check_config(cfg, "write_random_checkpoint")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = pkg.BigGAN(pkg.BigGANConfig.from_dict(cfg))
        with torch.no_grad():
            for name, t in model.named_buffers():
                if name.endswith("running_means"):
                    t.add_(perturb * torch.randn_like(t))
                elif name.endswith("running_vars"):
                    t.mul_(torch.exp(perturb * torch.randn_like(t)))
            for name, p in model.named_parameters():
                if name.endswith("gamma"):
                    p.add_(perturb * torch.randn_like(p) + perturb)
            # The final (unconditional) batch norm's affine is allocated uninitialised.
            bn = model.generator.bn
            bn.weight.copy_(1 + perturb * torch.randn_like(bn.weight))
            bn.bias.copy_(perturb * torch.randn_like(bn.bias))
        # Two power iterations so that the stored u, v are meaningful spectral estimates.
        model.train()
        with torch.no_grad():
            for _ in range(2):
                z = torch.zeros(1, cfg["z_dim"])
                c = torch.zeros(1, cfg["num_classes"])
                c[0, 0] = 1
                model(z, c, 0.5)
    model.eval()
    torch.save(model.state_dict(), d / WEIGHTS_NAME)
    (d / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")
    return d


# ------------------------------------------------------------------------------- adapter


class BigGANGenerator(nn.Module):
    """BigGAN-deep behind the generator protocol (module docstring: parameters, classes)."""

    image_range: tuple[float, float] = (-1.0, 1.0)

    def __init__(self, checkpoint: str | os.PathLike | None = None, truncation: float = 0.4,
                 classes: int | Sequence[int] | str = 0, space: str = "z", layers: Sequence[int] | None = None,
                 dtype: str = "float32", device: str = "cpu") -> None:
        super().__init__()
        if checkpoint is None or not isinstance(checkpoint, (str, os.PathLike)):
            raise GeneratorError("generator.params.checkpoint: expected the path of a directory with "
                                 f"{CONFIG_NAME} and {WEIGHTS_NAME}, received {checkpoint!r}")
        if dtype not in _DTYPES:
            raise GeneratorError(f"generator.params.dtype: expected one of {list(_DTYPES)}, received {dtype!r}")
        if space != "z":
            raise GeneratorError(f"generator.params.space (latent.space): BigGAN has only the latent space 'z'; "
                                 f"received {space!r}")
        if layers is not None:
            raise GeneratorError(f"generator.params.layers (latent.layers): BigGAN has no W+ layers; received {layers!r}")
        if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not 0 < truncation <= 1:
            raise GeneratorError(f"generator.params.truncation: expected a number in (0, 1], received {truncation!r}")
        self.truncation = float(truncation)
        model, self._ckpt_info = load_biggan_checkpoint(checkpoint, _DTYPES[dtype])
        cfg = self._ckpt_info["config"]
        self.num_classes = int(cfg["num_classes"])
        self.z_dim = int(cfg["z_dim"])
        self.classes, self._pool = self._parse_classes(classes)
        self.model = model.to(device)
        self.dtype_name = dtype
        self.latent_dim = self.z_dim
        self.image_shape = (3, int(cfg["output_dim"]), int(cfg["output_dim"]))
        self.eval()

    def _parse_classes(self, classes: Any) -> tuple[Any, list[int] | None]:
        k = self.num_classes
        where = "generator.params.classes"
        if classes == "sample":
            return "sample", list(range(k))
        if isinstance(classes, int) and not isinstance(classes, bool):
            if not 0 <= classes < k:
                raise GeneratorError(f"{where}: expected a class in 0..{k - 1}, received {classes}")
            return int(classes), None
        if isinstance(classes, (list, tuple)) and classes and all(
                isinstance(c, int) and not isinstance(c, bool) for c in classes):
            bad = [c for c in classes if not 0 <= c < k]
            if bad:
                raise GeneratorError(f"{where}: classes {bad} out of range; expected classes in 0..{k - 1}")
            return [int(c) for c in classes], [int(c) for c in classes]
        raise GeneratorError(f"{where}: expected a class index, a non-empty list of class indices or 'sample'; "
                             f"received {classes!r}")

    # ------------------------------------------------------------------ classes
    def class_of(self, latents: Tensor | np.ndarray) -> list[int]:
        """The class of each sample whose own latent is a row of ``latents`` [n, d]."""
        if self._pool is None:
            return [int(self.classes)] * int(latents.shape[0])
        if isinstance(latents, Tensor):
            # tolist(), not numpy(): it also reads plain tensors captured inside torch.func
            # transforms (jvp/vmap), where .numpy() has no storage to read.
            try:
                rows = latents.detach().to(torch.float32).tolist()
            except RuntimeError as exc:  # vmapped over samples: no concrete values
                raise GeneratorError("biggan: per-sample classes are a function of the sample's own latent, "
                                     "which must hold concrete values; pass anchor= (the unperturbed latents, "
                                     f"not vmapped over) ({str(exc)[:120]})") from None
            arr = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        else:
            arr = np.ascontiguousarray(np.asarray(latents, dtype=np.float32))
        pool = self._pool
        out = []
        for row in arr.reshape(arr.shape[0], -1):
            h = int.from_bytes(hashlib.sha256(row.tobytes()).digest()[:8], "little")
            out.append(pool[h % len(pool)])
        return out

    # ------------------------------------------------------------------ protocol
    def _class_embedding(self) -> nn.Linear:
        # pytorch_pretrained_biggan's BigGAN.embeddings is an nn.Linear (typed access to a submodule)
        return cast(nn.Linear, self.model.embeddings)

    @property
    def _dtype(self) -> torch.dtype:
        return self._class_embedding().weight.dtype

    def sample_latents(self, seed: int, indices: Sequence[int]) -> Tensor:
        """[n, z_dim] float32: truncated normal (|v| ≤ 2) × ψ from ``latent_rng(seed, i)``."""
        idx = [int(i) for i in np.asarray(indices).reshape(-1)]
        z = np.stack([truncated_normal(latent_rng(seed, i), self.z_dim, self.truncation) for i in idx]) if idx \
            else np.zeros((0, self.z_dim))
        return torch.from_numpy(z).to(torch.float32)

    def forward(self, x: Tensor, anchor: Tensor | None = None) -> Tensor:
        """x [n, z_dim] (+ anchor [n, z_dim], the samples' own latents: their classes) ->
        images [n, 3, H, W] in [-1, 1], dtype of x."""
        assert_shape(x, (None, self.latent_dim), "x")
        if anchor is not None:
            assert_shape(anchor, tuple(x.shape), "anchor")
        cls = self.class_of(x if anchor is None else anchor)
        dev = self._class_embedding().weight.device
        onehot = torch.nn.functional.one_hot(torch.as_tensor(cls, dtype=torch.long, device=dev),
                                             self.num_classes).to(self._dtype)
        img = self.model(x.to(self._dtype), onehot, self.truncation)
        return img.to(x.dtype)

    def info(self) -> dict[str, Any]:
        return {
            "kind": "biggan",
            "params": {
                "checkpoint": self._ckpt_info["source"],
                "truncation": self.truncation,
                "classes": self.classes,
                "space": "z",
                "dtype": self.dtype_name,
            },
            "checkpoint": {k: v for k, v in self._ckpt_info.items()},
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
            "class_rule": "fixed" if self._pool is None else "sha256(float32 anchor bytes)[:8] mod len(pool)",
            "image_shape": list(self.image_shape),
            "image_range": list(self.image_range),
        }


_PARAMS = ("checkpoint", "truncation", "classes", "space", "layers", "dtype", "device")


@register("biggan", params=_PARAMS)
def make_biggan(**params: Any) -> BigGANGenerator:
    """Factory for ``generator.kind: biggan`` (parameters documented on the module)."""
    return BigGANGenerator(**params)
