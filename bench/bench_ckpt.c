/*
 * bench_ckpt: checkpoint save and load throughput against the disk's own speed.
 *
 *   mpiexec -n N retnet-bench-ckpt [--dir DIR] [--num-layers L] [--hidden-size D]
 *                                  [--ffn-hidden-size F] [--vocab-size V] [--reps R]
 *                                  [--keep] [--config bench-small|tiny|FILE]
 *
 * (the run specification's flags: retnet-bench-ckpt --help lists them)
 *
 * The state is bench-small's (d=512, L=6, f=1024, vocab 256: 19.2M parameters) times
 * three groups (weights, exp_avg, exp_avg_sq): 231 MB, split over the N ranks as the
 * trainer splits it (tensor parallel: columns of Wq/Wk/Wv/Wg/W1, rows of Wo/W2; the
 * vectors, the embedding and the head whole on rank 0). Values are drawn like a
 * real state: weights N(0, 0.02), exp_avg N(0, 1e-3), exp_avg_sq its square.
 *
 * For compression levels 0, 1 and 6: ckpt_save (the whole protocol: tmp, fsyncs,
 * renames, latest) and ckpt_load at the same layout after the file's pages were
 * dropped from the page cache (posix_fadvise DONTNEED), best of R; the file's size
 * and the ratio logical bytes / file bytes. The reference, measured in the same run
 * on the same directory: every rank write(2)s its share of the bytes to its own file
 * and fsyncs it, then reads it back cold. MB = 10^6 bytes. Prints a table and one
 * JSON line per level.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "checkpoints/ckpt.h"
#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "common/rng.h"
#include "parallel/comm.h"
#include "parallel/mpi_setup.h"
#include "trainer/launch.h"

#define MAX_TENSORS 256
#define IO_BLOCK ((size_t)4 << 20)

static int rank, world;

/* The three groups the trainer saves, each rank the owner of its slices. */
struct state {
	struct ckpt_slice s[3][MAX_TENSORS]; /* model, exp_avg, exp_avg_sq */
	struct ckpt_group g[3];
	int n;
	size_t local_floats; /* per group */
};

static void add(struct state *s, const char *name, int ndim, int64_t rows, int64_t cols,
		int split_dim)
{
	struct layout_slice sl;
	float *w, *m, *v;
	int64_t start = 0, len = 0;
	uint64_t stream = rng_stream_of(name);
	size_t n;

	if (split_dim < 0 && rank != 0)
		return;
	if (split_dim >= 0)
		layout_even_range(split_dim == 0 ? rows : cols, world, rank, &start, &len);
	ENSURE(s->n < MAX_TENSORS);
	if (layout_slice_init(&sl, name, ndim, rows, cols, split_dim, start, len))
		FATAL("%s: bad slice (more ranks than columns?)", name);
	n = layout_slice_numel(&sl);
	w = xmalloc(n * sizeof(float));
	m = xmalloc(n * sizeof(float));
	v = xmalloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++) {
		double x = rng_normal(1, stream, i + (uint64_t)rank * n);

		w[i] = (float)(0.02 * rng_normal(2, stream, i + (uint64_t)rank * n));
		m[i] = (float)(1e-3 * x);
		v[i] = (float)(1e-6 * x * x);
	}
	s->s[0][s->n] = (struct ckpt_slice){.slice = sl, .data = w};
	s->s[1][s->n] = (struct ckpt_slice){.slice = sl, .data = m};
	s->s[2][s->n] = (struct ckpt_slice){.slice = sl, .data = v};
	s->local_floats += n;
	s->n++;
}

static void build(struct state *s, int64_t layers, int64_t d, int64_t f, int64_t vocab)
{
	char name[LAYOUT_NAME_MAX];

	memset(s, 0, sizeof(*s));
	add(s, "embedding", 2, vocab, d, -1);
	for (int64_t l = 0; l < layers; l++) {
#define NAME(x) (snprintf(name, sizeof(name), "layers/%ld/%s", (long)l, x), name)
		add(s, NAME("ln1/gain"), 1, d, 1, -1);
		add(s, NAME("ln1/bias"), 1, d, 1, -1);
		add(s, NAME("retention/wq"), 2, d, d, 1);
		add(s, NAME("retention/wk"), 2, d, d, 1);
		add(s, NAME("retention/wv"), 2, d, 2 * d, 1);
		add(s, NAME("retention/wg"), 2, d, 2 * d, 1);
		add(s, NAME("retention/wo"), 2, 2 * d, d, 0);
		add(s, NAME("ln2/gain"), 1, d, 1, -1);
		add(s, NAME("ln2/bias"), 1, d, 1, -1);
		add(s, NAME("ffn/w1"), 2, d, f, 1);
		add(s, NAME("ffn/b1"), 1, f, 1, 0);
		add(s, NAME("ffn/w2"), 2, f, d, 0);
		add(s, NAME("ffn/b2"), 1, d, 1, -1);
#undef NAME
	}
	add(s, "final_ln/gain", 1, d, 1, -1);
	add(s, "final_ln/bias", 1, d, 1, -1);
	add(s, "lm_head", 2, d, vocab, -1);
	for (int g = 0; g < 3; g++) {
		static const char *const names[3] = {"model", "optimizer/exp_avg",
						     "optimizer/exp_avg_sq"};

		snprintf(s->g[g].name, sizeof(s->g[g].name), "%s", names[g]);
		s->g[g].slices = s->s[g];
		s->g[g].n = s->n;
		s->g[g].owner = true;
	}
}

static void drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY);

	if (fd >= 0) {
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

/* Rank 0: the file bytes of each group (model, exp_avg, exp_avg_sq), summed over the
 * datasets of the tensors rank 0 lists (all of them: it holds a part of each). */
static void group_bytes(const char *path, const struct state *s, double out[3])
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	char name[256];

	CHECK_H5(f);
	for (int g = 0; g < 3; g++) {
		out[g] = 0;
		for (int i = 0; i < s->n; i++) {
			hid_t d;

			snprintf(name, sizeof(name), "/%s/%s", s->g[g].name, s->s[g][i].slice.name);
			CHECK_H5(d = H5Dopen2(f, name, H5P_DEFAULT));
			out[g] += (double)H5Dget_storage_size(d);
			CHECK_H5(H5Dclose(d));
		}
	}
	CHECK_H5(H5Fclose(f));
}

/* collective: every rank writes `bytes` to its own file with write(2) and fsyncs;
 * then reads it back cold. Returns the seconds of the slowest rank for each. */
static void raw_io(const char *dir, size_t bytes, double *t_write, double *t_read)
{
	char path[1024 + 64];
	char *buf = xmalloc(IO_BLOCK);
	double t0;
	int fd;

	memset(buf, 0x5a, IO_BLOCK);
	snprintf(path, sizeof(path), "%s/raw.%d", dir, rank);
	comm_barrier(MPI_COMM_WORLD);
	t0 = MPI_Wtime();
	CHECK_SYS(fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666));
	for (size_t done = 0; done < bytes;) {
		size_t n = bytes - done < IO_BLOCK ? bytes - done : IO_BLOCK;
		ssize_t w = write(fd, buf, n);

		if (w <= 0)
			FATAL("%s: write failed", path);
		done += (size_t)w;
	}
	CHECK_SYS(fsync(fd));
	CHECK_SYS(close(fd));
	*t_write = MPI_Wtime() - t0;
	drop_cache(path);
	comm_barrier(MPI_COMM_WORLD);
	t0 = MPI_Wtime();
	CHECK_SYS(fd = open(path, O_RDONLY));
	while (read(fd, buf, IO_BLOCK) > 0)
		;
	CHECK_SYS(close(fd));
	*t_read = MPI_Wtime() - t0;
	comm_allreduce_max_f64(MPI_COMM_WORLD, t_write, 1);
	comm_allreduce_max_f64(MPI_COMM_WORLD, t_read, 1);
	unlink(path);
	free(buf);
}

int main(int argc, char **argv)
{
	struct launch *la = xcalloc(1, sizeof(*la));
	int64_t layers, d, f, vocab;
	int reps, levels[] = {0, 1, 6};
	bool keep;
	char dir[1024] = "", err[CKPT_ERR_LEN], path[1024 + 64];
	struct state s, l;
	double t_wr = 1e30, t_rd = 1e30, logical;
	uint64_t total_floats;

	launch_begin(la, SPEC_BENCH_CKPT, &argc, &argv);
	rank = la->grid.world_rank;
	world = la->grid.world_size;
	layers = la->spec.num_layers;
	d = la->spec.hidden_size;
	f = la->spec.ffn_hidden_size;
	vocab = la->spec.vocab_size;
	reps = (int)la->spec.reps;
	keep = la->spec.keep;
	snprintf(dir, sizeof(dir), "%s", la->spec.dir);
	if (!dir[0] && rank == 0) {
		snprintf(dir, sizeof(dir), "/tmp/rn_bench_ckpt.XXXXXX");
		CHECK_PTR(mkdtemp(dir));
	}
	comm_bcast(MPI_COMM_WORLD, dir, sizeof(dir), 0);

	build(&s, layers, d, f, vocab);
	build(&l, layers, d, f, vocab);
	total_floats = s.local_floats;
	CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &total_floats, 1, MPI_UINT64_T, MPI_SUM,
				MPI_COMM_WORLD));
	logical = (double)total_floats * 3 * sizeof(float);
	log0("state: d=%ld L=%ld f=%ld vocab=%ld: %.2fM parameters x 3 groups = %.1f MB, "
	     "%d ranks, %d tensors on rank 0, in %s\n", (long)d, (long)layers, (long)f,
	     (long)vocab, total_floats / 1e6, logical / 1e6, world, s.n, dir);
	for (int r = 0; r < reps; r++) {
		double w, rd;

		raw_io(dir, s.local_floats * 3 * sizeof(float), &w, &rd);
		t_wr = w < t_wr ? w : t_wr;
		t_rd = rd < t_rd ? rd : t_rd;
	}
	log0("raw write(2)+fsync, file per rank: %.0f MB/s; cold read: %.0f MB/s\n",
	     logical / t_wr / 1e6, logical / t_rd / 1e6);
	log0("%-6s %10s %10s %8s %10s %10s %9s %9s\n", "level", "save MB/s", "load MB/s",
	     "ratio", "file MB", "save s", "vs raw", "cost s");

	double save0 = 0, gb[3] = {1, 1, 1};

	for (size_t k = 0; k < sizeof(levels) / sizeof(levels[0]); k++) {
		struct ckpt_options opt = {levels[k], 0};
		double best_save = 1e30, best_load = 1e30;
		struct stat st = {0};

		/* what the loads must fill in, so the comparison below means something */
		for (int g = 0; g < 3; g++)
			for (int i = 0; i < l.n; i++)
				memset(l.s[g][i].data, 0,
				       layout_slice_numel(&l.s[g][i].slice) * sizeof(float));
		for (int r = 0; r < reps; r++) {
			double t0;

			comm_barrier(MPI_COMM_WORLD);
			t0 = MPI_Wtime();
			if (ckpt_save(dir, levels[k], s.g, 3, NULL, 0, &opt, MPI_COMM_WORLD, err,
				      sizeof(err)))
				FATAL("%s", err);
			t0 = MPI_Wtime() - t0;
			comm_allreduce_max_f64(MPI_COMM_WORLD, &t0, 1);
			best_save = t0 < best_save ? t0 : best_save;
			ckpt_path(path, sizeof(path), dir, levels[k]);
			if (rank == 0)
				drop_cache(path);
			comm_barrier(MPI_COMM_WORLD);
			t0 = MPI_Wtime();
			if (ckpt_load(dir, levels[k], l.g, 3, NULL, 0, MPI_COMM_WORLD, err,
				      sizeof(err)))
				FATAL("%s", err);
			t0 = MPI_Wtime() - t0;
			comm_allreduce_max_f64(MPI_COMM_WORLD, &t0, 1);
			best_load = t0 < best_load ? t0 : best_load;
		}
		for (int g = 0; g < 3; g++)
			for (int i = 0; i < s.n; i++)
				if (memcmp(s.s[g][i].data, l.s[g][i].data,
					   layout_slice_numel(&s.s[g][i].slice) * sizeof(float)))
					FATAL("/%s/%s: loaded values differ", s.g[g].name,
					      s.s[g][i].slice.name);
		if (rank == 0 && stat(path, &st) < 0)
			FATAL("%s: stat failed", path);
		if (rank == 0)
			group_bytes(path, &s, gb);
		if (k == 0)
			save0 = best_save;
		log0("%-6d %10.0f %10.0f %8.3f %10.1f %10.3f %8.2fx %9.3f\n", levels[k],
		     logical / best_save / 1e6, logical / best_load / 1e6,
		     logical / (double)st.st_size, st.st_size / 1e6, best_save,
		     t_wr / best_save, best_save - save0);
		log0("       ratio by group: model %.3f, exp_avg %.3f, exp_avg_sq %.3f\n",
		     logical / 3 / gb[0], logical / 3 / gb[1], logical / 3 / gb[2]);
		log0("{\"bench\":\"ckpt\",\"ranks\":%d,\"params\":%llu,\"bytes\":%.0f,\"level\":%d,"
		     "\"save_mb_s\":%.1f,\"load_mb_s\":%.1f,\"file_bytes\":%lld,\"ratio\":%.4f,"
		     "\"ratio_model\":%.4f,\"ratio_exp_avg\":%.4f,\"ratio_exp_avg_sq\":%.4f,"
		     "\"raw_write_mb_s\":%.1f,\"raw_read_mb_s\":%.1f}\n", world,
		     (unsigned long long)total_floats, logical, levels[k],
		     logical / best_save / 1e6, logical / best_load / 1e6, (long long)st.st_size,
		     logical / (double)st.st_size, logical / 3 / gb[0], logical / 3 / gb[1],
		     logical / 3 / gb[2], logical / t_wr / 1e6, logical / t_rd / 1e6);
	}
	if (rank == 0 && !keep) {
		for (size_t k = 0; k < sizeof(levels) / sizeof(levels[0]); k++) {
			ckpt_path(path, sizeof(path), dir, levels[k]);
			unlink(path);
		}
		snprintf(path, sizeof(path), "%s/latest", dir);
		unlink(path);
		rmdir(dir);
	}
	launch_end(la);
	free(la);
	return 0;
}
