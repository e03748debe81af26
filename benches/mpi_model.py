#!/usr/bin/env python3
"""A model of data-parallel step time and efficiency for `backprop train` under MPI on GPUs, for the mnist and
wide configurations: 8 GPUs in one node, and 2 to 64 nodes of 8 GPUs at two link speeds. Every input is stated
below; none was measured on a GPU. See BENCHMARKS.md for the formula.

    python3 benches/mpi_model.py
"""
configs = {"mnist": ([784, 256, 256, 10], 256, 16), "wide": ([1024, 4096, 4096, 1024], 1024, 16)}
R_FLOPS = 25e12      # sustained fp32 of the WGSL kernels on an H100/H200-class GPU (assumed, 40% of 67 TFLOP/s)
T_LAUNCH = 5e-6      # per kernel launch (assumed)
T_SYNC = 50e-6       # per step: the extra submit, wait and map of the gradient read-back (assumed)
PCIE = 25e9          # device<->host, B/s each way (PCIe Gen4 x16, effective; assumed)
HOST = 10e9          # per-rank bandwidth of the sum through host shared memory inside a node (assumed)
ALPHA = 2e-6         # latency per pairwise exchange inside a node (assumed)
ALPHA_NET = 5e-6     # latency per pairwise exchange between nodes (assumed)
def params(s): return sum(a*b + b for a, b in zip(s, s[1:]))
def flops(s, b): return 6*b*sum(a*b2 for a, b2 in zip(s, s[1:]))
def compute(s, b, launches): return max(launches*T_LAUNCH, flops(s, b)/R_FLOPS) + T_SYNC
def step(s, B, launches, ranks, link=None):
    S = 4*params(s)
    tc = compute(s, -(-B//ranks), launches)
    if ranks == 1: return tc, tc, 0, 0
    copy = 2*S/PCIE
    if link is None:
        bw, alpha = HOST, ALPHA
    else:
        off = (ranks-8)/(ranks-1)             # fraction of a rank's traffic that leaves its node
        bw, alpha = min(HOST, link/(8*off)), ALPHA_NET
    tsum = 2*(ranks-1)/ranks*S/bw + 2*(ranks-1)*alpha
    return tc+copy+tsum, tc, copy, tsum
def hierarchical_sum(S, ranks, link):
    """The same sum done node first (reduce-scatter among a node's 8 ranks through host memory), then between
    nodes (each rank exchanges its 1/8 with its peers on the other nodes), then back: not implemented, for
    comparison."""
    nodes = ranks // 8
    inside = 2 * 7 / 8 * S / HOST + 2 * 7 * ALPHA
    between = 2 * (nodes - 1) / nodes * (S / 8) / (link / 8) + 2 * (nodes - 1) * ALPHA_NET if nodes > 1 else 0
    return inside + between


setups = [("8 GPUs, 1 node", 8, None)]
for link, lname in [(12.5e9, "100 Gb/s"), (50e9, "400 Gb/s")]:
    for nodes in [2, 4, 8, 16, 32, 64]:
        setups.append((f"{nodes} nodes × 8, {lname}", 8 * nodes, link))
for name, (s, B, L) in configs.items():
    S, one = 4 * params(s), compute(s, B, L)
    print(f"\n{name}: P = {params(s):,} parameters, S = {S / 1e6:.2f} MB, F = {flops(s, B) / 1e9:.2f} GFLOP per step "
          f"of batch {B}; one GPU: {one * 1e3:.3f} ms per step\n")
    print(f"| setup | ranks | strong (batch {B}): ms/step | compute / copies / sum ms | eff | "
          f"weak ({B} a GPU): ms/step | eff | weak, node-first sum: eff |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for label, r, link in setups:
        t, tc, cp, ts = step(s, B, L, r, link)
        tw, twc, twcp, tws = step(s, B * r, L, r, link)
        th = twc + twcp + hierarchical_sum(S, r, link)
        print(f"| {label} | {r} | {t * 1e3:.2f} | {tc * 1e3:.2f} / {cp * 1e3:.2f} / {ts * 1e3:.2f} | {100 * one / (r * t):.1f}% "
              f"| {tw * 1e3:.2f} | {100 * one / tw:.1f}% | {100 * one / th:.1f}% |")
