"""Safe loading of StyleGAN2 checkpoints: NVIDIA snapshot pickles and rosinality ``.pt``.

Loading a checkpoint never executes code from the file (docs/spec.md) and needs
neither NVIDIA's sources (``dnnlib``, ``torch_utils``) nor rosinality's installed.

NVIDIA snapshots (stylegan2-ada-pytorch, stylegan3 ``networks_stylegan2``)
--------------------------------------------------------------------------
A snapshot ``network-snapshot-*.pkl`` is a plain ``pickle.dump`` of
``{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}``.  The networks are
*persistent classes* (``torch_utils.persistence``): each module pickles as
``_reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src,
class_name, state}``, where ``module_src`` is the full source of the defining module
(which the official loader ``exec``-s!) and ``state`` the module's ``__dict__``
(``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs`` …).  Tensors pickle as
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`` (parameters via
``_rebuild_parameter``) with each storage as ``torch.storage._load_from_bytes(b)``,
``b`` being a legacy ``torch.save`` stream (``_load_from_bytes`` itself calls
``torch.load(..., weights_only=False)``).

:class:`RestrictedUnpickler` reads such a file with a ``find_class`` that resolves only
an allow-list of globals, each to an *inert stand-in* written here:

====================================================  ======================================
global in the pickle                                  stand-in
====================================================  ======================================
``torch_utils.persistence._reconstruct_persistent_obj``  records ``meta`` in a
                                                      :class:`PersistentObject`; ``module_src``
                                                      is kept as text, never executed
``torch.storage._load_from_bytes``                    ``torch.load(BytesIO(b), weights_only=True,
                                                      map_location='cpu')`` (torch's own
                                                      restricted unpickler)
``torch._utils._rebuild_tensor[_v2]``,                builds a CPU tensor view of that storage
``_rebuild_parameter[_with_state]``                   (hooks/metadata ignored)
``collections.OrderedDict``, ``builtins.set`` …       the builtin container
``numpy[._core|.core].multiarray.scalar /             numpy values rebuilt from raw bytes with
_reconstruct``, ``numpy.dtype``, ``numpy.ndarray``    ``numpy.frombuffer`` (numpy-1 and numpy-2
                                                      module paths)
``dnnlib.util.EasyDict``                              ``dict``
``_codecs.encode`` (protocol-2 ``bytes``)             ``str.encode('latin-1')``
====================================================  ======================================

Every other global (``os.system``, ``builtins.eval``, ``copyreg._reconstructor``, any
torch or user class …) raises :class:`UnsafeCheckpointError` naming it; persistent IDs
are refused too.  A persistent object's ``module_src`` -- the part of an NVIDIA pickle
that the official loader executes -- is only stored (with its SHA-256 for provenance).
After unpickling we walk ``G_ema`` (never ``G``: the EMA weights are the ones to use):
``_parameters`` and persistent ``_buffers`` of every ``_modules`` child under the
official dotted names give the state dict, ``_init_kwargs`` the constructor arguments.
The network is rebuilt with our own :class:`~.stylegan2_net.Generator` and the weights
are cross-checked against it: the architecture named by ``init_kwargs`` must match the
one the tensors imply (``skip`` → a ToRGB in every block, ``resnet`` → ``skip`` branches,
``orig`` → neither), and every key and shape must match (a mismatch raises
:class:`~.base.GeneratorError` naming the key, received vs expected).

rosinality checkpoints (``stylegan2-pytorch``)
----------------------------------------------
``torch.load(path, weights_only=True)`` (``argparse.Namespace`` is allow-listed for the
``args`` entry of training checkpoints); the generator is ``ckpt['g_ema']`` and, when
present (``convert_weight.py`` output), ``ckpt['latent_avg']`` the truncation centre;
otherwise w_avg is estimated as the mean of 10 000 mapped z drawn with a fixed seed.
Size, mapping depth, latent width and channels (hence ``channel_base`` /
``channel_max``; rosinality's channel multiplier m gives ``channel_base = 16384·m``) are
inferred from the weight shapes; the mapping lr multiplier is not stored and defaults
to rosinality's 0.01.  Key mapping (rosinality → official):

=================================  =====================================================
``style.{i}.weight|bias``          ``mapping.fc{i-1}.weight|bias``  (i = 1 … n_mlp)
``latent_avg``                     ``mapping.w_avg``
``input.input`` [1, C, 4, 4]       ``synthesis.b4.const`` [C, 4, 4]
``conv1.*``                        ``synthesis.b4.conv1.*``
``convs.{2k}.*`` / ``{2k+1}.*``    ``synthesis.b{2^(k+3)}.conv0.*`` / ``conv1.*``
``to_rgb1.*`` / ``to_rgbs.{k}.*``  ``synthesis.b4.torgb.*`` / ``synthesis.b{2^(k+3)}.torgb.*``
``noises.noise_{j}`` [1,1,r,r]     ``noise_const`` [r, r] of the j-th conv layer
within a layer:
``conv.weight`` [1, O, I, k, k]    ``weight`` [O, I, k, k]  (same values: demodulation and
                                   the 1/√fan-in ToRGB gain make the two scalings agree)
``conv.modulation.weight|bias``    ``affine.weight|bias``
``noise.weight`` [1]               ``noise_strength`` []
``activate.bias``                  ``bias``
``bias`` [1, 3, 1, 1] (ToRGB)      ``bias`` [3]
``*.blur.kernel``,                 not weights: checked to be one FIR filter, which becomes
``*.upsample.kernel``              ``resample_filter``
=================================  =====================================================
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Mapping

import torch

from lrgan_dist.core.digest import file_sha256, to_jsonable
from lrgan_dist.generators.base import GeneratorError
from lrgan_dist.generators.checkpoints.unpickler import (
    PersistentObject,
    RestrictedUnpickler,
    UnsafeCheckpointError,
    safe_unpickle,
)
from lrgan_dist.generators.stylegan2.net import Generator, setup_filter

__all__ = [
    "UnsafeCheckpointError",
    "PersistentObject",
    "RestrictedUnpickler",
    "Checkpoint",
    "safe_unpickle",
    "load_checkpoint",
    "load_nvidia_pickle",
    "load_rosinality",
    "rosinality_to_official",
    "official_to_rosinality",
    "build_network",
    "infer_architecture",
]


# --------------------------------------------------------------------------- results

@dataclass
class Checkpoint:
    """A generator read from disk: official-name state dict + official constructor kwargs."""

    format: str  # "nvidia-pkl" | "rosinality-pt"
    source: str
    init_kwargs: dict
    state_dict: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)  # JSON-able provenance

    def info(self) -> dict[str, Any]:
        return {"format": self.format, "source": self.source, "init_kwargs": self.init_kwargs, **self.meta}


# A legacy (pre-zip) torch.save stream starts with this pickled magic number.
_LEGACY_TORCH_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)


_EXPECTED = "expected an NVIDIA snapshot .pkl or a rosinality .pt checkpoint file"
_ZIP_MAGIC = b"PK\x03\x04"


def _format_hint(head: bytes) -> str:
    """What the first bytes of a non-checkpoint file look like (for the error message)."""
    if not head:
        return "an empty file"
    if head.startswith(b"\x93NUMPY"):
        return "a numpy .npy array"
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff"):
        return "an image"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown binary data"


def load_checkpoint(path: str | os.PathLike, **kwargs: Any) -> Checkpoint:
    """Read an NVIDIA ``.pkl`` snapshot or a rosinality ``.pt`` (format from content/suffix).

    Every unreadable file -- missing, a directory, empty, truncated, corrupt, another
    format (``.npz``, ``.npy``, text) -- raises :class:`GeneratorError` naming the file,
    what it looks like and what was expected.  Corruption *inside* raw tensor bytes cannot
    be detected (neither format stores checksums) unless it produces NaN/Inf weights, which
    :func:`build_network` refuses; the file's SHA-256 is kept for provenance.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise GeneratorError(f"generator.params.checkpoint: {path!r} is a directory; {_EXPECTED}")
    if not os.path.isfile(path):
        raise GeneratorError(f"generator.params.checkpoint: file not found: {path!r}; {_EXPECTED} (a relative path "
                             f"is looked up next to the job spec, then in the working directory)")
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    if zipfile.is_zipfile(path):  # torch.save zip format -- or some other zip archive (.npz)
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise GeneratorError(f"generator.params.checkpoint: {path!r} is an unreadable zip archive ({exc}); "
                                 f"{_EXPECTED} (truncated or corrupt file?)") from None
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            hint = " (a numpy .npz archive?)" if names and all(n.endswith(".npy") for n in names) else ""
            raise GeneratorError(f"generator.params.checkpoint: {path!r} is a zip archive with entries {names[:4]}"
                                 f"{hint} but not a torch.save file (no data.pkl); {_EXPECTED}")
        return load_rosinality(path, **kwargs)
    if head == _LEGACY_TORCH_MAGIC:  # legacy (pre-zip) torch.save
        return load_rosinality(path, **kwargs)
    if head.startswith(_ZIP_MAGIC):  # a zip whose central directory (at the end) is gone
        raise GeneratorError(f"generator.params.checkpoint: {path!r} starts like a zip archive (torch.save .pt) but "
                             f"its zip directory is missing: truncated or corrupt file; {_EXPECTED}")
    if not head.startswith(b"\x80"):
        raise GeneratorError(
            f"generator.params.checkpoint: {path!r} is neither a pickle (.pkl, NVIDIA snapshot) nor a torch.save "
            f"file (.pt, rosinality): it looks like {_format_hint(head)}, first bytes {head!r}; {_EXPECTED}")
    return load_nvidia_pickle(path, **kwargs)


# --------------------------------------------------------------------------- NVIDIA

def _collect_state(obj: PersistentObject, prefix: str, out: dict[str, torch.Tensor], classes: dict[str, str]) -> None:
    classes[prefix.rstrip(".") or "<root>"] = obj.class_name
    st = obj.state
    skip = set(st.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, t in (st.get(group) or {}).items():
            if t is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(t, torch.Tensor):
                raise GeneratorError(f"{prefix}{name}: expected a tensor, received {type(t).__name__}")
            out[prefix + name] = t
    for name, child in (st.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise GeneratorError(f"{prefix}{name}: expected a persistent module, received {type(child).__name__}")
        _collect_state(child, f"{prefix}{name}.", out, classes)


_POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")


def load_nvidia_pickle(path_or_file: str | os.PathLike | BinaryIO, key: str = "G_ema") -> Checkpoint:
    """Read ``key`` (``G_ema``) of an NVIDIA snapshot with the restricted unpickler."""
    if isinstance(path_or_file, (str, os.PathLike)):
        source = os.fspath(path_or_file)
        with open(source, "rb") as f:
            data = safe_unpickle(f, source)
        digest = file_sha256(source)
    else:
        source, digest = "<stream>", None
        data = safe_unpickle(path_or_file, source)
    if not isinstance(data, dict) or key not in data:
        got = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise GeneratorError(f"checkpoint {source}: expected an NVIDIA snapshot dict with key {key!r} "
                             f"(keys G, D, G_ema, augment_pipe, training_set_kwargs); received {got}")
    g = data[key]
    if not isinstance(g, PersistentObject):
        raise GeneratorError(f"checkpoint {source}: {key} is not a persistent network (received {type(g).__name__})")
    if g.class_name != "Generator":
        raise GeneratorError(f"checkpoint {source}: {key} has class {g.class_name!r}, expected 'Generator'")
    kwargs = dict(g.state.get("_init_kwargs", g.state.get("init_kwargs")) or {})
    args = tuple(g.state.get("_init_args", g.state.get("init_args")) or ())
    for name, val in zip(_POSITIONAL, args):
        kwargs.setdefault(name, val)
    sd: dict[str, torch.Tensor] = {}
    classes: dict[str, str] = {}
    _collect_state(g, "", sd, classes)
    syn = [k.split(".")[1] for k in sd if k.startswith("synthesis.")]
    odd = sorted({s for s in syn if not re.fullmatch(r"b\d+", s)})
    if odd:
        raise GeneratorError(f"checkpoint {source}: synthesis layers {odd[:4]} are not StyleGAN2 blocks b4, b8, … "
                             f"(a StyleGAN3 / alias-free generator?); only StyleGAN2 generators are supported")
    tsk = data.get("training_set_kwargs")
    meta = {
        "key": key,
        "sha256": digest,
        "persistence_version": g.version,
        "module_src_sha256": g.module_src_sha256,
        "module_src_executed": False,
        "training_set_kwargs": to_jsonable(tsk) if isinstance(tsk, dict) else None,
    }
    return Checkpoint("nvidia-pkl", source, to_jsonable(kwargs), {k: v.detach() for k, v in sd.items()}, meta)


def infer_architecture(state_dict: Mapping[str, Any]) -> str:
    """``resnet`` if any block has a skip branch, ``skip`` if ToRGBs are in non-last blocks, else ``orig``."""
    blocks = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    if any(re.match(r"synthesis\.b\d+\.skip\.", k) for k in state_dict):
        return "resnet"
    if len(blocks) > 1 and any(k.startswith(f"synthesis.b{blocks[0]}.torgb.") for k in state_dict):
        return "skip"
    return "orig" if len(blocks) > 1 else "skip"


def build_network(ckpt: Checkpoint, dtype: torch.dtype = torch.float32) -> Generator:
    """Our :class:`Generator` from ``ckpt.init_kwargs`` with ``ckpt.state_dict`` loaded strictly.

    The architecture in ``init_kwargs`` is checked against the one the tensors imply, and
    every key and shape against the network the kwargs describe.
    """
    kw = dict(ckpt.init_kwargs)
    syn = dict(kw.get("synthesis_kwargs") or {})
    declared = syn.get("architecture", kw.get("architecture", "skip"))
    implied = infer_architecture(ckpt.state_dict)
    if declared != implied:
        hint = next((k for k in ckpt.state_dict if ".skip." in k or ".torgb." in k), "")
        raise GeneratorError(
            f"checkpoint {ckpt.source}: architecture: init_kwargs say {declared!r} but the weights imply {implied!r} "
            f"(e.g. key {hint!r})")
    try:
        net = Generator(**kw)
    except (TypeError, ValueError) as exc:
        raise GeneratorError(f"checkpoint {ckpt.source}: cannot build a StyleGAN2 generator from init_kwargs: {exc}") \
            from None
    expected = net.state_dict()
    got = ckpt.state_dict
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    if missing or unexpected:
        raise GeneratorError(
            f"checkpoint {ckpt.source}: weights do not match the network described by init_kwargs "
            f"(architecture {declared!r}): missing keys {missing[:6]}{' …' if len(missing) > 6 else ''}, "
            f"unexpected keys {unexpected[:6]}{' …' if len(unexpected) > 6 else ''}")
    for k, ref in expected.items():
        if tuple(got[k].shape) != tuple(ref.shape):
            raise GeneratorError(f"checkpoint {ckpt.source}: {k}: received shape {list(got[k].shape)}, expected "
                                 f"{list(ref.shape)} (from init_kwargs)")
    for k, t in got.items():  # corrupt tensor bytes often decode to NaN/Inf
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise GeneratorError(f"checkpoint {ckpt.source}: {k}: received NaN/Inf values; expected finite weights "
                                 f"(corrupt file?)")
    net.load_state_dict({k: v.to(torch.float32) for k, v in got.items()}, strict=True)
    return net.to(dtype).eval().requires_grad_(False)


# --------------------------------------------------------------------------- rosinality

_ROS_LAYER = {  # rosinality sub-key -> (official sub-key, reshape to official)
    "conv.weight": ("weight", lambda t: t[0]),
    "conv.modulation.weight": ("affine.weight", None),
    "conv.modulation.bias": ("affine.bias", None),
    "noise.weight": ("noise_strength", lambda t: t.reshape([])),
    "activate.bias": ("bias", None),
}
_ROS_RGB = {
    "conv.weight": ("weight", lambda t: t[0]),
    "conv.modulation.weight": ("affine.weight", None),
    "conv.modulation.bias": ("affine.bias", None),
    "bias": ("bias", lambda t: t.reshape(-1)),
}
_ROS_IGNORED = re.compile(r".*\.(blur|upsample)\.kernel$")


def _ros_layer_names(size: int) -> list[str]:
    """Official name of rosinality's j-th conv layer (conv1, convs.0, convs.1, …)."""
    names = ["synthesis.b4.conv1"]
    r = 8
    while r <= size:
        names += [f"synthesis.b{r}.conv0", f"synthesis.b{r}.conv1"]
        r *= 2
    return names


def rosinality_to_official(sd: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None = None,
                           lr_mlp: float = 0.01, source: str = "<state dict>") -> tuple[dict, dict, dict]:
    """Map a rosinality ``g_ema`` state dict to ``(official state dict, init_kwargs, notes)``."""
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}

    def need(k: str) -> torch.Tensor:
        if k not in sd:
            raise GeneratorError(f"checkpoint {source}: rosinality key {k!r} missing (have e.g. {sorted(sd)[:5]})")
        return sd[k]

    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
    if n_mlp == 0:
        raise GeneratorError(f"checkpoint {source}: no rosinality mapping layers 'style.1.weight' found; "
                             f"is this a rosinality stylegan2-pytorch generator? keys: {sorted(sd)[:6]}")
    w_dim = int(need("style.1.weight").shape[1])
    n_rgb = 0
    while f"to_rgbs.{n_rgb}.conv.weight" in sd:
        n_rgb += 1
    size = 2 ** (n_rgb + 2)
    const = need("input.input")
    names = _ros_layer_names(size)
    ros_layers = ["conv1"] + [f"convs.{i}" for i in range(len(names) - 1)]
    chans = {4: int(const.shape[1])}
    for i in range(n_rgb):
        chans[2 ** (i + 3)] = int(need(f"convs.{2 * i + 1}.conv.weight").shape[1])
    cmax = max(chans.values())
    bases = {c * r for r, c in chans.items() if c < cmax}
    base = bases.pop() if len(bases) == 1 else cmax * size
    for r, c in chans.items():
        if min(base // r, cmax) != c:
            raise GeneratorError(f"checkpoint {source}: channels at resolution {r}: received {c}; expected "
                                 f"min(channel_base // {r}, channel_max) = {min(base // r, cmax)} -- this channel "
                                 f"layout cannot be expressed with channel_base/channel_max")
    img_channels = int(need("to_rgb1.conv.weight").shape[1])
    kernels = {k: v for k, v in sd.items() if _ROS_IGNORED.match(k)}
    filt = None
    for k, v in kernels.items():
        f = (v / v.sum()).to(torch.float32)
        if filt is None:
            filt = f
        elif f.shape != filt.shape or not torch.allclose(f, filt, atol=1e-6):
            raise GeneratorError(f"checkpoint {source}: {k}: FIR kernels differ between layers; not supported")
    resample = [1, 3, 3, 1]
    if filt is not None and not (filt.shape == (4, 4) and torch.allclose(filt, setup_filter(resample), atol=1e-6)):
        resample = filt.tolist()
    init_kwargs = dict(z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=size, img_channels=img_channels,
                       mapping_kwargs=dict(num_layers=n_mlp, lr_multiplier=lr_mlp),
                       synthesis_kwargs=dict(channel_base=base, channel_max=cmax, architecture="skip",
                                             num_fp16_res=0, conv_clamp=None, resample_filter=resample))
    out: dict[str, torch.Tensor] = {}
    used = set()
    for i in range(n_mlp):
        for p in ("weight", "bias"):
            out[f"mapping.fc{i}.{p}"] = need(f"style.{i + 1}.{p}")
            used.add(f"style.{i + 1}.{p}")
    out["synthesis.b4.const"] = const[0]
    used.add("input.input")
    notes: dict[str, Any] = {}
    missing_noise = []
    for j, (ros, off) in enumerate(zip(ros_layers, names)):
        for sub, (name, fn) in _ROS_LAYER.items():
            t = need(f"{ros}.{sub}")
            out[f"{off}.{name}"] = fn(t) if fn else t
            used.add(f"{ros}.{sub}")
        nk = f"noises.noise_{j}"
        if nk in sd:
            out[f"{off}.noise_const"] = sd[nk].reshape(sd[nk].shape[-2:])
            used.add(nk)
        else:
            r = int(off.split(".")[1][1:])
            out[f"{off}.noise_const"] = torch.zeros([r, r])
            missing_noise.append(nk)
    if missing_noise:
        notes["noise_const_missing"] = missing_noise  # const noise is then 0 there
    for i, ros in enumerate(["to_rgb1"] + [f"to_rgbs.{k}" for k in range(n_rgb)]):
        off = f"synthesis.b{2 ** (i + 2)}.torgb"
        for sub, (name, fn) in _ROS_RGB.items():
            t = need(f"{ros}.{sub}")
            out[f"{off}.{name}"] = fn(t) if fn else t
            used.add(f"{ros}.{sub}")
    left = sorted(k for k in sd if k not in used and not _ROS_IGNORED.match(k))
    if left:
        raise GeneratorError(f"checkpoint {source}: unrecognised rosinality keys {left[:6]}")
    if latent_avg is not None:
        out["mapping.w_avg"] = latent_avg.reshape(-1)
    # The FIR filter buffers are not weights: take them from a network built with the inferred filter.
    filt2 = setup_filter(resample)
    for r in [2 ** i for i in range(2, n_rgb + 3)]:
        out[f"synthesis.b{r}.resample_filter"] = filt2.clone()
    for off in names:
        out[f"{off}.resample_filter"] = filt2.clone()
    return out, init_kwargs, notes


def official_to_rosinality(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`rosinality_to_official` (skip architecture, c_dim = 0): the
    rosinality ``g_ema`` names; FIR kernels as rosinality stores them (filter × 4)."""
    blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    size = blocks[-1]
    out: dict[str, torch.Tensor] = {}
    i = 0
    while f"mapping.fc{i}.weight" in sd:
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"].clone()
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"].clone()
        i += 1
    out["input.input"] = sd["synthesis.b4.const"][None].clone()
    names = _ros_layer_names(size)
    ros_layers = ["conv1"] + [f"convs.{j}" for j in range(len(names) - 1)]
    for j, (ros, off) in enumerate(zip(ros_layers, names)):
        out[f"{ros}.conv.weight"] = sd[f"{off}.weight"][None].clone()
        out[f"{ros}.conv.modulation.weight"] = sd[f"{off}.affine.weight"].clone()
        out[f"{ros}.conv.modulation.bias"] = sd[f"{off}.affine.bias"].clone()
        out[f"{ros}.noise.weight"] = sd[f"{off}.noise_strength"].reshape(1).clone()
        out[f"{ros}.activate.bias"] = sd[f"{off}.bias"].clone()
        out[f"noises.noise_{j}"] = sd[f"{off}.noise_const"][None, None].clone()
        if off.endswith("conv0"):
            out[f"{ros}.conv.blur.kernel"] = sd[f"{off}.resample_filter"] * 4
    for k, r in enumerate(blocks):
        ros = "to_rgb1" if k == 0 else f"to_rgbs.{k - 1}"
        off = f"synthesis.b{r}.torgb"
        out[f"{ros}.conv.weight"] = sd[f"{off}.weight"][None].clone()
        out[f"{ros}.conv.modulation.weight"] = sd[f"{off}.affine.weight"].clone()
        out[f"{ros}.conv.modulation.bias"] = sd[f"{off}.affine.bias"].clone()
        out[f"{ros}.bias"] = sd[f"{off}.bias"].reshape(1, -1, 1, 1).clone()
        if k > 0:
            out[f"{ros}.upsample.kernel"] = sd[f"synthesis.b{r}.resample_filter"] * 4
    return out


def load_rosinality(path: str | os.PathLike, lr_mlp: float = 0.01, key: str = "g_ema",
                    w_avg_samples: int = 10_000) -> Checkpoint:
    """Read a rosinality checkpoint with ``torch.load(weights_only=True)``."""
    source = os.fspath(path)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")
            ckpt = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(f"checkpoint {source}: refused by torch's weights-only loader: "
                                    f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    except Exception as exc:
        raise GeneratorError(f"checkpoint {source}: cannot read with torch.load ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); expected a complete rosinality .pt "
                             f"(truncated or corrupt file?)") from None
    if not isinstance(ckpt, dict) or key not in ckpt:
        got = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise GeneratorError(f"checkpoint {source}: expected a rosinality checkpoint dict with key {key!r}; "
                             f"received {got}")
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise GeneratorError(f"checkpoint {source}: latent_avg: expected a tensor, "
                             f"received {type(latent_avg).__name__}")
    sd, init_kwargs, notes = rosinality_to_official(ckpt[key], latent_avg, lr_mlp=lr_mlp, source=source)
    meta: dict[str, Any] = {"key": key, "sha256": file_sha256(source), "lr_mlp": lr_mlp, **notes}
    if latent_avg is None:
        # Truncation centre not stored: estimate it like rosinality's mean_latent.
        zeros = {**sd, "mapping.w_avg": torch.zeros(init_kwargs["w_dim"])}
        tmp = Checkpoint("rosinality-pt", source, init_kwargs, zeros)
        net = build_network(tmp)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            z = torch.randn(w_avg_samples, init_kwargs["z_dim"], generator=g)
            sd["mapping.w_avg"] = net.mapping(z)[:, 0].mean(0)
        meta["w_avg"] = f"estimated: mean of mapping(z) over {w_avg_samples} z (torch seed 0)"
    else:
        meta["w_avg"] = "latent_avg"
    return Checkpoint("rosinality-pt", source, init_kwargs, sd, meta)
