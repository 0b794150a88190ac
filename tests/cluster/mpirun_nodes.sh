#!/usr/bin/env bash
# jobs/train-mpirun.sh and jobs/eval-mpirun.sh across 2 emulated nodes
# (tests/cluster/cluster.sh), used as a user would: a hostfile (HOSTFILE=...), and
# mpirun reaching the nodes through its rsh agent (here tests/cluster/nsagent in
# place of ssh, set as a site sets its ssh: OMPI_MCA_plm_rsh_agent). Checks:
#  (1) DP=2 x TP=2 on 4 ranks, 2 per node: each tensor-parallel pair on one node,
#      data parallelism across the two (the placement lines say so); its 10 losses
#      within 1e-5 of the single-rank run on the same seed and global batch;
#  (2) PP=2, one stage per node: the same losses within 1e-5;
#  (3) the checkpoint (1) wrote to the shared run directory is identical, tensor by
#      tensor (h5diff: every model and optimizer dataset), to the one the same
#      layout writes on one node, and it loads on one node: eval-mpirun.sh on one
#      rank there and across the 2 nodes (HOSTFILE, 2 ranks) give the same numbers.
# Skips (77) where emulated nodes cannot be made (not root, no namespaces).
# Usage: mpirun_nodes.sh BUILD_DIR CORPUS_PREFIX
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:?usage: mpirun_nodes.sh BUILD_DIR CORPUS_PREFIX}" && pwd)
CORPUS=$(cd "$(dirname "${2:?usage}")" && pwd)/$(basename "$2") # the jobs run elsewhere
source "$REPO/tests/cli/lib.sh"
source "$HERE/cluster.sh"
cluster_require

# Not under /tmp: each node has its own; the run directory is the cluster's shared one.
T=$(mktemp -d "${RN_CLUSTER_TMP:-/var/tmp}/rn_cluster_mpirun.XXXXXX")
CLUSTER_ON_EXIT='rm -rf "$T"'
CLUSTER_OWNED=$T # what is left of the jobs if this test is killed
cluster_setup 2 "$T/nodes" || { bad "2 emulated nodes set up"; finish; exit 1; }
export CLUSTER_STATE OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
# What a site's ssh set-up would be; traffic only on the fixture's bridge. Idle ranks
# yield their core: 4 ranks share 2 cores (busy-polling ones take seconds per save).
export OMPI_MCA_plm_rsh_agent=$CLUSTER_AGENT OMPI_MCA_btl_tcp_if_include=$CLUSTER_SUBNET \
	OMPI_MCA_oob_tcp_if_include=$CLUSTER_SUBNET OMPI_MCA_mpi_yield_when_idle=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
printf '%s slots=2\n' "${CLUSTER_NODES[@]}" >"$T/hosts2"
printf '%s slots=1\n' "${CLUSTER_NODES[@]}" >"$T/hosts1"

cat >"$T/tiny.cfg" <<EOF
num-layers 2
hidden-size 64
num-heads 4
seq-length 32
chunk-size 8
global-batch-size 8
train-iters 10
lr 3e-3
lr-warmup-iters 2
seed 7
log-interval 1
EOF
export RETNET_BUILD=$BUILD CONFIG=$T/tiny.cfg DATA=$CORPUS-train.bin VALID_DATA=
export SAVE_INTERVAL=10 KEEP_LAST=0 BIND=none THREADS=1 RETNET_CEILING_SIZE=64
# The agent starts the nodes' daemons with a login's environment, as ssh would:
# what the ranks need goes through mpirun.
export MPIRUN_ARGS="-x OMP_WAIT_POLICY -x RETNET_CEILING_SIZE"

# job NAME KNOB=VALUE... -- [retnet-train flags]: jobs/train-mpirun.sh in RUN_DIR
# $T/NAME; its output in $T/NAME.out; the losses in $T/NAME.loss.
job() {
	local name=$1 t0=$SECONDS
	shift
	local -a knobs=()
	while [[ $# -gt 0 && $1 != -- ]]; do knobs+=("$1"); shift; done
	[[ ${1:-} == -- ]] && shift
	env "${knobs[@]}" RUN_DIR="$T/$name" "$REPO/jobs/train-mpirun.sh" "$@" >"$T/$name.out" 2>&1
	local rc=$?
	json_column "$T/$name/metrics.jsonl" loss >"$T/$name.loss" 2>/dev/null
	echo "     $name: exit $rc in $((SECONDS - t0)) s"
	return $rc
}
show() { sed 's/^/    | /' "$T/$1.out" | tail -n 25 >&2; }

# ---- the single-rank reference (2 micro-batches of 4) ------------------------
job ref RANKS=1 -- --micro-batch-size 4 || show ref
check "single-rank reference: 10 losses" test "$(wc -l <"$T/ref.loss")" -eq 10

# ---- (1) DP=2 x TP=2 across the nodes ------------------------------------------
echo "== (1) DP=2 x TP=2, HOSTFILE with 2 slots per node"
if job dp2tp2 RANKS=4 TP=2 HOSTFILE="$T/hosts2" -- --micro-batch-size 4; then
	check "(1) losses = single-rank losses (1e-5 rel)" close_columns "$T/dp2tp2.loss" "$T/ref.loss" 1e-5
	check "(1) ranks 0-1 (TP pair of DP replica 0) on ${CLUSTER_NODES[0]}" \
		grep -q "placement: node ${CLUSTER_NODES[0]} ranks 0-1 " "$T/dp2tp2.out"
	check "(1) ranks 2-3 (TP pair of DP replica 1) on ${CLUSTER_NODES[1]}" \
		grep -q "placement: node ${CLUSTER_NODES[1]} ranks 2-3 " "$T/dp2tp2.out"
else
	bad "(1) DP=2 x TP=2 across 2 nodes ran"
	show dp2tp2
fi

# ---- (2) PP=2, one stage per node ------------------------------------------------
echo "== (2) PP=2, HOSTFILE with 1 slot per node"
if job pp2 RANKS=2 PP=2 HOSTFILE="$T/hosts1" -- --micro-batch-size 2; then
	check "(2) losses = single-rank losses (1e-5 rel)" close_columns "$T/pp2.loss" "$T/ref.loss" 1e-5
	check "(2) stage 0 on ${CLUSTER_NODES[0]}, stage 1 on ${CLUSTER_NODES[1]}" eval \
		'grep -q "placement: node ${CLUSTER_NODES[0]} ranks 0 " "$T/pp2.out" &&
		 grep -q "placement: node ${CLUSTER_NODES[1]} ranks 1 " "$T/pp2.out"'
else
	bad "(2) PP=2 across 2 nodes ran"
	show pp2
fi

# ---- (3) the checkpoint: as on one node, and it loads on one node -------------
echo "== (3) the 2-node checkpoint against the one-node one"
if job one RANKS=4 TP=2 MPIRUN_ARGS="$MPIRUN_ARGS --oversubscribe" -- --micro-batch-size 4; then
	a=$T/dp2tp2/ckpt/iter_0000010.h5
	b=$T/one/ckpt/iter_0000010.h5
	if h5diff -r "$a" "$b" /model /model >"$T/h5diff.out" 2>&1 &&
		h5diff -r "$a" "$b" /optimizer /optimizer >>"$T/h5diff.out" 2>&1; then
		ok "(3) 2-node checkpoint = one-node checkpoint: $(grep -c '^dataset:' "$T/h5diff.out") model and optimizer tensors, 0 differences"
	else
		bad "(3) 2-node checkpoint = one-node checkpoint: $(grep -v '^$' "$T/h5diff.out" | head -5)"
	fi
	check "(3) ... and the one-node run's losses to the bit" cmp -s "$T/one.loss" "$T/dp2tp2.loss"
else
	bad "(3) the same layout on one node ran"
	show one
fi
for e in one:"RANKS=1" two:"RANKS=2 HOSTFILE=$T/hosts1"; do
	read -r -a knobs <<<"${e#*:}"
	env "${knobs[@]}" RUN_DIR="$T/dp2tp2" EVAL_DATA="$CORPUS-valid.bin" ITERATIONS=latest \
		THREADS=1 BIND=none "$REPO/jobs/eval-mpirun.sh" --seq-length 32 >"$T/eval-${e%%:*}.out" 2>&1
	rc=$?
	mv "$T/dp2tp2/eval/kjv-valid.bin-10.jsonl" "$T/eval-${e%%:*}.jsonl" 2>/dev/null
	check "(3) eval-mpirun.sh, ${e#*:}: the 2-node checkpoint loads (exit $rc)" \
		test "$rc" -eq 0 -a -s "$T/eval-${e%%:*}.jsonl"
done
check "(3) ... with the same numbers on one node and across two (1e-6 rel)" close_columns \
	<(json_column "$T/eval-two.jsonl" nll) <(json_column "$T/eval-one.jsonl" nll) 1e-6
finish
