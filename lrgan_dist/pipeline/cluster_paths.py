"""Paths on a cluster: what the driver resolves, and what every node must see.

The driver makes paths absolute before anything is shipped (:func:`absolute_store_uri`;
latent and mask files are absolute once the spec is parsed), so a relative ``--store``
means the directory the user ran the command in, whichever node a worker runs on.

A local path is only usable on a multi-node cluster when every node sees it (a shared
filesystem: NFS, EFS, Lustre, …). :func:`check_paths_visible` asks one tiny task per
alive node whether the store (created by the driver just before) and the job's input
files exist there, and refuses the run up front -- naming ``s3://`` or a shared
filesystem -- instead of letting actors fail in their constructors one by one.
"""
from __future__ import annotations

import os
import re
from typing import Any

from lrgan_dist.spec import JobSpec, SpecError

__all__ = ["absolute_store_uri", "is_local_uri", "job_paths", "check_paths_visible"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_local_uri(uri: str) -> bool:
    return not _SCHEME.match(uri) or uri.startswith("file://")


def absolute_store_uri(uri: str) -> str:
    """A local store path made absolute against the current directory; URIs (s3://…) unchanged."""
    if not is_local_uri(uri):
        return uri
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return os.path.abspath(os.path.expanduser(path))


def job_paths(spec: JobSpec) -> dict[str, str]:
    """Local paths the workers read: field name → absolute path."""
    out: dict[str, str] = {}
    if is_local_uri(spec.store.uri):
        out["store.uri"] = absolute_store_uri(spec.store.uri)
    if spec.samples.latents:
        out["samples.latents"] = spec.samples.latents
    for r in spec.regions:
        if r.mask:
            out[f"regions.{r.name}.mask"] = str(spec.resolve_path(r.mask))
    ckpt = spec.generator_params().get("checkpoint")
    if isinstance(ckpt, str) and ckpt and is_local_uri(ckpt):
        out["generator.params.checkpoint"] = ckpt
    return out


def _probe_nodes(ray: Any, paths: list[str]) -> dict[str, list[str]]:
    """node id → the paths that do not exist on that node (one task per alive node)."""
    from lrgan_dist.pipeline.runtime import on_every_node

    def missing(ps: list[str]) -> list[str]:
        import os as _os

        return [p for p in ps if not _os.path.exists(p)]

    return on_every_node(ray, missing, paths)


def check_paths_visible(ray: Any, spec: JobSpec) -> None:
    """Refuse (SpecError, exit 2) local paths that some node of a multi-node cluster cannot see."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) < 2:
        return
    paths = job_paths(spec)
    if not paths:
        return
    missing = _probe_nodes(ray, list(paths.values()))
    bad = {nid: m for nid, m in missing.items() if m}
    if not bad:
        return
    field, path = next((f, p) for f, p in paths.items() if any(p in m for m in bad.values()))
    nodes = [nid[:8] for nid, m in bad.items() if path in m]
    where = {"store.uri": "--store/store.uri"}.get(field, field)
    raise SpecError(where, f"received the local path {path!r}, which {len(nodes)} of the {len(alive)} nodes of the "
                    f"cluster cannot see (nodes {', '.join(nodes)}); expected an s3:// URI or a path on a filesystem "
                    "shared by every node (NFS, EFS, …)")
