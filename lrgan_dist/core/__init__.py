"""Pure numerics (README "Concepts"): Jacobians, Robust PCA, LowRankGAN, methods, subspaces, scores.

Nothing here imports ray, zarr, yaml, the store, the spec or the generators; tests
(tests/core/test_layers.py) and the import contract in pyproject.toml enforce it.
"""
