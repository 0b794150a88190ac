#!/usr/bin/env bash
# --recompute-activations recomputes each block's activations in backward with the
# same kernels on the same input, so training must not change by a single bit:
# losses and rank 0's final parameters equal the stored-activation run's, on one
# rank (with accumulation), PP 2 with 4 micro-batches in flight on 1F1B, PP 2 with
# virtual stages (2 chunks of 1 layer per rank, interleaved 1F1B), and TP 2.
# Usage: train_recompute.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: train_recompute.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup recompute
export OMP_NUM_THREADS=1

run() { # run NAME NP [flags]
	local name=$1 np=$2
	shift 2
	timeout 300 "$MPIEXEC" -n "$np" "${MPI_EXTRA[@]}" "$BUILD/retnet-train" \
		--data-path "$CORPUS-train.bin" --num-layers 4 --train-iters 6 \
		--metrics "$T/$name.jsonl" --save-raw-params "$T/$name.params" "$@" \
		>"$T/$name.log" 2>&1
}

for layout in "one 1 --global-batch-size 4" "pp2 2 --pipeline-model-parallel-size 2 --global-batch-size 8" \
	"pp2v 2 --pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 1 --global-batch-size 8" \
	"tp2 2 --tensor-model-parallel-size 2"; do
	read -r -a a <<<"$layout"
	run "${a[0]}" "${a[@]:1}"
	check "${a[0]}: stored activations run" test $? -eq 0
	run "${a[0]}-re" "${a[@]:1}" --recompute-activations
	check "${a[0]}: recomputing run" test $? -eq 0
	check "${a[0]}: 6 losses logged" test "$(json_column "$T/${a[0]}.jsonl" loss | wc -l)" -eq 6
	check "${a[0]}: same losses to the bit" \
		cmp -s <(json_column "$T/${a[0]}.jsonl" loss) <(json_column "$T/${a[0]}-re.jsonl" loss)
	check "${a[0]}: same final parameters to the bit" cmp -s "$T/${a[0]}.params" "$T/${a[0]}-re.params"
done
finish
