#!/usr/bin/env bash
# The PyTorch baseline's own best configuration on this machine: one training step of
# bench-small (bench/torch_retnet.py step, as bench/bench_vs_torch.sh runs it) under
# every BLAS build that Debian installs as a libblas.so.3 alternative (OpenBLAS and
# BLIS, each in its pthread and its OpenMP build) and every threading setting below,
# THREADS cores in all:
#   default     OMP_NUM_THREADS=THREADS (torch's own kernels and, for OpenMP builds,
#               the BLAS share one OpenMP pool)
#   passive     the same with OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep
#               instead of spinning against the BLAS's threads)
#   blas-only   pthread builds only: torch's kernels on 1 thread, the BLAS on THREADS
# Each setting runs ROUNDS times, in turn with the others (a noisy minute slows all
# alike); a run's figure is the median of its STEPS steps after a warm-up, a
# setting's the median of its runs. Prints a table and the fastest setting as the
# TORCH_BLAS / TORCH_ENV words bench/bench_vs_torch.sh takes.
#
# This is the baseline's tuning run: report the comparison from a separate
# bench_vs_torch.sh run with the chosen setting, not from this table.
#
# Usage: bench/bench_torch_configs.sh. Knobs (environment): THREADS (nproc), ROUNDS (1),
# STEPS (2), BENCH_ARGS (extra flags for torch_retnet.py step), OUT
# (out/bench-torch-configs), TORCH_PY. Needs PyTorch (scripts/install-deps.sh
# --with-torch) and the BLAS builds to try (libopenblas0-pthread, libopenblas0-openmp,
# libblis4-pthread, libblis4-openmp: missing ones are skipped and named).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-1}
STEPS=${STEPS:-2}
BENCH_ARGS=${BENCH_ARGS:-}
OUT=${OUT:-out/bench-torch-configs}
# shellcheck source=bench/torch_env.sh
source bench/torch_env.sh
TORCH_BLAS=system torch_setup >/dev/null
if ((!TORCH_OK)); then
	echo "bench_torch_configs: $TORCH_PY cannot import torch; install it with" \
		"scripts/install-deps.sh --with-torch" >&2
	exit 2
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/*.json

arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
names=() blas_dirs=() envs=()
for build in openblas-pthread openblas-openmp blis-pthread blis-openmp; do
	dir=/usr/lib/$arch/$build
	if [[ ! -f $dir/libblas.so.3 ]]; then
		echo "bench_torch_configs: $dir/libblas.so.3 is missing: $build not tried"
		continue
	fi
	# BLIS starts one thread unless told; OpenBLAS takes OMP_NUM_THREADS.
	blas_threads="OPENBLAS_NUM_THREADS=$THREADS BLIS_NUM_THREADS=$THREADS"
	names+=("$build default") blas_dirs+=("$dir")
	envs+=("OMP_NUM_THREADS=$THREADS $blas_threads")
	names+=("$build passive") blas_dirs+=("$dir")
	envs+=("OMP_NUM_THREADS=$THREADS OMP_WAIT_POLICY=PASSIVE $blas_threads")
	if [[ $build == *-pthread ]]; then
		names+=("$build blas-only") blas_dirs+=("$dir")
		envs+=("OMP_NUM_THREADS=1 $blas_threads")
	fi
done

echo "== bench_torch_configs: torch_retnet.py step --config bench-small, $THREADS threads," \
	"${#names[@]} settings x $ROUNDS round(s), median of $STEPS steps after a warm-up"
machine_load "at start"
for ((r = 1; r <= ROUNDS; r++)); do
	for i in "${!names[@]}"; do
		log=$OUT/${names[$i]// /-}-$r.log
		# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
		TORCH_LIBDIR=${blas_dirs[$i]} TORCH_ENV=${envs[$i]} \
			torch_run step --config bench-small --steps "$STEPS" $BENCH_ARGS >"$log" 2>&1 ||
			{ cat "$log"; exit 1; }
		grep '^{' "$log" | tail -n 1 >"$log.json"
		printf '  round %d %-26s %7.1f tokens/s  ceiling %6.1f GFLOP/s  (%s)\n' "$r" \
			"${names[$i]}" "$(jget tokens_per_sec_median "$log.json")" \
			"$(jget ceiling_gflops "$log.json")" "$(jget blas "$log.json" | cut -d, -f1)"
	done
done
machine_load "at end"

echo
echo "| BLAS, threading | environment | tokens/s (median) | MFU of its torch.mm ceiling | ceiling GFLOP/s |"
echo "|---|---|---|---|---|"
best_tps=0 best=0
for i in "${!names[@]}"; do
	pattern=$OUT/${names[$i]// /-}
	tps=$(for f in "$pattern"-*.log.json; do jget tokens_per_sec_median "$f"; done | median)
	mfu=$(for f in "$pattern"-*.log.json; do jget mfu_median "$f"; done | median)
	ceil=$(for f in "$pattern"-*.log.json; do jget ceiling_gflops "$f"; done | median)
	printf '| %s | `%s` | %.1f | %.1f%% | %.1f |\n' "${names[$i]}" "${envs[$i]}" "$tps" \
		"$(awk -v m="$mfu" 'BEGIN { print 100 * m }')" "$ceil"
	if awk -v a="$tps" -v b="$best_tps" 'BEGIN { exit !(a > b) }'; then
		best_tps=$tps best=$i
	fi
done
echo
echo "fastest: ${names[$best]}, $best_tps tokens/s; to compare with it:"
echo "  TORCH_BLAS=${blas_dirs[$best]} TORCH_ENV=\"${envs[$best]}\" bench/bench_vs_torch.sh"
