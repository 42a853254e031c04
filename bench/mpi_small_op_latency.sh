#!/usr/bin/env bash
# Small all-reduce latency: what gradflow's MPI communicator adds on top of MPI_Allreduce. Four programs,
# interleaved (the order rotates every repetition), 5 repetitions, f32 sum of 4 B to 4 KiB under
# `mpirun -np 2` with shared-memory MPI on this machine:
#   plain single      plain_mpi_allreduce (MPI_Init: MPI_THREAD_SINGLE)
#   plain serialized  plain_mpi_allreduce --thread-level serialized (the level gradflow's engine runs at)
#   gradflow          collective_bench --backend mpi (a new output tensor per op)
#   gradflow in-place collective_bench --backend mpi --in-place yes (AllReduceOptions::in_place)
#   gradflow single   the same with GRADFLOW_MPI_THREAD_LEVEL=single (MPI_THREAD_SINGLE, every op inline)
# Prints the median time per op of each and the ratios to the plain baselines.
# Usage: bench/mpi_small_op_latency.sh [iters=20000]
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-20000}
for b in build/bin/collective_bench build/bin/plain_mpi_allreduce; do
  [[ -x $b ]] || { echo "missing $b: cmake --build build --target collective_bench plain_mpi_allreduce" >&2; exit 2; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
programs=("plain_single:build/bin/plain_mpi_allreduce"
          "plain_serialized:build/bin/plain_mpi_allreduce --thread-level serialized"
          "gradflow:build/bin/collective_bench --backend mpi"
          "gradflow_in_place:build/bin/collective_bench --backend mpi --in-place yes"
          "gradflow_single:build/bin/collective_bench --backend mpi --in-place yes")
for ((r = 0; r < 5; r++)); do
  for ((k = 0; k < 5; k++)); do
    p=${programs[(r + k) % 5]}
    level=serialized
    [[ ${p%%:*} == gradflow_single ]] && level=single
    # shellcheck disable=SC2086  # the program and its flags split on purpose
    GRADFLOW_MPI_THREAD_LEVEL=$level timeout 300 mpirun -np 2 --bind-to none -x GRADFLOW_MPI_THREAD_LEVEL \
      ${p#*:} --min-bytes 4 --max-bytes 4K --iters "$iters" --warmup 2000 --json > "$out/${p%%:*}_$r.jsonl"
  done
done
python3 - "$out" <<'PY'
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
names = ["plain_single", "plain_serialized", "gradflow", "gradflow_in_place", "gradflow_single"]
def times(name):
    runs = [[json.loads(l) for l in (out / f"{name}_{r}.jsonl").read_text().splitlines()] for r in range(5)]
    return {row["size"]: statistics.median(run[i]["time_us"] for run in runs) for i, row in enumerate(runs[0])}
t = {n: times(n) for n in names}
print("| size (B) | plain single (us) | plain serialized (us) | gradflow (us) | gradflow in-place (us) "
      "| gradflow single, in-place (us) | in-place / serialized | single / single |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for size in sorted(t["plain_single"]):
    a, b, c, d, e = (t[n][size] for n in names)
    print(f"| {size} | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} | {e:.2f} | {d / b:.2f} | {e / a:.2f} |")
PY
