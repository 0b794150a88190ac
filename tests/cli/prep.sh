#!/usr/bin/env bash
# retnet-prep from the outside: plain and gzip inputs give identical shards, the
# split is the last 5% of the bytes cut at a line start, outputs are never
# overwritten without --force (and stay byte-identical), and every bad input is
# one line "retnet: error: <file>: ..." with exit status 2 and nothing written.
# Usage: prep.sh path/to/retnet-prep. Ends with "N passed, N failed".
set -u

PREP=${1:?usage: prep.sh path/to/retnet-prep}
T=$(mktemp -d /tmp/rn_cli_prep.XXXXXX)
trap 'rm -rf "$T"' EXIT
source "$(dirname "$0")/lib.sh"

# expect_error LABEL NAME ARGS...: exit 2, exactly one stderr line, starting with
# "retnet: error: " and naming NAME; no output files written.
expect_error() {
	local label=$1 name=$2
	shift 2
	rm -f "$T"/bad-*
	"$PREP" --output-prefix "$T/bad" "$@" >"$T/out" 2>"$T/err"
	local rc=$? lines
	lines=$(wc -l <"$T/err")
	if [[ $rc -eq 2 && $lines -eq 1 ]] && grep -q "^retnet: error: .*$name" "$T/err" &&
		! ls "$T"/bad-* >/dev/null 2>&1; then
		ok "$label: $(cat "$T/err")"
	else
		bad "$label: exit $rc, $lines stderr lines: $(cat "$T/err"), outputs: $(ls "$T"/bad-* 2>/dev/null)"
	fi
}

# A corpus of 200 numbered lines of varying length, in three pieces.
for i in $(seq 1 200); do
	printf 'Line %d: %s\n' "$i" "$(printf 'abcdefghij%.0s' $(seq 1 $((i % 7 + 1))))"
done >"$T/all.txt"
head -n 70 "$T/all.txt" >"$T/a.txt"
sed -n '71,150p' "$T/all.txt" >"$T/b.txt"
tail -n 50 "$T/all.txt" >"$T/c.txt"
mkdir "$T/dir"
cp "$T/a.txt" "$T/dir/01-a.txt"
gzip -c "$T/b.txt" >"$T/dir/02-b.txt.gz"
cp "$T/c.txt" "$T/dir/03-c.txt"
cp "$T/c.txt" "$T/dir/.hidden"
mkdir "$T/dir/subdir"
gzip -c "$T/all.txt" >"$T/all.txt.gz"

# --- plain, gzip, several files and a directory: identical shards ---
check "plain input" "$PREP" --output-prefix "$T/plain" "$T/all.txt" >"$T/plain.out"
check "gzip input" "$PREP" --output-prefix "$T/gz" "$T/all.txt.gz" >/dev/null
check "three files" "$PREP" --output-prefix "$T/three" "$T/a.txt" "$T/b.txt" "$T/c.txt" >/dev/null
check "directory (sorted, mixed gzip, dotfile and subdir skipped)" \
	"$PREP" --output-prefix "$T/dir" "$T/dir" >/dev/null
for p in gz three dir; do
	for s in train valid; do
		check "$p-$s.bin identical to plain-$s.bin" cmp -s "$T/plain-$s.bin" "$T/$p-$s.bin"
	done
done

# --- the split: last 5% of the bytes, cut at a line start; payload = the bytes ---
total=$(stat -c %s "$T/all.txt")
c0=$((total - total * 5 / 100))
cut=$(awk -v c0="$c0" '{ if (pos >= c0 && !done) { print pos; done = 1 } pos += length($0) + 1 }' "$T/all.txt")
train_size=$(stat -c %s "$T/plain-train.bin")
valid_size=$(stat -c %s "$T/plain-valid.bin")
check "train shard = header + 2 bytes x $cut tokens" test "$train_size" -eq $((128 + 2 * cut))
check "valid shard = header + 2 bytes x $((total - cut)) tokens" \
	test "$valid_size" -eq $((128 + 2 * (total - cut)))
tokens_of() { tail -c +129 "$1" | od -An -v -tu2 | tr -s ' ' '\n' | grep -v '^$' |
	awk '{ printf "%c", $1 }'; }
check "train payload is the first $cut bytes" cmp -s <(tokens_of "$T/plain-train.bin") <(head -c "$cut" "$T/all.txt")
check "valid payload is the rest" cmp -s <(tokens_of "$T/plain-valid.bin") <(tail -c +$((cut + 1)) "$T/all.txt")
check "summary reports the token counts" grep -q "plain-valid.bin: $((total - cut)) tokens" "$T/plain.out"
check "magic in the header" test "$(head -c 7 "$T/plain-train.bin")" = "RNSHARD"
check "tokenizer id in the header" test "$(tail -c +17 "$T/plain-train.bin" | head -c 8)" = "bytes-v1"

# --- --held-out FILE: inputs all train, the file held out ---
check "--held-out FILE" "$PREP" --output-prefix "$T/ho" --held-out "$T/c.txt" "$T/a.txt" "$T/b.txt" >/dev/null
check "--held-out: train = a + b" test "$(stat -c %s "$T/ho-train.bin")" -eq $((128 + 2 * $(cat "$T/a.txt" "$T/b.txt" | wc -c)))
check "--held-out: valid = c" cmp -s <(tokens_of "$T/ho-valid.bin") "$T/c.txt"

# --- refuses to overwrite; existing file untouched; --force replaces ---
cp "$T/plain-train.bin" "$T/keep-train.bin"
cp "$T/plain-valid.bin" "$T/keep-valid.bin"
"$PREP" --output-prefix "$T/plain" "$T/c.txt" >/dev/null 2>"$T/err"
rc=$?
check "overwrite refused with exit 2" test $rc -eq 2
check "overwrite refusal is one line naming the file" \
	grep -q "^retnet: error: $T/plain-train.bin: already exists (pass --force to overwrite)$" "$T/err"
check "refused train output byte-identical" cmp -s "$T/plain-train.bin" "$T/keep-train.bin"
check "refused valid output byte-identical" cmp -s "$T/plain-valid.bin" "$T/keep-valid.bin"
rm "$T/plain-train.bin"
"$PREP" --output-prefix "$T/plain" "$T/c.txt" >/dev/null 2>"$T/err"
check "refused when only the valid output exists" test $? -eq 2
check "... and nothing written" test ! -e "$T/plain-train.bin"
check "... valid output byte-identical" cmp -s "$T/plain-valid.bin" "$T/keep-valid.bin"
check "--force overwrites" "$PREP" --force --output-prefix "$T/plain" "$T/c.txt" >/dev/null
check "--force output differs from the old one" test "$(stat -c %s "$T/plain-valid.bin")" -ne "$(stat -c %s "$T/keep-valid.bin")"
check "no temporary files left" test -z "$(find "$T" -name '*.tmp.*')"

# --- bad inputs: one line naming the file, exit 2, nothing written ---
: >"$T/empty.txt"
gzip -c "$T/empty.txt" >"$T/empty.gz"
printf '\037\213\010\000garbage, not deflate data at all\n' >"$T/invalid.gz"
head -c 100 "$T/all.txt.gz" >"$T/truncated.gz"
mkdir "$T/emptydir" "$T/onlysub" "$T/onlysub/x"
expect_error "missing file" "$T/missing.txt: cannot open: No such file or directory" "$T/a.txt" "$T/missing.txt"
expect_error "empty file" "$T/empty.txt: empty file" "$T/a.txt" "$T/empty.txt"
expect_error "empty gzip" "$T/empty.gz: empty file" "$T/empty.gz"
expect_error "invalid gzip" "$T/invalid.gz: invalid gzip data" "$T/a.txt" "$T/invalid.gz"
expect_error "truncated gzip" "$T/truncated.gz: truncated gzip data" "$T/truncated.gz"
expect_error "empty directory" "$T/emptydir: directory has no regular files" "$T/emptydir"
expect_error "directory with only a subdirectory" "$T/onlysub: directory has no regular files" "$T/onlysub"
expect_error "bad --held-out file" "$T/nothere: cannot open" --held-out "$T/nothere" "$T/a.txt"
expect_error "not a regular file" "/dev/null: not a regular file" /dev/null
printf 'ab\n' >"$T/tiny.txt"
expect_error "too small to hold out" "$T/tiny.txt: 3 bytes of text are too few" "$T/tiny.txt"
expect_error "fraction out of range" "--held-out-fraction: \"1.5\" must be" --held-out-fraction 1.5 "$T/a.txt"
expect_error "fraction and --held-out together" "--held-out-fraction: give either" \
	--held-out-fraction 0.1 --held-out "$T/c.txt" "$T/a.txt"
expect_error "unknown flag" "--bogus: unknown flag" --bogus "$T/a.txt"
expect_error "no input" "INPUT: at least one input"
"$PREP" "$T/a.txt" >/dev/null 2>"$T/err"
check "missing --output-prefix: exit 2" test $? -eq 2
check "missing --output-prefix: one line" grep -q "^retnet: error: --output-prefix: required" "$T/err"
if [[ $(id -u) -ne 0 ]]; then
	cp "$T/a.txt" "$T/unreadable.txt"
	chmod 000 "$T/unreadable.txt"
	expect_error "unreadable file" "$T/unreadable.txt: cannot open: Permission denied" "$T/unreadable.txt"
else
	echo "skip unreadable file (running as root)"
fi
expect_error "missing output directory" "$T/nodir/x-train.bin: cannot create" \
	--output-prefix "$T/nodir/x" "$T/a.txt"

# --- BPE: learned from the training part only, same shards from gzip, bad flags ---
check "bpe" "$PREP" --output-prefix "$T/bpe" --tokenizer bpe --vocab-size 290 "$T/all.txt" \
	>"$T/bpe.out"
check "bpe: id and vocab reported" grep -q "tokenizer bpe-v1-290-[0-9a-f]\{16\} (vocab 290)" "$T/bpe.out"
check "bpe: version 2 shards with 34 merges" test "$(od -An -t u4 -j 8 -N 4 "$T/bpe-train.bin" | tr -d ' ')" = 2 -a \
	"$(od -An -t u4 -j 80 -N 4 "$T/bpe-valid.bin" | tr -d ' ')" = 34
check "bpe: fewer tokens than bytes" test "$(od -An -t u8 -j 56 -N 8 "$T/bpe-train.bin" | tr -d ' ')" -lt \
	"$(od -An -t u8 -j 64 -N 8 "$T/bpe-train.bin" | tr -d ' ')"
check "bpe: same source bytes as the byte shards" test \
	"$(od -An -t u8 -j 64 -N 8 "$T/bpe-valid.bin")" = "$(od -An -t u8 -j 64 -N 8 "$T/keep-valid.bin")"
check "bpe from gzip" "$PREP" --output-prefix "$T/bpegz" --tokenizer bpe --vocab-size 290 "$T/all.txt.gz" >/dev/null
for s in train valid; do
	check "bpegz-$s.bin identical to bpe-$s.bin" cmp -s "$T/bpe-$s.bin" "$T/bpegz-$s.bin"
done
# Held-out text that differs from the training text changes no merge.
sed 's/Line/Zzzz/' "$T/c.txt" >"$T/held.txt"
check "bpe with --held-out" "$PREP" --output-prefix "$T/bpeh1" --tokenizer bpe --vocab-size 290 \
	--held-out "$T/c.txt" "$T/a.txt" "$T/b.txt" >/dev/null
check "bpe with other --held-out" "$PREP" --output-prefix "$T/bpeh2" --tokenizer bpe --vocab-size 290 \
	--held-out "$T/held.txt" "$T/a.txt" "$T/b.txt" >/dev/null
check "the held-out text does not change the merges" cmp -s "$T/bpeh1-train.bin" "$T/bpeh2-train.bin"
# The same training bytes give the same table however they are passed: the
# training part of a fraction cut, that text as one file, and as a directory of
# pieces cut mid-line (one gzip). The table is learned from exactly the training
# part, to the line start where the held-out text begins.
cut=$(od -An -t u8 -j 64 -N 8 "$T/bpe-train.bin" | tr -d ' ')
head -c "$cut" "$T/all.txt" >"$T/bpe-part.txt"
tail -c +$((cut + 1)) "$T/all.txt" >"$T/bpe-rest.txt"
mkdir "$T/bpe-pieces"
split -b 777 -a 3 "$T/bpe-part.txt" "$T/bpe-pieces/p-"
gzip "$T/bpe-pieces/p-aab"
check "bpe, the training part as a file" "$PREP" --output-prefix "$T/bpef" --tokenizer bpe \
	--vocab-size 290 --held-out "$T/bpe-rest.txt" "$T/bpe-part.txt" >/dev/null
check "bpe, the training part as a directory of pieces" "$PREP" --output-prefix "$T/bped" \
	--tokenizer bpe --vocab-size 290 --held-out "$T/bpe-rest.txt" "$T/bpe-pieces" >/dev/null
id_of() { tail -c +17 "$1" | head -c 32 | tr -d '\0'; }
check "the same table from a fraction cut, a file and a directory ($(id_of "$T/bpe-train.bin"))" \
	test "$(id_of "$T/bpe-train.bin")" = "$(id_of "$T/bpef-train.bin")" -a \
	"$(id_of "$T/bpe-train.bin")" = "$(id_of "$T/bped-train.bin")"
for p in bpef bped; do
	for s in train valid; do
		check "$p-$s.bin identical to bpe-$s.bin" cmp -s "$T/bpe-$s.bin" "$T/$p-$s.bin"
	done
done
expect_error "bpe without --vocab-size" "--vocab-size: required with --tokenizer bpe" --tokenizer bpe "$T/a.txt"
expect_error "--vocab-size for bytes" "--vocab-size: only for --tokenizer bpe" --vocab-size 290 "$T/a.txt"
expect_error "--vocab-size out of range" "--vocab-size: \"70000\" must be an integer from 257 to 65536" \
	--tokenizer bpe --vocab-size 70000 "$T/a.txt"
expect_error "unknown tokenizer" "--tokenizer: \"words\" must be bytes or bpe" --tokenizer words "$T/a.txt"
expect_error "too few pairs for the vocabulary" "--vocab-size: the text has only [0-9]* pairs" \
	--tokenizer bpe --vocab-size 5000 "$T/a.txt"

# --- --help ---
"$PREP" --help >"$T/help" 2>&1
check "--help exits 0" test $? -eq 0
check "--help shows usage" grep -q "^usage: retnet-prep --output-prefix PREFIX" "$T/help"

finish
