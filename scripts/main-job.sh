#!/usr/bin/env bash
# The main job on the built-in default corpus, the King James Bible: installs what
# is missing, builds, turns the corpus into token shards (three parts: the last 5%
# of the bytes validation, the 5% before it test, the rest training), trains a
# small RetNet with mpirun on 2 ranks writing checkpoints, with held-out estimates
# on the validation part, then scores the final checkpoint with retnet-eval on the
# test part, which nothing was trained or tuned on: perplexity and bits per byte,
# in windows and as one stream.
# Knobs (environment): RANKS (2), THREADS per rank (1), OUT (out/main-job),
# CONFIG (jobs/configs/kjv-small.cfg); extra arguments go to retnet-train (a short
# run to try it: scripts/main-job.sh --train-iters 40 --eval-interval 20).
set -euo pipefail
cd "$(dirname "$0")/.."
RANKS=${RANKS:-2}
THREADS=${THREADS:-1}
OUT=${OUT:-out/main-job}
CONFIG=${CONFIG:-jobs/configs/kjv-small.cfg}

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"

mkdir -p "$OUT"
# The tokenizer follows the model's vocab-size: 256 is bytes, more is byte-pair
# merges that retnet-prep learns from the training part (under a second).
read -r -a tokenizer <<<"$(scripts/tokenizer-args.sh "$CONFIG")"
bible -f Gen1:1-Rev22:21 >"$OUT/kjv.txt"
# The validation part is the last 5% (the held-out text the config's settings were
# chosen on); the test part, the 5% before it, is text no setting was chosen on.
./build/data/retnet-prep --force "${tokenizer[@]}" --split train:90,test:5,valid:5 \
	--output-prefix "$OUT/kjv" "$OUT/kjv.txt"
# A fresh run each time: this job's own metrics, checkpoints and scores go.
rm -rf "$OUT/metrics.jsonl" "$OUT/checkpoints" "$OUT"/eval*.jsonl
mkdir -p "$OUT/checkpoints"

# Open MPI refuses root without these (CI and containers run as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -n "$RANKS" --bind-to none -x OMP_NUM_THREADS="$THREADS" \
	./build/retnet-train --config "$CONFIG" \
	--data-path "$OUT/kjv-train.bin" --valid-data-path "$OUT/kjv-valid.bin" \
	--metrics "$OUT/metrics.jsonl" --save "$OUT/checkpoints" --save-interval 400 \
	--keep-last 2 "$@"
jobs/plot_metrics.sh "$OUT/metrics.jsonl" "$OUT/loss.png"

echo "== the final checkpoint on the test part (the headline figures)"
# Windows on all ranks; the stream is one sequence, so one rank with all threads.
mpirun -n "$RANKS" --bind-to none -x OMP_NUM_THREADS="$THREADS" ./build/retnet-eval \
	--load "$OUT/checkpoints" --data "$OUT/kjv-test.bin" --mode windows \
	--micro-batch-size 8 --output "$OUT/eval-test-windows.jsonl"
mpirun -n 1 --bind-to none -x OMP_NUM_THREADS="$((RANKS * THREADS))" ./build/retnet-eval \
	--load "$OUT/checkpoints" --data "$OUT/kjv-test.bin" --mode stream \
	--output "$OUT/eval-test-stream.jsonl"
cat "$OUT"/eval-test-*.jsonl >"$OUT/eval.jsonl"
echo "main job: metrics $OUT/metrics.jsonl (held-out estimates: the validation part)," \
	"plot $OUT/loss.png, checkpoints $OUT/checkpoints, test-part scores $OUT/eval.jsonl"
