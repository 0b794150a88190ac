# Shared by the shell tests: counting, checks, and the closing "N passed, N failed".
# Source it, call the checks, end with `finish`.
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1" >&2; }

check() { # check LABEL CMD...: passes when CMD succeeds
	local label=$1
	shift
	if "$@"; then ok "$label"; else bad "$label"; fi
}

# expect_user_error LABEL PATTERN CMD...: exit status 2 and exactly one stderr line
# "retnet: error: ..." matching PATTERN (grep -E).
expect_user_error() {
	local label=$1 pattern=$2 errfile
	shift 2
	errfile=$(mktemp)
	"$@" >/dev/null 2>"$errfile"
	local rc=$? lines
	lines=$(wc -l <"$errfile")
	if [[ $rc -eq 2 && $lines -eq 1 ]] && grep -qE "^retnet: error: .*$pattern" "$errfile"; then
		ok "$label: $(cat "$errfile")"
	else
		bad "$label: exit $rc, $lines stderr lines: $(head -c 2000 "$errfile")"
	fi
	rm -f "$errfile"
}

# json_column FILE KEY: the values of KEY, one per line, from the JSON lines that have it.
json_column() {
	grep -o "\"$2\":[^,}]*" "$1" | cut -d: -f2
}

# close_columns A B RTOL: two files of numbers agree line by line within RTOL relative.
close_columns() {
	paste "$1" "$2" | awk -v rtol="$3" '
		NF != 2 { bad = 1; print "  line " NR ": missing value"; next }
		{ d = $1 - $2; if (d < 0) d = -d; s = $2 < 0 ? -$2 : $2
		  if (d > rtol * s) { bad = 1; printf "  line %d: %s vs %s\n", NR, $1, $2 } }
		END { if (NR == 0) { print "  no values"; exit 1 } exit bad }'
}

finish() {
	echo "$pass passed, $fail failed"
	[[ $fail -eq 0 ]]
}

# train_run NAME RANKS [flags]: retnet-train on RANKS ranks with the caller's COMMON
# flags and these, metrics in $T/NAME.jsonl (a fresh name per run: the file is
# appended to) and its losses in $T/NAME.loss; the log on failure.
train_run() {
	local name=$1 ranks=$2
	shift 2
	"$MPIEXEC" --quiet -n "$ranks" "${MPI_EXTRA[@]}" "$BUILD/retnet-train" "${COMMON[@]}" \
		--metrics "$T/$name.jsonl" "$@" >"$T/$name.log" 2>&1 ||
		{ cat "$T/$name.log" >&2; return 1; }
	json_column "$T/$name.jsonl" loss >"$T/$name.loss"
}

# same_ckpt A B: two checkpoint files hold the same tensors, moments and
# attributes, whatever layout wrote them
same_ckpt() {
	h5diff -r "$1" "$2" /model /model >"$T/h5diff.out" 2>&1 &&
		h5diff "$1" "$2" /optimizer /optimizer >>"$T/h5diff.out" 2>&1 ||
		{ head -20 "$T/h5diff.out" >&2; return 1; }
}

# test_setup NAME: T, a temporary directory removed on exit (/tmp/rn_NAME.*), and
# the MPI launcher: MPIEXEC and its extra flags MPI_EXTRA (RETNET_MPIEXEC_EXTRA).
test_setup() {
	T=$(mktemp -d "/tmp/rn_$1.XXXXXX")
	trap 'rm -rf "$T"' EXIT
	MPIEXEC=${MPIEXEC:-mpiexec}
	read -r -a MPI_EXTRA <<<"${RETNET_MPIEXEC_EXTRA:---oversubscribe --bind-to none}"
}
