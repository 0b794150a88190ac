#!/usr/bin/env bash
# CTest fixture: the default corpus (the King James Bible from Debian's bible-kjv,
# exactly as `bible -f Gen1:1-Rev22:21` prints it) as token shards PREFIX-train.bin
# and PREFIX-valid.bin (the last 5% of the bytes held out).
# Usage: make_corpus.sh path/to/retnet-prep PREFIX
set -euo pipefail
PREP=${1:?usage: make_corpus.sh RETNET_PREP PREFIX}
PREFIX=${2:?usage}
if ! command -v bible >/dev/null; then
	echo "make_corpus: the 'bible' command is missing: run scripts/install-deps.sh" >&2
	exit 1
fi
mkdir -p "$(dirname "$PREFIX")"
bible -f Gen1:1-Rev22:21 >"$PREFIX.txt"
"$PREP" --force --held-out-fraction 0.05 --output-prefix "$PREFIX" "$PREFIX.txt"
