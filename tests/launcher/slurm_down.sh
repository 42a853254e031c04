#!/usr/bin/env bash
# Stops the daemons slurm_up.sh DIR started, by pid (SIGTERM, then SIGKILL).
S=$1
for f in "$S/run/slurmd.pid" "$S/run/slurmctld.pid" "$S/munge/run/munged.pid"; do
  [[ -f $f ]] || continue
  p=$(cat "$f")
  kill "$p" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null
done
true
