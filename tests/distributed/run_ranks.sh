#!/usr/bin/env bash
# Runs a multi-process test under real OpenMPI mpirun and checks how it ended.
#   run_ranks.sh NP EXPECTED_EXIT MAX_SECONDS EXPECTED_TEXT -- PROGRAM ARGS...
# A fresh store directory is created per run and passed as --store-dir. EXPECTED_TEXT ("" for none) must
# appear in the combined output; EXPECTED_EXIT is mpirun's exit status ("nonzero" accepts any failure).
set -uo pipefail
np=$1 expected_exit=$2 max_seconds=$3 expected_text=$4
shift 5
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Shared memory between local ranks; no network probing of the machine's interfaces.
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
start=$(date +%s)
out=$(timeout $((max_seconds + 30)) mpirun -np "$np" --bind-to none "$@" --store-dir "$dir" 2>&1)
status=$?
took=$(($(date +%s) - start))
echo "$out"
echo "run_ranks.sh: mpirun -np $np exited with $status after ${took}s"
if [[ $expected_exit == nonzero ]]; then
  [[ $status -ne 0 && $status -ne 124 ]] || { echo "FAIL: expected a failing exit status"; exit 1; }
elif [[ $status -ne $expected_exit ]]; then
  echo "FAIL: expected exit status $expected_exit"
  exit 1
fi
((took <= max_seconds)) || { echo "FAIL: took ${took}s, more than ${max_seconds}s"; exit 1; }
if [[ -n $expected_text ]] && ! grep -qF -- "$expected_text" <<<"$out"; then
  echo "FAIL: the output lacks: $expected_text"
  exit 1
fi
echo "run_ranks.sh: PASS"
