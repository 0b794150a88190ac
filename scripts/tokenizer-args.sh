#!/usr/bin/env bash
# Prints the retnet-prep tokenizer flags that match a retnet-train config: its
# vocab-size 256 (or none) is the byte tokenizer, more is BPE with that vocabulary.
# Usage: scripts/tokenizer-args.sh CONFIG
set -euo pipefail
vocab=$(awk '$1 == "vocab-size" { v = $2 } END { print v ? v : 256 }' "${1:?usage: tokenizer-args.sh CONFIG}")
if ((vocab > 256)); then
	echo "--tokenizer bpe --vocab-size $vocab"
else
	echo "--tokenizer bytes"
fi
