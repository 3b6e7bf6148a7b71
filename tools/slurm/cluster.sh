#!/usr/bin/env bash
# A real one-node Slurm cluster for the tests and for trying `harness run --executor slurm`:
#   tools/slurm/cluster.sh up|down|status [DIR]      (make slurm-up / make slurm-down)
# munged, mariadbd (for slurmdbd, so that sacct answers), slurmdbd, slurmctld and slurmd, started as root without
# systemd. Every file (configuration, keys, state, logs, pid files) lives under DIR (default
# /tmp/harness-slurm), except mariadbd's socket and pid file, which stay where Debian's client library looks for
# them (/run/mysqld). `up` and `down` are idempotent; daemons are stopped by the PIDs they wrote, never by name.
# Clients find the cluster with SLURM_CONF=DIR/etc/slurm.conf (`up` prints it).
# The packages (Debian 12: Slurm 22.05) are installed with apt when absent and this runs as root.
set -euo pipefail

ACTION=${1:-}
DIR=${2:-${HARNESS_SLURM_DIR:-/tmp/harness-slurm}}
GPUS=${HARNESS_SLURM_GPUS:-4}            # gres gpu devices the node offers (character devices, see below)
PORT_BASE=${HARNESS_SLURM_PORT_BASE:-16817}  # slurmctld, slurmd, slurmdbd on three ports from here
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd slurm-wlm-mysql-plugin mariadb-server)
MYSQL_RUN=/run/mysqld
NODE=$(hostname -s)

say() { echo "slurm-cluster: $*" >&2; }
die() { say "$*"; exit 1; }

alive() {  # alive PIDFILE: the daemon the pid file names is running (its name checked: a stale file's pid may
  # belong to another process by now)
  local pid name
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  name=$(basename "$1" .pid)
  kill -0 "$pid" 2>/dev/null || return 1
  case "$name" in mysqld) name=mariadbd ;; esac
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out waiting for $what (logs: $DIR/log)"
    sleep 0.2
  done
}

install_packages() {
  local missing=()
  for tool in slurmctld slurmd slurmdbd sbatch munged mariadbd; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    || die "missing ${missing[*]}: install ${PACKAGES[*]} (apt, as root)"
  say "installing ${PACKAGES[*]} (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

write_configuration() {
  local ctld_port=$PORT_BASE slurmd_port=$((PORT_BASE + 1)) dbd_port=$((PORT_BASE + 2))
  local auth="AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket"
  mkdir -p "$DIR"/{etc,state,spool,log,run,dev,mysql}
  # gres.conf's File= must name character devices: a symlink to /dev/null is refused, and Count= without files
  # drains the node. These are /dev/null's numbers: jobs get CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES for them.
  for ((i = 0; i < GPUS; i++)); do
    [ -c "$DIR/dev/gpu$i" ] || mknod "$DIR/dev/gpu$i" c 1 3
  done
  cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=harness
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
$auth
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
GresTypes=gpu
ReturnToService=2
# scancel sends SIGTERM, then SIGKILL this many seconds later: harness's interrupt path tears servers down in it.
KillWait=30
MinJobAge=600
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd_port
# For accounting_storage/slurmdbd with munge this names munged's socket (AuthInfo does not reach that connection).
AccountingStoragePass=$DIR/munge/munge.socket
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=1024 Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  echo "NodeName=$NODE Name=gpu File=$DIR/dev/gpu[0-$((GPUS - 1))]" >"$DIR/etc/gres.conf"
  cat >"$DIR/etc/slurmdbd.conf" <<EOF
$auth
DbdHost=localhost
DbdPort=$dbd_port
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=harness
StorageLoc=harness_slurm_acct
EOF
  chmod 600 "$DIR/etc/slurmdbd.conf"  # slurmdbd refuses a readable one
}

start_munge() {
  local munge_dir=$DIR/munge
  alive "$munge_dir/munged.pid" && return
  mkdir -p "$munge_dir"
  [ -s "$munge_dir/munge.key" ] || head -c 1024 /dev/urandom >"$munge_dir/munge.key"
  chown -R munge:munge "$munge_dir"
  chmod 755 "$munge_dir"  # clients need to reach the socket; the key itself is 0400
  chmod 400 "$munge_dir/munge.key"
  runuser -u munge -- munged --key-file="$munge_dir/munge.key" --socket="$munge_dir/munge.socket" \
    --pid-file="$munge_dir/munged.pid" --log-file="$munge_dir/munged.log" --seed-file="$munge_dir/munged.seed"
  wait_for 10 munged test -S "$munge_dir/munge.socket"
}

start_mariadb() {
  local data=$DIR/mysql/data
  alive "$MYSQL_RUN/mysqld.pid" && [ "$(readlink -f "$DIR/run/mariadbd.pid")" = "$MYSQL_RUN/mysqld.pid" ] && return
  alive "$MYSQL_RUN/mysqld.pid" && die "a mariadbd this script did not start holds $MYSQL_RUN (pid $(cat "$MYSQL_RUN/mysqld.pid"))"
  if [ ! -d "$data/mysql" ]; then
    mkdir -p "$data"
    chown -R mysql:mysql "$DIR/mysql"
    mariadb-install-db --user=mysql --datadir="$data" --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.log" 2>&1
  fi
  mkdir -p "$MYSQL_RUN" && chown mysql:mysql "$MYSQL_RUN"
  mariadbd --user=mysql --datadir="$data" --socket="$MYSQL_RUN/mysqld.sock" --pid-file="$MYSQL_RUN/mysqld.pid" \
    --skip-networking --log-error="$DIR/log/mariadbd.log" >/dev/null 2>&1 &
  ln -sf "$MYSQL_RUN/mysqld.pid" "$DIR/run/mariadbd.pid"
  wait_for 60 mariadbd mariadb --socket="$MYSQL_RUN/mysqld.sock" -e "select 1"
  mariadb --socket="$MYSQL_RUN/mysqld.sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'harness';
    GRANT ALL ON harness_slurm_acct.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

start_slurm() {
  export SLURM_CONF=$DIR/etc/slurm.conf
  if ! alive "$DIR/run/slurmdbd.pid"; then
    slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
  fi
  sacctmgr -i -Q add cluster harness >/dev/null 2>&1 || true  # an existing cluster is fine
  alive "$DIR/run/slurmctld.pid" || slurmctld -f "$SLURM_CONF"
  wait_for 30 slurmctld scontrol ping
  alive "$DIR/run/slurmd.pid" || slurmd -f "$SLURM_CONF"
  wait_for 30 "node $NODE idle" sh -c "sinfo -h -n '$NODE' -o %T | grep -qx idle"
}

stop_pid() {  # stop_pid PIDFILE NAME: SIGTERM, then SIGKILL after 20 s; the process is the one the file names
  local file=$1 name=$2 pid
  alive "$file" || { rm -f "$file"; return 0; }
  pid=$(cat "$file")
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then say "$name ($pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid"; fi
  rm -f "$file"
}

case "$ACTION" in
  up)
    [ "$(id -u)" = 0 ] || die "must run as root (the daemons run as root, munged as user munge)"
    install_packages
    started=$SECONDS
    write_configuration
    start_munge
    start_mariadb
    start_slurm
    say "up in $((SECONDS - started)) s: node $NODE, $GPUS gres gpu devices, state under $DIR"
    echo "export SLURM_CONF=$DIR/etc/slurm.conf"
    ;;
  down)
    for daemon in slurmd slurmctld slurmdbd mariadbd; do stop_pid "$DIR/run/$daemon.pid" "$daemon"; done
    stop_pid "$DIR/munge/munged.pid" munged
    say "down (state kept under $DIR; remove it to start afresh)"
    ;;
  status)
    for file in "$DIR/munge/munged.pid" "$DIR"/run/{mariadbd,slurmdbd,slurmctld,slurmd}.pid; do
      if alive "$file"; then echo "$(basename "$file" .pid): running, pid $(cat "$file")"
      else echo "$(basename "$file" .pid): stopped"; fi
    done
    ;;
  *) die "usage: $0 up|down|status [DIR]" ;;
esac
