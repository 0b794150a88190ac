#!/usr/bin/env bash
# Crash test of the checkpoint protocol (checkpoints/ckpt.h), on 2 ranks.
#  1. In each phase of a save (RETNET_CKPT_TEST_PAUSE holds rank 0 there: "write" =
#     inside the HDF5 writes, the first tensor of the .tmp file written and the others
#     not, "tmp" = the .tmp file closed, "renamed" = iter_N.h5 in place but latest not
#     yet moved, "latest" = latest moved) SIGKILL every rank: `latest` still names a complete
#     checkpoint that loads with exactly its values (the one before, or the new one
#     once latest moved), and the next save works and removes the leftovers.
#  2. SIGKILL a loop of saves 0.05, 0.1, 0.2 and 0.4 s after its first save completed
#     (so wherever the kill lands, there is a checkpoint to protect): the same checks,
#     and `latest` is never behind a save the driver reported as done.
#  3. The files are plain HDF5: h5ls -r lists the tensors, h5dump prints a whole
#     global tensor with the values the C reader loads. A flipped byte in a chunk is
#     caught by the driver's verify (Fletcher32); h5dump's exit status is printed,
#     not trusted (hpc-notes 2.6: it exits 0 on a checksum failure).
# The ranks are killed by pid (Open MPI puts each in its own process group, and a
# killed mpiexec leaves them running).
# Usage: ckpt_kill.sh CKPT_DRIVER
set -u
DRIVER=${1:?usage: ckpt_kill.sh CKPT_DRIVER}
source "$(dirname "$0")/lib.sh"
T=$(mktemp -d /tmp/rn_ckpt_kill.XXXXXX)
JOB=
LOG=
MPIEXEC=${MPIEXEC:-mpiexec}
read -r -a MPI_EXTRA <<<"${RETNET_MPIEXEC_EXTRA:---oversubscribe --bind-to none}"
export OMP_NUM_THREADS=1
unset RETNET_CKPT_TEST_PAUSE

drv() { # drv NAME ARGS...: the driver on 2 ranks, output in $T/NAME.log
	local log=$T/$1.log
	shift
	"$MPIEXEC" -n 2 "${MPI_EXTRA[@]}" "$DRIVER" "$@" >"$log" 2>&1
	local rc=$?
	[[ $rc -eq 0 ]] || sed 's/^/    /' "$log" >&2
	return $rc
}

launch() { # launch NAME ARGS...: the driver in the background; rank pids in $T/pids
	LOG=$T/$1.log
	shift
	rm -rf "$T/pids"
	mkdir "$T/pids"
	"$MPIEXEC" -n 2 "${MPI_EXTRA[@]}" "$DRIVER" "$@" --pid-dir "$T/pids" >"$LOG" 2>&1 &
	JOB=$!
}

wait_for() { # wait_for PATTERN SECONDS: until the background job's log matches
	local i
	for ((i = 0; i < $2 * 50; i++)); do
		grep -q "$1" "$LOG" && return 0
		sleep 0.02
	done
	return 1
}

running() { # running PID: alive and not a zombie
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [[ $st != Z ]]
}

kill_job() { # SIGKILL every rank at once; once they are dead, mpiexec (which takes
	# ~2 s to notice by itself)
	local pids=() f p i
	for f in "$T"/pids/rank.*; do
		[[ -f $f ]] && pids+=("$(cat "$f")")
	done
	((${#pids[@]})) && kill -9 "${pids[@]}" 2>/dev/null
	for p in "${pids[@]}"; do
		for ((i = 0; i < 500; i++)); do
			running "$p" || break
			sleep 0.01
		done
	done
	kill -9 "$JOB" 2>/dev/null
	wait "$JOB" 2>/dev/null
	JOB=
}

cleanup() {
	[[ -n $JOB ]] && kill_job
	rm -rf "$T"
}
trap cleanup EXIT

no_tmp() { ! compgen -G "$1/*.tmp" >/dev/null; }

# ---- 1. a kill inside each phase --------------------------------------------
for phase in write tmp renamed latest; do
	D=$T/$phase
	RETNET_CKPT_TEST_PAUSE=$phase:2 launch "$phase" save "$D" --start 1 --count 2 --rows 256
	if wait_for "ckpt test pause: after $phase (iteration 2)" 60; then
		ok "$phase: iteration 1 saved, iteration 2 paused after $phase"
	else
		bad "$phase: the pause never came: $(cat "$LOG")"
	fi
	kill_job
	case $phase in
	write)
		want=1
		check "write: iteration 2 exists only as a half-written iter_0000002.h5.tmp" \
			test -f "$D/iter_0000002.h5.tmp" -a ! -e "$D/iter_0000002.h5"
		;;
	tmp)
		want=1
		check "tmp: iteration 2 exists only as iter_0000002.h5.tmp" \
			test -f "$D/iter_0000002.h5.tmp" -a ! -e "$D/iter_0000002.h5"
		;;
	renamed)
		want=1
		check "renamed: iter_0000002.h5 in place, latest not yet moved" \
			test -f "$D/iter_0000002.h5"
		;;
	latest) want=2 ;;
	esac
	check "$phase: killed; latest = $want" test "$(cat "$D/latest")" = "$want"
	check "$phase: latest loads with its values, every complete file verifies" \
		drv "$phase-verify" verify "$D"
	check "$phase: the next save works" drv "$phase-3" save "$D" --start 3 --rows 256 --keep 2
	check "$phase: it removed the .tmp leftovers, latest = 3" \
		eval 'no_tmp "$D" && test "$(cat "$D/latest")" = 3'
done

# ---- 2. kills at arbitrary moments of a loop of saves --------------------------
for t in 0.05 0.1 0.2 0.4; do
	D=$T/timed-$t
	launch "timed-$t" save "$D" --start 1 --count 0 --keep 2 --rows 512
	wait_for "driver: saved 1" 60 || bad "timed $t: no first save: $(cat "$LOG")"
	sleep "$t"
	kill_job
	done_it=$(grep -o 'driver: saved [0-9]*' "$LOG" | tail -1 | grep -o '[0-9]*$')
	drv "timed-$t-verify" verify "$D"
	rc=$?
	latest=$(cat "$D/latest" 2>/dev/null || echo none)
	if [[ $rc -eq 0 && $latest -ge ${done_it:-0} ]]; then
		ok "killed ${t}s after the first save (last reported done: $done_it): latest =\
 $latest loads with its values, $(grep -o '[0-9]* complete' "$T/timed-$t-verify.log")\
 files verify, $(compgen -G "$D/*.tmp" | wc -l) .tmp left"
	else
		bad "killed after ${t}s: verify exit $rc, latest $latest, last reported ${done_it:-none}"
	fi
done

# ---- 3. standard tools -----------------------------------------------------
F=$T/latest/iter_0000003.h5
h5ls -r "$F" >"$T/h5ls.txt" 2>&1
check "h5ls -r lists /model/layers/0/w as a 256x256 dataset" \
	grep -qE '^/model/layers/0/w +Dataset \{256, 256\}' "$T/h5ls.txt"
check "h5ls -r lists /optimizer/exp_avg_sq/small (3x5) and /optimizer/exp_avg/layers/0/b" \
	eval 'grep -qE "^/optimizer/exp_avg_sq/small +Dataset \{3, 5\}" "$T/h5ls.txt" &&
	      grep -qE "^/optimizer/exp_avg/layers/0/b +Dataset \{256\}" "$T/h5ls.txt"'
# h5dump prints "(i,j): v, v, ..." lines inside DATA { }: one value per line.
h5values() {
	h5dump -m %.9g -d "$2" "$1" | awk '/DATA \{/ {on = 1; next} on && /^ *\}/ {on = 0}
		on { sub(/^ *\([0-9,]*\): */, ""); n = split($0, v, ","); for (i = 1; i <= n; i++)
		     if (v[i] ~ /[0-9]/) { gsub(/ /, "", v[i]); print v[i] } }'
}
h5values "$F" /model/layers/1/w >"$T/dump_w.txt"
check "h5dump -d /model/layers/1/w prints all 65536 values of the global tensor" \
	test "$(wc -l <"$T/dump_w.txt")" -eq 65536
drv dump-w dump "$T/latest" layers/1/w "$T/load_w.txt"
check "h5dump's values are bit-for-bit those the C reader loads (%.9g)" \
	cmp -s "$T/dump_w.txt" "$T/load_w.txt"
check "h5dump shows the root attribute format = \"retnet-ckpt\"" \
	eval 'h5dump -a /format "$F" | grep -q "\"retnet-ckpt\""'

mkdir "$T/corrupt"
cp "$F" "$T/corrupt/"
echo 3 >"$T/corrupt/latest"
check "flip a byte inside the first chunk of /model/layers/1/w" \
	"$DRIVER" corrupt "$T/corrupt/iter_0000003.h5" /model/layers/1/w
h5dump -d /model/layers/1/w "$T/corrupt/iter_0000003.h5" >/dev/null 2>&1
echo "     (h5dump on the corrupted file exits $?: not a check of integrity)"
drv corrupt-verify verify "$T/corrupt" 2>/dev/null
check "verify refuses the corrupted file, naming the tensor and Fletcher32" \
	grep -q "retnet: error: .*layers/1/w.*Fletcher32" "$T/corrupt-verify.log"
finish
