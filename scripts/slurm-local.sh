#!/usr/bin/env bash
# A throwaway single-node Slurm cluster on this machine (Debian, as root), to try the recipes in
# scripts/slurm/ for real: Debian's slurm-wlm and munge (installed with apt-get when missing), with
# the config, munge key and socket, state, logs and pid files all in a fresh temp dir, on free ports.
#   env=$(scripts/slurm-local.sh start); eval "$env"    # exports SLURM_CONF and SLURM_LOCAL_DIR
#   sinfo; sbatch ...; squeue; scancel ...               # then talk to it as to any cluster
#   scripts/slurm-local.sh stop [DIR]                    # DIR defaults to $SLURM_LOCAL_DIR
# start prints only those export lines on stdout (diagnostics go to stderr); a second start brings
# up a second cluster in its own dir. stop cancels the cluster's jobs, ends the daemons by the PIDs
# in DIR (SIGKILL after 10 s) and removes DIR; it exits 0 when they or DIR are gone already, so a
# CI trap can call it on pass or fail. (Under set -e assign $(...) on its own as above: neither
# eval "$(...)" nor env=$(...) && eval ... stops the caller when start fails.)
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
daemons="munged slurmctld slurmd"   # started in this order, stopped in the reverse one

say() { echo "slurm-local: $*" >&2; }

# Whether daemon $2 of dir $1 still runs: its pid file names a live process of that name (or of
# Debian's real binary, slurmctld-wlm, slurmd-wlm), not a zombie, so not some reused PID.
alive() {
  local pid comm
  pid=$(cat "$1/$2.pid" 2>/dev/null) && [ -n "$pid" ] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) && [[ $comm == "$2" || $comm == "$2-wlm" ]] || return 1
  [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

stop() {
  local dir=$1 d i
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then say "nothing to stop${dir:+ ($dir is gone)}"; return 0; fi
  [ -f "$dir/.slurm-local" ] || { say "$dir was not made by slurm-local.sh start; leaving it alone"; return 1; }
  if alive "$dir" slurmctld; then  # cancel the jobs first, so that no slurmstepd outlives slurmd
    export SLURM_CONF="$dir/slurm.conf"
    timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
    for i in $(seq 30); do
      [ -z "$(timeout 5 squeue --noheader 2>/dev/null || true)" ] && break
      sleep 0.5
    done
  fi
  for d in slurmd slurmctld munged; do
    alive "$dir" "$d" || continue
    kill -TERM "$(cat "$dir/$d.pid")" 2>/dev/null || true
    for i in $(seq 50); do alive "$dir" "$d" || break; sleep 0.2; done
    if alive "$dir" "$d"; then say "$d did not exit in 10 s: SIGKILL"; kill -KILL "$(cat "$dir/$d.pid")" || true; sleep 0.5; fi
  done
  rm -rf "$dir"
  say "stopped; removed $dir"
}

install_packages() {
  # The packages' postinst runs invoke-rc.d to start munged (and slurmctld, slurmd) from /etc:
  # a policy-rc.d that answers 101 keeps it from that, unless the machine has one of its own.
  local policy=/usr/sbin/policy-rc.d added="" rc=0 start=$SECONDS
  local install="apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && added=1; fi
  say "installing slurmctld slurmd slurm-client munge with apt-get"
  (export DEBIAN_FRONTEND=noninteractive; $install || { apt-get update && $install; }) >&2 || rc=$?
  [ -z "$added" ] || rm -f "$policy"
  [ "$rc" = 0 ] || { say "apt-get failed ($rc)"; exit 1; }
  say "installed in $((SECONDS - start)) s"
}

# A TCP port nothing on this machine listens on (a connection to it is refused).
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  return 1
}

start() {
  local dir host cport dport mem d f state="" i
  [ "$(id -u)" = 0 ] || { say "start runs the daemons as root: run it as root"; exit 1; }
  for d in munged mungekey slurmctld slurmd sbatch squeue sinfo scancel; do
    command -v "$d" > /dev/null || { install_packages; break; }
  done
  dir=$(mktemp -d /tmp/slurm-local.XXXXXX)
  chmod 755 "$dir"  # munged wants its socket's dir open to all (the key itself is 0600)
  touch "$dir/.slurm-local"
  mkdir "$dir/state" "$dir/spool"
  host=$(hostname -s)
  cport=$(free_port) && dport=$(free_port) && [ "$cport" != "$dport" ] \
    || { say "no free TCP port found"; rm -rf "$dir"; exit 1; }
  mem=$(awk '/^MemTotal:/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
  cat > "$dir/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$cport
SlurmdPort=$dport
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
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
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
MailProg=/bin/true
DependencyParameters=kill_invalid_depend
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"
  # On failure: the daemons' log tails, then stop what was started.
  fail() {
    say "$1"
    for f in "$dir"/*.log "$dir/daemons.out"; do
      [ -s "$f" ] && { echo "--- $f (tail)" >&2; tail -n 20 "$f" >&2; }
    done
    stop "$dir"; exit 1
  }
  mungekey --create --keyfile="$dir/munge.key" >&2 || fail "mungekey failed"
  # The daemons fork into the background; their stdio goes to files, or $(...) would wait on them.
  munged --socket="$dir/munge.socket" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
    --log-file="$dir/munged.log" --seed-file="$dir/munged.seed" < /dev/null >> "$dir/daemons.out" 2>&1 \
    || fail "munged did not start"
  slurmctld -f "$SLURM_CONF" < /dev/null >> "$dir/daemons.out" 2>&1 || fail "slurmctld did not start"
  slurmd -f "$SLURM_CONF" < /dev/null >> "$dir/daemons.out" 2>&1 || fail "slurmd did not start"
  for i in $(seq 60); do
    state=$(timeout 5 sinfo --noheader --Node --format=%t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.5
  done
  [ "$state" = idle ] || fail "node $host not idle after 30 s (sinfo: '${state:-no answer}')"
  for d in $daemons; do alive "$dir" "$d" || fail "$d is not running"; done
  say "cluster up in $dir: node $host ($(nproc) CPUs, ${mem} MB), slurmctld on port $cport, $SECONDS s"
  printf 'export SLURM_CONF=%q\nexport SLURM_LOCAL_DIR=%q\n' "$dir/slurm.conf" "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-${SLURM_LOCAL_DIR:-}}" ;;
  *) echo "usage: $0 start | stop [DIR]" >&2; exit 2 ;;
esac
