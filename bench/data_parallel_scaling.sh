#!/usr/bin/env bash
# Data-parallel scaling of the seed's model on this machine (issue 6's targets): samples per second of
#   - one gradflow rank (one thread),
#   - two independent single-rank runs at the same time (the hardware's own ceiling for two ranks),
#   - two single-rank runs in lockstep (fashion_mnist --lockstep: each waits for the other before every
#     step, exchanging nothing else): the ceiling of any synchronous job on these cores, which free runs
#     exceed by the cores' difference in speed,
#   - gradflow on 2 data-parallel ranks through gfrun, with the MPI backend (also with --balance-load:
#     each global batch split by the ranks' measured speeds, and with GRADFLOW_SHARED_MEMORY=0: MPI's own
#     all-reduce instead of the shared-memory one, docs/distributed.md) and with Gloo (also with Gloo's
#     event-loop thread left at the normal scheduling policy: GRADFLOW_GLOO_LOOP_SCHED=normal), and with
#     MPI, balanced, with the update split between the ranks (--shard-update),
#   - PyTorch alone and PyTorch DDP (Gloo) on 2 ranks (Debian's python3-torch; DDP's ranks started by gfrun,
#     whose environment is torch's env:// contract),
# per-replica batch 32 (one epoch) and 256 (four epochs: one lasts under half a second), every configuration
# run 3 times in rotation; prints medians, over the whole run and from step 5 on (steady_samples_per_second:
# without the first steps' one-time costs, such as oneDNN compiling its kernels, which weigh twice as much
# in a 2-rank epoch of half the steps). Every clock starts and stops once all ranks are there (a barrier),
# for gradflow and PyTorch. The two independent runs take their first step together (fashion_mnist
# --start-together: their data loads end tenths of a second apart) and then run free; from step 5 on, the
# ceiling counts only the time both were stepping (--step-times), not the slower one's time alone at the
# end. Ratios are medians of each round's ratio (the round's job against the same round's single rank,
# ceiling or lockstep pair): this VM's speed drifts by tens of percent from minute to minute, and runs
# close in time share it.
# Usage: bench/data_parallel_scaling.sh [repetitions=3]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
[[ -x build/bin/fashion_mnist && -x build/bin/gfrun ]] || scripts/build
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1 OMPI_MCA_btl=self,vader
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
have_torch=0
/usr/bin/python3 -c "import torch" 2>/dev/null && have_torch=1
for batch in 32 256; do
  epochs=1
  ((batch < 256)) || epochs=4
  fm=(build/bin/fashion_mnist --epochs "$epochs" --threads 1 --verbose 0)
  for ((r = 0; r < reps; r++)); do
    "${fm[@]}" --strategy none --batch-size "$batch" --metrics-json "$out/single_${batch}_$r.json" >/dev/null
    "${fm[@]}" --strategy none --batch-size "$batch" --metrics-json "$out/pairA_${batch}_$r.json" \
      --start-together "gradflow-pair-$$-$batch-$r:0" --step-times "$out/pairA_${batch}_$r.steps" >/dev/null &
    "${fm[@]}" --strategy none --batch-size "$batch" --metrics-json "$out/pairB_${batch}_$r.json" \
      --start-together "gradflow-pair-$$-$batch-$r:1" --step-times "$out/pairB_${batch}_$r.steps" >/dev/null
    wait
    "${fm[@]}" --strategy none --batch-size "$batch" --lockstep "gradflow-lockstep-$$-$batch-$r:0" \
      --metrics-json "$out/lockA_${batch}_$r.json" >/dev/null &
    "${fm[@]}" --strategy none --batch-size "$batch" --lockstep "gradflow-lockstep-$$-$batch-$r:1" \
      --metrics-json "$out/lockB_${batch}_$r.json" >/dev/null
    wait
    build/bin/gfrun --backend mpi -np 2 -x OMP_WAIT_POLICY -x OMP_NUM_THREADS -x OMPI_MCA_btl "${fm[@]}" \
      --batch-size "$batch" --metrics-json "$out/dpmpi_${batch}_$r.json" >/dev/null
    build/bin/gfrun --backend mpi -np 2 -x OMP_WAIT_POLICY -x OMP_NUM_THREADS -x OMPI_MCA_btl "${fm[@]}" \
      --batch-size "$batch" --balance-load --metrics-json "$out/dpbal_${batch}_$r.json" >/dev/null
    build/bin/gfrun --backend mpi -np 2 -x OMP_WAIT_POLICY -x OMP_NUM_THREADS -x OMPI_MCA_btl "${fm[@]}" \
      --batch-size "$batch" --balance-load --shard-update --metrics-json "$out/dpbalsplit_${batch}_$r.json" >/dev/null
    GRADFLOW_SHARED_MEMORY=0 build/bin/gfrun --backend mpi -np 2 -x OMP_WAIT_POLICY -x OMP_NUM_THREADS \
      -x OMPI_MCA_btl -x GRADFLOW_SHARED_MEMORY "${fm[@]}" --batch-size "$batch" \
      --metrics-json "$out/dpmpinoshm_${batch}_$r.json" >/dev/null
    build/bin/gfrun -np 2 "${fm[@]}" --batch-size "$batch" --metrics-json "$out/dpgloo_${batch}_$r.json" >/dev/null
    GRADFLOW_SHARED_MEMORY=0 build/bin/gfrun -np 2 -x GRADFLOW_SHARED_MEMORY "${fm[@]}" --batch-size "$batch" \
      --metrics-json "$out/dpgloonoshm_${batch}_$r.json" >/dev/null
    GRADFLOW_SHARED_MEMORY=0 GRADFLOW_GLOO_LOOP_SCHED=normal build/bin/gfrun -np 2 -x GRADFLOW_SHARED_MEMORY "${fm[@]}" --batch-size "$batch" \
      --metrics-json "$out/dpgloonormal_${batch}_$r.json" >/dev/null
    if ((have_torch)); then
      /usr/bin/python3 bench/pytorch_seed_model.py --epochs "$epochs" --batch-size "$batch" > "$out/torch_${batch}_$r.json"
      build/bin/gfrun -np 2 /usr/bin/python3 bench/pytorch_ddp_seed_model.py --epochs "$epochs" --batch-size "$batch" \
        > "$out/ddp_${batch}_$r.json"
    fi
  done
done
/usr/bin/python3 - "$out" "$reps" "$have_torch" <<'PY'
import json, pathlib, statistics, sys
out, reps, torch = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
WARMUP = 5  # fashion_mnist's steady clock starts at step 5
def sps(name, batch, r, key):
    d = json.loads((out / f"{name}_{batch}_{r}.json").read_text())
    if key == "steady_samples_per_second":
        return d[key]
    return d.get("samples_per_second") or 60000 / d["seconds_per_epoch"]
def together(batch, r):
    """The two independent runs' samples/s while both were stepping, and that time's share of their runs."""
    runs = []
    for name in ("pairA", "pairB"):
        lines = [list(map(int, l.split())) for l in (out / f"{name}_{batch}_{r}.steps").read_text().splitlines()]
        runs.append([(rows, micros) for _, _, rows, micros in lines])
    begin = max(run[WARMUP - 1][1] for run in runs)  # the end of the later run's step WARMUP - 1
    end = min(run[-1][1] for run in runs)
    rate = sum(sum(rows for rows, t in run if begin < t <= end) for run in runs) / ((end - begin) / 1e6)
    spans = [run[-1][1] - run[WARMUP - 1][1] for run in runs]
    return rate, (end - begin) / max(spans)
rows = [("gradflow 2 ranks, MPI", "dpmpi"), ("gradflow 2 ranks, MPI, balanced", "dpbal"),
        ("gradflow 2 ranks, MPI, balanced, split update", "dpbalsplit"),
        ("gradflow 2 ranks, MPI, no shared memory", "dpmpinoshm"), ("gradflow 2 ranks, Gloo", "dpgloo"),
        ("gradflow 2 ranks, Gloo, no shared memory", "dpgloonoshm"),
        ("gradflow 2 ranks, Gloo, no shared memory, loop at the normal policy", "dpgloonormal")]
med = lambda values: statistics.median(list(values))
for key, what in (("samples_per_second", "the whole run"),
                  ("steady_samples_per_second", "from step 5 on (first steps' one-time costs left out)")):
    for batch in (32, 256):
        R = range(reps)
        single = [sps("single", batch, r, key) for r in R]
        if key == "steady_samples_per_second":
            pairs = [together(batch, r) for r in R]
            ceiling = [rate for rate, _ in pairs]
            overlap = f", stepping together {med(share for _, share in pairs):.0%} of their time"
        else:
            ceiling = [sps("pairA", batch, r, key) + sps("pairB", batch, r, key) for r in R]
            overlap = ", each over its own run"
        lockstep = [sps("lockA", batch, r, key) + sps("lockB", batch, r, key) for r in R]
        print(f"per-replica batch {batch}: samples/s over {what}, medians of {reps} rounds")
        print(f"  gradflow 1 rank            {med(single):9.0f}")
        print(f"  2 independent single runs  {med(ceiling):9.0f}  (the ceiling{overlap})")
        print(f"  2 single runs in lockstep  {med(lockstep):9.0f}  = "
              f"{med(l / c for l, c in zip(lockstep, ceiling)):.0%} of the ceiling (synchronous steps' own ceiling)")
        for label, name in rows:
            v = [sps(name, batch, r, key) for r in R]
            print(f"  {label:40s} {med(v):9.0f}  = {med(a / b for a, b in zip(v, single)):.2f}x one rank, "
                  f"{med(a / b for a, b in zip(v, ceiling)):.0%} of the ceiling, "
                  f"{med(a / b for a, b in zip(v, lockstep)):.0%} of lockstep")
        if torch:
            t1 = [sps("torch", batch, r, key) for r in R]
            ddp = [sps("ddp", batch, r, key) for r in R]
            print(f"  PyTorch 1 rank             {med(t1):9.0f}")
            print(f"  PyTorch DDP 2 ranks, Gloo  {med(ddp):9.0f}  = {med(a / b for a, b in zip(ddp, t1)):.2f}x PyTorch's one rank")
PY
