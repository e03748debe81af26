#!/usr/bin/env python3
"""PyTorch baseline for `backprop bench`: the same four standard configurations (DESIGN.md), the same step.

Each step: forward through sigmoid Linear layers, MSE loss (mean over all B*O outputs), backward, SGD with
lr 0.1, in fp32 with TF32 off. ms per step is the median of timed steps after warm-up; on CUDA the timed
region ends with torch.cuda.synchronize(), as `backprop bench` waits for the GPU. train ms per step times
groups of up to 32 steps with one synchronisation each, as `backprop bench` times `train`'s grouped steps. GFLOP/s counts
6 * B * sum(I * O) per step, as `backprop bench` does.

    python3 benches/pytorch_baseline.py                 # CPU, all configurations
    python3 benches/pytorch_baseline.py --device cuda   # the same on the GPU
    python3 benches/pytorch_baseline.py --json          # one JSON object, like `backprop bench --json`

Never needed by the tests or by CI.
"""
import argparse
import json
import statistics
import sys
import time

CONFIGS = {
    "seed": ([2, 2, 1], 1),
    "small": ([64, 64, 64, 1], 64),
    "mnist": ([784, 256, 256, 10], 256),
    "wide": ([1024, 4096, 4096, 1024], 1024),
}


def setup(torch, device):
    """fp32 with TF32 off; returns the torch.device, or exits with a message when CUDA is asked for and absent."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch.cuda.is_available() is False")
    return dev


def measure(torch, name, dev, steps=20, warmup=3, max_seconds=3.0):
    """Times the training step of configuration `name` on `dev`; one result row, as `backprop bench --json`."""
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    adapter = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
    sizes, batch = CONFIGS[name]
    torch.manual_seed(1)
    layers = []
    for i, o in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(i, o), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers).to(dev, torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.MSELoss()
    x = torch.rand(batch, sizes[0], device=dev)
    y = torch.rand(batch, sizes[-1], device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    sync()
    samples = []
    start = time.perf_counter()
    while len(samples) < max(steps, 1) and (len(samples) < 3 or time.perf_counter() - start < max_seconds):
        t = time.perf_counter()
        step()
        sync()
        samples.append((time.perf_counter() - t) * 1e3)
    ms = statistics.median(samples)
    # Steps back to back with one synchronisation per group, as a training loop that does not read the loss
    # every step runs them (backprop's train_ms_per_step); groups of about 0.3 s, at most 32 steps.
    k = max(1, min(32, int(300 / ms))) if ms > 0 else 32
    groups = []
    start = time.perf_counter()
    while len(groups) < 3 or (len(groups) * k < steps and time.perf_counter() - start < max_seconds):
        t = time.perf_counter()
        for _ in range(k):
            step()
        sync()
        groups.append((time.perf_counter() - t) * 1e3 / k)
    flops = 6 * batch * sum(i * o for i, o in zip(sizes, sizes[1:]))
    return {
        "config": name,
        "backend": f"pytorch-{dev.type}",
        "adapter": adapter,
        "batch": batch,
        "steps": len(samples),
        "ms_per_step": ms,
        "gflops": flops / (ms * 1e6),
        "train_ms_per_step": statistics.median(groups),
        "train_group": k,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--configs", default="seed,small,mnist,wide")
    p.add_argument("--steps", type=int, default=20, help="timed steps (fewer when a step is slow; at least 3)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=3.0, help="time budget per configuration")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import torch

    dev = setup(torch, args.device)

    results = []
    for name in args.configs.split(","):
        name = name.strip()
        if name not in CONFIGS:
            sys.exit(f"error: unknown configuration '{name}' (expected seed, small, mnist, wide)")
        results.append(measure(torch, name, dev, args.steps, args.warmup, args.max_seconds))

    if args.json:
        print(json.dumps({"torch": torch.__version__, "results": results}, indent=2))
        return
    print(f"torch {torch.__version__}")
    print(f"{'config':<6} {'back':<13} {'batch':>5} {'steps':>6} {'ms/step':>11} {'GFLOP/s':>9} {'train ms/step':>14}"
          f"  device")
    for r in results:
        train = f"{r['train_ms_per_step']:.4f} ({r['train_group']})"
        print(f"{r['config']:<6} {r['backend']:<13} {r['batch']:>5} {r['steps']:>6} {r['ms_per_step']:>11.4f} "
              f"{r['gflops']:>9.2f} {train:>14}  {r['adapter']}")
    print("ms/step: one step at a time, synchronised; train ms/step: (N) steps back to back, one synchronisation")


if __name__ == "__main__":
    main()
