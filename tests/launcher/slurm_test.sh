#!/usr/bin/env bash
# gradflow under a real Slurm: starts a single-node cluster (munge, slurmctld, slurmd; slurm_up.sh),
# submits examples/slurm/srun.sbatch and examples/slurm/gfrun.sbatch with `sbatch --wait`, and checks that
# the ranks resolve the same layout under both (rank_probe), that a Gloo all-reduce works under both
# (job_allreduce), that the data-parallel equivalence checks pass with srun's tasks as ranks, and that a
# rank failing under gfrun ends the job with its status. Exit 77 (SKIPPED)
# where Slurm is not installed.
# Usage: slurm_test.sh SOURCE_DIR BUILD_BIN_DIR
set -uo pipefail
src=$1 bin=$2
here=$(cd "$(dirname "$0")" && pwd)
for tool in slurmctld slurmd munged sbatch; do
  command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || { echo "SKIPPED: $tool is not installed"; exit 77; }
done
[[ $(id -u) -eq 0 ]] || { echo "SKIPPED: the test cluster runs its daemons as root"; exit 77; }
state=$(mktemp -d /tmp/gradflow-slurm.XXXXXX)
trap '"$here/slurm_down.sh" "$state"; rm -rf "$state"' EXIT
"$here/slurm_up.sh" "$state" || { echo "FAIL: the Slurm cluster did not start"; exit 1; }
export SLURM_CONF=$state/slurm.conf
fail() { echo "FAIL: $*"; exit 1; }

# submit SCRIPT ARGS...: runs the batch job to its end; prints its output; returns sbatch's status.
submit() {
  local out=$state/job-$RANDOM.out status
  (cd "$src" && sbatch --wait --quiet -o "$out" "$@")
  status=$?
  cat "$out" 2>/dev/null
  return $status
}
layout() { sed -n 's/.*probe rank=\([0-9]*\) \(world=[^ ]* local=[^ ]* node=[^ ]*\) source=\([a-z]*\).*/\1 \2/p' | sort; }

srun_out=$(submit examples/slurm/srun.sbatch "$bin/rank_probe") || fail "srun.sbatch: $srun_out"
echo "$srun_out"
gfrun_out=$(submit examples/slurm/gfrun.sbatch "$bin/rank_probe") || fail "gfrun.sbatch: $gfrun_out"
echo "$gfrun_out"
grep -q "source=slurm" <<<"$srun_out" || fail "srun's ranks should resolve from Slurm's variables"
grep -q "source=torchrun token=set" <<<"$gfrun_out" || fail "gfrun's ranks should resolve from gfrun's contract"
[[ $(layout <<<"$srun_out" | wc -l) -eq 2 ]] || fail "srun: two ranks expected"
[[ "$(layout <<<"$srun_out")" == "$(layout <<<"$gfrun_out")" ]] || fail "the layouts differ"

for script in srun gfrun; do
  out=$(submit "examples/slurm/$script.sbatch" "$bin/job_allreduce") || fail "$script.sbatch all-reduce: $out"
  echo "$out"
  [[ $(grep -c "sum=3 ok" <<<"$out") -eq 2 ]] || fail "$script.sbatch: both ranks should see the sum 3"
done

# The data-parallel equivalence checks (tests/strategies/data_parallel_rank.cc) with srun's tasks as ranks.
out=$(submit examples/slurm/srun.sbatch "$bin/data_parallel_rank") || fail "srun.sbatch data_parallel_rank: $out"
echo "$out"
[[ $(grep -c "of 2 (gloo): all ok" <<<"$out") -eq 2 ]] || fail "srun: both data-parallel ranks should report all ok"

start=$(date +%s)
out=$(PROBE_FAIL=1:7 PROBE_SLEEP_S=120 submit examples/slurm/gfrun.sbatch "$bin/rank_probe")
status=$?
echo "$out"
[[ $status -ne 0 ]] || fail "a failing rank must fail the batch job"
grep -q "exited with status 7 first" <<<"$out" || fail "gfrun should name the failed rank and its status"
(($(date +%s) - start < 60)) || fail "the failed job took too long to end"
echo "slurm_test.sh: PASS"
