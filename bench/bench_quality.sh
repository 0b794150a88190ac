#!/usr/bin/env bash
# Quality per CPU-minute: held-out bits per byte reached in the same wall
# time on the same cores by our main job and by the same model in PyTorch.
#
#   ours : retnet-train with the main job's model and schedule (CONFIG, default
#          jobs/configs/kjv-small.cfg: BPE vocab 1024, d=256, 3 layers, 4 heads,
#          T=512, global batch 8 on RANKS=2 ranks x THREADS=1 thread). Its
#          --train-iters is set so the run and its cosine schedule end after
#          about MINUTES of training: a 20-step calibration run measures its
#          tokens/s first (warm-up: the config's 40 steps, or a tenth of the
#          steps if that is fewer). A checkpoint every ~1/6 of the steps
#          (uncompressed; the time spent writing them is not counted as training
#          time); afterwards retnet-eval scores each on the whole held-out text,
#          which is the curve.
#   torch: bench/torch_retnet.py train, the baseline's model (bytes, d=256, 4 layers,
#          4 heads, f=512, C=64, T=512), batch 8, lr 2e-3 -> 1e-4, on RANKS*THREADS threads
#          for MINUTES of training time; its schedule runs on the clock (warm-up the
#          first 10% of the time, cosine to the end), so it always anneals fully.
#          It scores the held-out text every EVAL_EVERY_S seconds of training with
#          its clock paused. Neither side's minutes count measuring.
#
# Both: the default corpus (the text exactly as `bible -f Gen1:1-Rev22:21` prints
# it, or CORPUS=FILE), the last 5% of the bytes held out as retnet-prep cuts them
# (the script checks both sides hold out the same bytes); held-out bits per byte =
# summed nats / (ln 2 x scored bytes), windows of T from a zero state, every target
# byte scored (retnet-eval --mode windows). For reference: xz -9e on the whole corpus.
#
# Prints the final held-out bits per byte of both, the curves as tables, and plots
# them (held-out bits per byte against minutes of training) to OUT/quality.png.
#
# Builds nothing. Usage: bench/bench_quality.sh [BUILD_DIR]
# Knobs (environment): MINUTES (10), BUILD_DIR (build), OUT (out/bench-quality),
#   RANKS (2), THREADS (1), CONFIG (jobs/configs/kjv-small.cfg), CORPUS (the KJV),
#   EVAL_EVERY_S (torch; MINUTES*60/8), OURS_ITERS (skip the calibration),
#   SKIP_TORCH=1, SKIP_OURS=1, OURS_ARGS (more retnet-train flags for ours, e.g.
#   --bf16 or --seed S; bench/plot_quality_runs.sh puts several runs on one plot),
#   and TORCH_PY, TORCH_BLAS, TORCH_ENV (bench/torch_env.sh).
# Wall time: about 2 x MINUTES plus the calibration and the scoring (torch's
# scoring of the 220k held-out bytes is the slow part: a few minutes in all).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-${BUILD_DIR:-build}}
MINUTES=${MINUTES:-10}
OUT=${OUT:-out/bench-quality}
RANKS=${RANKS:-2}
THREADS=${THREADS:-1}
CONFIG=${CONFIG:-jobs/configs/kjv-small.cfg}
EVAL_EVERY_S=${EVAL_EVERY_S:-$(awk -v m="$MINUTES" 'BEGIN { print m * 60 / 8 }')}
SKIP_TORCH=${SKIP_TORCH:-0}
SKIP_OURS=${SKIP_OURS:-0}
read -r -a OURS_EXTRA <<<"${OURS_ARGS:-}"
# shellcheck source=bench/torch_env.sh
source bench/torch_env.sh
# shellcheck source=bench/quality_plot.sh
source bench/quality_plot.sh

for b in retnet-train retnet-eval data/retnet-prep; do
	if [[ ! -x $BUILD_DIR/$b ]]; then
		echo "bench_quality: $BUILD_DIR/$b is missing: build first" \
			"(cmake -S . -B $BUILD_DIR -DCMAKE_BUILD_TYPE=Release && cmake --build $BUILD_DIR -j)" >&2
		exit 2
	fi
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$OUT"
rm -rf "$OUT/ours" "$OUT/torch.jsonl" "$OUT/torch.log" "$OUT"/curve-*.dat "$OUT/quality.png" \
	"$OUT/summary.json"
mkdir -p "$OUT/ours"

echo "== bench_quality: held-out bits per byte after $MINUTES minutes of training," \
	"ours ($RANKS ranks x $THREADS threads) and PyTorch ($((RANKS * THREADS)) threads)"
machine_load "at start"

# ---- the corpus and the split ------------------------------------------------------
if [[ -n ${CORPUS:-} ]]; then
	cp "$CORPUS" "$OUT/corpus.txt"
else
	command -v bible >/dev/null || { echo "bench_quality: 'bible' missing: scripts/install-deps.sh" >&2; exit 2; }
	bible -f Gen1:1-Rev22:21 >"$OUT/corpus.txt"
fi
# Ours tokenizes as the main job does: the config's vocab-size (256: bytes, more:
# BPE learned from the training part). Torch reads the text as bytes. Two parts, the
# last 5% held out (the main job's validation part; its test part is training text
# here, and nothing in this script scores it).
read -r -a tokenizer <<<"$(scripts/tokenizer-args.sh "$CONFIG")"
"$BUILD_DIR/data/retnet-prep" --force "${tokenizer[@]}" --held-out-fraction 0.05 \
	--output-prefix "$OUT/corpus" "$OUT/corpus.txt" | grep -E 'held out|tokenizer'
corpus_bytes=$(stat -c %s "$OUT/corpus.txt")
# source bytes of the held-out shard: header offset 64, uint64 (docs/data-format.md)
held_bytes=$(od -An -t u8 -j 64 -N 8 "$OUT/corpus-valid.bin" | tr -d ' ')

# ---- ours ----------------------------------------------------------------------------
ours_run() { # ours_run LOG ARGS...: retnet-train on RANKS ranks; exit 3 (stopped on time) is fine
	local log=$1 rc=0
	shift
	mpirun -n "$RANKS" --bind-to none -x OMP_NUM_THREADS="$THREADS" "$BUILD_DIR/retnet-train" \
		--config "$CONFIG" --data-path "$OUT/corpus-train.bin" "${OURS_EXTRA[@]}" "$@" \
		>"$log" 2>&1 || rc=$?
	if ((rc != 0 && rc != 3)); then
		cat "$log"
		echo "bench_quality: retnet-train failed (exit status $rc)" >&2
		exit 1
	fi
}

if ((!SKIP_OURS)); then
	if [[ -z ${OURS_ITERS:-} ]]; then
		echo "-- ours: calibration (20 steps) to fit the schedule to $MINUTES minutes"
		ours_run "$OUT/ours/calibration.log" --train-iters 20 --log-interval 10 \
			--lr-warmup-iters 2 --eval-interval 0 --metrics "$OUT/ours/calibration.jsonl"
		cal_tps=$(jget tokens_per_sec "$OUT/ours/calibration.jsonl") # steps 11-20
		tok_per_iter=$(awk '/"iteration":20,/ { match($0, /"tokens":[^,}]*/);
			print substr($0, RSTART + 9, RLENGTH - 9) / 20 }' "$OUT/ours/calibration.jsonl")
		OURS_ITERS=$(awk -v m="$MINUTES" -v t="$cal_tps" -v k="$tok_per_iter" \
			'BEGIN { n = int(0.98 * m * 60 * t / k); print n < 2 ? 2 : n }')
		echo "-- ours: $cal_tps tokens/s, $tok_per_iter tokens/step -> --train-iters $OURS_ITERS"
	fi
	warmup=$(awk -v n="$OURS_ITERS" 'BEGIN { w = int(n / 10); print w < 40 ? (w < 1 ? 1 : w) : 40 }')
	save_every=$(((OURS_ITERS + 5) / 6))
	log_every=$((save_every < 10 ? save_every : 10))
	# The iteration count ends the run; the wall-time stop is a guard against a bad
	# calibration (it counts checkpoint writes, which the curve does not).
	guard=$(awk -v m="$MINUTES" 'BEGIN { print m * 1.1 + 0.5 }')
	echo "-- ours: training, --train-iters $OURS_ITERS --lr-warmup-iters $warmup," \
		"checkpoint every $save_every steps, guard --exit-duration-in-mins $guard"
	machine_load "before ours"
	ours_run "$OUT/ours/train.log" --train-iters "$OURS_ITERS" --lr-warmup-iters "$warmup" \
		--valid-data-path "$OUT/corpus-valid.bin" --eval-interval 0 --log-interval "$log_every" \
		--save "$OUT/ours/checkpoints" --save-interval "$save_every" --keep-last 0 \
		--ckpt-compression-level 0 --exit-duration-in-mins "$guard" \
		--metrics "$OUT/ours/metrics.jsonl"
	grep -E 'stopped at|final held-out|done in' "$OUT/ours/train.log" || true
	echo "-- ours: checkpoint writes took $(awk '/^saved checkpoint/ { s += $(NF - 1) }
		END { printf "%.1f", s }' "$OUT/ours/train.log") s in all (not counted as training time)"
	echo "-- ours: scoring every checkpoint on the held-out text (retnet-eval --mode windows)"
	# Training seconds at iteration IT: the log lines' elapsed_s less the checkpoint
	# writes before them (a line is logged before that iteration's write), linear in
	# between from (0, 0), extrapolated from the last interval past the last line.
	awk 'FILENAME != ARGV[1] && /^saved checkpoint/ {
			f = $3; sub(/.*iter_/, "", f); sub(/[.]h5$/, "", f); w[f + 0] = $(NF - 1); next }
		FILENAME == ARGV[1] { line[FNR] = $0; n = FNR }
		END { for (r = 1; r <= n; r++) { $0 = line[r]; if (!/"elapsed_s"/) continue
			match($0, /"iteration":[^,}]*/); i = substr($0, RSTART + 12, RLENGTH - 12)
			match($0, /"tokens":[^,}]*/); t = substr($0, RSTART + 9, RLENGTH - 9)
			match($0, /"elapsed_s":[^,}]*/); e = substr($0, RSTART + 12, RLENGTH - 12)
			saved = 0; for (k in w) if (k + 0 < i + 0) saved += w[k]
			print i, e - saved, t } }' \
		"$OUT/ours/metrics.jsonl" "$OUT/ours/train.log" >"$OUT/ours/elapsed.dat"
	elapsed_at() {
		awk -v it="$1" 'BEGIN { n = 1; I[1] = 0; E[1] = 0 }
			{ n++; I[n] = $1; E[n] = $2 }
			END { if (n < 2) { print 0; exit }
			      for (k = 2; k < n && I[k] < it; k++) ;
			      a = k - 1; print E[a] + (E[k] - E[a]) * (it - I[a]) / (I[k] - I[a]) }' \
			"$OUT/ours/elapsed.dat"
	}
	tok_per_iter=$(awk 'NR == 1 { print $3 / $1 }' "$OUT/ours/elapsed.dat")
	: >"$OUT/curve-ours.dat"
	for ck in "$OUT"/ours/checkpoints/iter_*.h5; do
		it=$((10#$(basename "$ck" .h5 | sed 's/^iter_//')))
		mpirun -n "$RANKS" --bind-to none -x OMP_NUM_THREADS="$THREADS" "$BUILD_DIR/retnet-eval" \
			--load "$OUT/ours/checkpoints" --iteration "$it" --data "$OUT/corpus-valid.bin" \
			--mode windows --micro-batch-size 8 --output "$OUT/ours/eval-$it.jsonl" \
			>"$OUT/ours/eval-$it.log" 2>&1 || { cat "$OUT/ours/eval-$it.log"; exit 1; }
		awk -v e="$(elapsed_at "$it")" -v b="$(jget bits_per_byte "$OUT/ours/eval-$it.jsonl")" \
			-v it="$it" -v k="$tok_per_iter" 'BEGIN { printf "%.3f %.4f %d %.0f\n", e / 60, b, it, it * k }' \
			>>"$OUT/curve-ours.dat"
	done
	sort -g -o "$OUT/curve-ours.dat" "$OUT/curve-ours.dat"
fi

# ---- torch ---------------------------------------------------------------------------
TORCH_RAN=0
if ((!SKIP_TORCH)); then
	torch_setup
	if ((TORCH_OK)); then
		echo "-- torch: training $MINUTES minutes, held-out score every $EVAL_EVERY_S s of training"
		machine_load "before torch"
		OMP_NUM_THREADS=$((RANKS * THREADS)) torch_run train --corpus "$OUT/corpus.txt" \
			--minutes "$MINUTES" --hidden-size 256 --num-layers 4 --num-heads 4 \
			--ffn-hidden-size 512 --chunk-size 64 --seq-length 512 --batch 8 \
			--lr 2e-3 --min-lr 1e-4 --warmup-frac 0.1 --eval-every-s "$EVAL_EVERY_S" \
			--metrics "$OUT/torch.jsonl" >"$OUT/torch.log" 2>&1 ||
			{ cat "$OUT/torch.log"; exit 1; }
		grep -E '^step .*held-out' "$OUT/torch.log" | tail -n 3
		t_held=$(jget held_out_bytes "$OUT/torch.jsonl")
		if [[ $t_held != "$held_bytes" ]]; then
			echo "bench_quality: the split differs: torch held out $t_held bytes," \
				"retnet-prep $held_bytes" >&2
			exit 1
		fi
		echo "-- split: both hold out the last $held_bytes of $corpus_bytes bytes"
		awk '/"val_bits_per_byte"/ {
			match($0, /"elapsed_s": ?[^,}]*/); e = substr($0, RSTART, RLENGTH); sub(/.*: ?/, "", e)
			match($0, /"val_bits_per_byte": ?[^,}]*/); b = substr($0, RSTART, RLENGTH); sub(/.*: ?/, "", b)
			match($0, /"iteration": ?[^,}]*/); i = substr($0, RSTART, RLENGTH); sub(/.*: ?/, "", i)
			match($0, /"tokens": ?[^,}]*/); t = substr($0, RSTART, RLENGTH); sub(/.*: ?/, "", t)
			if (!seen[i]++) printf "%.3f %.4f %d %d\n", e / 60, b, i, t }' \
			"$OUT/torch.jsonl" >"$OUT/curve-torch.dat"
		TORCH_RAN=1
	fi
fi
machine_load "at end"

# ---- reference: xz -9e on the whole corpus -------------------------------------------
xz_bytes=$(xz -9e -T1 -c "$OUT/corpus.txt" | wc -c)
xz_bpb=$(awk -v x="$xz_bytes" -v n="$corpus_bytes" 'BEGIN { printf "%.4f", 8 * x / n }')

# ---- report --------------------------------------------------------------------------
curve() { # curve NAME FILE
	echo "$1: minutes  held-out-bits/byte  step  tokens"
	awk '{ printf "  %7.2f  %7.4f  %6d  %9d\n", $1, $2, $3, $4 }' "$2"
}
echo
echo "== curves (minutes of training, held-out bits per byte over all $held_bytes held-out bytes)"
[[ -s $OUT/curve-ours.dat ]] && curve ours "$OUT/curve-ours.dat"
((TORCH_RAN)) && curve torch "$OUT/curve-torch.dat"
echo
echo "== result: held-out bits per byte after $MINUTES minutes of training on $(nproc) cores"
if [[ -s $OUT/curve-ours.dat ]]; then
	echo "ours : $(quality_last "$OUT/curve-ours.dat")"
	tail -n 1 "$OUT/curve-ours.dat" | awk -v m="$MINUTES" '$1 < 0.95 * m || $1 > 1.05 * m {
		printf "ours : NOTE: trained %.2f min, not %s: the calibration missed (a busy machine?);" \
		       " rerun on a quiet machine or set OURS_ITERS\n", $1, m }'
fi
if ((TORCH_RAN)); then
	echo "torch: $(quality_last "$OUT/curve-torch.dat")"
elif ((!SKIP_TORCH)); then
	echo "torch: not run (no PyTorch)"
fi
echo "xz -9e, whole corpus ($corpus_bytes bytes -> $xz_bytes): $xz_bpb bits/byte"

# ---- plot ----------------------------------------------------------------------------
plots=$(quality_xz_clause "$xz_bpb")
[[ -s $OUT/curve-ours.dat ]] &&
	plots+=", $(quality_curve_clause "$OUT/curve-ours.dat" "ours (retnet-train, $RANKS x $THREADS threads)" 7)"
((TORCH_RAN)) &&
	plots+=", $(quality_curve_clause "$OUT/curve-torch.dat" "PyTorch 1.13 ($((RANKS * THREADS)) threads)" 5)"
quality_plot "$OUT/quality.png" \
	"held-out bits per byte vs minutes of training, $(nproc) cores (load at end: $(cut -d' ' -f1 /proc/loadavg))" \
	"$plots"
echo "plot: $OUT/quality.png; data: $OUT/curve-*.dat, $OUT/torch.jsonl, $OUT/ours/metrics.jsonl"
# Nothing (null) for a side that did not run.
ours_final=$(quality_final "$OUT/curve-ours.dat")
torch_final=$(quality_final "$OUT/curve-torch.dat")
echo "{\"bench\":\"quality\",\"minutes\":$MINUTES,\"cores\":$(nproc),\"ours_bits_per_byte\":${ours_final:-null},\"torch_bits_per_byte\":${torch_final:-null},\"xz_bits_per_byte\":$xz_bpb,\"held_out_bytes\":$held_bytes,\"corpus_bytes\":$corpus_bytes}" |
	tee "$OUT/summary.json"
