#!/usr/bin/env bash
# A real one-node SLURM on localhost for tests/slurm/test_jobs.sh: munged,
# slurmctld and slurmd started by hand as root (no systemd), everything they write
# (config, state, spool, logs, pid files, munge key and socket) under one directory,
# so nothing in /etc is touched and two clusters on one machine do not meet.
#
#   slurm_cluster.sh start DIR   configure under DIR, start the daemons, wait for the
#                                node to be idle; then `export SLURM_CONF=DIR/slurm.conf`
#   slurm_cluster.sh stop DIR    cancel the jobs left, stop the daemons by their pids
#   slurm_cluster.sh logs DIR    the last lines of the daemons' logs
#
# Needs root and Debian's slurmctld, slurmd, slurm-client and munge
# (scripts/install-deps.sh installs them; their init scripts start nothing without
# /etc/slurm/slurm.conf).
# Knobs (environment):
#   SLURM_CPUS      (2)   CPUs given to the node, at most what `slurmd -C` finds
#   SLURMCTLD_PORT, SLURMD_PORT   (the first free ports from 6817 up)
#   CRED_EXPIRE     (10)  seconds a requeued job is held before it may start again
#                         (SLURM's default is 120; the minimum is 5)
#   TASK_PLUGIN     (task/affinity)  binds each task to its CPUs with
#                   sched_setaffinity (no cgroups needed); task/none binds nothing
set -euo pipefail

say() { echo "slurm_cluster: $*"; }
die() {
	echo "slurm_cluster: error: $*" >&2
	exit 1
}

# The pid in FILE, if that process is alive.
live_pid() {
	local pid
	[[ -s $1 ]] || return 1
	pid=$(cat "$1")
	kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# free_port FROM [EXCEPT]: the first TCP port >= FROM that nothing on localhost
# accepts connections on.
free_port() {
	local p=$1
	while ((p < 65535)); do
		if [[ $p != "${2:-}" ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
		p=$((p + 1))
	done
	die "no free TCP port from $1 up"
}

start() {
	local dir=$1 cpus mem probe ctld_port slurmd_port
	[[ $(id -u) -eq 0 ]] || die "the test cluster runs its daemons as root (you are $(id -un))"
	for cmd in munged slurmctld slurmd sinfo sbatch; do
		command -v "$cmd" >/dev/null ||
			die "$cmd missing: run scripts/install-deps.sh (packages slurmctld slurmd slurm-client munge)"
	done
	mkdir -p "$dir"/{state,spool,log,munge}
	dir=$(cd "$dir" && pwd)
	if live_pid "$dir/slurmctld.pid" >/dev/null; then
		die "a slurmctld from $dir is already running"
	fi
	# munged runs as the munge user and checks that no one else can write to its
	# files' directories: the path to them must be searchable and not group-writable.
	chmod 755 "$dir" "$dir/munge"
	chown munge:munge "$dir/munge"
	su -s /bin/sh munge -c "test -w '$dir/munge'" ||
		die "the munge user cannot reach $dir/munge: make its parent directories searchable (chmod o+x)"

	# What the node really has: CPUs and RealMemory must not exceed it, or the node
	# is drained.
	probe=$(slurmd -C | head -n 1)
	cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$probe")
	mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$probe")
	[[ -n $cpus && -n $mem ]] || die "cannot read CPUs and RealMemory from 'slurmd -C': $probe"
	((cpus > ${SLURM_CPUS:-2})) && cpus=${SLURM_CPUS:-2}
	ctld_port=${SLURMCTLD_PORT:-$(free_port 6817)}
	slurmd_port=${SLURMD_PORT:-$(free_port $((ctld_port + 1)) "$ctld_port")}

	# sched_interval=1: the main scheduler, which starts a requeued job once its
	# cred_expire hold is over, runs every second instead of every 60 s (backfill
	# does not look again when nothing has changed).
	cat >"$dir/slurm.conf" <<EOF
# Written by tests/slurm/slurm_cluster.sh: one node, localhost, everything as root.
ClusterName=retnettest
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=${CRED_EXPIRE:-10}
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=${TASK_PLUGIN:-task/affinity}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
	export SLURM_CONF=$dir/slurm.conf

	say "munged (key and socket in $dir/munge)"
	(umask 077 && dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none)
	chown munge:munge "$dir/munge/munge.key"
	su -s /bin/sh munge -c "/usr/sbin/munged --key-file='$dir/munge/munge.key' \
		--socket='$dir/munge/munge.socket' --pid-file='$dir/munge/munged.pid' \
		--log-file='$dir/munge/munged.log' --seed-file='$dir/munge/munged.seed'" ||
		die "munged did not start: $(tail -n 3 "$dir/munge/munged.log" 2>/dev/null)"
	say "slurmctld (port $ctld_port) and slurmd -N localhost (port $slurmd_port);" \
		"config $SLURM_CONF, logs in $dir/log"
	slurmctld -f "$SLURM_CONF" || die "slurmctld did not start: $(tail -n 5 "$dir/log/slurmctld.log")"
	slurmd -f "$SLURM_CONF" -N localhost || die "slurmd did not start: $(tail -n 5 "$dir/log/slurmd.log")"

	local t0=$SECONDS state=""
	while ((SECONDS - t0 < 60)); do
		state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
		[[ $state == idle ]] && break
		sleep 0.5
	done
	if [[ $state != idle ]]; then
		sinfo -R >&2 || true
		logs "$dir" >&2
		die "node localhost is '$state', not idle, after 60 s"
	fi
	say "node localhost idle: $cpus CPUs, $mem MB (in $((SECONDS - t0)) s)"
}

# stop_pid NAME PIDFILE: SIGTERM, up to 15 s, then SIGKILL.
stop_pid() {
	local pid
	pid=$(live_pid "$2") || return 0
	kill "$pid"
	for _ in $(seq 150); do
		if ! kill -0 "$pid" 2>/dev/null; then
			say "stopped $1 (pid $pid)"
			return 0
		fi
		sleep 0.1
	done
	say "$1 (pid $pid) ignored SIGTERM: SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
}

stop() {
	local dir=$1
	[[ -f $dir/slurm.conf ]] || return 0
	export SLURM_CONF=$dir/slurm.conf
	if live_pid "$dir/slurmctld.pid" >/dev/null; then
		# Our own cluster: whatever is still queued or running is the test's.
		if [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
			say "cancelling the jobs left: $(squeue -h -o %i | tr '\n' ' ')"
			scancel --quiet --partition=debug || true
			for _ in $(seq 30); do
				[[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
				sleep 1
			done
			# slurmd leaves running job steps behind when it stops: KILL them first.
			if [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
				scancel --quiet --full --signal=KILL --partition=debug || true
				sleep 2
			fi
		fi
	fi
	stop_pid slurmd "$dir/slurmd.pid"
	stop_pid slurmctld "$dir/slurmctld.pid"
	stop_pid munged "$dir/munge/munged.pid"
}

logs() {
	local f
	for f in "$1/log/slurmctld.log" "$1/log/slurmd.log"; do
		echo "---- last 25 lines of $f"
		tail -n 25 "$f" 2>/dev/null || true
	done
}

case ${1:-} in
start) start "${2:?usage: slurm_cluster.sh start DIR}" ;;
stop) stop "${2:?usage: slurm_cluster.sh stop DIR}" ;;
logs) logs "${2:?usage: slurm_cluster.sh logs DIR}" ;;
*)
	echo "usage: slurm_cluster.sh start DIR | stop DIR | logs DIR" >&2
	exit 2
	;;
esac
