#!/usr/bin/env bash
# Exact resume of the seed's model under gfrun --max-restarts: an uninterrupted 3-epoch run, and a run
# whose process is SIGKILLed after epoch 1 on its first try, restarted by gfrun and resumed from
# --checkpoint-dir; the final test loss and accuracy must be identical (the weights are bitwise equal).
# With NP > 1 the job is data-parallel (each replica's generator is in the checkpoint too).
# Usage: resume_test.sh GFRUN FASHION_MNIST [NP [gfrun options...]]; PROGRAM_FLAGS (environment): more
# flags for both runs (e.g. --shard-update: the checkpoint must then hold every rank's part of the
# optimizer's state for the resumed run to end bitwise where the uninterrupted one did).
set -uo pipefail
gfrun=$1 program=$2 np=${3:-1}
shift 3 2>/dev/null || shift $#
launcher=("$gfrun" -np "$np" "$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--epochs 3 --threads 1 --verbose 0 --seed 7 --batch-size 64 ${PROGRAM_FLAGS:-})
"${launcher[@]}" "$program" "${common[@]}" --metrics-json "$work/uninterrupted.json" || { echo "FAIL: first run"; exit 1; }
out=$("${launcher[@]}" --max-restarts 1 "$program" "${common[@]}" --checkpoint-dir "$work/ckpt" \
  --kill-after-epoch 1 --metrics-json "$work/resumed.json" 2>&1)
status=$?
echo "$out"
[[ $status -eq 0 ]] || { echo "FAIL: the restarted job exited with $status"; exit 1; }
grep -qE "killed by signal 9|signal 9 \(Killed\)" <<<"$out" || { echo "FAIL: the first try should have been killed"; exit 1; }
grep -q "restarting the job (restart 1 of 1)" <<<"$out" || { echo "FAIL: no restart"; exit 1; }
ls "$work/ckpt"
a=$(sed 's/, "seconds_per_epoch".*//' "$work/uninterrupted.json")
b=$(sed 's/, "seconds_per_epoch".*//' "$work/resumed.json")
echo "uninterrupted: $a"
echo "resumed:       $b"
[[ "$a" == "$b" ]] || { echo "FAIL: the resumed run ended elsewhere"; exit 1; }
echo "resume_test.sh: PASS"
