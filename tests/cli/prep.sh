#!/usr/bin/env bash
# retnet-prep from the outside: plain and gzip inputs, several files and a
# directory give identical shards; the split (train, validation, test by weights,
# or a held-out fraction, or held-out files) is cut at line starts exactly as the
# rule says, the parts are disjoint and together the text; outputs are never
# overwritten without --force (and stay byte-identical); the BPE table is learned
# from exactly the training part, the same however its bytes were passed; every bad
# input is one line "retnet: error: <file>: ..." with exit status 2 and nothing
# written. Usage: prep.sh path/to/retnet-prep. Ends with "N passed, N failed".
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
	for s in train valid test; do
		check "$p-$s.bin identical to plain-$s.bin" cmp -s "$T/plain-$s.bin" "$T/$p-$s.bin"
	done
done

# --- the split rule: sizes from the end, each boundary moved to a line start ---
total=$(stat -c %s "$T/all.txt")
# cut_at TARGET: the first line start at or after TARGET (before the end), else TARGET
cut_at() {
	awk -v t="$1" -v total="$total" 'BEGIN { pos = 0 }
		{ if (pos >= t && pos < total && !done) { print pos; done = 1 } pos += length($0) + 1 }
		END { if (!done) print t }' "$T/all.txt"
}
tokens_of() { tail -c +129 "$1" | od -An -v -tu2 | tr -s ' ' '\n' | grep -v '^$' |
	awk '{ printf "%c", $1 }'; }
bytes_of() { tail -c +$(($2 + 1)) "$T/all.txt" | head -c $(($3 - $2)); } # bytes_of FILE FROM TO
s5=$(awk -v b="$total" 'BEGIN { printf "%d", b * 5 / 100 }')
ct=$(cut_at $((total - s5)))
cv=$(cut_at $((total - 2 * s5)))
check "default split 90,5,5: train [0, $cv), valid [$cv, $ct), test [$ct, $total)" \
	grep -q "split 90,5,5: train bytes \[0, $cv) valid bytes \[$cv, $ct) test bytes \[$ct, $total)" "$T/plain.out"
check "train payload is bytes [0, $cv)" cmp -s <(tokens_of "$T/plain-train.bin") <(bytes_of all 0 "$cv")
check "valid payload is bytes [$cv, $ct)" cmp -s <(tokens_of "$T/plain-valid.bin") <(bytes_of all "$cv" "$ct")
check "test payload is bytes [$ct, $total): in neither train nor valid" \
	cmp -s <(tokens_of "$T/plain-test.bin") <(bytes_of all "$ct" "$total")
check "every part starts at a line start" test "$(head -c "$cv" "$T/all.txt" | tail -c 1 | od -An -c | tr -d ' ')" = '\n' -a \
	"$(head -c "$ct" "$T/all.txt" | tail -c 1 | od -An -c | tr -d ' ')" = '\n'
check "summary reports the token counts" grep -q "plain-test.bin: $((total - ct)) tokens" "$T/plain.out"
check "magic in the header" test "$(head -c 7 "$T/plain-train.bin")" = "RNSHARD"
check "tokenizer id in the header" test "$(tail -c +17 "$T/plain-train.bin" | head -c 8)" = "bytes-v1"

# --held-out-fraction: two parts as it always was, the last F cut at a line start
check "--held-out-fraction 0.05" "$PREP" --output-prefix "$T/frac" --held-out-fraction 0.05 \
	"$T/all.txt" >"$T/frac.out"
cut=$(cut_at $((total - s5)))
check "fraction: train = header + 2 bytes x $cut tokens" test "$(stat -c %s "$T/frac-train.bin")" -eq $((128 + 2 * cut))
check "fraction: train payload is the first $cut bytes" cmp -s <(tokens_of "$T/frac-train.bin") <(head -c "$cut" "$T/all.txt")
check "fraction: valid payload is the rest" cmp -s <(tokens_of "$T/frac-valid.bin") <(tail -c +$((cut + 1)) "$T/all.txt")
check "fraction: no test part" test ! -e "$T/frac-test.bin"
check "fraction: summary" grep -q "held out the last .* cut at a line start at byte $cut" "$T/frac.out"

# named parts: cut in the order given; the validation part is the fraction's
check "--split train:90,test:5,valid:5" "$PREP" --output-prefix "$T/named" \
	--split train:90,test:5,valid:5 "$T/all.txt" >/dev/null
check "named: valid is the last 5% (= the fraction's valid shard)" cmp -s "$T/named-valid.bin" "$T/frac-valid.bin"
check "named: test is the 5% before it" cmp -s <(tokens_of "$T/named-test.bin") <(bytes_of all "$cv" "$ct")
check "named: train is the rest" cmp -s <(tokens_of "$T/named-train.bin") <(bytes_of all 0 "$cv")
check "--split 949,50,1 with fractions of a unit (0.949,0.05,0.001) is the same" bash -c "
	'$PREP' --output-prefix '$T/w1' --split 949,50,1 '$T/all.txt' >/dev/null &&
	'$PREP' --output-prefix '$T/w2' --split 0.949,0.05,0.001 '$T/all.txt' >/dev/null &&
	cmp -s '$T/w1-train.bin' '$T/w2-train.bin' && cmp -s '$T/w1-test.bin' '$T/w2-test.bin'"
check "--split 1,0,0: one part, nothing else written" bash -c "
	'$PREP' --output-prefix '$T/one' --split 1,0,0 '$T/all.txt' >/dev/null &&
	test ! -e '$T/one-valid.bin' -a ! -e '$T/one-test.bin' &&
	test \$(stat -c %s '$T/one-train.bin') -eq $((128 + 2 * total))"
printf 'one line of text and no other, its cuts fall inside it' >"$T/oneline.txt"
check "no line start after a boundary: cut at the boundary itself" bash -c "
	'$PREP' --output-prefix '$T/mid' --split 1,1,1 '$T/oneline.txt' >/dev/null &&
	test \$(stat -c %s '$T/mid-test.bin') -eq $((128 + 2 * 18)) -a \$(stat -c %s '$T/mid-valid.bin') -eq $((128 + 2 * 18))"
check "deterministic: the same shards again" bash -c "
	'$PREP' --output-prefix '$T/again' '$T/all.txt' >/dev/null &&
	cmp -s '$T/again-train.bin' '$T/plain-train.bin' && cmp -s '$T/again-valid.bin' '$T/plain-valid.bin' &&
	cmp -s '$T/again-test.bin' '$T/plain-test.bin'"

# --- --held-out FILE: inputs all train, the file held out ---
check "--held-out FILE" "$PREP" --output-prefix "$T/ho" --held-out "$T/c.txt" "$T/a.txt" "$T/b.txt" >/dev/null
check "--held-out: train = a + b" test "$(stat -c %s "$T/ho-train.bin")" -eq $((128 + 2 * $(cat "$T/a.txt" "$T/b.txt" | wc -c)))
check "--held-out: valid = c" cmp -s <(tokens_of "$T/ho-valid.bin") "$T/c.txt"

# --- refuses to overwrite; existing file untouched; --force replaces ---
cp "$T/plain-train.bin" "$T/keep-train.bin"
cp "$T/plain-valid.bin" "$T/keep-valid.bin"
cp "$T/plain-test.bin" "$T/keep-test.bin"
"$PREP" --output-prefix "$T/plain" "$T/c.txt" >/dev/null 2>"$T/err"
rc=$?
check "overwrite refused with exit 2" test $rc -eq 2
check "overwrite refusal is one line naming the file" \
	grep -q "^retnet: error: $T/plain-train.bin: already exists (pass --force to overwrite)$" "$T/err"
check "refused train output byte-identical" cmp -s "$T/plain-train.bin" "$T/keep-train.bin"
check "refused valid output byte-identical" cmp -s "$T/plain-valid.bin" "$T/keep-valid.bin"
check "refused test output byte-identical" cmp -s "$T/plain-test.bin" "$T/keep-test.bin"
rm "$T/plain-train.bin" "$T/plain-valid.bin"
"$PREP" --output-prefix "$T/plain" "$T/c.txt" >/dev/null 2>"$T/err"
check "refused when only the test output exists" test $? -eq 2
check "... and nothing written" test ! -e "$T/plain-train.bin" -a ! -e "$T/plain-valid.bin"
check "... test output byte-identical" cmp -s "$T/plain-test.bin" "$T/keep-test.bin"
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
expect_error "a token shard as text" "$T/frac-train.bin: a token shard, not text" "$T/a.txt" "$T/frac-train.bin"
printf 'ab\n' >"$T/tiny.txt"
expect_error "too small to hold out" "$T/tiny.txt: 3 bytes of text are too few to hold out 0.05" --held-out-fraction 0.05 "$T/tiny.txt"
expect_error "too small for a test part" "$T/tiny.txt: 3 bytes of text are too few for a test part" "$T/tiny.txt"
expect_error "fraction out of range" "--held-out-fraction: 1.5 is out of range" --held-out-fraction 1.5 "$T/a.txt"
expect_error "fraction 0" "--held-out-fraction: 0 must be above 0 and below 1" --held-out-fraction 0 "$T/a.txt"
expect_error "--split and --held-out together" "--split: give one of" --split 9,1,0 --held-out "$T/c.txt" "$T/a.txt"
expect_error "--split of two weights" "--split: '9,1': three comma-separated" --split 9,1 "$T/a.txt"
expect_error "--split, a negative weight" "--split: '9,-1,1': weights are numbers >= 0" --split 9,-1,1 "$T/a.txt"
expect_error "--split, a part named twice" "--split: 'train:9,train:1,test:1': the parts are train, valid and test, each once" \
	--split train:9,train:1,test:1 "$T/a.txt"
expect_error "--split, some parts named" "--split: 'train:9,1,1': name all three parts or none" --split train:9,1,1 "$T/a.txt"
expect_error "--split, all weights 0" "--split: '0,0,0': some part's weight must be above 0" --split 0,0,0 "$T/a.txt"
expect_error "--split, no train part to learn BPE from" "--tokenizer bpe learns from the train part" \
	--split 0,1,1 --tokenizer bpe --vocab-size 300 "$T/a.txt"
printf '%s\nbb\n' "$(printf 'x%.0s' $(seq 1 60))" >"$T/longline.txt"
expect_error "a part that comes out empty (two boundaries on one line start)" \
	"$T/bad: the valid part came out empty" --split 1,1,1 "$T/longline.txt"
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
check "bpe" "$PREP" --output-prefix "$T/bpe" --tokenizer bpe --vocab-size 290 \
	--held-out-fraction 0.05 "$T/all.txt" >"$T/bpe.out"
check "bpe: id and vocab reported" grep -q "tokenizer bpe-v1-290-[0-9a-f]\{16\} (vocab 290)" "$T/bpe.out"
check "bpe: version 2 shards with 34 merges" test "$(od -An -t u4 -j 8 -N 4 "$T/bpe-train.bin" | tr -d ' ')" = 2 -a \
	"$(od -An -t u4 -j 80 -N 4 "$T/bpe-valid.bin" | tr -d ' ')" = 34
check "bpe: fewer tokens than bytes" test "$(od -An -t u8 -j 56 -N 8 "$T/bpe-train.bin" | tr -d ' ')" -lt \
	"$(od -An -t u8 -j 64 -N 8 "$T/bpe-train.bin" | tr -d ' ')"
check "bpe: same source bytes as the byte shards" test \
	"$(od -An -t u8 -j 64 -N 8 "$T/bpe-valid.bin")" = "$(od -An -t u8 -j 64 -N 8 "$T/frac-valid.bin")"
check "bpe from gzip" "$PREP" --output-prefix "$T/bpegz" --tokenizer bpe --vocab-size 290 \
	--held-out-fraction 0.05 "$T/all.txt.gz" >/dev/null
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
# --tokenizer-from a shard: the same ids as the shards made with that tokenizer.
check "--tokenizer-from a BPE shard" "$PREP" --output-prefix "$T/from" --tokenizer-from \
	"$T/bpe-valid.bin" --held-out-fraction 0.05 "$T/all.txt" >"$T/from.out"
check "--tokenizer-from: nothing learned" bash -c "! grep -q learned '$T/from.out'"
for s in train valid; do
	check "--tokenizer-from: from-$s.bin identical to bpe-$s.bin" cmp -s "$T/bpe-$s.bin" "$T/from-$s.bin"
done
check "--tokenizer-from a byte shard" "$PREP" --output-prefix "$T/fromb" --tokenizer-from \
	"$T/plain-test.bin" "$T/all.txt" >/dev/null
for s in train valid test; do
	check "--tokenizer-from bytes: fromb-$s.bin identical to again-$s.bin" cmp -s "$T/again-$s.bin" "$T/fromb-$s.bin"
done
expect_error "--tokenizer-from a missing path" "--tokenizer-from: '$T/nothere': cannot open" \
	--tokenizer-from "$T/nothere" "$T/a.txt"
expect_error "--tokenizer-from a text file" "$T/a.txt: " --tokenizer-from "$T/a.txt" "$T/a.txt"
expect_error "--tokenizer-from with --tokenizer" "--tokenizer-from: the tokenizer comes from there" \
	--tokenizer-from "$T/bpe-valid.bin" --tokenizer bpe --vocab-size 300 "$T/a.txt"
expect_error "--tokenizer-from an empty directory (no checkpoint)" "$T/emptydir/latest: cannot open" \
	--tokenizer-from "$T/emptydir" "$T/a.txt"
expect_error "bpe without --vocab-size" "--vocab-size: required with --tokenizer bpe" --tokenizer bpe "$T/a.txt"
expect_error "--vocab-size for bytes" "--vocab-size: only for --tokenizer bpe" --vocab-size 290 "$T/a.txt"
expect_error "--vocab-size out of range" "--vocab-size: 70000 is out of range \\[257, 65536\\]" \
	--tokenizer bpe --vocab-size 70000 "$T/a.txt"
expect_error "unknown tokenizer" "--tokenizer: 'words' is not bytes or bpe" --tokenizer words "$T/a.txt"
expect_error "too few pairs for the vocabulary" "--vocab-size: the text has only [0-9]* pairs" \
	--tokenizer bpe --vocab-size 5000 "$T/a.txt"

# --- --help ---
"$PREP" --help >"$T/help" 2>&1
check "--help exits 0" test $? -eq 0
check "--help shows usage" grep -q "^usage: retnet-prep --output-prefix PREFIX" "$T/help"

finish
