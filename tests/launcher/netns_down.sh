#!/usr/bin/env bash
# Removes what netns_up.sh PREFIX NET N made. Usage: netns_down.sh PREFIX N
prefix=$1 n=$2
for i in $(seq 1 "$n"); do
  ip netns del "$prefix$i" 2>/dev/null
  ip link del "v-$prefix$i" 2>/dev/null
done
ip link del "br-$prefix" 2>/dev/null
true
