#!/usr/bin/env bash
# Files are created with the user's umask, and retnet opens no network port of its
# own.
#  1. Under umask 027 and 002: the shards of retnet-prep, the checkpoint directory
#     (made with its parents), iter_N.h5 (created by MPI-IO), latest, the metrics
#     file, --save-raw-params and retnet-eval's --output have mode 0666 & ~umask
#     (directories 0777 & ~umask): no hard-coded 0644/0755 overrides the user.
#  2. No retnet executable imports socket, bind, listen, accept or connect: the
#     only sockets of a job are Open MPI's own (its out-of-band and TCP transports;
#     restrict them with --mca oob_tcp_if_include / btl_tcp_if_include).
# Usage: umask_ports.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: umask_ports.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup umask
export OMP_NUM_THREADS=1

mode_is() { # mode_is PATH OCTAL
	local m
	m=$(stat -c %a "$1" 2>/dev/null)
	[[ $m == "$2" ]] || { echo "    $1: mode $m, want $2" >&2; return 1; }
}

head -c 200000 "$CORPUS.txt" >"$T/text.txt"
for u in 027 002; do
	D=$T/u$u
	mkdir "$D"
	(
		umask "$u"
		"$BUILD/data/retnet-prep" --output-prefix "$D/c" "$T/text.txt" >/dev/null &&
			"$MPIEXEC" -n 2 "${MPI_EXTRA[@]}" "$BUILD/retnet-train" --data-path "$D/c-train.bin" \
				--num-layers 2 --hidden-size 32 --num-heads 2 --seq-length 32 --train-iters 2 \
				--save "$D/new/ck" --metrics "$D/m.jsonl" --save-raw-params "$D/raw.bin" \
				>"$D/train.log" 2>&1 &&
			"$BUILD/retnet-eval" --load "$D/new/ck" --data "$D/c-valid.bin" \
				--output "$D/eval.jsonl" >"$D/eval.log" 2>&1
	) || { cat "$D"/*.log >&2; bad "umask $u: prep, train and eval ran"; continue; }
	f=$(printf %o $((0666 & ~8#$u)))
	d=$(printf %o $((0777 & ~8#$u)))
	check "umask $u: shards are $f" eval 'mode_is "$D/c-train.bin" $f && mode_is "$D/c-valid.bin" $f'
	check "umask $u: checkpoint directory and its new parent are $d" \
		eval 'mode_is "$D/new" $d && mode_is "$D/new/ck" $d'
	check "umask $u: iter_0000002.h5 and latest are $f" \
		eval 'mode_is "$D/new/ck/iter_0000002.h5" $f && mode_is "$D/new/ck/latest" $f'
	check "umask $u: metrics, raw parameters and eval output are $f" \
		eval 'mode_is "$D/m.jsonl" $f && mode_is "$D/raw.bin" $f && mode_is "$D/eval.jsonl" $f'
done

for exe in retnet-train retnet-eval retnet-generate data/retnet-prep; do
	imports=$(nm -D --undefined-only "$BUILD/$exe" | awk '{print $2}' | sed 's/@.*//' |
		grep -xE 'socket|bind|listen|accept|accept4|connect|getaddrinfo' | tr '\n' ' ')
	check "$exe imports no socket call${imports:+ (it imports: $imports)}" test -z "$imports"
done
finish
