#!/usr/bin/env bash
# The MPI benchmark tools run and report sane figures: retnet-bench-membw (memory
# bandwidth per rank, alone and together) and retnet-bench-pingpong (latency and
# bandwidth between two ranks), at tiny sizes; a bad flag or rank count is a one-line
# error.
# Usage: bench_tools.sh BUILD_DIR
set -u
BUILD=${1:?usage: bench_tools.sh BUILD_DIR}
source "$(dirname "$0")/lib.sh"
test_setup bench_tools
export OMP_NUM_THREADS=1
MPI=("$MPIEXEC" --quiet -n 2 "${MPI_EXTRA[@]}")

# positive FILE KEY...: every KEY of the JSON line in FILE is a number > 0
positive() {
	local f=$1 k v
	shift
	for k in "$@"; do
		v=$(json_column "$f" "$k")
		awk -v v="$v" 'BEGIN { exit !(v + 0 > 0) }' || { echo "  $k = '$v'" >&2; return 1; }
	done
}

if "${MPI[@]}" "$BUILD/retnet-bench-membw" --mib 2 --rounds 2 >"$T/membw.out" 2>&1; then
	grep '^{' "$T/membw.out" >"$T/membw.json"
	check "membw: bandwidths above zero" positive "$T/membw.json" together_gbs slowest_over_fastest
	check "membw: the slowest rank's share is at most 1" awk -v v="$(json_column "$T/membw.json" slowest_over_fastest)" \
		'BEGIN { exit !(v <= 1) }'
	check "membw: one figure per rank alone and together" \
		grep -qE '"alone_gbs": \[[0-9.]+, [0-9.]+\], "together_each_gbs": \[[0-9.]+, [0-9.]+\]' "$T/membw.json"
else
	bad "membw ran: $(head -c 2000 "$T/membw.out")"
fi
expect_user_error "membw: bad value" "--mib: 0 is out of range \[1, 65536\]" \
	"${MPI[@]}" "$BUILD/retnet-bench-membw" --mib 0
expect_user_error "membw: unknown flag" "--bogus: unknown flag" \
	"${MPI[@]}" "$BUILD/retnet-bench-membw" --bogus

if "${MPI[@]}" "$BUILD/retnet-bench-pingpong" --rounds 1 --bytes 4096 >"$T/pp.out" 2>&1; then
	grep '^{' "$T/pp.out" >"$T/pp.json"
	check "pingpong: latency and bandwidth above zero" positive "$T/pp.json" latency_us bandwidth_gbs
else
	bad "pingpong ran: $(head -c 2000 "$T/pp.out")"
fi
expect_user_error "pingpong: bad value" "--bytes: 0 is out of range" \
	"${MPI[@]}" "$BUILD/retnet-bench-pingpong" --bytes 0
expect_user_error "pingpong: not 2 ranks" "needs exactly 2 ranks \(mpirun -n 2\), has 3" \
	"$MPIEXEC" --quiet -n 3 "${MPI_EXTRA[@]}" "$BUILD/retnet-bench-pingpong"
finish
