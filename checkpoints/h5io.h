/*
 * h5io: the HDF5 calls a checkpoint needs, checked, for parallel HDF5 1.10.8.
 *
 * Files are opened over MPI-IO (H5Pset_fapl_mpio, collective metadata reads and
 * writes) or, with comm == MPI_COMM_NULL, serially (sec2 driver: tools and tests on
 * one rank). Datasets are float32 (tensors) or uint16 (small tables of ids)
 * little-endian, chunked, with byte shuffle and deflate when the level is > 0 and
 * Fletcher32 always; fill values are never written.
 * Reads and writes of a hyperslab are collective (filtered parallel writes must be)
 * and a rank with nothing to move joins with an empty selection.
 *
 * Error handling has two kinds. Property-list and dataspace calls that can only fail
 * on a broken library or no memory print the HDF5 error stack and end the job through
 * fatal_at(). Calls that fail because of the file (missing, truncated, a checksum
 * mismatch, a missing object) return a negative value; h5io_quiet_begin() turns off
 * HDF5's automatic stack printing for such probes, and h5io_error_text() gives the
 * innermost message of the stack ("data error detected by Fletcher32 checksum") for
 * the caller's one-line error.
 *
 * Does not know what a tensor, an optimizer or an iteration is; that is ckpt.h.
 * Collective calls are marked; with a parallel file every rank of its communicator
 * must make them in the same order with the same arguments (except the selection).
 */
#ifndef RN_H5IO_H
#define RN_H5IO_H

#include <hdf5.h>
#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ------------------------------------------------------------- */

struct h5io_quiet {
	H5E_auto2_t func;
	void *data;
};

/* Silence HDF5's automatic error printing until h5io_quiet_end(q). */
void h5io_quiet_begin(struct h5io_quiet *q);
void h5io_quiet_end(const struct h5io_quiet *q);
/* The innermost message of the error stack of the last h5io call that failed
 * ("unknown HDF5 error" if none was recorded), copied into buf. Returns buf. */
const char *h5io_error_text(char *buf, size_t len);

/* ---- files -------------------------------------------------------------- */

/* collective over comm: create (truncate) path. Returns the file id or < 0. */
/*
 * The MPI-IO hints files are opened with, from the environment variable
 * RETNET_MPIIO_HINTS ("key=value,key=value": striping_factor, striping_unit,
 * cb_nodes, romio_cb_write, ... as the site's MPI-IO documents them); MPI_INFO_NULL
 * when it is unset. 0, or -1 with one line in err for a malformed list.
 */
int h5io_mpiio_hints(MPI_Info *info, char *err, size_t errlen);

hid_t h5io_file_create(const char *path, MPI_Comm comm);
/* collective over comm (or serial with MPI_COMM_NULL): open path read-only. */
hid_t h5io_file_open_ro(const char *path, MPI_Comm comm);
/* collective: flush (every rank's MPI_File_sync). 0 or < 0. After a failed write or
 * flush, H5Fclose is not safe to call: see ckpt.c (abandon). */
int h5io_file_flush(hid_t file);
/* collective: close. 0 or < 0. */
int h5io_file_close(hid_t file);

/* A transfer property list with collective MPI-IO (parallel files) or the default. */
hid_t h5io_dxpl(bool parallel);
void h5io_plist_close(hid_t plist);

/* ---- datasets ----------------------------------------------------------- */

/* The element types of the datasets this module writes and reads. */
enum h5io_dtype {
	H5IO_F32,   /* H5T_IEEE_F32LE in the file, float in memory */
	H5IO_U16,   /* H5T_STD_U16LE in the file, uint16_t in memory */
	H5IO_OTHER, /* a dataset of any other type (read: refused by the caller) */
};

/* "float32", "uint16" or "another type"; the bytes of one element (0 for OTHER). */
const char *h5io_dtype_name(enum h5io_dtype type);
size_t h5io_dtype_size(enum h5io_dtype type);

/* collective: create a dataset of type (F32 or U16, little-endian) at path
 * (intermediate groups created) of ndim (1 or 2) dims, chunked as chunk, shuffle +
 * deflate(level) if level > 0, and Fletcher32. Returns the dataset id or < 0. */
hid_t h5io_dataset_create(hid_t file, const char *path, enum h5io_dtype type, int ndim,
			  const hsize_t dims[2], const hsize_t chunk[2], int deflate_level);
/* Does every component of the absolute path exist (as a link)? collective. */
bool h5io_path_exists(hid_t file, const char *path);
/* collective: open a dataset. Returns the id or < 0. */
hid_t h5io_dataset_open(hid_t file, const char *path);
/* The dataset's rank and dims (dims[1] = 1 for rank 1) and its element type: F32
 * for a 4-byte float, U16 for a 2-byte unsigned integer (either byte order), else
 * OTHER. Returns 0, or < 0 if the dataset's rank is not 1 or 2. */
int h5io_dataset_shape(hid_t dset, int *ndim, hsize_t dims[2], enum h5io_dtype *type);
/* collective: write / read the hyperslab (start, count) of a dataset of ndim dims
 * from / into buf, dense (count[0], count[1]) values of type (F32: float, U16:
 * uint16_t). has_data = false joins the collective call with an empty selection
 * (buf ignored). 0 or < 0. */
int h5io_dataset_write(hid_t dset, hid_t dxpl, enum h5io_dtype type, int ndim, bool has_data,
		       const uint64_t start[2], const uint64_t count[2], const void *buf);
int h5io_dataset_read(hid_t dset, hid_t dxpl, enum h5io_dtype type, int ndim, bool has_data,
		      const uint64_t start[2], const uint64_t count[2], void *buf);
/* The chunk shape for a dataset of elem_bytes values written in slabs of count (ndim
 * dims): the slab, capped at max_bytes by splitting its rows (into a divisor of them
 * if one is near, so chunks stay aligned with slabs) or, if one row alone is larger,
 * its columns. Within HDF5's limits (< 4 GiB and < 2^32 values per chunk) for
 * max_bytes < 4 GiB. */
void h5io_chunk_for_slab(int ndim, const uint64_t count[2], size_t elem_bytes,
			 size_t max_bytes, hsize_t chunk[2]);
/* Read a whole F32 or U16 dataset in blocks of about block_bytes (checksums verified
 * by HDF5), counting the values and checking that floats are finite. Returns 0; 1
 * with *bad_row = the row of the first non-finite value; < 0 on a read failure (or
 * another type). Serial. */
int h5io_dataset_scan(hid_t dset, size_t block_bytes, uint64_t *values, uint64_t *bad_row);
/* Bytes the dataset takes in the file (after filters). */
uint64_t h5io_dataset_storage_bytes(hid_t dset);
void h5io_dataset_close(hid_t dset);

/* Call fn(path, ctx) for every dataset under group (absolute paths, name order).
 * fn returns 0 to go on or a positive value to stop, which is returned; 0 when all
 * were visited (or the group does not exist); < 0 on an HDF5 failure.
 * collective for a parallel file. */
int h5io_visit_datasets(hid_t file, const char *group, int (*fn)(const char *path, void *ctx),
			void *ctx);

/* ---- attributes (scalar, on groups) -------------------------------------- */

/* collective: write attribute name on group (absolute path, created if missing).
 * Strings are fixed-length ASCII, NUL-terminated. 0 or < 0. */
int h5io_attr_write_i64(hid_t file, const char *group, const char *name, int64_t v);
int h5io_attr_write_f64(hid_t file, const char *group, const char *name, double v);
int h5io_attr_write_str(hid_t file, const char *group, const char *name, const char *v);

enum h5io_attr_status {
	H5IO_ATTR_OK = 0,
	H5IO_ATTR_MISSING = -1,  /* no such group or attribute */
	H5IO_ATTR_WRONG_TYPE = -2,
	H5IO_ATTR_TOO_LONG = -3, /* a string longer than len - 1 */
	H5IO_ATTR_FAILED = -4,   /* an HDF5 failure */
	H5IO_ATTR_NOT_SCALAR = -5, /* a vector or an empty (null) dataspace */
};

/* collective: read attribute name of group into *v (an integer attribute for i64,
 * a float one for f64, a fixed-length string of at most len - 1 chars for str),
 * which must hold exactly one value (a scalar or a 1-element dataspace). */
enum h5io_attr_status h5io_attr_read_i64(hid_t file, const char *group, const char *name,
					 int64_t *v);
enum h5io_attr_status h5io_attr_read_f64(hid_t file, const char *group, const char *name,
					 double *v);
enum h5io_attr_status h5io_attr_read_str(hid_t file, const char *group, const char *name,
					 char *v, size_t len);

#endif
