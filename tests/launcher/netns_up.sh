#!/usr/bin/env bash
# Two (or N) "hosts" on this machine for multi-host tests: network namespaces <prefix>1..N with addresses
# 10.<net>.0.1..N/24 on a private bridge; the root namespace gets 10.<net>.0.254. No default route inside,
# so nothing can leave the machine. Usage: netns_up.sh PREFIX NET N   (netns_down.sh PREFIX N undoes it)
set -euo pipefail
prefix=$1 net=$2 n=$3
bridge=br-$prefix
ip link add "$bridge" type bridge
ip addr add "10.$net.0.254/24" dev "$bridge"
ip link set "$bridge" up
for i in $(seq 1 "$n"); do
  ns=$prefix$i
  ip netns add "$ns"
  ip link add "v-$ns" type veth peer name eth0 netns "$ns"
  ip link set "v-$ns" master "$bridge" up
  ip -n "$ns" addr add "10.$net.0.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done
