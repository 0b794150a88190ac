#!/usr/bin/env bash
# Generation with the recurrent form: time per new token after 1k, 8k and 64k
# tokens of context (the prompt, fed token by token), which stays constant, and the
# peak memory, which does too. Uses CKPT_DIR (default: the main job's checkpoints,
# out/main-job/checkpoints) and the KJV text for prompts.
# Usage: bench/bench_generate.sh [BUILD_DIR] [CKPT_DIR]
set -euo pipefail
BUILD=${1:-build}
CKPT=${2:-out/main-job/checkpoints}
cd "$(dirname "$0")/.."
[[ -f $CKPT/latest ]] || { echo "bench_generate: no checkpoint in $CKPT (run scripts/main-job.sh)" >&2; exit 2; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
bible -f Gen1:1-Rev22:21 >"$T/kjv.txt"
echo "| context (tokens) | ms per prompt token | ms per new token | peak RSS (MiB) |"
echo "|---|---|---|---|"
for ctx in 1024 8192 65536; do
	head -c "$ctx" "$T/kjv.txt" >"$T/prompt.txt"
	OMP_NUM_THREADS=1 "$BUILD/retnet-generate" --load "$CKPT" --prompt-file "$T/prompt.txt" \
		--max-new-tokens 256 --timing >/dev/null 2>"$T/timing"
	sed -E 's/.*prompt [0-9]+ tokens, ([0-9.]+) ms\/token; .* ([0-9.]+) ms\/token; peak RSS ([0-9]+) MiB/\1 \2 \3/' "$T/timing" |
		awk -v c="$ctx" '{ printf "| %d | %.3f | %.3f | %d |\n", c, $1, $2, $3 }'
done
