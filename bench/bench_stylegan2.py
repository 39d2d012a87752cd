"""Forward- vs reverse-mode Jacobian of a 1024² StyleGAN2 in w, measured side by side.

Model: random weights, FFHQ config-f architecture (Karras et al. 2020): 1024², z = w = 512,
8 mapping layers, channel_base 32768, channel_max 512, skip generator, 18 style slots,
const noise.  Analysed output: the image area-pooled to a 256² grid, channel mean
(DESIGN.md §1) -- 65 536 output rows, d = 512 columns.

* forward mode: ``vmap`` over ``torch.func.jvp`` with a chunk of k tangents (primal once
  per chunk); the full Jacobian costs ``ceil(512 / k)`` such chunks.
* reverse mode (what the reference implementation does): one forward pass with the
  graph, then one backward pass per output row; timed on a few rows, extrapolated to
  65 536.

On a CPU only a slice fits in a few minutes: ``--tangents`` (4) tangents (one chunk) and
``--rows`` backward passes, extrapolated linearly.  On a GPU (``--device cuda``) pass
e.g. ``--tangents 16 --chunks 32`` to time the whole forward-mode Jacobian.

    python bench/bench_stylegan2.py                      # CPU, ~2-3 minutes on 2 cores
    python bench/bench_stylegan2.py --device cuda --tangents 16 --chunks 32 --rows 32
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch.func import jvp, vmap

from lrgan_dist.generators.stylegan2.adapter import random_network


def pool(img: torch.Tensor, grid: int) -> torch.Tensor:
    """[n, C, H, W] -> [n, grid, grid]: channel mean, then area pooling."""
    return F.adaptive_avg_pool2d(img.mean(dim=1, keepdim=True), grid)[:, 0]


def gmac(net) -> float:
    """Multiply-adds of one synthesis forward pass (3x3 convs dominate; see stylegan2_net)."""
    syn, total = net.synthesis, 0.0
    for r in syn.block_resolutions:
        c = syn.channels[r]
        if r > 4:
            total += (r // 2) ** 2 * syn.channels[r // 2] * c * 9  # conv0: transposed conv at input res
        total += r * r * c * c * 9  # conv1
        total += r * r * c * syn.img_channels  # torgb
    return total / 1e9


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--grid", type=int, default=256)
    ap.add_argument("--tangents", type=int, default=4, help="tangents per vmap(jvp) chunk")
    ap.add_argument("--chunks", type=int, default=1, help="chunks timed (512/tangents = the whole Jacobian)")
    ap.add_argument("--rows", type=int, default=2, help="reverse-mode backward passes timed")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device

    t0 = time.perf_counter()
    net, _ = random_network(z_dim=512, w_dim=512, img_resolution=args.resolution, channel_base=32768,
                            channel_max=512, mapping_layers=8, seed=0, perturb=0.05)
    net = net.to(dev)
    d, num_ws = net.w_dim, net.num_ws
    print(f"device {dev} | threads {torch.get_num_threads()} | StyleGAN2 {args.resolution}² config-f, "
          f"num_ws {num_ws}, {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M params, "
          f"{gmac(net):.1f} GMAC/forward | built in {time.perf_counter() - t0:.1f}s")

    torch.manual_seed(0)
    with torch.no_grad():
        w = net.mapping(torch.randn(1, 512, device=dev))[0, 0]  # one sample's w

    def f(w: torch.Tensor) -> torch.Tensor:  # [d] -> [grid, grid]
        return pool(net.synthesis(w.reshape(1, 1, d).expand(1, num_ws, d)), args.grid)[0]

    n_out = args.grid * args.grid

    # forward pass (cost model reference)
    with torch.no_grad():
        f(w)
        sync(dev)
        t = time.perf_counter()
        f(w)
        sync(dev)
    t_fwd = time.perf_counter() - t
    print(f"forward (no grad): {t_fwd:.2f}s")

    # forward mode: vmap over jvp, chunks of k tangents
    k = args.tangents
    basis = torch.eye(d, device=dev)
    col = vmap(lambda v: jvp(f, (w,), (v,))[1], in_dims=0)
    col(basis[:1])  # warm-up (allocations, kernels)
    sync(dev)
    t = time.perf_counter()
    for c in range(args.chunks):
        out = col(basis[(c * k) % d:(c * k) % d + k])
    sync(dev)
    t_chunk = (time.perf_counter() - t) / args.chunks
    assert out.shape == (k, args.grid, args.grid) and torch.isfinite(out).all()
    n_chunks = math.ceil(d / k)
    t_jfwd = t_chunk * n_chunks
    print(f"forward mode: {args.chunks} chunk(s) of {k} tangents, {t_chunk:.2f}s/chunk "
          f"({t_chunk / k:.2f}s/tangent, {t_chunk / k / t_fwd:.2f} forwards/tangent) "
          f"-> full J [{n_out}x{d}] ≈ {t_jfwd:.1f}s ({t_jfwd / 60:.1f} min)"
          + ("" if args.chunks * k >= d else f"  [extrapolated from {args.chunks * k}/{d} columns]"))

    # reverse mode: one forward with graph, one backward per output row
    wr = w.clone().requires_grad_(True)
    sync(dev)
    t = time.perf_counter()
    y = f(wr).reshape(-1)
    sync(dev)
    t_graph = time.perf_counter() - t
    rows = torch.linspace(0, n_out - 1, args.rows).long().tolist()
    sync(dev)
    t = time.perf_counter()
    grads = []
    for i, r in enumerate(rows):
        (g,) = torch.autograd.grad(y[r], wr, retain_graph=i < len(rows) - 1)
        grads.append(g)
    sync(dev)
    t_row = (time.perf_counter() - t) / len(rows)
    t_jrev = t_graph + n_out * t_row
    print(f"reverse mode: forward with graph {t_graph:.2f}s, {t_row:.2f}s/backward ({len(rows)} rows) "
          f"-> full J ≈ {t_jrev:.0f}s ({t_jrev / 3600:.1f} h)  [extrapolated from {len(rows)}/{n_out} rows]")

    # the two modes agree on the rows both computed
    if args.chunks == 1 and (args.chunks * k) <= d:
        jcols = out.reshape(k, -1)[:, rows].T  # [rows, k]: J[r, 0:k]
        grow = torch.stack(grads)[:, :k]
        err = ((jcols - grow).abs().max() / grow.abs().max().clamp_min(1e-30)).item()
        print(f"check: forward vs reverse on {len(rows)} rows x {k} columns, max rel diff {err:.1e}")

    print(f"RATIO reverse/forward (full Jacobian, one sample): {t_jrev / t_jfwd:.0f}x")


if __name__ == "__main__":
    main()
