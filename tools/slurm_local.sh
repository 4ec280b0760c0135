#!/usr/bin/env bash
# tools/slurm_local.sh start|stop [DIR]: a one-node SLURM cluster on this machine, for the
# SLURM launcher's end-to-end test (tests/test_cluster.py) and for trying sps-launch slurm.
#
#   start  needs root and the Debian packages slurm-wlm and munge (.ci/run installs them);
#          starts munged (unless a munge daemon already answers), then slurmctld and slurmd
#          with a configuration written to DIR (default /tmp/sps-slurm: one node, this
#          machine's CPUs and memory, one partition 'debug', no accounting, no cgroups),
#          waits for the node to be idle and prints the line to use it:
#              export SLURM_CONF=DIR/slurm.conf
#          When something is missing or a daemon does not come up it prints one line saying
#          why (with the daemon's last log line) and exits 1.
#   stop   cancels every job of the cluster in DIR and stops its daemons.
set -u
action=${1:-}
dir=${2:-/tmp/sps-slurm}
conf=$dir/slurm.conf

fail() { echo "slurm_local: $*" >&2; exit 1; }

stop() {
    [ -f "$conf" ] || return 0
    SLURM_CONF=$conf scancel --full --quiet --state=PENDING,RUNNING --user="$(id -un)" 2>/dev/null || true
    local f pid
    for f in slurmd slurmctld; do
        pid=$(cat "$dir/$f.pid" 2>/dev/null) || continue
        kill "$pid" 2>/dev/null || true
        # a daemon writes its state as it exits: wait for it, so that the directory can go
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
}

case "$action" in
    stop) stop; exit 0 ;;
    start) ;;
    *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || fail "needs root (munged and slurmd run as root here)"
for c in munged munge unmunge slurmctld slurmd sbatch sinfo scontrol; do
    command -v "$c" >/dev/null || fail "'$c' not found: install the packages slurm-wlm and munge"
done

# munge: the authentication every SLURM daemon and client uses
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || dd if=/dev/urandom bs=1 count=1024 \
        of=/etc/munge/munge.key 2>/dev/null; chown munge: /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge: /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    runuser -u munge -- munged 2>"$dir.munged.err" || fail "munged did not start: $(tail -n 1 "$dir.munged.err")"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || fail "munge does not answer (munge -n | unmunge fails)"
fi

stop   # a cluster left in DIR by an earlier start
rm -rf "$dir"
mkdir -p "$dir/state" "$dir/spool"
host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
read -r ctl_port d_port < <(python3 -c "
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(('127.0.0.1', 0))
print(*(x.getsockname()[1] for x in s))")
cat > "$conf" <<EOF
# one-node test cluster written by tools/slurm_local.sh
ClusterName=sps
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctl_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
export SLURM_CONF=$conf
slurmctld 2>>"$dir/slurmctld.log" || fail "slurmctld did not start: $(tail -n 1 "$dir/slurmctld.log")"
slurmd -N "$host" 2>>"$dir/slurmd.log" || fail "slurmd did not start: $(tail -n 1 "$dir/slurmd.log")"
state=
for _ in $(seq 100); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -n 1)
    [ "$state" = idle ] && break
    sleep 0.2
done
if [ "$state" != idle ]; then
    stop
    fail "the node did not become idle (state '${state:-none}'): slurmd: $(tail -n 1 "$dir/slurmd.log"); slurmctld: $(tail -n 1 "$dir/slurmctld.log")"
fi
echo "export SLURM_CONF=$conf"
