/*
 * fuzz_ckpt_meta: the checkpoint metadata reader: train_ckpt_read_info (the
 * attributes through checkpoints/ckpt.c ckpt_load and checkpoints/h5io.c's
 * attribute readers, then train_ckpt_check_info), spec_adopt and spec_validate (what
 * retnet-eval and retnet-generate build from them) and ckpt_latest (DIR/latest).
 *
 * Why not random bytes as the HDF5 file: the bytes would exercise HDF5's own
 * parser (libhdf5 is not ours to fix and is not instrumented), and almost no
 * mutation of a valid file would survive it to reach our code. Instead the input
 * is a small text program that BUILDS a well-formed HDF5 file through the HDF5 API,
 * one object per line, so that every input is a file HDF5 opens and the fuzzer
 * explores what our code does with what a file may legally hold: missing, extra
 * and misplaced attributes, every type class and width, vector and null
 * dataspaces, variable-length and unterminated strings, groups that are datasets,
 * any value, and a merge table of any size, type and content (which
 * train_ckpt_read_info reads and checks against the tokenizer's id).
 *
 *   KEY TYPE COUNT VALUE...   one attribute: KEY "config/hidden_size" is attribute
 *                             hidden_size of group /config ("format": of /)
 *       TYPE  i8 i16 i32 i64 u8 u64 f32 f64 (numbers), str (fixed, NUL-terminated),
 *             strp (fixed, NUL-padded, no terminator), vstr (variable length),
 *             dset (a float32 dataset of COUNT values at /KEY), grp (a group at /KEY),
 *             m16 / m32 (a (COUNT, 2) uint16 / int32 dataset at /KEY holding the
 *             VALUEs, the last one repeated: a tokenizer's merge table, or one of
 *             the wrong type)
 *       COUNT 0: a scalar; n >= 1: n values (1-D); -1: a null dataspace
 *   @latest TEXT              DIR/latest holds TEXT and a newline
 *   @raw                      the rest of the input, after this line, is the file
 *                             itself (only with RN_FUZZ_CKPT_RAW=1: HDF5's parser)
 *
 * The file is DIR/iter_0000001.h5 in a private directory; the reader runs on
 * MPI_COMM_SELF over MPI-IO, as retnet-eval does on one rank.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include <hdf5.h>
#include <mpi.h>

#include "checkpoints/ckpt.h"
#include "trainer/train_ckpt.h"
#include "tests/fuzz/fuzz.h"

#define MAX_COUNT 64

static void finalize(void)
{
	int done = 0;

	MPI_Finalized(&done);
	if (!done)
		MPI_Finalize();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int provided;

	(void)argc;
	(void)argv;
	/* A singleton MPI process (no mpiexec); CI runs as root. */
	setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
	setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
	setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 0);
	MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
	MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
	atexit(finalize);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	return 0;
}

static hid_t num_type(const char *t)
{
	static const struct {
		const char *name;
		hid_t *type;
	} types[] = {
		{"i8", &H5T_STD_I8LE_g},   {"i16", &H5T_STD_I16BE_g}, {"i32", &H5T_STD_I32LE_g},
		{"i64", &H5T_STD_I64LE_g}, {"u8", &H5T_STD_U8LE_g},   {"u64", &H5T_STD_U64LE_g},
		{"f32", &H5T_IEEE_F32LE_g}, {"f64", &H5T_IEEE_F64BE_g},
	};

	H5open();
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcmp(t, types[i].name))
			return *types[i].type;
	return -1;
}

/* The group of KEY's attribute, opened or created (with intermediate groups). */
static hid_t group_of(hid_t f, const char *key, const char **name)
{
	const char *slash = strrchr(key, '/');
	char group[512];
	hid_t lcpl, g;

	*name = slash ? slash + 1 : key;
	snprintf(group, sizeof(group), "/%.*s", slash ? (int)(slash - key) : 0, key);
	if (!strcmp(group, "/"))
		return H5Gopen2(f, "/", H5P_DEFAULT);
	g = H5Gopen2(f, group, H5P_DEFAULT);
	if (g >= 0)
		return g;
	lcpl = H5Pcreate(H5P_LINK_CREATE);
	H5Pset_create_intermediate_group(lcpl, 1);
	g = H5Gcreate2(f, group, lcpl, H5P_DEFAULT, H5P_DEFAULT);
	H5Pclose(lcpl);
	return g;
}

static hid_t space_of(long count)
{
	hsize_t n = (hsize_t)count;

	if (count < 0)
		return H5Screate(H5S_NULL);
	if (count == 0)
		return H5Screate(H5S_SCALAR);
	return H5Screate_simple(1, &n, NULL);
}

/* One line of the program; HDF5 failures (a bad name, a duplicate) skip it. */
static void build_line(hid_t f, char *line)
{
	char *save = NULL, *key = strtok_r(line, " ", &save), *type = strtok_r(NULL, " ", &save);
	char *cnt = strtok_r(NULL, " ", &save), *value = save ? save : "";
	long count;
	const char *name;
	hid_t g = -1, space = -1, t = -1, a = -1, lcpl = -1, obj = -1;

	if (!key || !type || !cnt)
		return;
	count = strtol(cnt, NULL, 10);
	if (count > MAX_COUNT)
		count = MAX_COUNT;
	if (count < -1)
		count = -1;
	space = space_of(count);
	if ((!strcmp(type, "m16") || !strcmp(type, "m32")) && count > 0) {
		hsize_t dims[2] = {(hsize_t)count, 2};
		int64_t v[2 * MAX_COUNT];
		char path[512], *end = value;

		for (long i = 0; i < 2 * count; i++) {
			char *next;

			v[i] = strtoll(end, &next, 0);
			if (next == end)
				v[i] = i ? v[i - 1] : 0;
			end = next;
		}
		snprintf(path, sizeof(path), "/%s", key);
		H5Sclose(space);
		space = H5Screate_simple(2, dims, NULL);
		lcpl = H5Pcreate(H5P_LINK_CREATE);
		H5Pset_create_intermediate_group(lcpl, 1);
		obj = H5Dcreate2(f, path, !strcmp(type, "m16") ? H5T_STD_U16LE : H5T_STD_I32LE,
				 space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
		if (obj >= 0) {
			H5Dwrite(obj, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
			H5Oclose(obj);
		}
		goto out;
	}
	if (!strcmp(type, "dset") || !strcmp(type, "grp")) {
		char path[512];

		snprintf(path, sizeof(path), "/%s", key);
		lcpl = H5Pcreate(H5P_LINK_CREATE);
		H5Pset_create_intermediate_group(lcpl, 1);
		if (!strcmp(type, "grp"))
			obj = H5Gcreate2(f, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
		else
			obj = H5Dcreate2(f, path, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT,
					 H5P_DEFAULT);
		if (obj >= 0)
			H5Oclose(obj);
		goto out;
	}
	g = group_of(f, key, &name);
	if (g < 0 || !name[0])
		goto out;
	if (!strcmp(type, "str") || !strcmp(type, "strp") || !strcmp(type, "vstr")) {
		size_t len = strlen(value), n = count > 0 ? (size_t)count : 1;
		char *buf;
		const char **ptrs;

		t = H5Tcopy(H5T_C_S1);
		if (!strcmp(type, "vstr")) {
			H5Tset_size(t, H5T_VARIABLE);
			ptrs = malloc(n * sizeof(*ptrs));
			for (size_t i = 0; i < n; i++)
				ptrs[i] = value;
			a = H5Acreate2(g, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
			if (a >= 0)
				H5Awrite(a, t, ptrs);
			free(ptrs);
			goto out;
		}
		/* str: NUL-terminated in len + 1 bytes; strp: NUL-padded in len bytes */
		if (!strcmp(type, "str"))
			len++;
		if (len == 0)
			goto out;
		H5Tset_size(t, len);
		H5Tset_strpad(t, !strcmp(type, "str") ? H5T_STR_NULLTERM : H5T_STR_NULLPAD);
		buf = calloc(n, len);
		for (size_t i = 0; i < n; i++)
			memcpy(buf + i * len, value, strlen(value) < len ? strlen(value) : len);
		a = H5Acreate2(g, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
		if (a >= 0)
			H5Awrite(a, t, buf);
		free(buf);
	} else {
		hid_t ft = num_type(type);
		int64_t iv[MAX_COUNT];
		double fv[MAX_COUNT];
		char *end = value;

		if (ft < 0)
			goto out;
		/* values, the last one repeated to COUNT */
		for (long i = 0; i < (count > 0 ? count : 1); i++) {
			char *next;

			errno = 0;
			iv[i] = strtoll(end, &next, 0);
			fv[i] = strtod(end, &next);
			if (next == end && i > 0) {
				iv[i] = iv[i - 1];
				fv[i] = fv[i - 1];
			}
			end = next;
		}
		a = H5Acreate2(g, name, ft, space, H5P_DEFAULT, H5P_DEFAULT);
		if (a >= 0) {
			if (H5Tget_class(ft) == H5T_FLOAT)
				H5Awrite(a, H5T_NATIVE_DOUBLE, fv);
			else
				H5Awrite(a, H5T_NATIVE_INT64, iv);
		}
	}
out:
	if (a >= 0)
		H5Aclose(a);
	if (t >= 0)
		H5Tclose(t);
	if (g >= 0)
		H5Gclose(g);
	if (lcpl >= 0)
		H5Pclose(lcpl);
	if (space >= 0)
		H5Sclose(space);
}

/* What retnet-eval and retnet-generate would build must pass model_create's ENSUREs. */
static void check_model_config(const struct ckpt_info *info)
{
	static const char *const layouts[][9] = {
		/* program's flags; the world is TP x PP */
		{"eval"}, {"eval", "--micro-batch-size", "2", "--tensor-model-parallel-size", "2"},
		{"eval", "--pipeline-model-parallel-size", "2"}, {"generate"},
		{"eval", "--seq-length", "24"},
		{"eval", "--seq-length", "64", "--chunk-size", "16", "--tensor-model-parallel-size",
		 "2", "--pipeline-model-parallel-size", "2"},
	};
	char err[CKPT_ERR_LEN];
	static struct run_spec mc;

	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++) {
		const char *argv[16] = {"x", "--load", "/ck"};
		int argc = 3;
		enum spec_program p = !strcmp(layouts[i][0], "eval") ? SPEC_EVAL : SPEC_GENERATE;
		int64_t tp, pp;

		if (p == SPEC_EVAL) {
			argv[argc++] = "--data";
			argv[argc++] = "/a.txt";
		}
		for (int k = 1; k < 9 && layouts[i][k]; k++)
			argv[argc++] = layouts[i][k];
		spec_free(&mc);
		FUZZ_ASSERT(spec_parse(&mc, p, argc, (char **)argv, err, sizeof(err)) == 0);
		tp = mc.tensor_model_parallel_size;
		pp = mc.pipeline_model_parallel_size;
		err[0] = '\0';
		if (spec_adopt(&mc, &info->model, info->path, err, sizeof(err)) ||
		    spec_validate(&mc, (int)(tp * pp), err, sizeof(err))) {
			FUZZ_ASSERT(err[0] && !strchr(err, '\n'));
			continue;
		}
		FUZZ_ASSERT(mc.vocab_size > 0 && mc.hidden_size > 0 && mc.num_layers > 0 &&
			    mc.num_heads > 0);
		FUZZ_ASSERT(mc.hidden_size % mc.num_heads == 0 &&
			    (mc.hidden_size / mc.num_heads) % 2 == 0);
		FUZZ_ASSERT(mc.chunk_size > 0 && mc.seq_length % mc.chunk_size == 0 &&
			    mc.micro_batch_size > 0);
		FUZZ_ASSERT(mc.num_heads % tp == 0 && mc.ffn_hidden_size > 0 &&
			    mc.ffn_hidden_size % tp == 0);
		FUZZ_ASSERT(pp <= mc.num_layers);
		/* the embedding has a row for every token the tokenizer can produce */
		FUZZ_ASSERT(info->tok.vocab <= (uint64_t)mc.vocab_size);
	}
}

/* A tokenizer that was accepted is one the programs can use as they stand: a BPE one
 * with a table has the table its id names (so retnet-eval and retnet-generate can
 * encode and decode with it), and one without is a checkpoint without the
 * attribute. */
static void check_tokenizer(const struct ckpt_info *info)
{
	struct tokenizer t;
	char err[CKPT_ERR_LEN];

	FUZZ_ASSERT(info->tok.vocab >= 1 && info->tok.vocab <= 65536);
	if (!tokenizer_is_bpe(&info->tok)) {
		FUZZ_ASSERT(!info->tok.merges && info->n_merges <= 0);
		return;
	}
	if (!info->tok.merges) {
		FUZZ_ASSERT(info->n_merges == -1 && train_ckpt_lacks_merges(info));
		return;
	}
	FUZZ_ASSERT(info->tok.merges == info->merges && info->n_merges > 0 &&
		    info->tok.n_merges == (uint32_t)info->n_merges &&
		    info->tok.vocab == 256 + info->tok.n_merges);
	FUZZ_ASSERT(tokenizer_init_bpe(&t, info->tok.merges, info->tok.n_merges, "x", err,
				       sizeof(err)) == 0 && tokenizer_equal(&t, &info->tok));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[512], path[1024], err[CKPT_ERR_LEN];
	char *text = malloc(size + 1), *line, *save = NULL;
	static struct ckpt_info info;
	int64_t it;
	hid_t f;
	bool raw = getenv("RN_FUZZ_CKPT_RAW") != NULL;

	snprintf(dir, sizeof(dir), "%s", fuzz_tmpdir());
	snprintf(path, sizeof(path), "%s/latest", dir);
	unlink(path);
	ckpt_path(path, sizeof(path), dir, 1);
	memcpy(text, data, size);
	text[size] = '\0';

	if (raw && size >= 5 && !memcmp(data, "@raw\n", 5)) {
		fuzz_write_file("iter_0000001.h5", data + 5, size - 5);
	} else {
		f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
		FUZZ_ASSERT(f >= 0);
		for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			if (!strncmp(line, "@latest ", 8)) {
				size_t n = strlen(line + 8);

				line[8 + n] = '\n';
				fuzz_write_file("latest", line + 8, n + 1);
				line[8 + n] = '\0';
				continue;
			}
			build_line(f, line);
		}
		FUZZ_ASSERT(H5Fclose(f) >= 0);
	}

	err[0] = '\0';
	if (train_ckpt_resolve(dir, -1, &it, MPI_COMM_SELF, err, sizeof(err)) == 0)
		FUZZ_ASSERT(it == 1);
	else
		FUZZ_ASSERT(err[0] && !strchr(err, '\n'));

	err[0] = '\0';
	if (train_ckpt_read_info(dir, 1, &info, MPI_COMM_SELF, err, sizeof(err)) == 0) {
		check_model_config(&info);
		check_tokenizer(&info);
	} else {
		FUZZ_ASSERT(err[0] && !strchr(err, '\n'));
	}
	train_ckpt_info_free(&info);
	free(text);
	return 0;
}
