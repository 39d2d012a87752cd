"""Orchestration on Ray (docs/architecture.md): the only layer that imports ray.

``runtime`` (session, actor pool, resources), ``scheduler`` (stage order, resume,
summary), ``stages/`` (one module per stage), ``remote`` (Ray Jobs API).
"""
