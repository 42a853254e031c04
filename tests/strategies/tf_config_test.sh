#!/usr/bin/env bash
# The data-parallel equivalence checks with the ranks started the way TensorFlow's cluster managers start
# them: two plain processes, each given TF_CONFIG (the same cluster of two workers on this host, its own
# task index) and nothing else. Both must print "of 2 (gloo): all ok" and exit 0.
# Usage: tf_config_test.sh PROGRAM
set -uo pipefail
program=$1
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$out"' EXIT
# Two ports the kernel just gave out as free (a random pick can hit a port in use: an outgoing
# connection's ephemeral port).
read -r port0 port1 < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
config() {
  printf '{"cluster":{"worker":["localhost:%d","localhost:%d"]},"task":{"type":"worker","index":%d}}' \
    "$port0" "$port1" "$1"
}
for index in 0 1; do
  TF_CONFIG=$(config $index) timeout 120 "$program" >"$out/$index.txt" 2>&1 &
  pids[$index]=$!
done
status=0
for index in 0 1; do
  wait "${pids[$index]}" || { echo "FAIL: worker $index exited with $?"; status=1; }
  cat "$out/$index.txt"
  grep -q "rank $index of 2 (gloo): all ok" "$out/$index.txt" || { echo "FAIL: worker $index did not report all ok"; status=1; }
done
((status == 0)) && echo "tf_config_test.sh: PASS"
exit $status
