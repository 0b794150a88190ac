#include "checkpoints/h5io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"

/*
 * A call that can only fail on a broken library or no memory: print HDF5's own stack
 * (automatic printing may be off) and end the job. Evaluates to the call's value.
 */
#define MUST(call) must_at((long long)(call), #call, __FILE__, __LINE__)

static long long must_at(long long v, const char *what, const char *file, int line)
{
	if (v < 0) {
		H5Eprint2(H5E_DEFAULT, stderr);
		fatal_at(file, line, "%s: HDF5 call failed", what);
	}
	return v;
}

/* Longest path or string attribute this module builds. */
#define H5IO_PATH_MAX 512
#define H5IO_STR_ATTR_MAX ((size_t)1 << 20)

/* ---- errors ------------------------------------------------------------- */

void h5io_quiet_begin(struct h5io_quiet *q)
{
	MUST(H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data));
	MUST(H5Eset_auto2(H5E_DEFAULT, NULL, NULL));
}

void h5io_quiet_end(const struct h5io_quiet *q)
{
	MUST(H5Eset_auto2(H5E_DEFAULT, q->func, q->data));
}

/*
 * Every HDF5 API call clears the error stack on entry, so the text of a failure is
 * taken right where the call failed (note_error) and kept until the next failure.
 */
static char last_error[256];

/* Walking upward, entry 0 is where the error was first detected: the specific one. */
static herr_t first_error(unsigned n, const H5E_error2_t *e, void *ctx)
{
	(void)ctx;
	if (n == 0 && e->desc && e->desc[0])
		snprintf(last_error, sizeof(last_error), "%s", e->desc);
	return 0;
}

/* Returns v; when v < 0, remembers the innermost message of the stack. */
static long long note_error(long long v)
{
	if (v >= 0)
		return v;
	snprintf(last_error, sizeof(last_error), "unknown HDF5 error");
	H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_error, NULL);
	/* One line: HDF5 descriptions can carry newlines (MPI error strings do). */
	for (char *p = last_error; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return v;
}

const char *h5io_error_text(char *buf, size_t len)
{
	snprintf(buf, len, "%s", last_error[0] ? last_error : "unknown HDF5 error");
	last_error[0] = '\0';
	return buf;
}

/* ---- files -------------------------------------------------------------- */

/*
 * MPI-IO with collective metadata: one rank reads each piece of metadata and
 * broadcasts it, and metadata is written collectively, which is what keeps a few
 * thousand ranks from each reading the object headers (hpc-notes 2.2).
 */
int h5io_mpiio_hints(MPI_Info *info, char *err, size_t errlen)
{
	const char *text = getenv("RETNET_MPIIO_HINTS");
	char buf[1024], *save = NULL;

	*info = MPI_INFO_NULL;
	if (!text || !text[0])
		return 0;
	if (strlen(text) >= sizeof(buf))
		return log_fail(err, errlen, "RETNET_MPIIO_HINTS: longer than %zu characters",
				sizeof(buf) - 1);
	snprintf(buf, sizeof(buf), "%s", text);
	CHECK_MPI(MPI_Info_create(info));
	for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');

		if (!eq || eq == kv || !eq[1] || eq - kv >= MPI_MAX_INFO_KEY ||
		    strlen(eq + 1) >= MPI_MAX_INFO_VAL) {
			CHECK_MPI(MPI_Info_free(info));
			return log_fail(err, errlen, "RETNET_MPIIO_HINTS: '%s' is not key=value (a "
					"comma-separated list of MPI-IO hints)", kv);
		}
		*eq = '\0';
		CHECK_MPI(MPI_Info_set(*info, kv, eq + 1));
	}
	return 0;
}

static hid_t fapl_for(MPI_Comm comm)
{
	hid_t fapl = MUST(H5Pcreate(H5P_FILE_ACCESS));

	if (comm != MPI_COMM_NULL) {
		MPI_Info info;
		char err[256];

		/* the checkpoint calls checked the hints before opening anything */
		ENSURE(h5io_mpiio_hints(&info, err, sizeof(err)) == 0);
		MUST(H5Pset_fapl_mpio(fapl, comm, info));
		if (info != MPI_INFO_NULL)
			CHECK_MPI(MPI_Info_free(&info));
		MUST(H5Pset_all_coll_metadata_ops(fapl, 1));
		MUST(H5Pset_coll_metadata_write(fapl, 1));
	}
	return fapl;
}

hid_t h5io_file_create(const char *path, MPI_Comm comm)
{
	hid_t fapl = fapl_for(comm), f;

	/* collective: all ranks of comm */
	f = note_error(H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl));
	MUST(H5Pclose(fapl));
	return f;
}

hid_t h5io_file_open_ro(const char *path, MPI_Comm comm)
{
	hid_t fapl = fapl_for(comm), f;

	/* collective: all ranks of comm */
	f = note_error(H5Fopen(path, H5F_ACC_RDONLY, fapl));
	MUST(H5Pclose(fapl));
	return f;
}

/* The MPI-IO driver syncs (MPI_File_sync, every rank) on a flush but not on close. */
int h5io_file_flush(hid_t file)
{
	/* collective: all ranks of the file's communicator */
	return note_error(H5Fflush(file, H5F_SCOPE_GLOBAL)) < 0 ? -1 : 0;
}

int h5io_file_close(hid_t file)
{
	/* collective: all ranks of the file's communicator */
	return note_error(H5Fclose(file)) < 0 ? -1 : 0;
}

hid_t h5io_dxpl(bool parallel)
{
	hid_t dxpl = MUST(H5Pcreate(H5P_DATASET_XFER));

	if (parallel)
		MUST(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE));
	return dxpl;
}

void h5io_plist_close(hid_t plist)
{
	MUST(H5Pclose(plist));
}

/* ---- datasets ----------------------------------------------------------- */

static hid_t lcpl_intermediate(void)
{
	hid_t lcpl = MUST(H5Pcreate(H5P_LINK_CREATE));

	MUST(H5Pset_create_intermediate_group(lcpl, 1));
	return lcpl;
}

const char *h5io_dtype_name(enum h5io_dtype type)
{
	return type == H5IO_F32 ? "float32" : type == H5IO_U16 ? "uint16" : "another type";
}

size_t h5io_dtype_size(enum h5io_dtype type)
{
	return type == H5IO_F32 ? sizeof(float) : type == H5IO_U16 ? sizeof(uint16_t) : 0;
}

static hid_t file_type(enum h5io_dtype type)
{
	ENSURE(type == H5IO_F32 || type == H5IO_U16);
	return type == H5IO_F32 ? H5T_IEEE_F32LE : H5T_STD_U16LE;
}

static hid_t mem_type(enum h5io_dtype type)
{
	ENSURE(type == H5IO_F32 || type == H5IO_U16);
	return type == H5IO_F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT16;
}

hid_t h5io_dataset_create(hid_t file, const char *path, enum h5io_dtype type, int ndim,
			  const hsize_t dims[2], const hsize_t chunk[2], int deflate_level)
{
	hid_t lcpl = lcpl_intermediate(), dcpl = MUST(H5Pcreate(H5P_DATASET_CREATE));
	hid_t space = MUST(H5Screate_simple(ndim, dims, NULL)), d;

	MUST(H5Pset_chunk(dcpl, ndim, chunk));
	/* Filter order: shuffle and deflate first, so the checksum covers the stored bytes. */
	if (deflate_level > 0) {
		MUST(H5Pset_shuffle(dcpl));
		MUST(H5Pset_deflate(dcpl, (unsigned)deflate_level));
	}
	MUST(H5Pset_fletcher32(dcpl));
	/* Parallel 1.10 allocates early; every byte is written, so skip the fill pass. */
	MUST(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER));
	/* collective: all ranks, identical arguments */
	d = note_error(H5Dcreate2(file, path, file_type(type), space, lcpl, dcpl, H5P_DEFAULT));
	MUST(H5Sclose(space));
	MUST(H5Pclose(dcpl));
	MUST(H5Pclose(lcpl));
	return d;
}

bool h5io_path_exists(hid_t file, const char *path)
{
	char prefix[H5IO_PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(prefix) || path[0] != '/')
		return false;
	if (n == 1)
		return true;
	/* H5Lexists fails on a path whose intermediate group is missing: walk it. */
	for (size_t i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		memcpy(prefix, path, i);
		prefix[i] = '\0';
		/* collective: all ranks (collective metadata reads) */
		if (H5Lexists(file, prefix, H5P_DEFAULT) <= 0) {
			H5Eclear2(H5E_DEFAULT);
			return false;
		}
	}
	return true;
}

hid_t h5io_dataset_open(hid_t file, const char *path)
{
	/* collective: all ranks */
	return note_error(H5Dopen2(file, path, H5P_DEFAULT));
}

int h5io_dataset_shape(hid_t dset, int *ndim, hsize_t dims[2], enum h5io_dtype *dtype)
{
	hid_t space = MUST(H5Dget_space(dset)), type = MUST(H5Dget_type(dset));
	int rc = 0;

	*ndim = H5Sget_simple_extent_ndims(space);
	dims[0] = dims[1] = 1;
	if (*ndim == 1 || *ndim == 2)
		MUST(H5Sget_simple_extent_dims(space, dims, NULL));
	else
		rc = -1;
	if (H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4)
		*dtype = H5IO_F32;
	else if (H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 2 &&
		 H5Tget_sign(type) == H5T_SGN_NONE)
		*dtype = H5IO_U16;
	else
		*dtype = H5IO_OTHER;
	MUST(H5Tclose(type));
	MUST(H5Sclose(space));
	return rc;
}

/* File and memory dataspaces for a hyperslab, or empty selections. */
static void select_spaces(hid_t dset, int ndim, bool has_data, const uint64_t start[2],
			  const uint64_t count[2], hid_t *fspace, hid_t *mspace)
{
	hsize_t s[2] = {start[0], start[1]}, c[2] = {count[0], count[1]};

	*fspace = MUST(H5Dget_space(dset));
	if (has_data) {
		MUST(H5Sselect_hyperslab(*fspace, H5S_SELECT_SET, s, NULL, c, NULL));
		*mspace = MUST(H5Screate_simple(ndim, c, NULL));
	} else {
		/* A rank with no data still joins the collective call (ph5 examples). */
		MUST(H5Sselect_none(*fspace));
		*mspace = MUST(H5Scopy(*fspace));
	}
}

static float no_data_buf;

int h5io_dataset_write(hid_t dset, hid_t dxpl, enum h5io_dtype type, int ndim, bool has_data,
		       const uint64_t start[2], const uint64_t count[2], const void *buf)
{
	hid_t fspace, mspace;
	herr_t rc;

	select_spaces(dset, ndim, has_data, start, count, &fspace, &mspace);
	/* collective: all ranks of the file's communicator */
	rc = (herr_t)note_error(H5Dwrite(dset, mem_type(type), mspace, fspace, dxpl,
				 has_data ? buf : (const void *)&no_data_buf));
	MUST(H5Sclose(mspace));
	MUST(H5Sclose(fspace));
	return rc < 0 ? -1 : 0;
}

int h5io_dataset_read(hid_t dset, hid_t dxpl, enum h5io_dtype type, int ndim, bool has_data,
		      const uint64_t start[2], const uint64_t count[2], void *buf)
{
	hid_t fspace, mspace;
	herr_t rc;

	select_spaces(dset, ndim, has_data, start, count, &fspace, &mspace);
	/* collective: all ranks of the file's communicator */
	rc = (herr_t)note_error(H5Dread(dset, mem_type(type), mspace, fspace, dxpl,
				has_data ? buf : (void *)&no_data_buf));
	MUST(H5Sclose(mspace));
	MUST(H5Sclose(fspace));
	return rc < 0 ? -1 : 0;
}

void h5io_chunk_for_slab(int ndim, const uint64_t count[2], size_t elem_bytes,
			 size_t max_bytes, hsize_t chunk[2])
{
	const uint64_t max_vals = max_bytes / elem_bytes;
	uint64_t rows = count[0], cols = ndim == 2 ? count[1] : 1, max_rows, parts, d;

	chunk[0] = rows;
	chunk[1] = cols;
	if (cols > max_vals) { /* one row alone is too large: split the columns */
		chunk[0] = 1;
		chunk[1] = max_vals;
		return;
	}
	max_rows = max_vals / cols;
	if (rows <= max_rows)
		return;
	parts = (rows + max_rows - 1) / max_rows;
	for (d = max_rows; d * 2 >= max_rows; d--)
		if (rows % d == 0)
			break;
	chunk[0] = rows % d == 0 ? d : (rows + parts - 1) / parts;
}

int h5io_dataset_scan(hid_t dset, size_t block_bytes, uint64_t *values, uint64_t *bad_row)
{
	hsize_t dims[2];
	int ndim, rc = 0;
	enum h5io_dtype type;
	size_t elem;
	uint64_t rows, cols, block, start[2] = {0, 0}, count[2];
	hid_t dxpl = h5io_dxpl(false);
	void *buf;

	ENSURE(h5io_dataset_shape(dset, &ndim, dims, &type) == 0);
	rows = dims[0];
	cols = dims[1];
	elem = h5io_dtype_size(type);
	*values = 0;
	if (type == H5IO_OTHER) {
		snprintf(last_error, sizeof(last_error), "neither float32 nor uint16");
		MUST(H5Pclose(dxpl));
		return -1;
	}
	/* The shape comes from the file: nothing to read, or a row too large to hold
	 * (16 blocks), before it is divided or multiplied. */
	if (rows == 0 || cols == 0) {
		MUST(H5Pclose(dxpl));
		return 0;
	}
	if (cols > block_bytes / elem * 16) {
		snprintf(last_error, sizeof(last_error), "rows of %llu values are too large to "
			 "scan", (unsigned long long)cols);
		MUST(H5Pclose(dxpl));
		return -1;
	}
	block = block_bytes / elem / cols;
	block = block ? block : 1;
	block = block < rows ? block : rows;
	buf = xmalloc(size_mul_checked((size_t)block, (size_t)cols * elem, "dataset block"));
	for (uint64_t r0 = 0; rc == 0 && r0 < rows; r0 += block) {
		const float *f = buf;

		start[0] = r0;
		count[0] = rows - r0 < block ? rows - r0 : block;
		count[1] = cols;
		if (h5io_dataset_read(dset, dxpl, type, ndim, true, start, count, buf) < 0) {
			rc = -1;
			break;
		}
		*values += count[0] * cols;
		for (uint64_t i = 0; type == H5IO_F32 && rc == 0 && i < count[0] * cols; i++)
			if (!isfinite(f[i])) {
				*bad_row = r0 + i / cols;
				rc = 1;
			}
	}
	free(buf);
	MUST(H5Pclose(dxpl));
	return rc;
}

uint64_t h5io_dataset_storage_bytes(hid_t dset)
{
	return (uint64_t)H5Dget_storage_size(dset);
}

void h5io_dataset_close(hid_t dset)
{
	MUST(H5Dclose(dset));
}

struct visit {
	const char *group;
	int (*fn)(const char *path, void *ctx);
	void *ctx;
	int rc;
};

static herr_t visit_link(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
	struct visit *v = data;
	char path[H5IO_PATH_MAX];
	hid_t obj;
	bool is_dataset;

	if (info->type != H5L_TYPE_HARD)
		return 0;
	obj = note_error(H5Oopen(g, name, H5P_DEFAULT));
	if (obj < 0)
		return -1;
	is_dataset = H5Iget_type(obj) == H5I_DATASET;
	MUST(H5Oclose(obj));
	if (!is_dataset)
		return 0;
	snprintf(path, sizeof(path), "%s/%s", strcmp(v->group, "/") ? v->group : "", name);
	v->rc = v->fn(path, v->ctx);
	return v->rc ? 1 : 0;
}

int h5io_visit_datasets(hid_t file, const char *group, int (*fn)(const char *path, void *ctx),
			void *ctx)
{
	struct visit v = {group, fn, ctx, 0};
	hid_t g;
	herr_t rc;

	if (!h5io_path_exists(file, group))
		return 0;
	g = note_error(H5Gopen2(file, group, H5P_DEFAULT));
	if (g < 0)
		return -1;
	/* collective: all ranks (collective metadata reads) */
	rc = (herr_t)note_error(H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, visit_link, &v));
	MUST(H5Gclose(g));
	return v.rc ? v.rc : rc < 0 ? -1 : 0;
}

/* ---- attributes --------------------------------------------------------- */

static hid_t group_open_or_create(hid_t file, const char *group)
{
	hid_t lcpl, g;

	if (h5io_path_exists(file, group))
		return note_error(H5Gopen2(file, group, H5P_DEFAULT));
	lcpl = lcpl_intermediate();
	/* collective: all ranks, identical arguments */
	g = note_error(H5Gcreate2(file, group, lcpl, H5P_DEFAULT, H5P_DEFAULT));
	MUST(H5Pclose(lcpl));
	return g;
}

/* collective: every rank writes the same value (HDF5 requires it). */
static int attr_write(hid_t file, const char *group, const char *name, hid_t type,
		      const void *v)
{
	hid_t g = group_open_or_create(file, group), space, a;
	int rc = -1;

	if (g < 0)
		return -1;
	space = MUST(H5Screate(H5S_SCALAR));
	a = note_error(H5Acreate2(g, name, type, space, H5P_DEFAULT, H5P_DEFAULT));
	if (a >= 0) {
		rc = note_error(H5Awrite(a, type, v)) < 0 ? -1 : 0;
		if (note_error(H5Aclose(a)) < 0)
			rc = -1;
	}
	MUST(H5Sclose(space));
	MUST(H5Gclose(g));
	return rc;
}

int h5io_attr_write_i64(hid_t file, const char *group, const char *name, int64_t v)
{
	return attr_write(file, group, name, H5T_STD_I64LE, &v);
}

int h5io_attr_write_f64(hid_t file, const char *group, const char *name, double v)
{
	return attr_write(file, group, name, H5T_IEEE_F64LE, &v);
}

static hid_t str_type(size_t size)
{
	hid_t t = MUST(H5Tcopy(H5T_C_S1));

	MUST(H5Tset_size(t, size));
	MUST(H5Tset_strpad(t, H5T_STR_NULLTERM));
	MUST(H5Tset_cset(t, H5T_CSET_ASCII));
	return t;
}

int h5io_attr_write_str(hid_t file, const char *group, const char *name, const char *v)
{
	hid_t t = str_type(strlen(v) + 1);
	int rc = attr_write(file, group, name, t, v);

	MUST(H5Tclose(t));
	return rc;
}

/* Open attribute name of group, checking its type class. */
static enum h5io_attr_status attr_open(hid_t file, const char *group, const char *name,
				       H5T_class_t want, hid_t *attr)
{
	hid_t g, type, space;
	htri_t exists;
	H5T_class_t cls;
	hssize_t npoints;

	if (!h5io_path_exists(file, group))
		return H5IO_ATTR_MISSING;
	g = H5Gopen2(file, group, H5P_DEFAULT);
	if (g < 0)
		return H5IO_ATTR_MISSING; /* a dataset, not a group */
	exists = H5Aexists(g, name);
	*attr = exists > 0 ? H5Aopen(g, name, H5P_DEFAULT) : -1;
	MUST(H5Gclose(g));
	if (exists == 0)
		return H5IO_ATTR_MISSING;
	if (exists < 0 || *attr < 0)
		return H5IO_ATTR_FAILED;
	type = MUST(H5Aget_type(*attr));
	cls = H5Tget_class(type);
	MUST(H5Tclose(type));
	if (cls != want) {
		MUST(H5Aclose(*attr));
		return H5IO_ATTR_WRONG_TYPE;
	}
	/* H5Aread fills the attribute's whole extent: a vector of n values would
	 * overrun a buffer sized for one, and a null dataspace reads nothing. */
	space = MUST(H5Aget_space(*attr));
	npoints = H5Sget_simple_extent_npoints(space);
	MUST(H5Sclose(space));
	if (npoints != 1) {
		MUST(H5Aclose(*attr));
		return H5IO_ATTR_NOT_SCALAR;
	}
	return H5IO_ATTR_OK;
}

static enum h5io_attr_status attr_read_scalar(hid_t file, const char *group, const char *name,
					      H5T_class_t cls, hid_t mem_type, void *v)
{
	hid_t a;
	enum h5io_attr_status st = attr_open(file, group, name, cls, &a);

	if (st != H5IO_ATTR_OK)
		return st;
	if (note_error(H5Aread(a, mem_type, v)) < 0)
		st = H5IO_ATTR_FAILED;
	MUST(H5Aclose(a));
	return st;
}

enum h5io_attr_status h5io_attr_read_i64(hid_t file, const char *group, const char *name,
					 int64_t *v)
{
	return attr_read_scalar(file, group, name, H5T_INTEGER, H5T_NATIVE_INT64, v);
}

enum h5io_attr_status h5io_attr_read_f64(hid_t file, const char *group, const char *name,
					 double *v)
{
	return attr_read_scalar(file, group, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, v);
}

enum h5io_attr_status h5io_attr_read_str(hid_t file, const char *group, const char *name,
					 char *v, size_t len)
{
	hid_t a, ftype, mtype;
	size_t size;
	char *tmp;
	enum h5io_attr_status st = attr_open(file, group, name, H5T_STRING, &a);

	if (st != H5IO_ATTR_OK)
		return st;
	ftype = MUST(H5Aget_type(a));
	size = H5Tget_size(ftype);
	if (H5Tis_variable_str(ftype) != 0 || size == 0) {
		st = H5IO_ATTR_WRONG_TYPE; /* only fixed-length strings are written */
	} else if (size > H5IO_STR_ATTR_MAX) {
		st = H5IO_ATTR_TOO_LONG;
	} else {
		mtype = str_type(size);
		tmp = xcalloc(size + 1, 1);
		if (note_error(H5Aread(a, mtype, tmp)) < 0)
			st = H5IO_ATTR_FAILED;
		else if (strlen(tmp) >= len)
			st = H5IO_ATTR_TOO_LONG;
		else
			memcpy(v, tmp, strlen(tmp) + 1);
		free(tmp);
		MUST(H5Tclose(mtype));
	}
	MUST(H5Tclose(ftype));
	MUST(H5Aclose(a));
	return st;
}
