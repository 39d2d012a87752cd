"""Bad-input errors survive pickling: raised inside a Ray worker, they reach the CLI as
the same type and message (one line, exit 2), not as Ray's 'failed to deserialize'."""
from __future__ import annotations

import pickle

import pytest

from lrgan_dist.generators.base import GeneratorError
from lrgan_dist.regions import RegionError
from lrgan_dist.spec import SpecError, SpecErrors
from lrgan_dist.store import StoreError


@pytest.mark.parametrize("exc", [
    SpecError("samples.count", "received -1; expected an integer >= 1", source="job.yaml"),
    SpecErrors([SpecError("a", "bad"), SpecError("b.c", "worse")], source="job.yaml"),
    RegionError("eyes", "received [1, 0]; expected four numbers", field="box"),
    RegionError(None, "mask file not found"),
    StoreError("runs/x.zarr: no store at this location"),
    GeneratorError("generator.params.latent_dim: expected an integer"),
])
def test_error_round_trips_through_pickle(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc)
    assert getattr(back, "field", None) == getattr(exc, "field", None)
