"""The part every stage worker shares: one generator replica on this worker's device.

A worker (``JacobianWorker``, ``TransferWorker``, ``PreviewWorker``) is a plain class
that unit-tests without Ray (DESIGN §9); ``runtime.run_actors`` wraps it in a Ray actor.
Set-up cost: building the generator once per actor (weights read by the safe loaders).
"""
from __future__ import annotations

from typing import Any

import torch

from lrgan_dist.apply.build import make_generator, pick_device
from lrgan_dist.pipeline.runtime import StageHooks
from lrgan_dist.spec import JobSpec

__all__ = ["GeneratorReplica"]


class GeneratorReplica:
    """Torch threads, fault-injection hooks, the device the spec asks for, and the spec's generator on it."""

    def __init__(self, spec: JobSpec, torch_threads: int | None = None, hooks: StageHooks | None = None) -> None:
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.hooks = hooks or StageHooks()
        self.hooks.on_worker_start()
        self.spec = spec
        self.device = pick_device(spec.compute.device)
        self.generator: Any = make_generator(spec, self.device)
