#!/usr/bin/env bash
# A single-node Slurm cluster on 127.0.0.1 (munge, slurmctld, slurmd), all state under DIR. Prints the
# SLURM_CONF to export. Usage: slurm_up.sh DIR   (slurm_down.sh DIR stops it)
set -euo pipefail
S=$1
host=$(hostname -s)
cpus=$(nproc)
mem=$(($(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 512))
mkdir -p "$S"/{state,spool,log,run,munge/etc,munge/run}
dd if=/dev/urandom of="$S/munge/etc/munge.key" bs=1 count=1024 status=none
chown -R munge:munge "$S/munge"
chmod 755 "$S" "$S/munge" "$S/munge/run"
chmod 700 "$S/munge/etc"
chmod 400 "$S/munge/etc/munge.key"
cat > "$S/slurm.conf" <<CONF
ClusterName=gradflow
MailProg=/bin/true
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
AuthInfo=socket=$S/munge/run/munge.socket
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
InactiveLimit=0
MinJobAge=30
KillWait=5
Waittime=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=$S/slurm.conf
runuser -u munge -- /usr/sbin/munged --socket="$S/munge/run/munge.socket" --key-file="$S/munge/etc/munge.key" \
  --pid-file="$S/munge/run/munged.pid" --log-file="$S/munge/run/munged.log" --seed-file="$S/munge/etc/munged.seed"
for _ in $(seq 50); do [[ -S $S/munge/run/munge.socket ]] && break; sleep 0.1; done
/usr/sbin/slurmctld -f "$S/slurm.conf"
/usr/sbin/slurmd -f "$S/slurm.conf"
for _ in $(seq 150); do
  sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)' && exit 0
  sleep 0.2
done
echo "slurm_up.sh: the node did not come up; slurmctld log:" >&2
tail -20 "$S/log/slurmctld.log" >&2
exit 1
