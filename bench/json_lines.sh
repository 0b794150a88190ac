# shellcheck shell=bash
# Reading the JSON-lines files retnet writes (metrics, retnet-eval's output), for the
# bench scripts that source it. Flat objects, one per line; no JSON parser needed.

# column_of FILE KEY: "iteration value" for each line that has both.
column_of() {
	awk -v key="$2" '{ i = ""; v = ""
		if (match($0, /"iteration":[^,}]*/)) i = substr($0, RSTART + 12, RLENGTH - 12)
		if (match($0, "\"" key "\":[^,}]*")) v = substr($0, RSTART + length(key) + 3, RLENGTH - length(key) - 3)
		if (i != "" && v != "") print i, v }' "$1"
}

# last_value FILE KEY: the value of KEY on the last line that has it.
last_value() {
	awk -v key="$2" '{ if (match($0, "\"" key "\":[^,}]+")) v = substr($0, RSTART + length(key) + 3, RLENGTH - length(key) - 3) }
		END { print v }' "$1"
}
