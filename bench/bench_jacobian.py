"""Forward-mode Jacobian (lrgan_dist.core.jacobian) vs reverse mode (torch.autograd).

Run:  python bench/bench_jacobian.py [--generator synthetic|standin] [--threads 1]

Both sides differentiate the *same* function -- the generator output area-pooled to
the 64×64 analysis grid with channel mean, ``y' ∈ R^{1×64×64}`` -- for one sample
with d = 64, and must return the same J [4096, 64] (checked).  The baseline is
``torch.autograd.functional.jacobian`` in reverse mode with ``vectorize=False``,
one backward pass per output pixel, as the paper's PyTorch follow-up computes it;
``vectorize=True`` (vmap over the backward passes) is reported too.  Every number is
measured side by side in this run (best of ``--repeats``; the slow baseline once).

Generator: the built-in synthetic face renderer (3×64×64, d = 64) when available,
else a stand-in conv decoder of similar cost (``--generator standin``).
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from lrgan_dist.core.jacobian import JacobianConfig, JacobianEngine, jacobian, pool_image


class StandIn(torch.nn.Module):
    """Conv decoder x [n, 64] -> tanh image [n, 3, 64, 64] (~1 ms per image)."""

    latent_dim = 64
    image_shape = (3, 64, 64)
    image_range = (-1.0, 1.0)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(64, 32 * 8 * 8)
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(32, 32, 3, padding=1) for _ in range(3))
        self.out = torch.nn.Conv2d(32, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.tanh(self.fc(x)).reshape(-1, 32, 8, 8)
        for conv in self.convs:
            h = torch.nn.functional.interpolate(h, scale_factor=2, mode="nearest")
            h = torch.tanh(conv(h))
        return torch.tanh(self.out(h))


def build(kind: str):
    if kind in ("auto", "synthetic"):
        try:
            from lrgan_dist.generators import build_generator

            return "synthetic", build_generator("synthetic", {})
        except Exception as exc:  # noqa: BLE001 - fall back to the stand-in
            if kind == "synthetic":
                raise
            print(f"synthetic generator unavailable ({exc}); using the stand-in", file=sys.stderr)
    return "standin (conv decoder)", StandIn()


def timed(f, repeats: int) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="auto", choices=["auto", "synthetic", "standin"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    name, G = build(args.generator)
    C, H, W = G.image_shape
    d = G.latent_dim
    grid = (64, 64)
    x = G.sample_latents(0, [0]) if hasattr(G, "sample_latents") else torch.randn(1, d)
    x = x.float()

    def fn(z: torch.Tensor) -> torch.Tensor:  # [n, d] -> [n, 1, 64, 64]
        return pool_image(G.forward(z, x), grid, "mean")

    def fn1(z: torch.Tensor) -> torch.Tensor:  # one sample, for torch.autograd: [d] -> [4096]
        return fn(z[None]).reshape(-1)

    print(f"generator: {name}, image {C}x{H}x{W}, d = {d}, grid {grid[0]}x{grid[1]} channel mean "
          f"(J: {grid[0] * grid[1]} x {d}), torch {torch.__version__}, threads {torch.get_num_threads()}")

    # warm up both paths (lazy imports, decomposition tables)
    jacobian(fn, x, chunk=args.chunk)
    torch.autograd.functional.jacobian(fn1, x[0], vectorize=True)

    results = {}
    for chunk in sorted({8, args.chunk, 32, 64}):
        t, (_, J) = timed(lambda c=chunk: jacobian(fn, x, chunk=c), args.repeats)
        results[f"forward vmap chunk={chunk}"] = (t, J.reshape(-1, d))
    t, (_, J) = timed(lambda: jacobian(fn, x, chunk=args.chunk, vectorize=False), args.repeats)
    results["forward loop (vectorize=False)"] = (t, J.reshape(-1, d))
    t_rv, Jrv = timed(lambda: torch.autograd.functional.jacobian(fn1, x[0], vectorize=True), 2)
    t_rl, Jrl = timed(lambda: torch.autograd.functional.jacobian(fn1, x[0], vectorize=False), 1)

    ref = Jrl.detach()
    print(f"\n{'method':<40}{'seconds':>10}{'rel err vs reverse':>22}")
    for key, (t, J) in results.items():
        print(f"{key:<40}{t:>10.4f}{float((J - ref).norm() / ref.norm()):>22.2e}")
    print(f"{'reverse autograd vectorize=True':<40}{t_rv:>10.4f}"
          f"{float((Jrv - ref).norm() / ref.norm()):>22.2e}")
    print(f"{'reverse autograd vectorize=False':<40}{t_rl:>10.4f}{0.0:>22.2e}")

    t_fwd = results[f"forward vmap chunk={args.chunk}"][0]
    print(f"\nspeed-up, forward (chunk={args.chunk}) vs reverse vectorize=False: "
          f"{t_rl / t_fwd:8.1f}x  (target >= 20x)")
    print(f"speed-up, forward (chunk={args.chunk}) vs reverse vectorize=True:  {t_rv / t_fwd:8.1f}x")

    # the whole engine step: images + J + Grams for two regions
    masks = torch.zeros(2, *grid)
    masks[0, 23:35, 18:46] = 1
    masks[1, 36:48, 21:43] = 1
    eng = JacobianEngine(G, JacobianConfig(grid=grid, chunk=args.chunk))
    eng.compute(x, masks)
    for n in (1, 8):
        if hasattr(G, "sample_latents"):
            xs = G.sample_latents(0, list(range(n))).float()
        else:
            xs = torch.randn(n, d)
        t, _ = timed(lambda: eng.compute(xs, masks), 3)
        print(f"engine.compute (images + J + 2 regions' Grams), n={n}: {t:.4f} s ({t / n:.4f} s/sample)")


if __name__ == "__main__":
    main()
