#!/usr/bin/env python3
"""Step-time ratios of backprop against PyTorch, measured side by side in one run on one machine.

Each round times every configuration twice in a row, once with `backprop bench` (a subprocess) and once with
PyTorch (in this process, the step of pytorch_baseline.py), so both see the same moment of a shared machine.
The ratio is backprop's ms per step over PyTorch's; below 1 backprop is faster. Two ratios: "step", one step at a
time with a wait for each (backprop's `ms_per_step`), and "train", steps back to back with one wait per group
(backprop's `train_ms_per_step`: data resident, up to 32 steps a submit, as `train` runs). The tables give each
round's ratio, the median, the range and "best" (the fastest round of each side, one over the other: a shared
machine's load only adds time), against the targets of issue 4:

    CPU  (backprop --backend cpu vs PyTorch on the CPU):   seed, small <= 0.1    mnist, wide <= 1.0
    CUDA (backprop --backend gpu vs PyTorch on CUDA):     seed, small <= 0.2    mnist <= 0.5    wide <= 1.0

    python3 benches/compare.py                          # CPU, all four configurations, 3 rounds
    python3 benches/compare.py --device cuda --rounds 5 # the GPU backend (Vulkan) against CUDA, same GPU
    python3 benches/compare.py --json                   # one JSON object with every measurement

Needs a release build (cargo build --release) and PyTorch. Never needed by the tests or by CI.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_baseline  # noqa: E402

TARGETS = {
    "cpu": {"seed": 0.1, "small": 0.1, "mnist": 1.0, "wide": 1.0},
    "cuda": {"seed": 0.2, "small": 0.2, "mnist": 0.5, "wide": 1.0},
}


def backprop_step(binary, backend, config, steps, adapter):
    """One configuration through `backprop bench --json`: its result row."""
    cmd = [binary, "bench", "--backend", backend, "--configs", config, "--no-crossover", "--json",
           "--steps", str(steps)]
    if adapter:
        cmd += ["--adapter", adapter]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed: {run.stderr.strip()}")
    rows = [r for r in json.loads(run.stdout)["results"] if r["config"] == config]
    if not rows:
        sys.exit(f"error: {' '.join(cmd)} printed no result for {config}")
    return rows[0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cpu: backprop's CPU backend against PyTorch on the CPU; cuda: its GPU backend against CUDA")
    p.add_argument("--configs", default="seed,small,mnist,wide")
    p.add_argument("--rounds", type=int, default=3, help="rounds of side-by-side measurements (default 3)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement (fewer when a step is slow)")
    p.add_argument("--backprop", default="target/release/backprop", help="the backprop binary")
    p.add_argument("--adapter", default=None, help="backprop's --adapter (GPU)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in pytorch_baseline.CONFIGS:
            sys.exit(f"error: unknown configuration '{c}' (expected seed, small, mnist, wide)")
    if args.rounds < 1:
        sys.exit("error: --rounds must be at least 1")
    if not os.path.isfile(args.backprop):
        sys.exit(f"error: {args.backprop} not found: run `cargo build --release` first, or pass --backprop")

    import torch

    dev = pytorch_baseline.setup(torch, args.device)
    backend = "cpu" if args.device == "cpu" else "gpu"
    rounds = []
    for r in range(args.rounds):
        for c in configs:
            ours = backprop_step(args.backprop, backend, c, args.steps, args.adapter)
            theirs = pytorch_baseline.measure(torch, c, dev, args.steps)
            rounds.append({"round": r + 1, "config": c, "backprop": ours, "pytorch": theirs,
                           "ratio": ours["ms_per_step"] / theirs["ms_per_step"],
                           "train_ratio": ours["train_ms_per_step"] / theirs["train_ms_per_step"]})
            print(f"round {r + 1} {c:<6} step: backprop {ours['ms_per_step']:.4f} ms  pytorch "
                  f"{theirs['ms_per_step']:.4f} ms  ratio {rounds[-1]['ratio']:.3f};  train: backprop "
                  f"{ours['train_ms_per_step']:.4f} ms  pytorch {theirs['train_ms_per_step']:.4f} ms  ratio "
                  f"{rounds[-1]['train_ratio']:.3f}", file=sys.stderr)

    def summarise(key, field):
        out = []
        for c in configs:
            mine = [x for x in rounds if x["config"] == c]
            ratios = [x[key] for x in mine]
            # best against best: each side's fastest round. A shared machine's load only ever adds time, so
            # this is the least disturbed comparison; the median says how the rounds went.
            best = min(x["backprop"][field] for x in mine) / min(x["pytorch"][field] for x in mine)
            target = TARGETS[args.device][c]
            out.append({"config": c, "ratios": ratios, "median": statistics.median(ratios), "min": min(ratios),
                        "max": max(ratios), "best": best, "target": target,
                        "met": sum(x <= target for x in ratios)})
        return out

    summary = summarise("ratio", "ms_per_step")
    train_summary = summarise("train_ratio", "train_ms_per_step")
    first = rounds[0]
    machine = {"backprop_adapter": first["backprop"]["adapter"], "pytorch_device": first["pytorch"]["adapter"],
               "torch": torch.__version__}
    if args.json:
        print(json.dumps({"device": args.device, "machine": machine, "summary": summary,
                          "train_summary": train_summary, "rounds": rounds}, indent=2))
        return
    print(f"backprop {backend} ({machine['backprop_adapter']}) vs PyTorch {torch.__version__} {args.device} "
          f"({machine['pytorch_device']}), {args.rounds} rounds; ratio = backprop ms / PyTorch ms")
    for title, rows in [("step (one at a time, a wait for each)", summary),
                        ("train (steps back to back, one wait per group)", train_summary)]:
        print(f"{title}:")
        print(f"{'config':<6} {'median':>7} {'range':>15} {'best':>6} {'target':>7}  met  rounds")
        for s in rows:
            each = " ".join(f"{x:.3f}" for x in s["ratios"])
            print(f"{s['config']:<6} {s['median']:>7.3f} {s['min']:>7.3f}–{s['max']:<7.3f} {s['best']:>6.3f} "
                  f"{s['target']:>7.2f}  {s['met']}/{len(s['ratios'])}  {each}")


if __name__ == "__main__":
    main()
