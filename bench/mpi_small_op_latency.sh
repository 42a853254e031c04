#!/usr/bin/env bash
# Small all-reduce latency: what gradflow's MPI communicator adds on top of MPI_Allreduce. Seven programs,
# interleaved (the order rotates every repetition), 5 repetitions, f32 sum of 4 B to 4 KiB under
# `mpirun -np 2` with shared-memory MPI on this machine:
#   plain_single           plain_mpi_allreduce (MPI_Init's MPI_THREAD_SINGLE, separate buffers)
#   plain_single_ip        the same with MPI_IN_PLACE
#   plain_serialized_ip    MPI_IN_PLACE at MPI_THREAD_SERIALIZED (the level gradflow's engine runs at)
#   gradflow               collective_bench --backend mpi (a Work and a new output tensor per op)
#   gradflow_ip            --in-place yes (AllReduceOptions::in_place, through a Work)
#   gradflow_blocking      --in-place blocking (Communicator::all_reduce_in_place: no Work)
#   gradflow_blocking_single  the same with GRADFLOW_MPI_THREAD_LEVEL=single (MPI_THREAD_SINGLE)
# Prints the median time per op of each and the ratios of gradflow's in-place calls to the plain
# program at the same thread level.
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
          "plain_single_ip:build/bin/plain_mpi_allreduce --in-place yes"
          "plain_serialized_ip:build/bin/plain_mpi_allreduce --thread-level serialized --in-place yes"
          "gradflow:build/bin/collective_bench --backend mpi"
          "gradflow_ip:build/bin/collective_bench --backend mpi --in-place yes"
          "gradflow_blocking:build/bin/collective_bench --backend mpi --in-place blocking"
          "gradflow_blocking_single:build/bin/collective_bench --backend mpi --in-place blocking")
n=${#programs[@]}
for ((r = 0; r < 5; r++)); do
  for ((k = 0; k < n; k++)); do
    p=${programs[(r + k) % n]}
    level=serialized
    [[ ${p%%:*} == gradflow_blocking_single ]] && level=single
    # shellcheck disable=SC2086  # the program and its flags split on purpose
    GRADFLOW_MPI_THREAD_LEVEL=$level timeout 300 mpirun -np 2 --bind-to none -x GRADFLOW_MPI_THREAD_LEVEL \
      ${p#*:} --min-bytes 4 --max-bytes 4K --iters "$iters" --warmup 2000 --json > "$out/${p%%:*}_$r.jsonl"
  done
done
python3 - "$out" "${programs[@]%%:*}" <<'PY'
import json, pathlib, statistics, sys
out, names = pathlib.Path(sys.argv[1]), sys.argv[2:]
def times(name):
    runs = [[json.loads(l) for l in (out / f"{name}_{r}.jsonl").read_text().splitlines()] for r in range(5)]
    return {row["size"]: statistics.median(run[i]["time_us"] for run in runs) for i, row in enumerate(runs[0])}
t = {n: times(n) for n in names}
ratios = [("ip / plain ser. ip", "gradflow_ip", "plain_serialized_ip"),
          ("blocking / plain ser. ip", "gradflow_blocking", "plain_serialized_ip"),
          ("blocking single / plain single ip", "gradflow_blocking_single", "plain_single_ip"),
          ("blocking single / plain single", "gradflow_blocking_single", "plain_single")]
print("| size (B) | " + " | ".join(f"{n} (us)" for n in names) + " | " + " | ".join(r[0] for r in ratios) + " |")
print("|---:" * (1 + len(names) + len(ratios)) + "|")
for size in sorted(t[names[0]]):
    cells = [f"{t[n][size]:.2f}" for n in names] + [f"{t[a][size] / t[b][size]:.2f}" for _, a, b in ratios]
    print(f"| {size} | " + " | ".join(cells) + " |")
PY
