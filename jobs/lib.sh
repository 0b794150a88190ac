# What the job scripts share (train.sbatch, eval.sbatch, train-mpirun.sh,
# eval-mpirun.sh, submit.sh source it; it is not a job script itself). Copy the
# jobs/ folder as a whole. Functions are prefixed rn_; none exits except where said.

rn_say() { echo "== $(date '+%T') $*"; }
rn_warn() { echo "== $(date '+%T') warning: $*" >&2; }
rn_die() { # rn_die STATUS MESSAGE: one line on stderr, exit STATUS
	local status=$1
	shift
	echo "== $(date '+%T') error: $*" >&2
	exit "$status"
}

# ENV_SCRIPT: a file sourced before anything is launched, for sites that load MPI,
# oneDNN and HDF5 with environment modules (`module load openmpi hdf5`). Module
# scripts are not written for `set -u`, so it is off while they run.
rn_source_env_script() {
	[[ -z ${ENV_SCRIPT:-} ]] && return 0
	[[ -r $ENV_SCRIPT ]] || rn_die 2 "ENV_SCRIPT '$ENV_SCRIPT' is not a readable file"
	set +u
	# shellcheck disable=SC1090 # the site's file
	source "$ENV_SCRIPT" || rn_die 2 "ENV_SCRIPT '$ENV_SCRIPT' failed (status $?)"
	set -u
	rn_say "sourced ENV_SCRIPT $ENV_SCRIPT"
}

# rn_show_knobs NAME...: the knobs as this run resolved them, one per line.
rn_show_knobs() {
	local k
	for k in "$@"; do
		printf '==   %-18s %s\n' "$k" "${!k-}"
	done
}

# rn_setting KEY ARGS...: the value of --KEY in ARGS (the last one wins, as in
# retnet-train), else of KEY in $CONFIG ("key value" or "key = value"), else "".
rn_setting() {
	local key=$1 v= i
	shift
	local -a a=("$@")
	for ((i = 0; i < ${#a[@]}; i++)); do
		case ${a[i]} in
		"--$key") v=${a[i + 1]-} && i=$((i + 1)) ;;
		"--$key="*) v=${a[i]#*=} ;;
		esac
	done
	if [[ -z $v && -n ${CONFIG:-} && -r ${CONFIG:-} ]]; then
		v=$(awk -v k="$key" '{ sub(/#.*/, ""); sub(/=/, " ") } $1 == k { v = $2 } END { print v }' "$CONFIG")
	fi
	echo "$v"
}

# rn_given KEY ARGS...: is --KEY among ARGS?
rn_given() {
	local key=$1 x
	shift
	for x in "$@"; do
		[[ $x == "--$key" || $x == "--$key="* ]] && return 0
	done
	return 1
}

# rn_fit_micro_batch RANKS TP PP ARGS...: prints the --micro-batch-size to add (or
# nothing) so that the global batch splits over the data-parallel ranks: the
# largest divisor of global / DP not above the configured micro-batch. A micro-batch
# is memory, not the recipe: the global batch (and so the training) stays the same.
# A global batch that DP does not divide is an error (status 2, said on stderr).
rn_fit_micro_batch() {
	local ranks=$1 tp=$2 pp=$3 global micro dp m
	shift 3
	rn_given micro-batch-size "$@" && return 0 # the user's own: the trainer judges it
	((ranks % (tp * pp) == 0)) || return 0      # the trainer says what is wrong
	dp=$((ranks / (tp * pp)))
	global=$(rn_setting global-batch-size "$@")
	micro=$(rn_setting micro-batch-size "$@")
	micro=${micro:-2} # retnet-train's default
	[[ -z $global ]] && return 0 # defaults to micro-batch x DP: always splits
	if ((global % dp != 0)); then
		echo "global batch $global does not split over data-parallel size $dp ($ranks ranks" \
			"/ TP $tp / PP $pp): give --global-batch-size a multiple of $dp, or raise TP or PP" >&2
		return 2
	fi
	m=$micro
	while ((m > 1 && (global / dp) % m != 0)); do m=$((m - 1)); done
	((m != micro)) && echo "$m"
	return 0
}

# ---- the run directory ------------------------------------------------------

rn_latest() { cat "$RUN_DIR/ckpt/latest" 2>/dev/null || echo none; }

# Is DIR inside a git work tree (the repository)? Checkpoints belong on scratch.
rn_in_repository() {
	git -C "$1" rev-parse --is-inside-work-tree >/dev/null 2>&1
}

# rn_lock_take: RUN_DIR/lock (a directory: mkdir is atomic, also on NFS) names the
# job that trains in RUN_DIR. Two jobs in one run directory delete each other's
# temporary checkpoint files and race on `latest`: the second is refused (status 2)
# while the owner is alive. The owner's own requeued run takes it back; a lock whose
# SLURM job is gone, or whose process on this host is, is taken over.
rn_lock_take() {
	local lock=$RUN_DIR/lock owner job host pid alive me
	me="job=${SLURM_JOB_ID:-none} host=$(hostname) pid=$$ since=$(date '+%F_%T')"
	mkdir -p "$RUN_DIR"
	if ! mkdir "$lock" 2>/dev/null; then
		owner=$(cat "$lock/owner" 2>/dev/null)
		job=$(sed -n 's/.*job=\([^ ]*\).*/\1/p' <<<"$owner")
		host=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$owner")
		pid=$(sed -n 's/.*pid=\([^ ]*\).*/\1/p' <<<"$owner")
		alive=unknown
		if [[ -n ${SLURM_JOB_ID:-} && $job == "$SLURM_JOB_ID" ]]; then
			alive=no # this job, before its requeue
		elif [[ -n $job && $job != none ]] && command -v squeue >/dev/null; then
			[[ -n $(squeue -h -j "$job" -o %i 2>/dev/null) ]] && alive=yes || alive=no
		elif [[ $host == "$(hostname)" && -n $pid ]]; then
			kill -0 "$pid" 2>/dev/null && alive=yes || alive=no
		fi
		if [[ $alive != no ]]; then
			echo "== $(date '+%T') error: RUN_DIR $RUN_DIR is in use (${owner:-owner unknown})." \
				"Two jobs in one run directory delete each other's temporary checkpoint" \
				"files and race on latest: wait for it (sbatch --dependency=afterany:$job)" \
				"or use another RUN_DIR; if that run is gone, remove $lock" >&2
			return 2
		fi
		[[ $job != "${SLURM_JOB_ID:-}" || $job == none ]] &&
			rn_say "taking over the lock of a run that is gone (${owner:-owner unknown})"
	fi
	echo "$me" >"$lock/owner"
	RN_LOCKED=1
}

rn_lock_release() {
	[[ ${RN_LOCKED:-0} == 1 ]] && rm -rf "$RUN_DIR/lock"
	RN_LOCKED=0
}

# ---- running the launcher -----------------------------------------------------

# rn_launch LOG CMD...: runs CMD (srun or mpirun) in the background, its output also
# appended to LOG, and waits for it. USR1, TERM (and INT) to this script go on to it
# as USR1: the ranks stop at the next iteration with a checkpoint (mpirun would end
# the job on TERM). The launcher is ended (TERM, then KILL 5 s later) when, for
# STALL_GRACE_SECS (10), it has gone on waiting after
#  - a rank's watchdog ended the job (no progress for --distributed-timeout-minutes)
#    while the launcher waits for a node it cannot reach, or
#  - a rank's transport saw a peer vanish (Open MPI's "peer process has unexpectedly
#    disconnected"): mpirun ends such a job by itself in seconds, srun only once
#    SLURM declares the node down (SlurmdTimeout, 300 s by default). Its TERM makes
#    the ranks left say where they were, which names the lost ones (rn_explain).
# Sets RN_STATUS (the exit status, 5 after the watchdog) and RN_SIGNALLED (1 if a
# stop was forwarded). Warns when a checkpoint save takes more than half of
# RN_LEAD_SECS (if set).
rn_launch() {
	local log=$1 pid seen=0 stalled_at=0 lost=0 secs by_srun=0
	shift
	[[ $1 == srun ]] && by_srun=1
	RN_SIGNALLED=0
	RN_WARNED_SAVE=0
	# tee -i: Ctrl-C at a terminal reaches this script's process group, tee included
	"$@" > >(tee -ai "$log") 2> >(tee -ai "$log" >&2) &
	pid=$!
	RN_LAUNCHER_PID=$pid
	trap 'rn_forward USR1' USR1
	trap 'rn_forward TERM' TERM
	trap 'rn_forward INT' INT
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1 &
		wait $! 2>/dev/null # a trap interrupts this wait at once
		if ((!seen && !lost)); then
			if grep -q 'ending the job (--distributed-timeout-minutes)' "$log"; then
				seen=1
				stalled_at=$SECONDS
			elif grep -q 'peer process has unexpectedly disconnected' "$log"; then
				lost=1
				stalled_at=$SECONDS
			fi
		fi
		if [[ -n ${RN_LEAD_SECS:-} && $RN_WARNED_SAVE == 0 ]]; then
			secs=$(sed -n 's/.*saved checkpoint .* in \([0-9.]*\) s$/\1/p' "$log" | sort -g | tail -n 1)
			if [[ -n $secs ]] && awk -v s="$secs" -v l="$RN_LEAD_SECS" 'BEGIN { exit !(s > l / 2) }'; then
				rn_warn "a checkpoint took $secs s to save, more than half the stop lead" \
					"($RN_LEAD_SECS s): the save at the deadline may not end before the" \
					"time limit; raise STOP_LEAD_MINS"
				RN_WARNED_SAVE=1
			fi
		fi
		if ((seen + lost && SECONDS - stalled_at >= ${STALL_GRACE_SECS:-10})); then
			if ((seen)); then
				rn_warn "the watchdog ended the job $((SECONDS - stalled_at)) s ago but the" \
					"launcher still waits (for a node it cannot reach?): ending it"
			else
				rn_warn "a rank lost a peer $((SECONDS - stalled_at)) s ago and the launcher" \
					"still waits (for a node that died?): ending it"
			fi
			rn_end_launcher "$pid" "$by_srun"
			break
		fi
	done
	wait "$pid"
	RN_STATUS=$?
	trap - USR1 TERM INT
	((seen)) && RN_STATUS=5
	return 0
}

# rn_end_launcher PID BY_SRUN: SIGTERM to the ranks that can still be reached, so that
# they say where they were (and so who is gone), then the launcher. mpirun passes
# TERM on to the ranks itself (then KILL 5 s later if it hangs). srun would SIGKILL
# them ("forcing job termination") and then wait for the lost node: its step is
# signalled with scancel, and srun itself killed 2 s later (the job's end or its
# requeue ends what is left of the step).
rn_end_launcher() {
	local pid=$1 step
	if (($2)) && [[ -n ${SLURM_JOB_ID:-} ]]; then
		step=$(squeue -h -s -j "$SLURM_JOB_ID" -o %i 2>/dev/null |
			sed -n "s/^$SLURM_JOB_ID\.\([0-9]*\)$/\1/p" | sort -n | tail -n 1)
		# in the background: scancel waits for every node of the step, the lost one too
		[[ -n $step ]] && { scancel --signal=TERM "$SLURM_JOB_ID.$step" 2>/dev/null & }
		sleep 2
		kill -KILL "$pid" 2>/dev/null
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.5
	done
	kill -KILL "$pid" 2>/dev/null
}

# shellcheck disable=SC2317 # run by the traps
rn_forward() {
	rn_say "got SIG$1: asking the ranks to checkpoint and stop"
	RN_SIGNALLED=1
	kill -USR1 "$RN_LAUNCHER_PID" 2>/dev/null
}

# rn_explain LOG STATUS: what ended a failed run, from its log. Status 5: the ranks
# the watchdog ended and where they waited. Otherwise the ranks lost, by node: when
# a launcher ends a job because a node died it sends SIGTERM to the ranks left, and
# each says so ("[rank r] SIGTERM while in ..."); the ranks of retnet's placement
# lines ("placement: node H ranks R") that did not are the lost ones. Without those
# lines, the nodes the launcher's own messages name (srun: "Node failure on H";
# Open MPI: "Peer host: H"). Sets RN_LOST_NODES
# (comma-separated) to the nodes found lost.
rn_explain() {
	local log=$1 status=$2 lost nodes node ranks
	RN_LOST_NODES=
	if [[ $status == 5 ]]; then
		rn_say "the watchdog ended the job (exit status 5); where the ranks waited:"
		grep -o '\[rank [0-9]*\] \(no progress for\|the TCP connection from\) .*waiting in [^;]*' "$log" |
			sort -u | sed 's/^/==   /' | head -n 20
		# a closed connection names the peer's address: its host's ranks are lost
		for addr in $(sed -n 's/.* the TCP connection from \([^ ]*\) closed .*/\1/p' "$log" | sort -u); do
			for node in $(getent hosts "$addr" | cut -d' ' -f2- | xargs -n1 | sort -u); do
				ranks=$(sed -n "s/.*placement: node \($node\|${node%%.*}\) ranks \([^ ]*\) .*/\2/p" "$log" | tail -n 1)
				[[ -z $ranks ]] && continue
				rn_say "lost: node $node, ranks $ranks (the ranks left saw its connections close)"
				RN_LOST_NODES+="${RN_LOST_NODES:+,}$node"
				break
			done
		done
		return 0
	fi
	if grep -q '\] SIGTERM while in ' "$log"; then
		lost=$(awk '
			function expand(node, list,   n, i, p, a, b, q) {
				n = split(list, p, ",")
				for (i = 1; i <= n; i++) {
					if (split(p[i], q, "-") == 2) { a = q[1] + 0; b = q[2] + 0 } else a = b = p[i] + 0
					for (; a <= b; a++) { host[a] = node; if (a > max) max = a }
				}
			}
			/placement: node [^ ]+ ranks [0-9,-]+ / {
				for (i = 1; i <= NF; i++) if ($i == "node") { expand($(i + 1), $(i + 3)); break }
			}
			match($0, /\[rank [0-9]+\] SIGTERM while in /) {
				r = substr($0, RSTART + 6); sub(/\].*/, "", r); alive[r + 0] = 1
			}
			END {
				for (r = 0; r <= max; r++) if (r in host) {
					all[host[r]]++
					if (!(r in alive)) { gone[host[r]]++; ranks[host[r]] = ranks[host[r]] (ranks[host[r]] == "" ? "" : ",") r }
				}
				for (h in gone) print h, ranks[h], (gone[h] == all[h] ? "all" : "some")
			}' "$log")
		if [[ -n $lost ]]; then
			while read -r node ranks how; do
				ranks=$(tr ',' '\n' <<<"$ranks" | awk 'NR == 1 { a = b = $1; next }
					$1 == b + 1 { b = $1; next }
					{ printf "%s%s,", a, (a == b ? "" : "-" b); a = b = $1 }
					END { printf "%s%s\n", a, (a == b ? "" : "-" b) }')
				if [[ $how == all ]]; then
					rn_say "lost: node $node, ranks $ranks (no answer to the launcher's" \
						"SIGTERM; every other node's ranks answered)"
					RN_LOST_NODES+="${RN_LOST_NODES:+,}$node"
				else
					rn_say "no answer to the launcher's SIGTERM from ranks $ranks on node $node"
				fi
			done <<<"$lost"
			return 0
		fi
	fi
	nodes=$({
		sed -n 's/.*Node failure on \([^ ]*\).*/\1/p' "$log"
		sed -n 's/^ *Peer host: *\([^ ]*\).*/\1/p' "$log"
	} | sort -u)
	for node in $nodes; do
		ranks=$(sed -n "s/.*placement: node $node ranks \([^ ]*\) .*/\1/p" "$log" | tail -n 1)
		rn_say "lost: node $node, ranks ${ranks:-unknown} (the launcher reports it gone)"
		RN_LOST_NODES+="${RN_LOST_NODES:+,}$node"
	done
}

# ---- SLURM ----------------------------------------------------------------------

# The job's end (seconds since the epoch), or nothing when unlimited or unknown.
rn_job_end() {
	local e
	if [[ ${SLURM_JOB_END_TIME:-} =~ ^[0-9]+$ ]]; then
		echo "$SLURM_JOB_END_TIME"
		return
	fi
	e=$(squeue -h -j "$SLURM_JOB_ID" -o %e 2>/dev/null)
	[[ $e =~ ^[0-9]{4}- ]] && date -d "$e" +%s 2>/dev/null
}

# rn_srun_mpi_check PLUGIN: is PLUGIN among `srun --mpi=list`? Else status 2 and a
# line naming the ones there are.
rn_srun_mpi_check() {
	local list names
	list=$(srun --mpi=list 2>&1)
	# 22.05: "MPI plugin types are..." then one name per indented line, then
	# "specific pmix plugin versions available: pmix_v4"
	names=$(awk '/^[ \t]+[A-Za-z0-9_]+[ \t]*$/ { print $1 }
		/versions available:/ { sub(/.*available:/, ""); gsub(/,/, " "); print }' <<<"$list" | xargs)
	if [[ " $names " != *" $1 "* ]]; then
		echo "== $(date '+%T') error: srun --mpi=$1: this SLURM has no such MPI plugin" \
			"(srun --mpi=list: ${names:-$list}). Set SRUN_MPI to the one your MPI was built" \
			"for (Open MPI 4: pmix), or LAUNCHER=mpirun" >&2
		return 2
	fi
}

# rn_srun_pmix_fence PLUGIN: for a pmix PLUGIN, the PMIx fences of the step as a ring
# (SLURM_PMIX_FENCE=ring) unless the caller chose one. SLURM 22.05's default sends
# fences without data, such as the barrier that ends MPI_Init, along a tree, and
# builds no tree when TreeWidth (default 50) exceeds the step's nodes: every node
# then completes the barrier alone. Ranks on a node whose exchange of addresses
# ended first go on and send, and Open MPI 4.1 crashes (SIGSEGV in MPI_Init) the
# ranks of a node still in it. The ring spans every node.
rn_srun_pmix_fence() {
	[[ $1 == pmix* ]] && export SLURM_PMIX_FENCE=${SLURM_PMIX_FENCE:-ring}
	return 0
}

# The tasks per node of this job when every node runs as many (SLURM_TASKS_PER_NODE
# "4(x2)" or "4", and no more than SLURM_NTASKS); nothing when they differ.
rn_tasks_per_node() {
	local n=${SLURM_NTASKS:-1}
	[[ ${SLURM_TASKS_PER_NODE:-} =~ ^([0-9]+)(\(x[0-9]+\))?$ ]] || return 0
	# the allocation's tasks per node may exceed the tasks (--ntasks=1 with a header's
	# --ntasks-per-node=4): then no node holds that many
	((BASH_REMATCH[1] <= n && n % BASH_REMATCH[1] == 0)) && echo "${BASH_REMATCH[1]}"
}
