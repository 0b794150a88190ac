#!/usr/bin/env bash
# The bad-input cases of issue 10 that train_errors.sh, prep.sh, eval.sh,
# train_resume.sh, test_data and test_ckpt do not already cover, from the outside:
# each is one line "retnet: error: <flag, file or file:line>: <rule>" and exit
# status 2, with nothing half-written left behind.
#   flags: a float that is not a number or not finite, a word that is not a flag, an
#     integer that overflows, TP not dividing the FFN width; retnet-eval's flags;
#     config lines with a bad number
#   corpora: an empty file, a directory, an unreadable file (as another user when
#     run as root), a shard truncated, a corpus shorter than one window, shards whose
#     tokenizer differs from the checkpoint's (retnet-train --load, retnet-eval)
#   checkpoints: only a half-written iter_N.h5.tmp (retnet-eval refuses, retnet-train
#     starts from the seed), a tensor stored as float64, a tensor of another shape
#     than the configuration gives, configuration sizes that are zero or so large
#     that sizes computed from them would overflow (checked before any use)
# Usage: bad_input.sh BUILD_DIR CORPUS_PREFIX
set -u
BUILD=${1:?usage: bad_input.sh BUILD_DIR CORPUS_PREFIX}
CORPUS=${2:?usage}
source "$(dirname "$0")/lib.sh"
test_setup bad_input
export OMP_NUM_THREADS=1
TRAIN=("$BUILD/retnet-train")
EVAL=("$BUILD/retnet-eval")
DRIVER=$BUILD/tests/ckpt_driver
DATA=(--data-path "$CORPUS-train.bin")
TINY=(--num-layers 2 --hidden-size 32 --num-heads 2 --seq-length 32 --chunk-size 8)

# ---- flags and config files ------------------------------------------------
expect_user_error "float not a number" "--lr: 'fast' is not a finite number" \
	"${TRAIN[@]}" "${DATA[@]}" --lr fast
expect_user_error "float not finite" "--lr: 'inf' is not a finite number" \
	"${TRAIN[@]}" "${DATA[@]}" --lr inf
expect_user_error "float out of range" "--adam-beta2: 1 is out of range" \
	"${TRAIN[@]}" "${DATA[@]}" --adam-beta2 1
expect_user_error "a word that is not a flag" "'extra': expected a flag starting with --" \
	"${TRAIN[@]}" "${DATA[@]}" --lr 0.1 extra
expect_user_error "integer overflow" "--train-iters: '99999999999999999999' is not an integer" \
	"${TRAIN[@]}" "${DATA[@]}" --train-iters 99999999999999999999
expect_user_error "TP does not divide the FFN width" \
	"--tensor-model-parallel-size: 2 does not divide --ffn-hidden-size 129" \
	"$MPIEXEC" --quiet -n 2 "${MPI_EXTRA[@]}" "${TRAIN[@]}" "${DATA[@]}" \
	--tensor-model-parallel-size 2 --ffn-hidden-size 129
printf 'lr = fast\n' >"$T/f.cfg"
expect_user_error "config file, bad float" "$T/f.cfg:1: lr: 'fast' is not a finite number" \
	"${TRAIN[@]}" "${DATA[@]}" --config "$T/f.cfg"
printf '# sizes\n\nhidden-size -3\n' >"$T/n.cfg"
expect_user_error "config file, negative size" "$T/n.cfg:3: hidden-size: -3 is out of range" \
	"${TRAIN[@]}" "${DATA[@]}" --config "$T/n.cfg"
expect_user_error "retnet-eval: unknown flag" "--batch-size: unknown flag" \
	"${EVAL[@]}" --load "$T" --data "$CORPUS-valid.bin" --batch-size 4
expect_user_error "retnet-eval: zero micro-batch" "--micro-batch-size: 0 is out of range" \
	"${EVAL[@]}" --load "$T" --data "$CORPUS-valid.bin" --micro-batch-size 0

# ---- corpora ---------------------------------------------------------------
: >"$T/empty.bin"
expect_user_error "empty training file" "$T/empty.bin: empty file" \
	"${TRAIN[@]}" --data-path "$T/empty.bin"
mkdir "$T/dir"
expect_user_error "a directory as a shard" "$T/dir: not a regular file" \
	"${TRAIN[@]}" --data-path "$T/dir"
head -c 100000 "$CORPUS-train.bin" >"$T/cut.bin"
expect_user_error "a truncated shard" "$T/cut.bin: truncated payload" \
	"${TRAIN[@]}" --data-path "$T/cut.bin"
head -c 400 "$CORPUS.txt" >"$T/short.txt"
"$BUILD/data/retnet-prep" --output-prefix "$T/short" "$T/short.txt" >/dev/null
expect_user_error "corpus shorter than one window" \
	"$T/short-train.bin: corpus of [0-9]+ tokens is shorter than one window of seq_len \+ 1 = 513" \
	"${TRAIN[@]}" --data-path "$T/short-train.bin" --seq-length 512 --chunk-size 64
# Unreadable: chmod 000 stops anyone but root; as root, run as nobody.
cp "$CORPUS-valid.bin" "$T/secret.bin"
chmod 000 "$T/secret.bin"
AS=()
[[ $(id -u) -eq 0 ]] && AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
chmod 755 "$T"
expect_user_error "unreadable shard" "$T/secret.bin: cannot open: Permission denied" \
	"${AS[@]}" "${TRAIN[@]}" --data-path "$T/secret.bin"
chmod 777 "$T/dir"
cp "$T/short.txt" "$T/secret.txt"
chmod 000 "$T/secret.txt"
expect_user_error "retnet-prep: unreadable text" "$T/secret.txt: cannot open: Permission denied" \
	"${AS[@]}" "$BUILD/data/retnet-prep" --output-prefix "$T/dir/x" "$T/secret.txt"
check "... and nothing written" test -z "$(ls "$T/dir")"

# A checkpoint to damage: 2 iterations of the tiny model.
check "tiny model trained to a checkpoint" "${TRAIN[@]}" "${DATA[@]}" "${TINY[@]}" \
	--train-iters 2 --save "$T/ck" >"$T/ck.log" 2>&1
CK=$T/ck/iter_0000002.h5
expect_user_error "retnet-eval: a directory as a corpus" "$T/dir: " \
	"${EVAL[@]}" --load "$T/ck" --data "$T/dir"

# A shard made with another tokenizer: the id in the header changed, its CRC redone
# (gzip's trailer holds the CRC-32 of its input, zlib's crc32 of the header).
cp "$CORPUS-valid.bin" "$T/other.bin"
printf 'other-v1' | dd of="$T/other.bin" bs=1 seek=16 conv=notrunc status=none
head -c 124 "$T/other.bin" | gzip -c | tail -c 8 | head -c 4 |
	dd of="$T/other.bin" bs=1 seek=124 conv=notrunc status=none
expect_user_error "retnet-eval: a shard of another tokenizer" \
	"$T/other.bin: tokenizer \"other-v1\" \(vocab 256\) does not match \"bytes-v1\" \(vocab 256\) of the checkpoint" \
	"${EVAL[@]}" --load "$T/ck" --data "$T/other.bin"
cp -r "$T/ck" "$T/ck-tok"
expect_user_error "retnet-train --load: shards of another tokenizer" \
	"--data-path: tokenizer \"other-v1\" \(vocab 256\) does not match .*iter_0000002.h5" \
	"${TRAIN[@]}" --data-path "$T/other.bin" "${TINY[@]}" --train-iters 3 --load "$T/ck-tok"

# ---- checkpoints -----------------------------------------------------------
mkdir "$T/half"
cp "$CK" "$T/half/iter_0000002.h5.tmp"
expect_user_error "retnet-eval: only a half-written checkpoint" \
	"$T/half/latest: cannot open \(no complete checkpoint\?\)" \
	"${EVAL[@]}" --load "$T/half" --data "$CORPUS-valid.bin"
"${TRAIN[@]}" "${DATA[@]}" "${TINY[@]}" --train-iters 1 --load "$T/half" >"$T/half.log" 2>&1
check "retnet-train: only a half-written checkpoint: starts from the seed" \
	eval '[[ $? -eq 0 ]] && grep -q "no checkpoint in $T/half yet: starting from the seed" "$T/half.log"'

damaged() { # damaged NAME: a copy of the checkpoint directory to damage
	rm -rf "$T/$1"
	cp -r "$T/ck" "$T/$1"
	echo "$T/$1"
}
D=$(damaged f64)
"$DRIVER" retype "$D/iter_0000002.h5" /model/embedding
for prog in train eval; do
	args=("${TRAIN[@]}" "${DATA[@]}" "${TINY[@]}" --train-iters 3 --load "$D")
	[[ $prog == eval ]] && args=("${EVAL[@]}" --load "$D" --data "$CORPUS-valid.bin")
	expect_user_error "retnet-$prog: a tensor stored as float64" \
		"$D/iter_0000002.h5: tensor embedding: /model/embedding is not float32 \(256, 32\), the slice expects float32 \(256, 32\)" \
		"${args[@]}"
done
D=$(damaged shape)
"$DRIVER" set-attr "$D/iter_0000002.h5" /config ffn_hidden_size 96
expect_user_error "retnet-eval: a tensor of another shape than the configuration's" \
	"$D/iter_0000002.h5: tensor layers/0/ffn/(w1|b1): /model/layers/0/ffn/(w1|b1) is float32 \((32, )?64\), the slice expects float32 \((32, )?96\)" \
	"${EVAL[@]}" --load "$D" --data "$CORPUS-valid.bin"
# Sizes read from the file: every one checked against the flags' range and rules
# before anything is divided, multiplied or allocated with it.
for bad in "hidden_size 1099511627776 is out of range \\[2, 1048576\\]" \
	"num_heads 0 is out of range" "chunk_size 0 is out of range" \
	"num_layers -2 is out of range" "vocab_size 4294967296 is out of range" \
	"seq_length 4611686018427387904 is out of range" \
	"ffn_hidden_size 9223372036854775807 is out of range" \
	"num_heads 3 does not divide config/hidden_size 32" \
	"num_heads 16 head width 32 / 16 must be even and >= 4" \
	"chunk_size 5 does not divide config/seq_length 32"; do
	read -r key value rule <<<"$bad"
	D=$(damaged "attr-$key-$value")
	"$DRIVER" set-attr "$D/iter_0000002.h5" /config "$key" "$value"
	[[ $rule == head* ]] && value=
	expect_user_error "retnet-eval: config/$key = ${value:-16}" \
		"$D/iter_0000002.h5: config/$key: ${value:+$value }$rule" \
		"${EVAL[@]}" --load "$D" --data "$CORPUS-valid.bin"
done
D=$(damaged tokvocab)
"$DRIVER" set-attr "$D/iter_0000002.h5" /tokenizer vocab_size 300
expect_user_error "retnet-eval: tokenizer vocabulary other than the model's" \
	"$D/iter_0000002.h5: attribute tokenizer/vocab_size: tokenizer \"bytes-v1\" of 300 ids does not fit config/vocab_size 256" \
	"${EVAL[@]}" --load "$D" --data "$CORPUS-valid.bin"
# ---- shared file systems -------------------------------------------------------
expect_user_error "malformed MPI-IO hints" "RETNET_MPIIO_HINTS: 'cb_nodes' is not key=value" \
	env RETNET_MPIIO_HINTS=cb_nodes "${TRAIN[@]}" "${DATA[@]}" "${TINY[@]}" --train-iters 1 \
	--save "$T/hints-bad"
quietly() { "$@" >/dev/null; }
check "MPI-IO hints, and a file system that refuses fsync on a directory: the save completes" \
	quietly env RETNET_MPIIO_HINTS="cb_nodes=1,romio_cb_write=enable" \
	RETNET_CKPT_TEST_DIR_FSYNC_EINVAL=1 "${TRAIN[@]}" "${DATA[@]}" "${TINY[@]}" \
	--train-iters 2 --save "$T/hints"
check "... and latest names it" test "$(cat "$T/hints/latest" 2>/dev/null)" = 2
finish
