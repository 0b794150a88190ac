/*
 * fuzz: what the fuzz targets of tests/fuzz/ share. Each target defines
 * LLVMFuzzerTestOneInput (and may define LLVMFuzzerInitialize); it is linked either
 * with libFuzzer (clang, -DRETNET_FUZZ=ON: fuzz_<t>) or with driver.c, a plain
 * main() that replays the seed corpus and a fixed number of seeded mutations of it
 * (any compiler: fuzz_<t>_replay, run by CTest in every tree). docs/fuzzing.md.
 *
 * The rule a target enforces: no input, however malformed, may crash, abort (an
 * ENSURE or FATAL reached from input is a bug: bad input is a one-line user error),
 * leak, or trip ASan/UBSan; and what a reader accepts must satisfy the invariants
 * its callers rely on (checked with FUZZ_ASSERT).
 *
 * Does not: choose inputs (libFuzzer or driver.c does), or touch anything outside
 * one private temporary directory per process.
 */
#ifndef RN_FUZZ_H
#define RN_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken invariant of accepted input: print it and abort (a finding). */
#define FUZZ_ASSERT(cond)                                                           \
	do {                                                                        \
		if (!(cond)) {                                                      \
			fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n",       \
				__FILE__, __LINE__, #cond);                         \
			abort();                                                    \
		}                                                                   \
	} while (0)

/* This process's private temporary directory (created on first use, removed at
 * exit): "rn_fuzz.XXXXXX" in $RN_FUZZ_TMPDIR, else /dev/shm, else $TMPDIR or /tmp. */
const char *fuzz_tmpdir(void);
/* Write data to name inside fuzz_tmpdir() (replacing it); returns the full path
 * (a static buffer per call site is not needed: the caller copies if it keeps it). */
const char *fuzz_write_file(const char *name, const void *data, size_t size);

#endif
