#!/usr/bin/env bash
# Runs one libFuzzer target for a fixed time from the committed seeds; fails on any
# crash, leak, sanitizer report or timeout (libFuzzer exits non-zero and leaves
# the input as WORK/crash-*, leak-*, timeout-*; replay it with `FUZZER FILE`).
# New coverage-increasing inputs go to WORK/corpus, never into the source tree:
# copy the interesting ones to tests/fuzz/corpus/<target>/ by hand.
# Usage: run_fuzzer.sh FUZZER SEED_DIR WORK_DIR SECONDS [libFuzzer flags...]
set -u
FUZZER=${1:?usage: run_fuzzer.sh FUZZER SEED_DIR WORK_DIR SECONDS [flags]}
SEEDS=${2:?usage}
WORK=${3:?usage}
SECONDS_MAX=${4:?usage}
shift 4
mkdir -p "$WORK/corpus"
dict="$SEEDS/../$(basename "$SEEDS").dict"
dict_flag=()
[[ -f $dict ]] && dict_flag=(-dict="$dict")
"$FUZZER" -max_total_time="$SECONDS_MAX" -timeout=20 -rss_limit_mb=4096 -max_len=4096 \
	-print_final_stats=1 -artifact_prefix="$WORK/" "${dict_flag[@]}" "$@" \
	"$WORK/corpus" "$SEEDS" 2>&1
rc=$?
if [[ $rc -eq 0 ]]; then
	echo "1 passed, 0 failed"
else
	echo "$(basename "$FUZZER"): exit status $rc: see the report above and $WORK/" >&2
	echo "0 passed, 1 failed"
fi
exit "$rc"
