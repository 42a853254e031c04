#!/usr/bin/env bash
# Kill -9 at random moments: fashion_mnist saves every few batches under gfrun --max-restarts; its first
# try kills itself inside a save (files written, not committed), then the script SIGKILLs a random rank
# at a random moment of each of the next KILLS tries. The final weights must be bitwise those of an
# uninterrupted run. The kill times come from a seed that is printed (KILL_TEST_SEED=<seed> repeats them).
# Usage: kill_resume_test.sh GFRUN FASHION_MNIST [NP [gfrun options...]]
set -uo pipefail
gfrun=$1 program=$2 np=${3:-1}
shift 3 2>/dev/null || shift $#
launcher=("$gfrun" -np "$np" "$@")
seed=${KILL_TEST_SEED:-$(( $(date +%s%N) % 32768 ))}
echo "kill_resume_test.sh: seed $seed (rerun with KILL_TEST_SEED=$seed for the same kill times)"
RANDOM=$seed
kills=3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--epochs 2 --threads 1 --verbose 0 --seed 7 --batch-size 256 --save-weights)
started=$(date +%s%N)
"${launcher[@]}" "$program" "${common[@]}" "$work/uninterrupted.safetensors" || { echo "FAIL: the uninterrupted run"; exit 1; }
# Random kills land within the first 40% of a run's length, so that one always lands before the
# restarted try (which has most of the run still to do) ends on its own.
span_ms=$(( ($(date +%s%N) - started) / 1000000 * 4 / 10 ))
((span_ms < 200)) && span_ms=200

# The program's processes below pid $1 (gfrun, or gfrun -> mpirun -> ranks).
ranks_below() {
  ps -eo pid=,ppid=,comm= | awk -v root="$1" -v name="$(basename "$program" | cut -c1-15)" '
    { parent[$1] = $2; comm[$1] = $3 }
    END { for (p in parent) { q = p; while ((q in parent) && q != root && q > 1) q = parent[q];
                              if (q == root && comm[p] == name) print p } }'
}

"${launcher[@]}" --max-restarts $((kills + 1)) "$program" "${common[@]}" "$work/resumed.safetensors" \
  --checkpoint-dir "$work/ckpt" --save-freq 20 --kill-in-save 60 >"$work/log" 2>&1 &
job=$!
seen=" "
for ((try = 1; try <= kills + 1; ++try)); do
  # Wait for this try's ranks (new pids), or for the job to end.
  while kill -0 $job 2>/dev/null; do
    mapfile -t pids < <(ranks_below $job)
    fresh=()
    for p in "${pids[@]}"; do [[ $seen == *" $p "* ]] || fresh+=("$p"); done
    ((${#fresh[@]} == np)) && break
    sleep 0.05
  done
  kill -0 $job 2>/dev/null || break
  for p in "${fresh[@]}"; do seen+="$p "; done
  ((try == 1)) && continue  # the first try kills itself inside the save of checkpoint 60
  delay_ms=$(( 100 + (RANDOM * 32768 + RANDOM) % span_ms ))
  delay=$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))
  victim=${fresh[$((RANDOM % np))]}
  sleep "$delay"
  if kill -9 "$victim" 2>/dev/null; then echo "kill_resume_test.sh: try $try: SIGKILL to pid $victim after ${delay}s"; fi
done
wait $job
status=$?
cat "$work/log"
[[ $status -eq 0 ]] || { echo "FAIL: the restarted job exited with $status"; exit 1; }
restarts=$(grep -c "restarting the job" "$work/log")
echo "kill_resume_test.sh: $restarts restarts; checkpoints left: $(ls "$work/ckpt" | tr '\n' ' ')"
((restarts >= 2)) || { echo "FAIL: expected the kill in the save and at least one random kill to restart the job"; exit 1; }
cmp "$work/uninterrupted.safetensors" "$work/resumed.safetensors" || { echo "FAIL: the resumed weights differ"; exit 1; }
echo "kill_resume_test.sh: PASS (final weights bitwise equal)"
