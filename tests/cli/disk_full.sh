#!/usr/bin/env bash
# The disk filling up during a checkpoint save of retnet-train: one line
# "retnet: error: DIR/iter_N.h5.tmp: ..." naming the file and the cause, a non-zero
# exit within 30 s, no rank left running, no .tmp file left, `latest` still naming
# the previous checkpoint, which loads: a rerun resumes from it.
#
#  1. A 1 MiB tmpfs (needs root and mount; skipped with a note otherwise), which
#     holds one checkpoint of the tiny model (685 KB) but not two; 4 ranks, TP=2 x
#     PP=2, a save every iteration:
#     a) the save of iteration 2 is refused before HDF5 writes anything ("no room for
#        the checkpoint ... No space left on device"), exit status 2;
#     b) with RETNET_CKPT_TEST_NO_RESERVE (no room check: the disk fills up in the
#        middle of the HDF5 writes), the save is abandoned ("... the save is
#        abandoned, latest is unchanged") and the job ends through MPI_Abort.
#  2. A file-size limit instead (ulimit -f on the ranks only, no privileges needed;
#     retnet ignores SIGXFSZ, so writes fail with EFBIG): 6000 KiB, above Open MPI's
#     4 MiB shared-memory segments, below the 9 MiB checkpoint of a d=192 model on 2
#     ranks; the first checkpoint written without the limit, the save after
#     resuming with it: a) refused ("File too large"), b) abandoned.
# Flags after CORPUS_PREFIX go to every run (--async-save: the failure of a save in
# the background ends the run the same way, when the next save or the end waits).
# Usage: disk_full.sh BUILD_DIR CORPUS_PREFIX [retnet-train flags]
set -u
BUILD=${1:?usage: disk_full.sh BUILD_DIR CORPUS_PREFIX [flags]}
CORPUS=${2:?usage}
shift 2
EXTRA=("$@")
source "$(dirname "$0")/lib.sh"
T=$(mktemp -d /tmp/rn_disk_full.XXXXXX)
MPIEXEC=${MPIEXEC:-mpiexec}
read -r -a MPI_EXTRA <<<"${RETNET_MPIEXEC_EXTRA:---oversubscribe --bind-to none}"
export OMP_NUM_THREADS=1
unset RETNET_CKPT_TEST_PAUSE RETNET_CKPT_TEST_NO_RESERVE
LIMIT=30
JOB=
MOUNTED=

cleanup() {
	[[ -n $JOB ]] && kill -9 $(pgrep -f -- "$T/") "$JOB" 2>/dev/null
	wait 2>/dev/null
	[[ -n $MOUNTED ]] && umount "$MOUNTED"
	rm -rf "$T"
}
trap cleanup EXIT

# job NAME RANKS ENV -- ARGS...: the trainer (ARGS may start with a wrapper), with a
# guard of 90 s; sets RC and SECS, and fails if a rank is left running.
job() {
	local name=$1 ranks=$2 envs=() i t0
	shift 2
	while [[ $1 != -- ]]; do envs+=("$1"); shift; done
	shift
	t0=$EPOCHREALTIME
	env "${envs[@]}" "$MPIEXEC" -n "$ranks" "${MPI_EXTRA[@]}" "$@" \
		--metrics "$T/$name.jsonl" >"$T/$name.out" 2>"$T/$name.err" &
	JOB=$!
	for ((i = 0; i < 90 * 20; i++)); do
		kill -0 "$JOB" 2>/dev/null || break
		sleep 0.05
	done
	kill -0 "$JOB" 2>/dev/null && kill -9 $(pgrep -f -- "$T/$name.jsonl") "$JOB" 2>/dev/null
	wait "$JOB"
	RC=$?
	JOB=
	SECS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
	LEFT=$(pgrep -f -- "$T/$name.jsonl" | wc -l)
}

# expect_failed_save LABEL DIR PATTERN [STATUS]: after `job`: a non-zero exit (STATUS
# if given) within LIMIT s, exactly one "retnet: error" line on stderr matching
# PATTERN, no rank left, latest = 1, no .tmp file. (The ranks the launcher then ends
# may each add a warning saying where they were.)
expect_failed_save() {
	local label=$1 dir=$2 pattern=$3 status=${4:-} name=$5 lines
	lines=$(grep -c '^retnet: error' "$T/$name.err")
	if [[ $RC -ne 0 && (-z $status || $RC -eq $status) && $LEFT -eq 0 && $lines -eq 1 ]] &&
		awk -v s="$SECS" -v l="$LIMIT" 'BEGIN {exit !(s <= l)}' &&
		grep -qE "^retnet: error: $pattern" "$T/$name.err"; then
		ok "$label: exit $RC after $SECS s, no rank left: $(grep '^retnet: error' "$T/$name.err")"
	else
		bad "$label: exit $RC after $SECS s, $LEFT ranks left, $lines retnet error lines: $(head -c 3000 "$T/$name.err")"
	fi
	check "$label: latest still names iteration 1" test "$(cat "$dir/latest" 2>/dev/null)" = 1
	check "$label: no .tmp file left" test -z "$(compgen -G "$dir/*.tmp")"
}

# ---- 1. a full file system ---------------------------------------------------
TINY=(--data-path "$CORPUS-train.bin" --num-layers 2 --hidden-size 32 --num-heads 2
	--seq-length 32 --chunk-size 8 --micro-batch-size 2 --global-batch-size 4 --log-interval 1
	--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2)
mkdir "$T/mnt"
if mount -t tmpfs -o size=1m tmpfs "$T/mnt" 2>"$T/mount.err"; then
	MOUNTED=$T/mnt
	for mode in check nocheck; do
		D=$T/mnt/$mode
		envs=()
		[[ $mode == nocheck ]] && envs=(RETNET_CKPT_TEST_NO_RESERVE=1)
		rm -rf "$T/mnt"/*
		job "tmpfs-$mode" 4 "${envs[@]}" -- "$BUILD/retnet-train" "${TINY[@]}" \
			--train-iters 3 --save "$D" --save-interval 1 "${EXTRA[@]}"
		if [[ $mode == check ]]; then
			expect_failed_save "1 MiB tmpfs, room checked" "$D" \
				"$D/iter_0000002.h5.tmp: no room for the checkpoint \(about [0-9]+ KiB\): No space left on device, [0-9]+ KiB free on its file system" \
				2 "tmpfs-$mode"
		else
			expect_failed_save "1 MiB tmpfs, full in the middle of the writes" "$D" \
				"$D/iter_0000002.h5.tmp: .*(write|flush).*, [0-9]+ bytes free on its file system; the save is abandoned, latest is unchanged" \
				"" "tmpfs-$mode"
		fi
		job "tmpfs-$mode-resume" 4 -- "$BUILD/retnet-train" "${TINY[@]}" --train-iters 2 \
			--load "$D"
		check "... iteration 1 loads: a rerun resumes from it and exits 0" \
			eval '[[ $RC -eq 0 ]] && grep -q "resumed from $D/iter_0000001.h5 (iteration 1" "$T/tmpfs-$mode-resume.out"'
	done
	umount "$T/mnt" && MOUNTED=
else
	echo "skip the full tmpfs (cannot mount one here: $(head -1 "$T/mount.err"))"
fi

# ---- 2. a file-size limit ------------------------------------------------------
WIDE=(--data-path "$CORPUS-train.bin" --num-layers 2 --hidden-size 192 --num-heads 2
	--seq-length 32 --chunk-size 8 --micro-batch-size 2 --log-interval 1)
for mode in check nocheck; do
	D=$T/fsize-$mode
	envs=()
	[[ $mode == nocheck ]] && envs=(RETNET_CKPT_TEST_NO_RESERVE=1)
	job "fsize-$mode-first" 2 -- "$BUILD/retnet-train" "${WIDE[@]}" --train-iters 1 --save "$D" \
		"${EXTRA[@]}"
	check "d=192: iteration 1 saved without a limit ($(stat -c %s "$D/iter_0000001.h5" 2>/dev/null) bytes)" \
		test "$RC" -eq 0 -a "$(cat "$D/latest" 2>/dev/null)" = 1
	job "fsize-$mode" 2 "${envs[@]}" -- bash -c 'ulimit -f 6000 && exec "$@"' limit \
		"$BUILD/retnet-train" "${WIDE[@]}" --train-iters 2 --load "$D" --save "$D" "${EXTRA[@]}"
	if [[ $mode == check ]]; then
		expect_failed_save "ulimit -f 6000, room checked" "$D" \
			"$D/iter_0000002.h5.tmp: no room for the checkpoint \(about [0-9.]+ MiB\): File too large" \
			2 "fsize-$mode"
	else
		expect_failed_save "ulimit -f 6000, limit hit in the middle of the writes" "$D" \
			"$D/iter_0000002.h5.tmp: .*(write|flush).*, file-size limit \(ulimit -f\) 5.9 MiB; the save is abandoned, latest is unchanged" \
			"" "fsize-$mode"
	fi
	job "fsize-$mode-resume" 2 -- "$BUILD/retnet-train" "${WIDE[@]}" --train-iters 2 --load "$D"
	check "... iteration 1 loads: a rerun resumes from it and exits 0" \
		eval '[[ $RC -eq 0 ]] && grep -q "resumed from $D/iter_0000001.h5 (iteration 1" "$T/fsize-$mode-resume.out"'
done
finish
