#!/usr/bin/env python3
"""Step-time ratios of backprop against its peers, PyTorch and Burn, measured side by side in one run on one machine.

Each round times every configuration once with `backprop bench` (a subprocess) and then once with each peer:
PyTorch in this process (the step of pytorch_baseline.py), Burn through its baseline binary (benches/burn-baseline,
a subprocess), so all see the same moment of a shared machine. The ratio is backprop's ms per step over the peer's;
below 1 backprop is faster. Two ratios: "step", one step at a time with a wait for each (backprop's `ms_per_step`),
and "train", steps back to back with one wait per group (backprop's `train_ms_per_step`: data resident, up to 32
steps a submit, as `train` runs). The tables give each round's ratio, the median, the range and "best" (the fastest
round of each side, one over the other: a shared machine's load only adds time), against the targets:

    Targets against PyTorch
      cpu (backprop --backend cpu vs PyTorch on the CPU):  seed, small <= 0.1    mnist, wide <= 1.0
      gpu (backprop --backend gpu vs PyTorch on CUDA):     seed, small <= 0.2    mnist <= 0.5    wide <= 1.0
    Targets against Burn
      cpu (backprop --backend cpu vs Burn's Autodiff<NdArray>):        every configuration <= 1.0
      gpu (backprop --backend gpu vs Burn's Autodiff<Wgpu>, the same adapter): every configuration <= 1.0

    python3 benches/compare.py                                  # CPU against PyTorch, all four configurations, 3 rounds
    python3 benches/compare.py --device gpu --rounds 5          # the GPU backend (Vulkan) against PyTorch CUDA
    python3 benches/compare.py --peers burn --device gpu --configs seed,small,mnist   # against Burn-wgpu
    python3 benches/compare.py --peers pytorch,burn --json      # both peers; one JSON object with every measurement

Needs a release build of backprop (cargo build --release); PyTorch only when it is a peer (imported then); the Burn
binary only when Burn is (cd benches/burn-baseline && cargo build --release --locked). Never needed by the tests or
by CI.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pytorch_baseline  # noqa: E402  (imports no torch by itself)

TARGETS = {
    "pytorch": {
        "cpu": {"seed": 0.1, "small": 0.1, "mnist": 1.0, "wide": 1.0},
        "gpu": {"seed": 0.2, "small": 0.2, "mnist": 0.5, "wide": 1.0},
    },
    "burn": {
        "cpu": {"seed": 1.0, "small": 1.0, "mnist": 1.0, "wide": 1.0},
        "gpu": {"seed": 1.0, "small": 1.0, "mnist": 1.0, "wide": 1.0},
    },
}
PEERS = ("pytorch", "burn")


def run_json(cmd, env=None):
    """Runs a measuring subprocess and returns its JSON output, or exits with its error."""
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed: {run.stderr.strip()}")
    try:
        return json.loads(run.stdout)
    except json.JSONDecodeError as e:
        sys.exit(f"error: {' '.join(cmd)} printed no JSON ({e}): {run.stdout[:200]}")


def one_row(cmd, config):
    """The result row for `config` from a `--json` run of a measuring program."""
    rows = [r for r in run_json(cmd)["results"] if r["config"] == config]
    if not rows:
        sys.exit(f"error: {' '.join(cmd)} printed no result for {config}")
    return rows[0]


def backprop_step(binary, backend, config, steps, adapter):
    """One configuration through `backprop bench --json`: its result row."""
    cmd = [binary, "bench", "--backend", backend, "--configs", config, "--no-crossover", "--json",
           "--steps", str(steps)]
    if adapter:
        cmd += ["--adapter", adapter]
    return one_row(cmd, config)


class PyTorchPeer:
    name = "PyTorch"

    def __init__(self, device):
        try:
            import torch  # only when PyTorch is a peer
        except ImportError:
            sys.exit("error: PyTorch is not installed (pip install torch); --peers burn compares with Burn alone")

        self.torch = torch
        self.dev = pytorch_baseline.setup(torch, "cpu" if device == "cpu" else "cuda")
        self.version = torch.__version__

    def measure(self, config, steps):
        return pytorch_baseline.measure(self.torch, config, self.dev, steps)


class BurnPeer:
    name = "Burn"

    def __init__(self, device, binary, adapter):
        if not os.path.isfile(binary):
            sys.exit(f"error: {binary} not found: build it (cd benches/burn-baseline && cargo build --release "
                     "--locked), or pass --burn")
        self.binary = binary
        self.device = "ndarray" if device == "cpu" else "wgpu"
        self.version = None
        # The baseline picks its adapter as backprop does; backprop's --adapter is its WGPU_ADAPTER_NAME.
        self.env = dict(os.environ, WGPU_ADAPTER_NAME=adapter) if adapter else None

    def measure(self, config, steps):
        cmd = [self.binary, "--device", self.device, "--configs", config, "--steps", str(steps), "--json"]
        out = run_json(cmd, self.env)
        self.version = out["burn"]
        rows = [r for r in out["results"] if r["config"] == config]
        if not rows:
            sys.exit(f"error: {self.binary} printed no result for {config}")
        return rows[0]


def summarise(rounds, configs, peer, device, key, field):
    """Per configuration: every round's ratio, the median, the range, best against best, the target."""
    out = []
    for c in configs:
        mine = [x for x in rounds if x["config"] == c]
        ratios = [x[key][peer] for x in mine]
        # best against best: each side's fastest round. A shared machine's load only ever adds time, so this is
        # the least disturbed comparison; the median says how the rounds went.
        best = min(x["backprop"][field] for x in mine) / min(x[peer][field] for x in mine)
        target = TARGETS[peer][device][c]
        out.append({"config": c, "ratios": ratios, "median": statistics.median(ratios), "min": min(ratios),
                    "max": max(ratios), "best": best, "target": target, "met": sum(x <= target for x in ratios)})
    return out


def print_tables(peer_name, summary, train_summary):
    for title, rows in [("step (one at a time, a wait for each)", summary),
                        ("train (steps back to back, one wait per group)", train_summary)]:
        print(f"{title}, backprop / {peer_name}:")
        print(f"{'config':<6} {'median':>7} {'range':>15} {'best':>6} {'target':>7}  met  rounds")
        for s in rows:
            each = " ".join(f"{x:.3f}" for x in s["ratios"])
            print(f"{s['config']:<6} {s['median']:>7.3f} {s['min']:>7.3f}–{s['max']:<7.3f} {s['best']:>6.3f} "
                  f"{s['target']:>7.2f}  {s['met']}/{len(s['ratios'])}  {each}")


def print_times(rounds, configs, peers):
    """The ms per step behind the ratios: each side's fastest round, step and train."""
    print("ms per step, each side's fastest round (step / train):")
    head = f"{'config':<6} {'backprop':>21}" + "".join(f" {p.name:>21}" for p in peers)
    print(head)
    for c in configs:
        mine = [x for x in rounds if x["config"] == c]
        cells = []
        for side in ["backprop"] + [p.key for p in peers]:
            step = min(x[side]["ms_per_step"] for x in mine)
            train = min(x[side]["train_ms_per_step"] for x in mine)
            cells.append(f"{step:.4f} / {train:.4f}")
        print(f"{c:<6} " + " ".join(f"{cell:>21}" for cell in cells))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu", "cuda"],
                   help="cpu: backprop's CPU backend against PyTorch on the CPU and Burn-ndarray; gpu (or cuda): "
                        "its GPU backend against PyTorch on CUDA and Burn-wgpu")
    p.add_argument("--peers", default="pytorch", help="comma-separated: pytorch, burn (default pytorch)")
    p.add_argument("--configs", default="seed,small,mnist,wide")
    p.add_argument("--rounds", type=int, default=3, help="rounds of side-by-side measurements (default 3)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement (fewer when a step is slow)")
    p.add_argument("--backprop", default="target/release/backprop", help="the backprop binary")
    p.add_argument("--burn", default=os.path.join(HERE, "burn-baseline", "target", "release", "burn-baseline"),
                   help="the Burn baseline binary (default: benches/burn-baseline's release build)")
    p.add_argument("--adapter", default=None, help="backprop's --adapter (GPU), and Burn's WGPU_ADAPTER_NAME")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    device = "cpu" if args.device == "cpu" else "gpu"
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in pytorch_baseline.CONFIGS:
            sys.exit(f"error: unknown configuration '{c}' (expected seed, small, mnist, wide)")
    names = [x.strip() for x in args.peers.split(",") if x.strip()]
    for n in names:
        if n not in PEERS:
            sys.exit(f"error: unknown peer '{n}' (expected pytorch, burn)")
    if not names:
        sys.exit("error: --peers names no peer")
    if args.rounds < 1:
        sys.exit("error: --rounds must be at least 1")
    if args.adapter and device == "cpu":
        sys.exit("error: --adapter chooses a GPU adapter and does not apply to --device cpu")
    if not os.path.isfile(args.backprop):
        sys.exit(f"error: {args.backprop} not found: run `cargo build --release` first, or pass --backprop")

    peers = []
    for n in names:
        peer = PyTorchPeer(device) if n == "pytorch" else BurnPeer(device, args.burn, args.adapter)
        peer.key = n
        peers.append(peer)
    backend = "cpu" if device == "cpu" else "gpu"
    rounds = []
    for r in range(args.rounds):
        for c in configs:
            entry = {"round": r + 1, "config": c, "ratio": {}, "train_ratio": {}}
            entry["backprop"] = ours = backprop_step(args.backprop, backend, c, args.steps, args.adapter)
            for peer in peers:
                entry[peer.key] = theirs = peer.measure(c, args.steps)
                entry["ratio"][peer.key] = ours["ms_per_step"] / theirs["ms_per_step"]
                entry["train_ratio"][peer.key] = ours["train_ms_per_step"] / theirs["train_ms_per_step"]
                print(f"round {r + 1} {c:<6} {peer.name:<7} step: backprop {ours['ms_per_step']:.4f} ms  "
                      f"{peer.key} {theirs['ms_per_step']:.4f} ms  ratio {entry['ratio'][peer.key]:.3f};  train: "
                      f"backprop {ours['train_ms_per_step']:.4f} ms  {peer.key} {theirs['train_ms_per_step']:.4f} ms"
                      f"  ratio {entry['train_ratio'][peer.key]:.3f}", file=sys.stderr)
            rounds.append(entry)

    first = rounds[0]
    machine = {"backprop_adapter": first["backprop"]["adapter"]}
    results = {}
    for peer in peers:
        machine[f"{peer.key}_device"] = first[peer.key]["adapter"]
        machine[f"{peer.key}_version"] = peer.version
        results[peer.key] = {"summary": summarise(rounds, configs, peer.key, device, "ratio", "ms_per_step"),
                             "train_summary": summarise(rounds, configs, peer.key, device, "train_ratio",
                                                        "train_ms_per_step")}
    if args.json:
        print(json.dumps({"device": device, "peers": names, "machine": machine, "results": results,
                          "rounds": rounds}, indent=2))
        return
    print(f"backprop {backend} ({machine['backprop_adapter']}), {args.rounds} rounds; ratio = backprop ms / peer ms")
    for peer in peers:
        print(f"\n{peer.name} {peer.version} ({machine[f'{peer.key}_device']})")
        print_tables(peer.name, results[peer.key]["summary"], results[peer.key]["train_summary"])
    print()
    print_times(rounds, configs, peers)


if __name__ == "__main__":
    main()
