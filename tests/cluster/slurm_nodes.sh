# A real SLURM across the emulated nodes of tests/cluster/cluster.sh, for the
# slurm-labelled cluster test. Source it after cluster.sh and call, once the nodes
# are up (cluster_setup):
#
#   slurm_nodes_start DIR   munged and slurmctld outside the nodes (on the bridge's
#                           address), one slurmd in each node (its own NodeName,
#                           NodeAddr and hostname, its node-local /tmp), all as root;
#                           config, state, spool, logs, munge key and socket under DIR
#                           (outside /tmp: the nodes share it); waits until every node
#                           is idle; exports SLURM_CONF
#   slurm_nodes_stop DIR    cancels what is left, stops the daemons by their pids
#   slurm_nodes_logs DIR    the last lines of the daemons' logs
#
# Set CLUSTER_ON_TEARDOWN='slurm_nodes_stop DIR' before cluster_setup so that the
# daemons outside the nodes stop with them, even if the test is killed.
# Knobs: SLURM_NODE_CPUS (8: what each node declares; SlurmdParameters=
# config_overrides lets it exceed the machine, and TaskPlugin=task/none binds no task
# to CPUs it does not have), CRED_EXPIRE (5: seconds a requeued job is held).
# Unlike tests/slurm/slurm_cluster.sh (one node on localhost, task/affinity), the
# nodes here are separate hosts: srun --mpi=pmix wires ranks over TCP between them.

_slurm_pid() { # the pid in FILE, if alive
	local pid
	[[ -s $1 ]] || return 1
	pid=$(cat "$1")
	kill -0 "$pid" 2>/dev/null && echo "$pid"
}

_slurm_free_port() { # first TCP port >= $1 nothing on the host accepts
	local p=$1
	while ((p < 65535)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
		p=$((p + 1))
	done
	return 1
}

slurm_nodes_start() {
	local dir=$1 port i node mem t0 state nodes
	for cmd in munged slurmctld slurmd sinfo sbatch; do
		command -v "$cmd" >/dev/null || {
			echo "slurm_nodes: $cmd missing: scripts/install-deps.sh installs slurmctld slurmd slurm-client munge" >&2
			return 1
		}
	done
	mkdir -p "$dir"/{state,log,munge}
	chmod 755 "$dir" "$dir/munge"
	chown munge:munge "$dir/munge"
	su -s /bin/sh munge -c "test -w '$dir/munge'" || {
		echo "slurm_nodes: the munge user cannot reach $dir/munge (make its parents searchable)" >&2
		return 1
	}
	mem=$(slurmd -C | sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p')
	mem=$((mem / (${#CLUSTER_NODES[@]} + 1)))
	port=$(_slurm_free_port 6917)
	nodes=$(
		IFS=,
		echo "${CLUSTER_NODES[*]}"
	)
	{
		cat <<EOF
# Written by tests/cluster/slurm_nodes.sh: ${#CLUSTER_NODES[@]} emulated nodes, everything as root.
ClusterName=retnetnodes
SlurmctldHost=$(hostname)($CLUSTER_HOST_ADDR)
SlurmctldPort=$port
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=${CRED_EXPIRE:-5}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=5
SlurmdTimeout=30
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
EOF
		for ((i = 0; i < ${#CLUSTER_NODES[@]}; i++)); do
			echo "NodeName=${CLUSTER_NODES[i]} NodeAddr=${CLUSTER_ADDRS[i]} CPUs=${SLURM_NODE_CPUS:-8} RealMemory=$mem State=UNKNOWN"
		done
		echo "PartitionName=debug Nodes=$nodes Default=YES MaxTime=INFINITE State=UP"
	} >"$dir/slurm.conf"
	export SLURM_CONF=$dir/slurm.conf

	(umask 077 && dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none)
	chown munge:munge "$dir/munge/munge.key"
	su -s /bin/sh munge -c "/usr/sbin/munged --key-file='$dir/munge/munge.key' \
		--socket='$dir/munge/munge.socket' --pid-file='$dir/munge/munged.pid' \
		--log-file='$dir/munge/munged.log' --seed-file='$dir/munge/munged.seed'" || {
		echo "slurm_nodes: munged did not start" >&2
		return 1
	}
	slurmctld -f "$SLURM_CONF" || {
		echo "slurm_nodes: slurmctld did not start: $(tail -n 5 "$dir/log/slurmctld.log")" >&2
		return 1
	}
	for ((i = 1; i <= ${#CLUSTER_NODES[@]}; i++)); do
		node=${CLUSTER_NODES[i - 1]}
		mkdir -p "$dir/spool/$node"
		# nsenter, not ip netns exec: the latter mounts a /sys without the cgroup tree
		cluster_exec "$i" slurmd -f "$SLURM_CONF" -N "$node" || {
			echo "slurm_nodes: slurmd on $node did not start: $(tail -n 5 "$dir/log/slurmd-$node.log")" >&2
			return 1
		}
	done
	t0=$SECONDS
	while ((SECONDS - t0 < 60)); do
		state=$(sinfo -h -o %T 2>/dev/null | sort -u | xargs)
		[[ $state == idle ]] && break
		sleep 0.5
	done
	if [[ $state != idle ]]; then
		sinfo -R >&2
		slurm_nodes_logs "$dir" >&2
		echo "slurm_nodes: nodes are '$state', not idle, after 60 s" >&2
		return 1
	fi
	echo "slurm_nodes: ${#CLUSTER_NODES[@]} nodes idle ($(sinfo -h -o '%N %c CPUs') each)," \
		"slurmctld on $CLUSTER_HOST_ADDR:$port, config $SLURM_CONF ($((SECONDS - t0)) s)"
}

_slurm_stop_pid() { # NAME PIDFILE: TERM, up to 10 s, then KILL
	local pid
	pid=$(_slurm_pid "$2") || return 0
	kill "$pid"
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
}

slurm_nodes_stop() {
	local dir=$1 f
	[[ -f $dir/slurm.conf ]] || return 0
	export SLURM_CONF=$dir/slurm.conf
	if _slurm_pid "$dir/slurmctld.pid" >/dev/null && [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
		scancel --quiet --partition=debug 2>/dev/null
		for _ in $(seq 20); do
			[[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
			sleep 0.5
		done
	fi
	for f in "$dir"/slurmd-*.pid; do
		[[ -f $f ]] && _slurm_stop_pid slurmd "$f"
	done
	_slurm_stop_pid slurmctld "$dir/slurmctld.pid"
	_slurm_stop_pid munged "$dir/munge/munged.pid"
	return 0
}

slurm_nodes_logs() {
	local f
	for f in "$1"/log/*.log; do
		[[ -f $f ]] || continue
		echo "---- last 20 lines of $f"
		tail -n 20 "$f"
	done
}
