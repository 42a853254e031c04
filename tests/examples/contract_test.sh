#!/usr/bin/env bash
# DESIGN.md's example contract, for any Keras-style example: under gfrun with 2 ranks it trains
# data-parallel with no extra flag, prints `test_loss=... test_accuracy=...`, writes --metrics-json
# (2 replicas), TensorBoard events under --logdir and a committed sharded checkpoint under
# --checkpoint-dir; run again with one more epoch it resumes there (trains only the new epoch, and ends
# exactly where an uninterrupted run ends); and
# `--strategy mirrored --replicas 2` trains two replicas in one process.
# Usage: contract_test.sh GFRUN PROGRAM [program args...]
set -uo pipefail
gfrun=$1 program=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
common=(--threads 1 --verbose 2 --checkpoint-dir "$work/ckpt" --logdir "$work/logs" "$@")

out=$("$gfrun" -np 2 "$program" "${common[@]}" --epochs 1 --metrics-json "$work/m1.json" 2>&1) || { echo "$out"; fail "first run"; }
echo "$out"
grep -qE "^test_loss=[0-9.]+ test_accuracy=0\.[0-9]+$" <<<"$out" || fail "no final test_loss/test_accuracy line"
[[ $(grep -c "^test_loss=" <<<"$out") -eq 1 ]] || fail "the final line must come from the chief only"
grep -q '"replicas": 2' "$work/m1.json" || fail "--metrics-json: $(cat "$work/m1.json")"
ls "$work"/logs/*/events.out.tfevents.* >/dev/null 2>&1 || ls "$work"/logs/events.out.tfevents.* >/dev/null 2>&1 ||
  fail "no TensorBoard events under --logdir: $(find "$work/logs" | head)"
[[ -f $work/ckpt/latest ]] || fail "no committed checkpoint: $(ls -a "$work/ckpt" 2>&1)"
ls "$work"/ckpt/ckpt-*/model*-of-2* >/dev/null 2>&1 || fail "the checkpoint is not sharded by the 2 ranks: $(ls -R "$work/ckpt")"

out=$("$gfrun" -np 2 "$program" "${common[@]}" --epochs 2 --metrics-json "$work/resumed.json" 2>&1) ||
  { echo "$out"; fail "resumed run"; }
echo "$out"
grep -q "Epoch 2/2" <<<"$out" || fail "the resumed run did not train epoch 2"
! grep -q "Epoch 1/2" <<<"$out" || fail "the resumed run trained epoch 1 again instead of resuming"
# Resumed from epoch 1's checkpoint, it must end where 2 uninterrupted epochs end (weights, optimizer
# state, random generators and data order restored).
"$gfrun" -np 2 "$program" --threads 1 --verbose 0 --epochs 2 --metrics-json "$work/whole.json" "$@" >/dev/null 2>&1 ||
  fail "uninterrupted run"
a=$(sed 's/, "seconds_per_epoch".*//' "$work/whole.json")
b=$(sed 's/, "seconds_per_epoch".*//' "$work/resumed.json")
[[ $a == *test_loss* ]] || fail "no metrics from the uninterrupted run"
[[ "$a" == "$b" ]] || fail "resumed: $b; uninterrupted: $a"

out=$("$program" --threads 1 --verbose 2 --epochs 1 --strategy mirrored --replicas 2 \
  --metrics-json "$work/mirrored.json" "$@" 2>&1) || { echo "$out"; fail "--strategy mirrored"; }
grep -q '"replicas": 2' "$work/mirrored.json" || fail "--strategy mirrored: $(cat "$work/mirrored.json")"
echo "contract_test.sh: PASS"
