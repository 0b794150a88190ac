#include "checkpoints/ckpt.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoints/ckpt_args.h"
#include "checkpoints/ckpt_dir.h"
#include "checkpoints/ckpt_union.h"
#include "checkpoints/h5io.h"
#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "parallel/comm.h"

#define PATH_LEN 1024
#define VERIFY_BLOCK_BYTES ((size_t)64 << 20)

/*
 * collective: 0 if rc == 0 on every rank; otherwise -1 on every rank, with the
 * message of the lowest failing rank in msg. Every step of a collective sequence
 * ends here, so no rank leaves the sequence alone.
 */
static int agree(MPI_Comm comm, int rc, char *msg)
{
	int root = comm_first_rank_with(comm, rc != 0);

	if (root < 0)
		return 0;
	comm_bcast(comm, msg, CKPT_ERR_LEN, root);
	return -1;
}

/* The HDF5 group ("/config") and attribute name ("hidden_size") of a key. */
static void attr_split(const char *key, char *group, size_t glen, const char **name)
{
	const char *slash = strrchr(key, '/');

	*name = slash ? slash + 1 : key;
	snprintf(group, glen, "/%.*s", slash ? (int)(slash - key) : 0, key);
}

/* The h5io element type of a group's datasets. */
static enum h5io_dtype dtype_of(const struct ckpt_group *g)
{
	return g->dtype == CKPT_UINT16 ? H5IO_U16 : H5IO_F32;
}

/* This rank's values of a slice, as the group's dtype stores them. */
static const void *slice_values(const struct ckpt_group *g, const struct ckpt_slice *s)
{
	return g->dtype == CKPT_UINT16 ? (const void *)s->u16 : (const void *)s->data;
}

/* What save and load start with, and hand on to the rest of the call. */
struct call {
	struct ckpt_rec *recs;
	struct ckpt_tensor *ts; /* every dataset of the call, sorted by path */
	int nt;
	int *any_owner;         /* [ngroups]: does some rank own group g? */
};

static void call_free(struct call *c)
{
	free(c->ts);
	free(c->recs);
	free(c->any_owner);
}

/*
 * collective: the arguments, then that every rank passes the same ones; then the
 * union of every rank's slices, in which the owners must tile every dataset exactly
 * once (saving: every group; loading: the groups some rank owns). opt != NULL when
 * saving. Not agreed yet.
 */
static int begin(MPI_Comm comm, const char *dir, int64_t iteration,
		 const struct ckpt_group *groups, int ngroups, const struct ckpt_attr *attrs,
		 int nattrs, const struct ckpt_options *opt, struct call *c, char *msg)
{
	int rank, rc, total;

	CHECK_MPI(MPI_Comm_rank(comm, &rank));
	rc = ckpt_args_check(dir, iteration, groups, ngroups, attrs, nattrs, opt, rank, msg);
	if (!rc) {
		MPI_Info hints;

		rc = h5io_mpiio_hints(&hints, msg, CKPT_ERR_LEN);
		if (hints != MPI_INFO_NULL)
			CHECK_MPI(MPI_Info_free(&hints));
	}
	if ((rc = agree(comm, rc, msg)))
		return rc;
	if (ckpt_args_same_everywhere(comm, dir, iteration, groups, ngroups, attrs, nattrs, opt,
				      msg))
		return -1;
	c->any_owner = xcalloc((size_t)ngroups + 1, sizeof(int));
	for (int g = 0; g < ngroups; g++)
		c->any_owner[g] = groups[g].owner;
	/* collective: all ranks of comm */
	CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, c->any_owner, ngroups, MPI_INT, MPI_LOR, comm));
	c->recs = ckpt_union_gather(comm, groups, ngroups, &total);
	c->ts = ckpt_union_build(c->recs, total, rank, &c->nt, msg, CKPT_ERR_LEN);
	for (int i = 0; c->ts && i < c->nt; i++)
		if ((opt || c->any_owner[c->ts[i].group]) &&
		    ckpt_union_check_tiling(&c->ts[i], msg, CKPT_ERR_LEN))
			return -1;
	return c->ts ? 0 : -1;
}

int ckpt_path(char *buf, size_t len, const char *dir, int64_t iteration)
{
	return ckpt_dir_file(buf, len, dir, iteration, false);
}

/* ---- save ----------------------------------------------------------------- */

static int write_attr(hid_t f, const char *key, enum ckpt_attr_type type, int64_t i,
		      double x, const char *s)
{
	char group[CKPT_ATTR_KEY_MAX + 1];
	const char *name;

	attr_split(key, group, sizeof(group), &name);
	if (type == CKPT_I64)
		return h5io_attr_write_i64(f, group, name, i);
	if (type == CKPT_F64)
		return h5io_attr_write_f64(f, group, name, x);
	return h5io_attr_write_str(f, group, name, s);
}

/*
 * (never returns) This rank's write, flush or close of the open checkpoint file tmp
 * failed. Agreeing on it is impossible: MPI-IO reports a failed collective write
 * only on the ranks that did the failing part of it (the aggregators), and HDF5 then
 * leaves its collective call early on those ranks while the others wait inside it,
 * for good (seen with a full disk: in H5Fflush, one rank out early, three in
 * MPI_File_sync's barrier; in H5Fclose, one rank in MPI_File_close's barrier, the
 * other in the metadata cache's). So the failing rank ends the job itself: it
 * removes the .tmp file (the previous checkpoint stays the latest), prints one line
 * and calls MPI_Abort. When several ranks fail at once, rank 0 reports and its abort
 * ends the others before they print; a failing rank other than 0 waits 5 s first,
 * in case rank 0 is the one waiting inside HDF5.
 */
static _Noreturn void abandon(MPI_Comm comm, int rank, const char *tmp, const char *msg)
{
	char line[CKPT_ERR_LEN + PATH_LEN + 160];
	struct timespec t0, now, nap = {0, 100 * 1000 * 1000};

	snprintf(line, sizeof(line), "%s: %s", tmp, msg);
	ckpt_dir_note_free_space(line, sizeof(line), tmp);
	unlink(tmp);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	now = t0;
	/* a loop: signals (the runtime's SIGTERM) cut a sleep short */
	while (rank != 0 && now.tv_sec - t0.tv_sec < 5) {
		nanosleep(&nap, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
	}
	log_error("%s; the save is abandoned, latest is unchanged", line);
	MPI_Abort(comm, 1);
	abort(); /* MPI_Abort does not return */
}

/* collective: everything inside the open file; a failure ends the job (abandon). */
static void write_contents(hid_t f, const char *tmp, const struct call *c,
			   const struct ckpt_group *groups, const struct ckpt_attr *attrs,
			   int nattrs, int64_t iteration, int level, MPI_Comm comm)
{
	char h5[256], msg[CKPT_ERR_LEN];
	int size, rank;
	hid_t dxpl = h5io_dxpl(true);
	struct ckpt_attr root[] = {
		{.key = "format", .type = CKPT_STR, .s = CKPT_FORMAT},
		{.key = "format_version", .type = CKPT_I64, .i = CKPT_FORMAT_VERSION},
		{.key = "iteration", .type = CKPT_I64, .i = iteration},
		{.key = "world_size", .type = CKPT_I64},
		{.key = "compression_level", .type = CKPT_I64, .i = level},
	};

	CHECK_MPI(MPI_Comm_size(comm, &size));
	CHECK_MPI(MPI_Comm_rank(comm, &rank));
	root[3].i = size;
	for (int k = 0; k < (int)(sizeof(root) / sizeof(root[0])) + nattrs; k++) {
		const struct ckpt_attr *a = k < 5 ? &root[k] : &attrs[k - 5];

		/* collective: all ranks, the same value */
		if (write_attr(f, a->key, a->type, a->i, a->f, a->s) < 0) {
			log_fail(msg, CKPT_ERR_LEN, "attribute %s: cannot write: %s", a->key,
				 h5io_error_text(h5, sizeof(h5)));
			abandon(comm, rank, tmp, msg);
		}
	}
	for (int k = 0; k < c->nt; k++) {
		const struct ckpt_tensor *t = &c->ts[k];
		const struct ckpt_rec *r = t->first;
		const struct ckpt_group *g = &groups[t->group];
		const struct ckpt_slice *s = t->local >= 0 ? &g->slices[t->local] : NULL;
		hsize_t dims[2] = {(hsize_t)r->gshape[0], (hsize_t)r->gshape[1]}, chunk[2];
		uint64_t start[2] = {0, 0}, count[2] = {0, 0};
		bool has = g->owner && s && !s->replica;
		hid_t d;

		/* collective: all ranks create every dataset with the same arguments */
		/* one chunk = the first owner's slab: with even splits no chunk is shared */
		h5io_chunk_for_slab(r->ndim, t->first_role->count, h5io_dtype_size(dtype_of(g)),
				    CKPT_CHUNK_MAX_BYTES, chunk);
		d = h5io_dataset_create(f, r->path, dtype_of(g), r->ndim, dims, chunk, level);
		if (d < 0) {
			log_fail(msg, CKPT_ERR_LEN, "tensor %s: cannot create %s: %s",
				 ckpt_rec_tensor(r), r->path, h5io_error_text(h5, sizeof(h5)));
			abandon(comm, rank, tmp, msg);
		}
		if (has)
			layout_slice_hyperslab(&s->slice, start, count);
		/* collective: owners their slab, everyone else an empty selection */
		if (h5io_dataset_write(d, dxpl, dtype_of(g), r->ndim, has, start, count,
				       has ? slice_values(g, s) : NULL) < 0) {
			log_fail(msg, CKPT_ERR_LEN, "tensor %s: cannot write %s: %s",
				 ckpt_rec_tensor(r), r->path, h5io_error_text(h5, sizeof(h5)));
			abandon(comm, rank, tmp, msg);
		}
		h5io_dataset_close(d);
		if (k == 0 && rank == 0)
			ckpt_dir_test_pause("write", iteration);
	}
	h5io_plist_close(dxpl);
}

/*
 * An upper bound of the file's size: the values (deflate never shrinks random
 * weights much and can grow them a little: 1/32 more), ~3 KiB of object header and
 * chunk index per dataset (measured: 285 KiB of metadata for 90 datasets), and the
 * superblock and groups. Saturates instead of overflowing.
 */
static uint64_t size_estimate(const struct ckpt_tensor *ts, int nt,
			      const struct ckpt_group *groups)
{
	uint64_t total = (uint64_t)64 << 10;

	for (int i = 0; i < nt; i++) {
		const struct ckpt_rec *r = ts[i].first;
		size_t numel, raw;
		uint64_t add;

		if (!size_mul_ok((size_t)r->gshape[0], (size_t)r->gshape[1], &numel) ||
		    !size_mul_ok(numel, h5io_dtype_size(dtype_of(&groups[ts[i].group])), &raw))
			return UINT64_MAX;
		add = (uint64_t)raw + (uint64_t)raw / 32 + 4096;
		if (add > UINT64_MAX - total)
			return UINT64_MAX;
		total += add;
	}
	return total;
}

int ckpt_save(const char *dir, int64_t iteration, const struct ckpt_group *groups, int ngroups,
	      const struct ckpt_attr *attrs, int nattrs, const struct ckpt_options *opt,
	      MPI_Comm comm, char *err, size_t errlen)
{
	const struct ckpt_options defaults = {0, 0};
	char msg[CKPT_ERR_LEN] = "", tmp[PATH_LEN], h5[256];
	struct call c = {0};
	int rank, rc;
	struct h5io_quiet quiet;
	hid_t f;

	CHECK_MPI(MPI_Comm_rank(comm, &rank));
	opt = opt ? opt : &defaults;
	/* 1. the arguments; the layout: one shape per dataset, owners tiling each once */
	rc = begin(comm, dir, iteration, groups, ngroups, attrs, nattrs, opt, &c, msg);
	/* 2. the values: every rank checks what it writes */
	if (!rc)
		rc = ckpt_args_check_finite(groups, ngroups, rank, msg);
	if ((rc = agree(comm, rc, msg)))
		goto out;

	/* 3. the file, under its temporary name, once there is room for it (a full
	 * disk is an error here, before HDF5 has anything it could not close) */
	ckpt_dir_file(tmp, sizeof(tmp), dir, iteration, true);
	if (rank == 0)
		rc = ckpt_dir_prepare(dir, msg, CKPT_ERR_LEN) ||
		     ckpt_dir_reserve(tmp, size_estimate(c.ts, c.nt, groups), msg, CKPT_ERR_LEN);
	if ((rc = agree(comm, rc, msg)))
		goto out;
	h5io_quiet_begin(&quiet);
	/* collective: all ranks of comm from here to the close */
	f = h5io_file_create(tmp, comm);
	if (f < 0)
		rc = log_fail(msg, CKPT_ERR_LEN, "%s: cannot create: %s", tmp, h5io_error_text(h5, sizeof(h5)));
	if (!(rc = agree(comm, rc, msg))) {
		/* from here a failure on any rank ends the job: see abandon() */
		write_contents(f, tmp, &c, groups, attrs, nattrs, iteration,
			       opt->compression_level, comm);
		if (h5io_file_flush(f) < 0) {
			log_fail(msg, CKPT_ERR_LEN, "cannot flush: %s",
				 h5io_error_text(h5, sizeof(h5)));
			abandon(comm, rank, tmp, msg);
		}
		if (h5io_file_close(f) < 0) {
			log_fail(msg, CKPT_ERR_LEN, "cannot close: %s",
				 h5io_error_text(h5, sizeof(h5)));
			abandon(comm, rank, tmp, msg);
		}
	}
	h5io_quiet_end(&quiet);
	if (rc)
		goto out;

	/* 4. publish: rename, then `latest`, each made durable before the next */
	if (rank == 0)
		rc = ckpt_dir_publish(dir, iteration, msg, CKPT_ERR_LEN);
	if ((rc = agree(comm, rc, msg)))
		goto out;
	/* 5. only now that the new checkpoint is complete: prune */
	if (rank == 0)
		ckpt_dir_prune(dir, iteration, opt->keep_last);
	comm_barrier(comm);
out:
	call_free(&c);
	if (rc)
		snprintf(err, errlen, "%s", msg);
	return rc;
}

int ckpt_latest(const char *dir, int64_t *iteration, char *err, size_t errlen)
{
	if (!dir || !dir[0] || strlen(dir) > CKPT_DIR_MAX) {
		snprintf(err, errlen, "checkpoint directory: empty or longer than %d bytes",
			 CKPT_DIR_MAX);
		return -1;
	}
	return ckpt_dir_latest(dir, iteration, err, errlen);
}

/* ---- load ----------------------------------------------------------------- */

/* The file's root attributes name this format. collective for a parallel file. */
static int check_format(hid_t f, const char *path, char *msg)
{
	char format[64] = "";
	int64_t version = 0;

	if (h5io_attr_read_str(f, "/", "format", format, sizeof(format)) != H5IO_ATTR_OK ||
	    strcmp(format, CKPT_FORMAT))
		return log_fail(msg, CKPT_ERR_LEN, "%s: not a retnet checkpoint (root attribute format is not "
			    "\"%s\")", path, CKPT_FORMAT);
	if (h5io_attr_read_i64(f, "/", "format_version", &version) != H5IO_ATTR_OK ||
	    version != CKPT_FORMAT_VERSION)
		return log_fail(msg, CKPT_ERR_LEN, "%s: format_version %" PRId64 ", this build reads %d", path,
			    version, CKPT_FORMAT_VERSION);
	return 0;
}

/* Open a dataset and check it has the group's element type and the tensor's global
 * shape. */
static hid_t open_checked(hid_t f, const char *file, const struct ckpt_rec *r,
			  enum h5io_dtype want, char *msg)
{
	const char *path = r->path, *name = ckpt_rec_tensor(r);
	char h5[256], sa[64], sb[64], ta[32];
	int64_t got[2];
	hsize_t dims[2];
	int ndim;
	enum h5io_dtype type = H5IO_OTHER;
	hid_t d;

	if (!h5io_path_exists(f, path))
		return log_fail(msg, CKPT_ERR_LEN, "%s: tensor %s: not in the checkpoint (no %s)",
				file, name, path);
	d = h5io_dataset_open(f, path);
	if (d < 0)
		return log_fail(msg, CKPT_ERR_LEN, "%s: tensor %s: cannot open %s: %s", file, name,
				path, h5io_error_text(h5, sizeof(h5)));
	if (h5io_dataset_shape(d, &ndim, dims, &type) < 0 || type != want || ndim != r->ndim ||
	    dims[0] != (hsize_t)r->gshape[0] || dims[1] != (hsize_t)r->gshape[1]) {
		got[0] = (int64_t)dims[0];
		got[1] = (int64_t)dims[1];
		ckpt_union_shape_str(sa, sizeof(sa), ndim, got);
		ckpt_union_shape_str(sb, sizeof(sb), r->ndim, r->gshape);
		/* "float32", "uint16", or "not float32" for any other type */
		snprintf(ta, sizeof(ta), "%s%s", type == H5IO_OTHER ? "not " : "",
			 h5io_dtype_name(type == H5IO_OTHER ? want : type));
		h5io_dataset_close(d);
		return log_fail(msg, CKPT_ERR_LEN, "%s: tensor %s: %s is %s %s, the slice expects "
				"%s %s", file, name, path, ta, sa, h5io_dtype_name(want), sb);
	}
	return d;
}

struct coverage {
	const struct call *c;
	const char *file, *group;
	char *msg;
};

/* A dataset of an owned group in the file: an owner must load it. */
static int loaded_by_owner(const char *path, void *ctx)
{
	struct coverage *cv = ctx;
	const struct ckpt_tensor *t = ckpt_union_find(cv->c->ts, cv->c->nt, path);

	for (int k = 0; t && k < t->nrec; k++)
		if (t->first[k].role)
			return 0;
	log_fail(cv->msg, CKPT_ERR_LEN, "%s: tensor %s: %s is in the checkpoint but no owner of "
		 "group %s loads it", cv->file, path + strlen(cv->group) + 2, path, cv->group);
	return 1;
}

static int read_attrs(hid_t f, const char *file, struct ckpt_attr *attrs, int nattrs,
		      char *msg)
{
	static const char *const type_name[] = {"an integer", "a float", "a string"};
	char group[CKPT_ATTR_KEY_MAX + 1];
	const char *name;
	int rc = 0;

	/* collective: every rank reads every key, even after a failure */
	for (int i = 0; i < nattrs; i++) {
		struct ckpt_attr *a = &attrs[i];
		enum h5io_attr_status st;

		attr_split(a->key, group, sizeof(group), &name);
		if (a->type == CKPT_I64)
			st = h5io_attr_read_i64(f, group, name, &a->i);
		else if (a->type == CKPT_F64)
			st = h5io_attr_read_f64(f, group, name, &a->f);
		else
			st = h5io_attr_read_str(f, group, name, a->s, sizeof(a->s));
		a->missing = st == H5IO_ATTR_MISSING;
		if (a->missing && a->optional)
			continue;
		if (st != H5IO_ATTR_OK && rc == 0)
			rc = log_fail(msg, CKPT_ERR_LEN, "%s: attribute %s: %s%s", file, a->key,
				  st == H5IO_ATTR_MISSING ? "missing" :
				  st == H5IO_ATTR_WRONG_TYPE ? "not " :
				  st == H5IO_ATTR_TOO_LONG ? "string too long" :
				  st == H5IO_ATTR_NOT_SCALAR ? "not a single value" : "cannot read",
				  st == H5IO_ATTR_WRONG_TYPE ? type_name[a->type] : "");
	}
	return rc;
}

/* collective: the datasets of every tensor of the union, each rank its slices. */
static int read_tensors(hid_t f, const char *file, const struct call *c,
			const struct ckpt_group *groups, MPI_Comm comm, char *msg)
{
	char h5[256];
	hid_t dxpl = h5io_dxpl(true);
	int rc = 0;

	for (int k = 0; rc == 0 && k < c->nt; k++) {
		const struct ckpt_tensor *t = &c->ts[k];
		const struct ckpt_rec *r = t->first;
		const struct ckpt_group *g = &groups[t->group];
		const struct ckpt_slice *s = t->local >= 0 ? &g->slices[t->local] : NULL;
		uint64_t start[2] = {0, 0}, count[2] = {0, 0};
		hid_t d;

		/* collective: all ranks open every dataset any rank reads */
		d = open_checked(f, file, r, dtype_of(g), msg);
		if ((rc = agree(comm, d < 0 ? -1 : 0, msg))) {
			if (d >= 0)
				h5io_dataset_close(d);
			break;
		}
		if (s)
			layout_slice_hyperslab(&s->slice, start, count);
		/* collective: each rank its hyperslab or an empty selection */
		if (h5io_dataset_read(d, dxpl, dtype_of(g), r->ndim, s != NULL, start, count,
				      s ? (void *)slice_values(g, s) : NULL) < 0)
			rc = log_fail(msg, CKPT_ERR_LEN, "%s: tensor %s: reading %s failed: %s", file,
				      ckpt_rec_tensor(r), r->path, h5io_error_text(h5, sizeof(h5)));
		h5io_dataset_close(d);
		rc = agree(comm, rc, msg);
	}
	h5io_plist_close(dxpl);
	return rc;
}

/* collective: every dataset of a group some rank owns is loaded by an owner. */
static int check_coverage(hid_t f, const char *file, const struct call *c,
			  const struct ckpt_group *groups, int ngroups, MPI_Comm comm, char *msg)
{
	char h5[256], group[CKPT_GROUP_NAME_MAX + 1];
	int rc = 0;

	for (int g = 0; rc == 0 && g < ngroups; g++) {
		struct coverage cv = {c, file, groups[g].name, msg};

		if (!c->any_owner[g])
			continue;
		snprintf(group, sizeof(group), "/%s", groups[g].name);
		/* collective: all ranks visit the same groups */
		if (h5io_visit_datasets(f, group, loaded_by_owner, &cv) < 0)
			log_fail(msg, CKPT_ERR_LEN, "%s: cannot list %s: %s", file, group,
				 h5io_error_text(h5, sizeof(h5)));
		rc = agree(comm, msg[0] ? -1 : 0, msg);
	}
	return rc;
}

int ckpt_load(const char *dir, int64_t iteration, const struct ckpt_group *groups, int ngroups,
	      struct ckpt_attr *attrs, int nattrs, MPI_Comm comm, char *err, size_t errlen)
{
	char msg[CKPT_ERR_LEN] = "", file[PATH_LEN], h5[256];
	struct call c = {0};
	int rc;
	struct h5io_quiet quiet;
	hid_t f;

	/* 1. the arguments and the layout (owners tiling every dataset of their groups) */
	rc = begin(comm, dir, iteration, groups, ngroups, attrs, nattrs, NULL, &c, msg);
	if ((rc = agree(comm, rc, msg)))
		goto out;

	/* 2. the file: format, coverage of its datasets, datasets, attributes */
	ckpt_path(file, sizeof(file), dir, iteration);
	h5io_quiet_begin(&quiet);
	/* collective: all ranks of comm from here to the close */
	f = h5io_file_open_ro(file, comm);
	if (f < 0)
		rc = log_fail(msg, CKPT_ERR_LEN, "%s: cannot open: %s", file, h5io_error_text(h5, sizeof(h5)));
	if (!(rc = agree(comm, rc, msg))) {
		rc = agree(comm, check_format(f, file, msg), msg);
		if (!rc)
			rc = check_coverage(f, file, &c, groups, ngroups, comm, msg);
		if (!rc)
			rc = read_tensors(f, file, &c, groups, comm, msg);
		if (!rc)
			rc = agree(comm, read_attrs(f, file, attrs, nattrs, msg), msg);
		if (h5io_file_close(f) < 0 && rc == 0)
			rc = log_fail(msg, CKPT_ERR_LEN, "%s: close: %s", file, h5io_error_text(h5, sizeof(h5)));
		rc = agree(comm, rc, msg);
	}
	h5io_quiet_end(&quiet);
out:
	call_free(&c);
	if (rc)
		snprintf(err, errlen, "%s", msg);
	return rc;
}

/* ---- verify (one rank, serial) ------------------------------------------ */

struct verify {
	hid_t f;
	const char *file;
	struct ckpt_verify_info *info;
	char *msg;
};

static int verify_dataset(const char *path, void *ctx)
{
	struct verify *v = ctx;
	char h5[256];
	hsize_t dims[2];
	int ndim, rc;
	enum h5io_dtype type;
	uint64_t values = 0, bad_row = 0;
	hid_t d = h5io_dataset_open(v->f, path);

	if (d < 0)
		return -log_fail(v->msg, CKPT_ERR_LEN, "%s: cannot open %s: %s", v->file, path,
			     h5io_error_text(h5, sizeof(h5)));
	if (h5io_dataset_shape(d, &ndim, dims, &type) < 0 || type == H5IO_OTHER) {
		h5io_dataset_close(d);
		return -log_fail(v->msg, CKPT_ERR_LEN, "%s: %s: not a 1-D or 2-D float32 or uint16 "
				 "dataset", v->file, path);
	}
	/* every chunk decompressed and its checksum verified */
	rc = h5io_dataset_scan(d, VERIFY_BLOCK_BYTES, &values, &bad_row);
	if (rc < 0)
		log_fail(v->msg, CKPT_ERR_LEN, "%s: reading %s failed: %s", v->file, path,
		     h5io_error_text(h5, sizeof(h5)));
	else if (rc > 0)
		log_fail(v->msg, CKPT_ERR_LEN, "%s: %s: a non-finite value in row %" PRIu64, v->file, path, bad_row);
	v->info->datasets++;
	v->info->values += values;
	v->info->stored_bytes += h5io_dataset_storage_bytes(d);
	h5io_dataset_close(d);
	return rc ? 1 : 0;
}

int ckpt_verify(const char *path, struct ckpt_verify_info *info, char *err, size_t errlen)
{
	struct ckpt_verify_info local = {0};
	char msg[CKPT_ERR_LEN] = "", h5[256];
	struct h5io_quiet quiet;
	struct verify v;
	int rc;
	hid_t f;

	info = info ? info : &local;
	memset(info, 0, sizeof(*info));
	h5io_quiet_begin(&quiet);
	f = h5io_file_open_ro(path, MPI_COMM_NULL);
	if (f < 0) {
		rc = log_fail(msg, CKPT_ERR_LEN, "%s: cannot open: %s", path, h5io_error_text(h5, sizeof(h5)));
	} else {
		v = (struct verify){f, path, info, msg};
		rc = check_format(f, path, msg);
		if (!rc && h5io_attr_read_i64(f, "/", "iteration", &info->iteration))
			rc = log_fail(msg, CKPT_ERR_LEN, "%s: root attribute iteration missing", path);
		if (!rc && h5io_visit_datasets(f, "/", verify_dataset, &v) != 0 && !msg[0])
			log_fail(msg, CKPT_ERR_LEN, "%s: cannot list the datasets: %s", path,
			     h5io_error_text(h5, sizeof(h5)));
		rc = msg[0] ? -1 : 0;
		if (h5io_file_close(f) < 0 && rc == 0)
			rc = log_fail(msg, CKPT_ERR_LEN, "%s: close: %s", path, h5io_error_text(h5, sizeof(h5)));
	}
	h5io_quiet_end(&quiet);
	if (rc)
		snprintf(err, errlen, "%s", msg);
	return rc;
}
