/*
 * placement: where the ranks run. Every rank reports its host and the CPUs it may
 * use (sched_getaffinity); rank 0 prints one line per node, in the order of the
 * node's first rank:
 *
 *   retnet-train: placement: node n1 ranks 0-3 (CPUs 0-7 | 8-15 | 16-23 | 24-31)
 *
 * so that a job's log says which ranks a lost node held, and whether the binding is
 * the one asked for. A warning follows for a node where a bound rank runs more
 * threads than it has CPUs, or whose ranks are confined to fewer of the node's CPUs
 * than they run threads (e.g. all confined to one task's CPUs); ranks left unbound
 * on purpose (mpirun --bind-to none) may share the node. Knows nothing of RetNet:
 * the caller says how many threads a rank runs.
 */
#ifndef RN_PLACEMENT_H
#define RN_PLACEMENT_H

/* collective: all ranks of MPI_COMM_WORLD */
void placement_report(const char *program, int threads_per_rank);

#endif
