#!/usr/bin/env bash
# gradflow's communicator beside the engines it calls, all-reduce f32 sum, 4 B to 64 MiB, under mpirun on
# this machine: plain_mpi_allreduce vs. collective_bench --backend mpi, and plain_gloo_allreduce (as
# Gloo ships, and with its event-loop thread at SCHED_BATCH as gradflow runs it: --loop-sched batch,
# docs/distributed.md) vs. collective_bench --backend gloo. Each group rotates (which program goes first
# changes every repetition), 3 repetitions, a fresh store directory per run. Prints, per size, the median time and busbw of each
# program, gradflow / plain busbw, and gradflow / plain time; then the issue's targets (MPI busbw >= 90% of
# plain at >= 1 MiB, MPI 4-byte latency <= 1.5x plain; Gloo busbw >= 90% of plain at >= 1 MiB).
# Usage: bench/collectives_vs_engines.sh [np=2] [iters=500]
#
# Iterations: every size runs at most `iters` timed ops, and at most 512 MiB worth of them (--iters-bytes
# 512M: 64 MiB runs 8, 2 MiB 256, <= 1 MiB `iters` at the default 500; collective_sweep.h), after
# min(20, max(1, timed / 4)) untimed ones. About 1.5 minutes in all at np=2 on a 2-core machine, most of it
# Gloo's small sizes (0.1-3 ms each here).
set -euo pipefail
cd "$(dirname "$0")/.."
np=${1:-2}
iters=${2:-500}
bins=(build/bin/collective_bench build/bin/plain_mpi_allreduce build/bin/plain_gloo_allreduce)
for b in "${bins[@]}"; do
  [[ -x $b ]] || { echo "missing $b: cmake --build build --target ${bins[*]##*/}" >&2; exit 2; }
done
python=/usr/bin/python3
[[ -x $python ]] || python=python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Shared memory between local ranks; no network probing of the machine's interfaces.
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sweep=(--min-bytes 4 --max-bytes 64M --iters "$iters" --warmup 20 --iters-bytes 512M --json)

# run NAME REP PROGRAM ARGS...: one mpirun, its JSON lines into $out/NAME_REP.jsonl. Every program but
# plain MPI gets a fresh FileStore directory (gradflow's MPI communicator uses it for failure notices).
run() {
  local name=$1 rep=$2
  shift 2
  local store=()
  if [[ $name != plain_mpi ]]; then
    store=(--store-dir "$out/store_${name}_$rep")
    mkdir -p "${store[1]}"
  fi
  timeout 600 mpirun -np "$np" --bind-to none "$@" "${sweep[@]}" "${store[@]}" > "$out/${name}_$rep.jsonl"
  echo "  $name rep $rep: $(wc -l < "$out/${name}_$rep.jsonl") sizes" >&2
}

mpi_group=("plain_mpi:build/bin/plain_mpi_allreduce" "gradflow_mpi:build/bin/collective_bench --backend mpi")
gloo_group=("plain_gloo:build/bin/plain_gloo_allreduce"
            "plain_gloo_batch:build/bin/plain_gloo_allreduce --loop-sched batch"
            "gradflow_gloo:build/bin/collective_bench --backend gloo")
for ((r = 0; r < 3; r++)); do
  for group in mpi_group gloo_group; do
    declare -n programs=$group
    n=${#programs[@]}
    for ((k = 0; k < n; k++)); do
      entry=${programs[(k + r) % n]}
      # shellcheck disable=SC2086  # the program and its flags split on purpose
      run "${entry%%:*}" "$r" ${entry#*:}
    done
    unset -n programs
  done
done

"$python" - "$out" "$np" <<'PY'
import json, pathlib, statistics, sys
out, np = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def load(name):
    runs = []
    for r in range(3):
        runs.append({row["size"]: row for row in map(json.loads, (out / f"{name}_{r}.jsonl").read_text().split("\n")[:-1])})
    return runs
def med(runs, size, key):
    return statistics.median(run[size][key] for run in runs)
MiB = 1 << 20
verdicts = []
for engine, plain_name, title in (("mpi", "plain_mpi", "MPI"), ("gloo", "plain_gloo", "Gloo"),
                                  ("gloo", "plain_gloo_batch", "Gloo (plain: its loop at SCHED_BATCH)")):
    plain, gf = load(plain_name), load(f"gradflow_{engine}")
    print(f"\n{title}, {np} ranks, all_reduce f32 sum, medians of 3 runs "
          "(ratio range: gradflow / plain within each repetition)\n")
    print("| size (B) | plain time (us) | gradflow time (us) | time ratio | plain busbw (GB/s) "
          "| gradflow busbw (GB/s) | busbw ratio | busbw ratio range |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    big = []
    for size in sorted(plain[0]):
        pt, gt = med(plain, size, "time_us"), med(gf, size, "time_us")
        pb, gb = med(plain, size, "busbw"), med(gf, size, "busbw")
        per_rep = [gf[r][size]["busbw"] / plain[r][size]["busbw"] for r in range(3)]
        print(f"| {size} | {pt:.2f} | {gt:.2f} | {gt / pt:.2f} | {pb:.3f} | {gb:.3f} | {gb / pb:.2f} "
              f"| {min(per_rep):.2f}-{max(per_rep):.2f} |")
        if size >= MiB:
            big.append((gb / pb, size))
        if size == 4:
            lat = (gt / pt, pt, gt)
    worst = min(big)
    verdicts.append(f"{title} busbw at >= 1 MiB: gradflow / plain from {worst[0]:.2f} (at {worst[1]} B) to "
                    f"{max(big)[0]:.2f} (goal >= 0.90): {'met' if worst[0] >= 0.9 else 'MISSED'}")
    if engine == "mpi":
        verdicts.append(f"MPI 4-byte latency: gradflow {lat[2]:.2f} us, plain {lat[1]:.2f} us, ratio {lat[0]:.2f} "
                        f"(goal <= 1.5): {'met' if lat[0] <= 1.5 else 'MISSED'}")
print()
for v in verdicts:
    print(v)
PY
