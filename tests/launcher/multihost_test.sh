#!/usr/bin/env bash
# gfrun across two "hosts": two network namespaces on a private bridge (netns_up.sh), reached through
# nsrsh.sh as the rsh agent, gfrun itself in the root namespace. Checks the layout each rank resolves,
# that ranks on different hosts rendezvous over the namespaces' addresses (a Gloo all-reduce through the
# job's store at rank 0's address), and that a failing rank on one host ends the ranks on the other
# within the grace period with its exit status. Exit 77 (SKIPPED) where namespaces cannot be made.
# Usage: multihost_test.sh GFRUN RANK_PROBE JOB_ALLREDUCE
set -uo pipefail
gfrun=$1 probe=$2 allreduce=$3
here=$(cd "$(dirname "$0")" && pwd)
if [[ $(id -u) -ne 0 ]] || ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then
  echo "SKIPPED: network namespaces need root, ip and unshare"
  exit 77
fi
prefix=gfm$$
net=$((100 + $$ % 100))
trap '"$here/netns_down.sh" "$prefix" 2' EXIT
if ! "$here/netns_up.sh" "$prefix" "$net" 2; then
  echo "SKIPPED: could not create network namespaces"
  exit 77
fi
export NSRSH_PREFIX=$prefix
hosts=10.$net.0.1:2,10.$net.0.2:2
launch=("$gfrun" -np 4 -H "$hosts" --rsh-agent "$here/nsrsh.sh" --grace-period 2)
fail() { echo "FAIL: $*"; exit 1; }

out=$("${launch[@]}" --tag-output "$probe" 2>&1) || fail "probe job: $out"
echo "$out"
for r in 0 1; do grep -q "^\[1,$r\]<stdout>:probe rank=$r world=4 local=$r/2 node=0/2 source=torchrun" <<<"$out" || fail "rank $r"; done
for r in 2 3; do grep -q "^\[1,$r\]<stdout>:probe rank=$r world=4 local=$((r - 2))/2 node=1/2 source=torchrun" <<<"$out" || fail "rank $r"; done

# Each namespace has a hostname of its own (nsrsh.sh), so the all-reduce is hierarchical: shared memory
# within each "host", Gloo across the bridge between the hosts' first ranks. Then Gloo alone.
out=$("${launch[@]}" "$allreduce" 2>&1) || fail "hierarchical all-reduce across hosts: $out"
echo "$out"
[[ $(grep -c "backend=gloo sum=10 ok (transport: gloo + shared memory within each of 2 hosts)" <<<"$out") -eq 4 ]] ||
  fail "every rank should see the sum 10, through shared memory within each host"
out=$("${launch[@]}" -x GRADFLOW_SHARED_MEMORY=0 "$allreduce" 2>&1) || fail "all-reduce across hosts: $out"
echo "$out"
[[ $(grep -c "backend=gloo sum=10 ok (transport: gloo)" <<<"$out") -eq 4 ]] || fail "every rank should see the sum 10 over Gloo"

start=$(date +%s)
out=$("${launch[@]}" -x PROBE_FAIL=3:5 -x PROBE_SLEEP_S=60 "$probe" 2>&1)
status=$?
took=$(($(date +%s) - start))
echo "$out"
[[ $status -eq 5 ]] || fail "expected exit status 5, got $status"
((took < 20)) || fail "teardown took ${took}s"
grep -q "rank 3 (pid [0-9]* on 10.$net.0.2) exited with status 5 first" <<<"$out" || fail "which rank failed"
for pid in $(grep -o 'pid=[0-9]*' <<<"$out" | cut -d= -f2); do
  kill -0 "$pid" 2>/dev/null && fail "rank pid $pid left behind"
done
echo "multihost_test.sh: PASS"
