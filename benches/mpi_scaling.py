#!/usr/bin/env python3
"""Data-parallel scaling of `backprop bench` under mpirun, several rounds: the median and the best round of each
figure per configuration, since one round on a shared machine says little.

    python3 benches/mpi_scaling.py --ranks 2 --backend cpu --configs small,mnist --rounds 5
    python3 benches/mpi_scaling.py --ranks 3 --backend gpu --configs seed,small,mnist --rounds 3

Needs `cargo build --release --features mpi` and Open MPI's mpirun. Each rank gets one CPU thread
(RAYON_NUM_THREADS=1); waiting ranks yield the CPU (--mca mpi_yield_when_idle 1)."""

import argparse
import json
import os
import statistics
import subprocess
import sys

FIGURES = ["one_process_ms", "ms_per_step", "compute_ms", "copy_ms", "wait_ms", "allreduce_ms", "allreduce_bus_gbs", "efficiency"]
HEAD = ["1-proc ms", "ms/step", "compute", "copies", "wait", "allreduce", "bus GB/s", "eff %"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--configs", default="small,mnist")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--binary", default="target/release/backprop")
    a = p.parse_args()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = ["mpirun", "--oversubscribe", "-np", str(a.ranks), "--mca", "mpi_yield_when_idle", "1",
           "-x", "RAYON_NUM_THREADS=1", a.binary, "bench", "--json", "--backend", a.backend,
           "--configs", a.configs, "--steps", str(a.steps)]
    rounds = {}
    for r in range(a.rounds):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"round {r + 1} failed:\n{out.stderr}")
        for row in json.loads(out.stdout)["results"]:
            key = (row["config"], row["backend"])
            row["efficiency"] *= 100
            rounds.setdefault(key, []).append(row)
    print(f"{' '.join(cmd[:9])} ... ({a.rounds} rounds; median [best])")
    print(f"{'config':<6} {'back':<5} " + " ".join(f"{h:>19}" for h in HEAD))
    for (config, backend), rows in rounds.items():
        best = min(rows, key=lambda r: r["ms_per_step"])
        cells = []
        for f in FIGURES:
            med = statistics.median(r[f] for r in rows)
            cells.append(f"{med:>10.3f} [{best[f]:>6.3f}]" if med < 1e4 else f"{med:>10.0f} [{best[f]:>6.0f}]")
        print(f"{config:<6} {backend:<5} " + " ".join(f"{c:>19}" for c in cells))


if __name__ == "__main__":
    main()
