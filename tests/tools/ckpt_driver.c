/*
 * ckpt_driver: the driver tests/cli/ckpt_kill.sh kills and then inspects.
 *
 *   ckpt_driver save DIR [--start S] [--count N] [--keep K] [--level L] [--rows R]
 *                        [--pid-dir P]
 *   ckpt_driver verify DIR
 *   ckpt_driver dump DIR NAME OUT
 *   ckpt_driver corrupt FILE DATASET        (no MPI: one process)
 *   ckpt_driver set-attr FILE GROUP NAME V  (no MPI)
 *   ckpt_driver retype FILE DATASET         (no MPI)
 *   ckpt_driver unlink FILE PATH            (no MPI)
 *   ckpt_driver del-attr FILE GROUP NAME    (no MPI)
 *   ckpt_driver set-u16 FILE DATASET I V    (no MPI)
 *
 * save: under mpiexec, saves iterations S, S+1, ... (N of them; 0 = until killed)
 * with keep_last K. Tensors: "layers/0/w" (R x R, rows split over the ranks),
 * "layers/1/w" (R x R, columns split), "layers/0/b" (R, split) and "small" (3 x 5,
 * replicated, written by rank 0); every value is a function of (iteration, tensor,
 * group, index), so a reader knows what each checkpoint must hold. Each rank writes
 * its pid to P/rank.<r>; rank 0 prints "driver: saving" before the first save and
 * "driver: saved <it>" after each.
 * verify: every complete DIR/iter_*.h5 passes ckpt_verify (all checksums) and holds
 * its own iteration, and the checkpoint `latest` names loads at another layout (each
 * rank the whole tensors) with exactly its values. Exit 0; 3 if there is no `latest`
 * yet; 1 on any failure, with one line "retnet: error: ..." on stderr.
 * dump: the latest checkpoint's model tensor NAME into file OUT, one value per line
 * (%.9g).
 * corrupt: flips one byte in the middle of DATASET's first chunk.
 * set-attr: overwrites the 64-bit integer attribute NAME of GROUP with V (a file
 * whose sizes a reader must check before using them).
 * retype: replaces DATASET by a float64 dataset of the same shape and values (a
 * tensor of the wrong dtype).
 * unlink, del-attr: removes a dataset or group, or an attribute (a file written
 * before they existed: a checkpoint without its tokenizer's merge table).
 * set-u16: rewrites a uint16 DATASET with its value at flat index I set to V (a
 * damaged merge table).
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "checkpoints/ckpt.h"
#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "common/rng.h"
#include "parallel/comm.h"
#include "parallel/mpi_setup.h"

#define NT 4 /* tensors */
#define NG 3 /* groups */

static int rank, world;

static float value(int64_t it, int g, const char *name, uint64_t idx)
{
	uint64_t h = (idx + 1) * 0x9E3779B97F4A7C15ull;

	h ^= rng_stream_of(name) + (uint64_t)it * 1315423911ull + (uint64_t)g * 7919u;
	h ^= h >> 29;
	h *= 0xBF58476D1CE4E5B9ull;
	h ^= h >> 32;
	return (float)((int64_t)(h % 2000001) - 1000000) * 1e-6f;
}

static const char *const group_names[NG] = {"model", "optimizer/exp_avg",
					     "optimizer/exp_avg_sq"};

/* This rank's slices of the three groups the trainer saves. */
struct state {
	struct ckpt_slice s[NG][NT];
	struct ckpt_group g[NG];
	int n; /* slices made per group */
};

/* This rank's tensors; whole = every tensor in full (the reading layout). */
static void make_state(struct state *st, int64_t rows, bool whole, int64_t it, bool fill,
		       bool owner)
{
	static const struct {
		const char *name;
		int ndim, dim;
		int64_t cols;
	} t[NT] = {{"layers/0/w", 2, 0, 0}, {"layers/1/w", 2, 1, 0}, {"layers/0/b", 1, 0, 1},
		   {"small", 2, -1, 5}};
	int n = 0;

	/* every field, replica included: a stack bool holding garbage is UB */
	memset(st, 0, sizeof(*st));
	for (int i = 0; i < NT; i++) {
		int64_t r = t[i].name[0] == 's' ? 3 : rows, c = t[i].cols ? t[i].cols : rows;
		int64_t start = 0, len = 0;
		int dim = whole ? -1 : t[i].dim;
		struct layout_slice sl;
		uint64_t s0[2], c0[2];

		if (!whole && dim < 0 && rank != 0)
			continue;
		if (dim >= 0)
			layout_even_range(dim == 0 ? r : c, world, rank, &start, &len);
		if (layout_slice_init(&sl, t[i].name, t[i].ndim, r, c, dim, start, len))
			FATAL("bad slice of %s", t[i].name);
		layout_slice_hyperslab(&sl, s0, c0);
		for (int g = 0; g < NG; g++) {
			float *b = xcalloc(layout_slice_numel(&sl), sizeof(float));

			st->s[g][n].slice = sl;
			st->s[g][n].data = b;
			for (uint64_t k = 0; fill && k < c0[0] * c0[1]; k++)
				b[k] = value(it, g, t[i].name,
					     (s0[0] + k / c0[1]) * (uint64_t)c + s0[1] + k % c0[1]);
		}
		n++;
	}
	st->n = n;
	for (int g = 0; g < NG; g++) {
		snprintf(st->g[g].name, sizeof(st->g[g].name), "%s", group_names[g]);
		st->g[g].slices = st->s[g];
		st->g[g].n = n;
		st->g[g].owner = owner;
	}
}

static void free_state(struct state *st)
{
	for (int g = 0; g < NG; g++)
		for (int i = 0; i < st->n; i++)
			free(st->s[g][i].data);
}

static size_t count_wrong(const struct state *st, int64_t it)
{
	size_t bad = 0;

	for (int g = 0; g < NG; g++)
		for (int i = 0; i < st->g[g].n; i++) {
			const struct ckpt_slice *s = &st->s[g][i];

			for (size_t k = 0; k < layout_slice_numel(&s->slice); k++) {
				float want = value(it, g, s->slice.name, k);

				bad += memcmp(&s->data[k], &want, sizeof(float)) != 0;
			}
		}
	return bad;
}

static int do_save(const char *dir, int argc, char **argv)
{
	int64_t start = 1, count = 1, rows = 512;
	struct ckpt_options opt = {1, 0};
	struct state st;
	char err[CKPT_ERR_LEN], path[1024];
	const char *pid_dir = NULL;
	struct ckpt_attr attr = {.key = "rows", .type = CKPT_I64};

	for (int i = 0; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--start"))
			start = atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "--count"))
			count = atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "--keep"))
			opt.keep_last = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--level"))
			opt.compression_level = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--rows"))
			rows = atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "--pid-dir"))
			pid_dir = argv[i + 1];
	}
	if (pid_dir) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/rank.%d", pid_dir, rank);
		f = fopen(path, "w");
		if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f))
			FATAL("%s: cannot write the pid", path);
	}
	attr.i = rows;
	comm_barrier(MPI_COMM_WORLD);
	log0("driver: saving\n");
	for (int64_t it = start; count == 0 || it < start + count; it++) {
		int rc;

		make_state(&st, rows, false, it, true, true);
		rc = ckpt_save(dir, it, st.g, NG, &attr, 1, &opt, MPI_COMM_WORLD, err, sizeof(err));
		free_state(&st);
		if (rc) {
			if (rank == 0)
				log_error("%s", err);
			return 1;
		}
		log0("driver: saved %" PRId64 "\n", it);
	}
	return 0;
}

/* Rank 0: ckpt_verify every complete checkpoint in dir. */
static int verify_all(const char *dir, int *files)
{
	DIR *d = opendir(dir);
	struct dirent *ent;
	char path[1024], err[CKPT_ERR_LEN], tail[8];
	int rc = 0;
	long long it;

	*files = 0;
	while (d && rc == 0 && (ent = readdir(d))) {
		struct ckpt_verify_info info;

		if (sscanf(ent->d_name, "iter_%lld.h%7s", &it, tail) != 2 || strcmp(tail, "5"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, ent->d_name);
		rc = ckpt_verify(path, &info, err, sizeof(err));
		if (rc)
			log_error("%s", err);
		else if (info.iteration != it)
			rc = -1, log_error("%s: holds iteration %" PRId64, path, info.iteration);
		(*files)++;
	}
	if (d)
		closedir(d);
	return rc;
}

static int do_verify(const char *dir, const char *dump, const char *out)
{
	char err[CKPT_ERR_LEN] = "", path[1024];
	int64_t it = -1;
	int code = 0, files = 0, ng = NG;
	struct state st;
	struct ckpt_attr rows = {.key = "rows", .type = CKPT_I64};

	if (rank == 0) {
		snprintf(path, sizeof(path), "%s/latest", dir);
		if (access(path, F_OK) != 0)
			code = 3;
		else if (ckpt_latest(dir, &it, err, sizeof(err)))
			code = 1, log_error("%s", err);
		if (!dump && code != 1 && verify_all(dir, &files))
			code = 1;
	}
	comm_bcast(MPI_COMM_WORLD, &code, sizeof(code), 0);
	comm_bcast(MPI_COMM_WORLD, &it, sizeof(it), 0);
	if (code == 3 && !dump)
		log0("driver: no latest pointer yet (%d complete files verify)\n", files);
	if (code)
		return code;
	/* the tensors' size is the attribute "rows" */
	if (ckpt_load(dir, it, NULL, 0, &rows, 1, MPI_COMM_WORLD, err, sizeof(err))) {
		if (rank == 0)
			log_error("%s", err);
		return 1;
	}
	/* rank 0 owns the whole tensors: it must cover every dataset of the file */
	make_state(&st, rows.i, true, it, false, rank == 0 && !dump);
	if (dump) {
		/* only the model's tensor NAME, owned by nobody: no coverage checks */
		ng = 1;
		st.g[0].n = 0;
		for (int i = 0; i < st.n; i++)
			if (!strcmp(st.s[0][i].slice.name, dump)) {
				st.g[0].slices = &st.s[0][i];
				st.g[0].n = 1;
			}
	}
	if (ckpt_load(dir, it, st.g, ng, NULL, 0, MPI_COMM_WORLD, err, sizeof(err))) {
		code = 1;
	} else if (dump && rank == 0) {
		FILE *f = fopen(out, "w");

		for (int i = 0; f && i < st.g[0].n; i++)
			for (size_t k = 0; k < layout_slice_numel(&st.g[0].slices[i].slice); k++)
				fprintf(f, "%.9g\n", (double)st.g[0].slices[i].data[k]);
		if (!f || fclose(f)) {
			code = 1;
			snprintf(err, sizeof(err), "%s: cannot write", out);
		}
	} else if (!dump && !comm_agree(MPI_COMM_WORLD, count_wrong(&st, it) == 0)) {
		code = 1;
		snprintf(err, sizeof(err), "%s: iteration %" PRId64 " loads other values than "
			 "were saved", dir, it);
	}
	if (code && rank == 0)
		log_error("%s", err);
	else if (!dump)
		log0("driver: latest = %" PRId64 " loads with its values; %d complete "
		     "checkpoints verify\n", it, files);
	free_state(&st);
	return code;
}

static int do_corrupt(const char *file, const char *name)
{
	hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT), d;
	hsize_t offset[2], size = 0;
	hid_t space = -1;
	haddr_t addr = 0;
	unsigned mask;
	unsigned char byte;
	int fd, rc = 1;

	d = f < 0 ? -1 : H5Dopen2(f, name, H5P_DEFAULT);
	if (d >= 0 && H5Dget_chunk_info(d, space = H5Dget_space(d), 0, offset, &mask, &addr,
					     &size) >= 0)
		rc = 0;
	if (space >= 0)
		H5Sclose(space);
	if (d >= 0)
		H5Dclose(d);
	if (f >= 0)
		H5Fclose(f);
	fd = open(file, O_RDWR);
	if (rc || fd < 0 || pread(fd, &byte, 1, (off_t)(addr + size / 2)) != 1) {
		log_error("%s: cannot find the first chunk of %s", file, name);
		return 1;
	}
	byte ^= 0x10;
	rc = pwrite(fd, &byte, 1, (off_t)(addr + size / 2)) == 1 ? 0 : 1;
	close(fd);
	printf("driver: flipped the byte at %llu (chunk of %llu bytes at %llu)\n",
	       (unsigned long long)(addr + size / 2), (unsigned long long)size,
	       (unsigned long long)addr);
	return rc;
}

static int do_set_attr(const char *file, const char *group, const char *name, const char *v)
{
	long long x = strtoll(v, NULL, 10);
	hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
	hid_t g = f < 0 ? -1 : H5Gopen2(f, group, H5P_DEFAULT), space = H5Screate(H5S_SCALAR);
	hid_t a = -1;
	int rc = 1;

	/* deleted and made again: H5Awrite on the parallel-written one fails */
	if (g >= 0 && H5Adelete(g, name) >= 0 &&
	    (a = H5Acreate2(g, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
	    H5Awrite(a, H5T_NATIVE_LLONG, &x) >= 0)
		rc = 0;
	if (a >= 0)
		H5Aclose(a);
	H5Sclose(space);
	if (g >= 0)
		H5Gclose(g);
	if (f >= 0 && H5Fclose(f) < 0)
		rc = 1;
	if (rc)
		log_error("%s: cannot set the attribute %s of %s", file, name, group);
	return rc;
}

/*
 * Dataset `name` read whole as mem_type (elem bytes each), removed and made again,
 * contiguous and of file_type, from the buffer: no parallel-written chunk is touched.
 * Element `index` (or none, -1) is set to `value` (converted to mem_type) first.
 * 0, or 1: the caller says what failed.
 */
static int remake_dataset(const char *file, const char *name, hid_t mem_type, hid_t file_type,
			  size_t elem, long long index, double value)
{
	hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT), d = -1, space = -1, d2 = -1;
	hssize_t n = -1;
	unsigned char *buf = NULL;
	int rc = 1;

	if (f >= 0)
		d = H5Dopen2(f, name, H5P_DEFAULT);
	if (d >= 0) {
		space = H5Dget_space(d);
		n = H5Sget_simple_extent_npoints(space);
	}
	if (n > 0 && index < n && (buf = malloc(elem * (size_t)n)) &&
	    H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0 &&
	    H5Dclose(d) >= 0 && (d = -1, H5Ldelete(f, name, H5P_DEFAULT) >= 0) &&
	    (index < 0 || H5Tconvert(H5T_NATIVE_DOUBLE, mem_type, 1, &value, NULL,
				     H5P_DEFAULT) >= 0) &&
	    (index < 0 || (memcpy(buf + elem * (size_t)index, &value, elem), 1)) &&
	    (d2 = H5Dcreate2(f, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT,
			     H5P_DEFAULT)) >= 0 &&
	    H5Dwrite(d2, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0)
		rc = 0;
	free(buf);
	if (d2 >= 0)
		H5Dclose(d2);
	if (d >= 0)
		H5Dclose(d);
	if (space >= 0)
		H5Sclose(space);
	if (f >= 0 && H5Fclose(f) < 0)
		rc = 1;
	return rc;
}

static int do_retype(const char *file, const char *name)
{
	int rc = remake_dataset(file, name, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, sizeof(double), -1,
				0.0);

	if (rc)
		log_error("%s: cannot rewrite %s as float64", file, name);
	return rc;
}

static int do_unlink(const char *file, const char *path)
{
	hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
	int rc = f >= 0 && H5Ldelete(f, path, H5P_DEFAULT) >= 0 ? 0 : 1;

	if (f >= 0 && H5Fclose(f) < 0)
		rc = 1;
	if (rc)
		log_error("%s: cannot remove %s", file, path);
	return rc;
}

static int do_del_attr(const char *file, const char *group, const char *name)
{
	hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
	hid_t g = f < 0 ? -1 : H5Gopen2(f, group, H5P_DEFAULT);
	int rc = g >= 0 && H5Adelete(g, name) >= 0 ? 0 : 1;

	if (g >= 0)
		H5Gclose(g);
	if (f >= 0 && H5Fclose(f) < 0)
		rc = 1;
	if (rc)
		log_error("%s: cannot remove the attribute %s of %s", file, name, group);
	return rc;
}

static int do_set_u16(const char *file, const char *name, const char *index, const char *v)
{
	long long i = strtoll(index, NULL, 10);
	int rc = i < 0 || remake_dataset(file, name, H5T_NATIVE_UINT16, H5T_STD_U16LE,
					  sizeof(uint16_t), i, (double)strtol(v, NULL, 10));

	if (rc)
		log_error("%s: cannot set element %s of %s", file, index, name);
	return rc;
}

int main(int argc, char **argv)
{
	int code;

	if (argc < 3) {
		log_error("usage: see the comment at the top of tests/tools/ckpt_driver.c");
		return 2;
	}
	if (!strcmp(argv[1], "corrupt"))
		return argc == 4 ? do_corrupt(argv[2], argv[3]) : 2;
	if (!strcmp(argv[1], "set-attr"))
		return argc == 6 ? do_set_attr(argv[2], argv[3], argv[4], argv[5]) : 2;
	if (!strcmp(argv[1], "retype"))
		return argc == 4 ? do_retype(argv[2], argv[3]) : 2;
	if (!strcmp(argv[1], "unlink"))
		return argc == 4 ? do_unlink(argv[2], argv[3]) : 2;
	if (!strcmp(argv[1], "del-attr"))
		return argc == 5 ? do_del_attr(argv[2], argv[3], argv[4]) : 2;
	if (!strcmp(argv[1], "set-u16"))
		return argc == 6 ? do_set_u16(argv[2], argv[3], argv[4], argv[5]) : 2;
	mpi_setup_init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &world);
	if (!strcmp(argv[1], "save"))
		code = do_save(argv[2], argc - 3, argv + 3);
	else if (!strcmp(argv[1], "verify"))
		code = do_verify(argv[2], NULL, NULL);
	else if (!strcmp(argv[1], "dump") && argc == 5)
		code = do_verify(argv[2], argv[3], argv[4]);
	else
		code = 2;
	mpi_setup_finalize();
	return code;
}
