#!/usr/bin/env bash
# Sharded checkpoints under real mpirun, resharded across rank counts on one shared directory:
# 4 ranks save (step 100) -> 2 restore it and save (200) -> 1 restores that and saves unsharded (300, and
# 301 without a ReplicaContext: the same files) -> 2 restore it (replica 1's generator derived) and save
# (310) -> one process under MirroredStrategy(2) restores those 2 shards and saves whole (320) -> 2 ranks
# restore that; then a
# save whose rank 1 fails commits nothing, and a damaged shard makes every rank fall back; an async
# sharded save commits on a background thread while training goes on (MPI, and Gloo under gfrun: the
# commit's barriers go through each job's store).
# Usage: sharded_checkpoint_test.sh PROGRAM [GFRUN]
set -uo pipefail
program=$1
gfrun=${2:-}
shared=$(mktemp -d)
trap 'rm -rf "$shared"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
launcher=mpirun
phase() {  # NP EXPECTED_TEXT ARGS...
  local np=$1 expected=$2
  shift 2
  echo "== $launcher -np $np $*"
  if [[ $launcher == mpirun ]]; then
    out=$(timeout 60 mpirun -np "$np" --bind-to none "$program" --shared "$shared" "$@" 2>&1)
  else
    out=$(timeout 60 "$gfrun" -np "$np" --oversubscribe "$program" --shared "$shared" "$@" 2>&1)
  fi
  status=$?
  echo "$out"
  [[ $status -eq 0 ]] || { echo "FAIL: exit status $status"; exit 1; }
  [[ $(grep -c "of $np: all ok" <<<"$out") -eq $np ]] || { echo "FAIL: not every rank reported all ok"; exit 1; }
  [[ -z $expected ]] || grep -qF -- "$expected" <<<"$out" || { echo "FAIL: the output lacks: $expected"; exit 1; }
}
phase 4 "" --phase save --step 100
ls "$shared/ckpt/ckpt-100"
phase 2 "" --phase restore --expect 100 --saved-replicas 4 --then-save 200
phase 1 "" --phase restore --expect 200 --saved-replicas 2 --then-save 300
phase 2 "" --phase restore --expect 301 --saved-replicas 1 --then-save 310
phase 1 "" --phase restore --expect 310 --saved-replicas 2 --mirrored 2 --then-save 320
[[ -f $shared/ckpt/ckpt-320/model.safetensors ]] || { echo "FAIL: MirroredStrategy saved no whole model.safetensors"; exit 1; }
phase 2 "" --phase restore --expect 320 --saved-replicas 1
phase 2 "" --phase fail --step 400
phase 2 "model-1-of-2.safetensors: sha256 does not match" --phase damage --step 500 --expect 320
phase 2 "" --phase async --step 600
if [[ -n $gfrun ]]; then
  launcher=gfrun
  phase 2 "" --phase async --step 700
fi
echo "sharded_checkpoint_test.sh: PASS"
