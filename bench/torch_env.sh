# shellcheck shell=bash disable=SC2034 # TORCH_OK, TORCH_BLAS_USED: read by the sourcing scripts
# Sourced by bench/bench_vs_torch.sh and bench/bench_quality.sh: finds the PyTorch
# the baseline runs on and the BLAS it will use.
#
# Knobs (environment):
#   TORCH_PY    the python with torch (default /usr/bin/python3, Debian's python3-torch;
#               NOT a pyenv or venv python3 that may come first on PATH)
#   TORCH_BLAS  auto (default): if torch would load Debian's reference BLAS (netlib,
#               /usr/lib/<arch>/blas/) and OpenBLAS is installed, run torch on OpenBLAS
#               (LD_LIBRARY_PATH for the torch process only; the baseline is
#               "python3-torch on OpenBLAS"); system: whatever libblas.so.3 the system
#               alternative gives; DIR: a directory holding a libblas.so.3 to use.
#   TORCH_ENV   extra VAR=VALUE words for the torch process only, e.g.
#               TORCH_ENV="OMP_WAIT_POLICY=PASSIVE" (default: none)
#
# After torch_setup: TORCH_OK=1 when torch imports, and torch_run ARGS... runs
# bench/torch_retnet.py ARGS with the chosen BLAS (threads: OMP_NUM_THREADS).
TORCH_PY=${TORCH_PY:-/usr/bin/python3}
TORCH_BLAS=${TORCH_BLAS:-auto}
TORCH_ENV=${TORCH_ENV:-}
TORCH_OK=0
TORCH_LIBDIR=""

_torch_blas_of() { # _torch_blas_of LIBDIR: the BLAS torch maps with that LD_LIBRARY_PATH
	LD_LIBRARY_PATH="$1${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$TORCH_PY" -c '
import sys; sys.path.insert(0, "bench")
import torch_retnet; print(torch_retnet.blas_library())' 2>/dev/null || echo unknown
}

torch_setup() {
	if ! "$TORCH_PY" -c 'import torch' >/dev/null 2>&1; then
		echo "torch: $TORCH_PY cannot import torch: no PyTorch baseline in this run." \
			"Install it with: scripts/install-deps.sh --with-torch" \
			"(Debian's python3-torch, with OpenBLAS)"
		return 0
	fi
	TORCH_OK=1
	local sys_blas arch dir
	sys_blas=$(_torch_blas_of "")
	case $TORCH_BLAS in
	system) ;;
	auto)
		if [[ $sys_blas == */blas/libblas.so* ]]; then
			arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
			for dir in /usr/lib/$arch/openblas-pthread /usr/lib/$arch/openblas-openmp; do
				if [[ -f $dir/libblas.so.3 ]]; then
					TORCH_LIBDIR=$dir
					break
				fi
			done
		fi
		;;
	*) TORCH_LIBDIR=$TORCH_BLAS ;;
	esac
	TORCH_BLAS_USED=$(_torch_blas_of "$TORCH_LIBDIR")
	echo "torch: $("$TORCH_PY" -c 'import torch; print(torch.__version__)') ($TORCH_PY)," \
		"BLAS: ${TORCH_BLAS_USED%%,*}${TORCH_LIBDIR:+ (TORCH_BLAS=$TORCH_BLAS: system default is ${sys_blas%%,*})}"
	if [[ $TORCH_BLAS_USED == */blas/libblas.so* ]]; then
		echo "torch: WARNING: torch runs on the reference (netlib) BLAS, 10x or more slower" \
			"than OpenBLAS; the baseline is meant to run on OpenBLAS:" \
			"apt-get install libopenblas0-pthread (scripts/install-deps.sh --with-torch)"
	fi
	[[ -z $TORCH_ENV ]] || echo "torch: extra environment for torch: $TORCH_ENV"
}

torch_run() {
	# shellcheck disable=SC2086 # TORCH_ENV is a list of VAR=VALUE words
	env LD_LIBRARY_PATH="$TORCH_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" $TORCH_ENV \
		"$TORCH_PY" bench/torch_retnet.py "$@"
}

# jget KEY FILE: KEY's value in the last line of FILE that has it (flat JSON).
jget() {
	awk -v key="$1" '
		{ if (match($0, "\"" key "\": ?[^,}]*")) {
			v = substr($0, RSTART, RLENGTH); sub(/^[^:]*: ?/, "", v); gsub(/"/, "", v); last = v } }
		END { print last }' "$2"
}

# median: the median of the numbers on stdin, one per line.
median() { sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# machine_load: one line with the load average, so a run on a busy machine shows it.
machine_load() {
	echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) ($1)"
}
