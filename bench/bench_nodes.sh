#!/usr/bin/env bash
# Training across 2 emulated nodes (network namespaces joined by a bridge, the
# fixture of tests/cluster/cluster.sh; needs root), measured and set beside
# bench/project_scaling.py's projection for the same machine, so that the model
# behind docs/scaling.md is checked where it can be:
#   1. the link between the nodes: retnet-bench-pingpong, one rank on each node
#   2. bench-small (d=512, L=6, H=4, f=1024, T=2048, C=128; global batch 4
#      sequences, micro-batch 1) on one rank x 1 thread: the rank's matmul ceiling
#      and MFU, the projection's compute rates
#   3. the same on 2 nodes x 1 rank x 1 thread: DP=2, TP=2, PP=2 (each axis across
#      the link); tokens/s and the per-axis communication the trainer accounts
#   4. project_scaling.py with the rates of 1 and 2 (--cores 1, one rank per node)
#      for those layouts, beside what 3 measured
# Each run is ITERS steps, its tokens/s that of the last 2 (the first ones warm up);
# ROUNDS rounds of all layouts in turn, medians reported, so a noisy machine slows
# every layout alike. The two nodes share this machine's cores (one each) and its
# memory bus: a veth is not a network card; what is compared is the model, not a
# cluster's speed.
# Usage: bench/bench_nodes.sh [BUILD_DIR] [ITERS] [ROUNDS]
# Not -e: the fixture's clean-up runs commands that may find nothing to remove.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-build}" && pwd)
ITERS=${2:-6}
ROUNDS=${3:-3}
source "$REPO/tests/cluster/cluster.sh"
cluster_require
CORPUS=$BUILD/bench-corpus/kjv # outside /tmp: each node has its own /tmp
[[ -f $CORPUS-train.bin ]] ||
	{ bash "$REPO/tests/cli/make_corpus.sh" "$BUILD/data/retnet-prep" "$CORPUS" >/dev/null ||
		exit 1; }
T=$(mktemp -d /var/tmp/rn_bench_nodes.XXXXXX)
CLUSTER_ON_EXIT='rm -rf "$T"'
CLUSTER_OWNED=$T
cluster_setup 2 "$T/nodes" || exit 1
export CLUSTER_STATE OMP_NUM_THREADS=1
export OMPI_MCA_plm_rsh_agent=$CLUSTER_AGENT OMPI_MCA_btl_tcp_if_include=$CLUSTER_SUBNET \
	OMPI_MCA_oob_tcp_if_include=$CLUSTER_SUBNET
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
printf '%s slots=1\n' "${CLUSTER_NODES[@]}" >"$T/hosts"

echo "== 1. the link between ${CLUSTER_NODES[0]} and ${CLUSTER_NODES[1]}"
mpirun -n 2 --hostfile "$T/hosts" --bind-to none "$BUILD/retnet-bench-pingpong" --rounds 7 |
	tee "$T/link.txt" || exit 1
link=$(tail -n 1 "$T/link.txt")
lat_us=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["latency_us"])' "$link")
net_gbs=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bandwidth_gbs"])' "$link")

MODEL=(--num-layers 6 --hidden-size 512 --num-heads 4 --ffn-hidden-size 1024
	--seq-length 2048 --chunk-size 128 --micro-batch-size 1 --global-batch-size 4
	--train-iters "$ITERS" --log-interval 2 --lr 1e-3 --data-path "$CORPUS-train.bin")
# run NAME RANKS [flags]: its last metrics line in $T/NAME.r<round>.json
run() {
	local name=$1 ranks=$2
	shift 2
	mpirun -n "$ranks" --hostfile "$T/hosts" --bind-to none -x OMP_NUM_THREADS \
		"$BUILD/retnet-train" "${MODEL[@]}" "$@" --metrics "$T/$name.jsonl" \
		>"$T/$name.log" 2>&1 || { tail -n 20 "$T/$name.log"; exit 1; }
	tail -n 1 "$T/$name.jsonl" >"$T/$name.r$round.json"
	rm "$T/$name.jsonl"
}
LAYOUTS=(alone dp2 tp2 pp2)
for round in $(seq "$ROUNDS"); do
	echo "== round $round of $ROUNDS: ${LAYOUTS[*]}"
	run alone 1
	run dp2 2
	run tp2 2 --tensor-model-parallel-size 2
	run pp2 2 --pipeline-model-parallel-size 2
done

# median of KEY over the rounds of NAME
med() {
	python3 - "$1" "$2" "$T" "$ROUNDS" <<'EOF'
import json, statistics, sys
name, key, d, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
print(statistics.median(json.load(open("%s/%s.r%d.json" % (d, name, r)))[key]
                        for r in range(1, rounds + 1)))
EOF
}
ceiling=$(med alone ceiling_gflops)
mfu=$(med alone mfu)
echo
echo "== 2./3. measured: medians of $ROUNDS rounds (bench-small, 8192 tokens a step)"
printf '%-6s %10s %7s %22s %26s\n' layout tokens/s MFU "comm ms/step TP DP PP" \
	"MB/step TP DP PP"
: >"$T/measured.txt"
for name in "${LAYOUTS[@]}"; do
	printf '%-6s %10.0f %6.1f%% %7.0f %6.0f %6.0f %10.1f %6.1f %6.1f\n' "$name" \
		"$(med "$name" tokens_per_sec)" "$(python3 -c "print(100*$(med "$name" mfu))")" \
		"$(med "$name" tp_comm_ms)" "$(med "$name" dp_comm_ms)" "$(med "$name" pp_comm_ms)" \
		"$(python3 -c "print($(med "$name" tp_bytes)/1e6)")" \
		"$(python3 -c "print($(med "$name" dp_bytes)/1e6)")" \
		"$(python3 -c "print($(med "$name" pp_bytes)/1e6)")"
done
for pair in dp2:1x1x1x2 tp2:2x1x1x1 pp2:1x1x2x1; do
	echo "bench-small 2 ${pair#*:} $(med "${pair%%:*}" tokens_per_sec)" >>"$T/measured.txt"
done
echo
echo "== 4. projected for this machine: one rank x 1 core per node, ${ceiling} GFLOP/s" \
	"ceiling, MFU ${mfu}, link ${net_gbs} GB/s and ${lat_us} us (measured above)"
python3 "$REPO/bench/project_scaling.py" --models bench-small --nodes 2 --ranks-per-node 1 \
	--cores 1 --core-gflops "$ceiling" --mfu "$mfu" --net-gbs "$net_gbs" \
	--net-lat-us "$lat_us" --global-batch-tokens 8192 --seq-length 2048 \
	--layouts 1x1x1x2,2x1x1x1,1x1x2x1 --measured "$T/measured.txt"
