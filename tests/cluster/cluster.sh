# Emulated cluster nodes on one machine, for the cluster-labelled tests. Source it.
#
# Each node is a Linux network namespace with a veth on one bridge of the fixture's
# own, its own hostname (a UTS namespace per process entered into it) and a
# node-local /tmp (a mount namespace with a bind mount), so that Open MPI and SLURM
# see separate hosts: TCP between them, shared memory only inside one. Open MPI starts
# its daemons on them through tests/cluster/nsagent (plm_rsh_agent; no sshd).
# Everything the nodes share (the build, data, run directories, SLURM's config and
# munge socket) must live outside /tmp, as on a real cluster's shared file system,
# except the repository itself (and CLUSTER_SHARE's directories, a list set before
# cluster_setup): where they are under /tmp (a clone in /tmp), every node sees them
# at their paths over its own /tmp (CLUSTER_SHARED, for tests/cluster/nsagent).
#
#   source tests/cluster/cluster.sh
#   cluster_require          exit 77 (CTest SKIP_RETURN_CODE) with one line saying why,
#                            where nodes cannot be made (not root, no netns/bridge/veth)
#   cluster_setup N STATE    nodes ${CLUSTER_PREFIX}n1..nN (also their hostnames, in
#                            /etc/hosts), their per-node /tmp under STATE; sets
#                            CLUSTER_NODES, CLUSTER_ADDRS, CLUSTER_HOST_ADDR, CLUSTER_AGENT,
#                            CLUSTER_SUBNET; tears down on the shell's exit (its EXIT
#                            trap: set CLUSTER_ON_EXIT for the caller's own cleanup) and,
#                            if the shell is killed outright, from a detached watcher.
#                            CLUSTER_ON_TEARDOWN (a command, set before cluster_setup)
#                            runs first in both, e.g. to stop daemons outside the nodes;
#                            then processes whose command line holds CLUSTER_OWNED
#                            (the test's own directory) are killed: the job scripts
#                            and launchers a killed test leaves on this machine (its
#                            files stay, for a post-mortem)
#   cluster_exec I CMD...    run CMD on node I (1-based), as the agent does
#   cluster_kill_node I      SIGKILL every process of node I at once ("the node died")
#   cluster_link_down I / cluster_link_up I    the node's link (host side of its veth)
#   cluster_teardown         kill what runs on the nodes, delete namespaces, bridge,
#                            /etc/hosts lines; idempotent
#
# Knobs: CLUSTER_PREFIX (rtc: bridge rtcbr0, nodes rtcn1.., veths rtcv1..),
# CLUSTER_NET (10.231.96: a /24, the bridge .1, node i .(10+i)). Both are this
# fixture's own, not the examples of docs elsewhere, so that other tools' namespaces
# are never touched; traffic stays on that bridge. One user of a prefix at a time:
# a lock directory in /run/lock names its owner; a dead owner's lock is taken over
# (and its leftovers removed first).

CLUSTER_PREFIX=${CLUSTER_PREFIX:-rtc}
CLUSTER_NET=${CLUSTER_NET:-10.231.96}
CLUSTER_BRIDGE=${CLUSTER_PREFIX}br0
CLUSTER_HOST_ADDR=$CLUSTER_NET.1
CLUSTER_SUBNET=$CLUSTER_NET.0/24
CLUSTER_AGENT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/nsagent
CLUSTER_LOCK=/run/lock/retnet-test-cluster-$CLUSTER_PREFIX
CLUSTER_HOSTS_TAG="# retnet test cluster $CLUSTER_PREFIX"
CLUSTER_NODES=()
CLUSTER_ADDRS=()
CLUSTER_STATE=
_cluster_owner=

_cluster_say() { echo "cluster: $*"; }
_cluster_skip() {
	echo "cluster: SKIP: cannot make emulated nodes here: $*" >&2
	echo "0 passed, 0 failed (skipped)"
	exit 77
}

# Can this machine make namespaces, a bridge and veths? Probes with throwaway names.
cluster_require() {
	local probe=${CLUSTER_PREFIX}probe$$ cmd
	[[ $(id -u) -eq 0 ]] || _cluster_skip "needs root (network namespaces, a bridge); you are $(id -un)"
	for cmd in ip unshare nsenter mount hostname; do
		command -v "$cmd" >/dev/null ||
			_cluster_skip "'$cmd' missing (iproute2, util-linux: scripts/install-deps.sh)"
	done
	[[ -w /etc/hosts ]] || _cluster_skip "/etc/hosts is not writable (the nodes' names go there)"
	if ! ip netns add "$probe" 2>/dev/null; then
		_cluster_skip "'ip netns add' refused (no CAP_SYS_ADMIN/CAP_NET_ADMIN: an unprivileged container?)"
	fi
	if ! nsenter --net="/run/netns/$probe" unshare --uts --mount --propagation private \
		sh -c 'hostname probe' 2>/dev/null; then
		ip netns del "$probe"
		_cluster_skip "cannot enter a network namespace with its own hostname and mounts"
	fi
	if ! ip link add "${probe:0:12}b" type bridge 2>/dev/null; then
		ip netns del "$probe"
		_cluster_skip "cannot create a bridge (kernel without bridge support?)"
	fi
	ip link del "${probe:0:12}b"
	if ! ip link add "${probe:0:12}v" type veth peer name eth0 netns "$probe" 2>/dev/null; then
		ip netns del "$probe"
		_cluster_skip "cannot create a veth pair into a namespace"
	fi
	ip link del "${probe:0:12}v" 2>/dev/null
	ip netns del "$probe"
}

_cluster_lock() {
	local owner t0=$SECONDS
	mkdir -p /run/lock
	until mkdir "$CLUSTER_LOCK" 2>/dev/null; do
		owner=$(cat "$CLUSTER_LOCK/pid" 2>/dev/null)
		if [[ -n $owner ]] && ! kill -0 "$owner" 2>/dev/null; then
			_cluster_say "taking over the lock of dead owner $owner"
			rm -rf "$CLUSTER_LOCK"
			continue
		fi
		if ((SECONDS - t0 > ${CLUSTER_LOCK_WAIT:-900})); then
			echo "cluster: error: $CLUSTER_LOCK held by pid ${owner:-?} for ${CLUSTER_LOCK_WAIT:-900} s" >&2
			return 1
		fi
		sleep 1
	done
	echo $$ >"$CLUSTER_LOCK/pid"
	_cluster_owner=$$
}

# Remove every trace of this prefix: the test's processes outside the nodes
# (CLUSTER_OWNED), processes on its nodes, namespaces, links, /etc/hosts lines.
# Safe to call twice and with nothing set up.
_cluster_clean() {
	local ns pids hosts
	if [[ -n ${CLUSTER_OWNED:-} ]]; then
		pids=$(pgrep -f -- "$CLUSTER_OWNED/" | grep -vx "$$")
		# shellcheck disable=SC2086 # a list of pids
		[[ -n $pids ]] && kill -9 $pids 2>/dev/null
	fi
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${CLUSTER_PREFIX}n[0-9]+$"); do
		pids=$(ip netns pids "$ns" 2>/dev/null)
		# shellcheck disable=SC2086 # a list of pids
		[[ -n $pids ]] && kill -9 $pids 2>/dev/null
		for _ in $(seq 50); do
			[[ -z $(ip netns pids "$ns" 2>/dev/null) ]] && break
			sleep 0.1
		done
		ip netns del "$ns" 2>/dev/null
	done
	for ns in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 |
		grep -E "^${CLUSTER_PREFIX}(v[0-9]+|br0)$"); do
		ip link del "$ns" 2>/dev/null
	done
	if grep -qF "$CLUSTER_HOSTS_TAG" /etc/hosts 2>/dev/null; then
		# In place (cat >), not a rename: /etc/hosts is a bind mount in containers.
		hosts=$(grep -vF "$CLUSTER_HOSTS_TAG" /etc/hosts)
		printf '%s\n' "$hosts" >/etc/hosts
	fi
}

cluster_teardown() {
	[[ -n $_cluster_owner && $_cluster_owner == "$$" ]] || return 0
	[[ -n ${CLUSTER_ON_TEARDOWN:-} ]] && eval "$CLUSTER_ON_TEARDOWN"
	_cluster_clean
	rm -rf "$CLUSTER_LOCK"
	_cluster_owner=
}

_cluster_on_exit() {
	cluster_teardown
	[[ -n ${CLUSTER_ON_EXIT:-} ]] && eval "$CLUSTER_ON_EXIT"
}

cluster_setup() {
	local n=${1:?usage: cluster_setup N STATE_DIR} i name addr
	CLUSTER_STATE=${2:?usage: cluster_setup N STATE_DIR}
	local p repo
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
	CLUSTER_SHARED=
	for p in "$repo" ${CLUSTER_SHARE:-}; do
		p=$(realpath -m "$p")
		[[ $p == /tmp/* ]] && CLUSTER_SHARED+=${CLUSTER_SHARED:+:}$p
	done
	export CLUSTER_SHARED
	_cluster_lock || return 1
	trap '_cluster_on_exit' EXIT
	trap 'exit 130' INT TERM
	# A watcher outside this process tree (own session) tears down if this shell
	# dies without running its EXIT trap (CTest's timeout kills with SIGKILL).
	# shellcheck disable=SC2016 # the watcher's own arguments
	(CLUSTER_PREFIX=$CLUSTER_PREFIX CLUSTER_NET=$CLUSTER_NET CLUSTER_OWNED=${CLUSTER_OWNED:-} \
		setsid bash -c '
		while kill -0 "$1" 2>/dev/null; do sleep 2; done
		source "$2"
		[[ $(cat "$CLUSTER_LOCK/pid" 2>/dev/null) == "$1" ]] || exit 0
		[[ -n $3 ]] && eval "$3"
		_cluster_clean
		rm -rf "$CLUSTER_LOCK"' watcher $$ "${BASH_SOURCE[0]}" "${CLUSTER_ON_TEARDOWN:-}" \
		</dev/null >/dev/null 2>&1 &)
	_cluster_clean # leftovers of a run that was killed before it could clean up
	ip link add "$CLUSTER_BRIDGE" type bridge || return 1
	ip addr add "$CLUSTER_HOST_ADDR/24" dev "$CLUSTER_BRIDGE" || return 1
	ip link set "$CLUSTER_BRIDGE" up || return 1
	CLUSTER_NODES=()
	CLUSTER_ADDRS=()
	for ((i = 1; i <= n; i++)); do
		name=${CLUSTER_PREFIX}n$i
		addr=$CLUSTER_NET.$((10 + i))
		ip netns add "$name" || return 1
		ip link add "${CLUSTER_PREFIX}v$i" type veth peer name eth0 netns "$name" || return 1
		ip link set "${CLUSTER_PREFIX}v$i" master "$CLUSTER_BRIDGE" up || return 1
		ip -n "$name" addr add "$addr/24" dev eth0 || return 1
		ip -n "$name" link set eth0 up || return 1
		ip -n "$name" link set lo up || return 1
		mkdir -p "$CLUSTER_STATE/$name/tmp"
		chmod 1777 "$CLUSTER_STATE/$name/tmp"
		echo "$addr $name $CLUSTER_HOSTS_TAG" >>/etc/hosts
		CLUSTER_NODES+=("$name")
		CLUSTER_ADDRS+=("$addr")
	done
	export CLUSTER_STATE
	_cluster_say "$n nodes: ${CLUSTER_NODES[*]} (${CLUSTER_ADDRS[*]}) on bridge $CLUSTER_BRIDGE" \
		"($CLUSTER_HOST_ADDR), node-local /tmp in $CLUSTER_STATE"
}

# cluster_exec I CMD...: CMD on node I, with the node's hostname and /tmp.
cluster_exec() {
	local node=${CLUSTER_NODES[$(($1 - 1))]}
	shift
	CLUSTER_STATE=$CLUSTER_STATE "$CLUSTER_AGENT" --keep-env "$node" "$@"
}

cluster_kill_node() {
	local ns=${CLUSTER_NODES[$(($1 - 1))]} pids
	pids=$(ip netns pids "$ns")
	# shellcheck disable=SC2086 # a list of pids, all killed by one kill(1)
	[[ -n $pids ]] && kill -9 $pids
}

cluster_link_down() { ip link set "${CLUSTER_PREFIX}v$1" down; }
cluster_link_up() { ip link set "${CLUSTER_PREFIX}v$1" up; }
