"""Generator adapters; see :mod:`lrgan_dist.generators.base` for the protocol."""
from lrgan_dist.generators.base import Generator, GeneratorError, available, build_generator, register

__all__ = ["Generator", "GeneratorError", "available", "build_generator", "register"]
