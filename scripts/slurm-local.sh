#!/usr/bin/env bash
# A single-node Slurm cluster on this machine for tests/slurm.rs (root; Debian packages
# slurm-wlm and munge). Everything lives under $STATE (default /tmp/cyclegan-slurm); the
# configuration is $STATE/slurm.conf, so commands need SLURM_CONF=$STATE/slurm.conf.
#   scripts/slurm-local.sh start   # prints SLURM_CONF=...; idempotent
#   scripts/slurm-local.sh stop    # stops only the daemons it started (pid files in $STATE)
set -euo pipefail
STATE=${CYCLEGAN_SLURM_STATE:-/tmp/cyclegan-slurm}
CONF=$STATE/slurm.conf
H=$(hostname -s)

stop_pidfile() {
  local f=$1
  [ -f "$f" ] || return 0
  local pid
  pid=$(cat "$f")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

case ${1:-} in
start)
  for c in munged slurmctld slurmd sbatch; do
    command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || { echo "missing $c: apt-get install slurm-wlm munge" >&2; exit 2; }
  done
  mkdir -p "$STATE"/{spool,ctld,log}
  # munge: reuse a running one; else start ours (its pid is recorded so stop ends only it).
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
    chmod 400 /etc/munge/munge.key
    /usr/sbin/munged --force --pid-file="$STATE/munged.pid" 2>/dev/null || /usr/sbin/munged --force
    # Older munged has no --pid-file: find it by its socket's owner.
    [ -s "$STATE/munged.pid" ] || pgrep -n -x munged > "$STATE/munged.pid"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  cat > "$CONF" <<CONF
ClusterName=cyclegan-test
SlurmctldHost=$H
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=2
NodeName=$H CPUs=$(nproc) RealMemory=2000 State=UNKNOWN
PartitionName=main Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$CONF
  if ! { [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; }; then
    # -c: start from a clean state (no jobs or node states left by an earlier run).
    /usr/sbin/slurmctld -c -f "$CONF"
  fi
  if ! { [ -f "$STATE/slurmd.pid" ] && kill -0 "$(cat "$STATE/slurmd.pid")" 2>/dev/null; }; then
    /usr/sbin/slurmd -f "$CONF"
  fi
  for _ in $(seq 150); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then echo "SLURM_CONF=$CONF"; exit 0; fi
    sleep 0.2
  done
  echo "the Slurm node did not become idle in 30 s; logs in $STATE/log" >&2
  sinfo >&2 || true
  exit 1
  ;;
stop)
  # Cancel what is still queued or running on our cluster first, so no job step outlives
  # its slurmd.
  if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    export SLURM_CONF=$CONF
    scancel --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 100); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  stop_pidfile "$STATE/slurmd.pid"
  stop_pidfile "$STATE/slurmctld.pid"
  stop_pidfile "$STATE/munged.pid"
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
