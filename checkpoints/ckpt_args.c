#include "checkpoints/ckpt_args.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"

static const char *const reserved_keys[] = {"format", "format_version", "iteration",
					    "world_size", "compression_level"};

bool ckpt_args_valid_name(const char *s, size_t max)
{
	size_t seg = 0, n = strnlen(s, max);

	if (n == 0 || n == max)
		return false;
	for (size_t i = 0; i <= n; i++) {
		char c = s[i];

		if (c == '/' || c == '\0') {
			if (seg == 0 || (seg == 1 && s[i - 1] == '.') ||
			    (seg == 2 && s[i - 1] == '.' && s[i - 2] == '.'))
				return false;
			seg = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-') {
			seg++;
		} else {
			return false;
		}
	}
	return true;
}

/* A slice of group g (values of elem bytes): a valid name, a 1-D or 2-D global
 * shape, a block inside it. */
static int check_slice(const char *g, size_t elem, const struct ckpt_slice *cs, int rank,
		       char *msg)
{
	const struct layout_slice *s = &cs->slice;
	const char *name = s->name;
	int64_t r = s->global_shape[0], c = s->global_shape[1];
	size_t numel;

	if (!ckpt_args_valid_name(name, sizeof(s->name)))
		return log_fail(msg, CKPT_ERR_LEN, "group %s: tensor \"%.*s\" (rank %d): a name is "
				"'/'-separated segments of [A-Za-z0-9_.-], shorter than %d bytes", g,
				(int)strnlen(name, sizeof(s->name)), name, rank, LAYOUT_NAME_MAX);
	if ((s->ndim != 1 && s->ndim != 2) || r <= 0 || c <= 0 || (s->ndim == 1 && c != 1))
		return log_fail(msg, CKPT_ERR_LEN, "dataset /%s/%s (rank %d): not a 1-D or 2-D "
				"tensor (ndim %d, global shape %" PRId64 "x%" PRId64 ")", g, name,
				rank, s->ndim, r, c);
	for (int d = 0; d < 2; d++)
		if (s->start[d] < 0 || s->shape[d] <= 0 ||
		    s->start[d] > s->global_shape[d] - s->shape[d])
			return log_fail(msg, CKPT_ERR_LEN, "dataset /%s/%s (rank %d): the block at "
					"(%" PRId64 ", %" PRId64 ") of shape (%" PRId64 ", %" PRId64
					") does not fit the global shape (%" PRId64 ", %" PRId64 ")",
					g, name, rank, s->start[0], s->start[1], s->shape[0],
					s->shape[1], r, c);
	if (!size_mul_ok((size_t)s->shape[0], (size_t)s->shape[1], &numel) ||
	    !size_mul_ok(numel, elem, &numel))
		return log_fail(msg, CKPT_ERR_LEN, "dataset /%s/%s (rank %d): too large", g, name,
				rank);
	if (!cs->data)
		return log_fail(msg, CKPT_ERR_LEN, "dataset /%s/%s (rank %d): no data (NULL)", g,
				name, rank);
	return 0;
}

/* Is group b inside group a ("optimizer" and "optimizer/exp_avg")? */
static bool inside(const char *a, const char *b)
{
	size_t n = strlen(a);

	return !strncmp(a, b, n) && b[n] == '/';
}

static int check_groups(const struct ckpt_group *groups, int ngroups, int rank, char *msg)
{
	if (ngroups < 0 || (ngroups > 0 && !groups))
		return log_fail(msg, CKPT_ERR_LEN, "state groups: %d given with %s pointer", ngroups,
				groups ? "a" : "a NULL");
	for (int i = 0; i < ngroups; i++) {
		const struct ckpt_group *g = &groups[i];

		if (!ckpt_args_valid_name(g->name, sizeof(g->name)))
			return log_fail(msg, CKPT_ERR_LEN, "group \"%.*s\": a name is '/'-separated "
					"segments of [A-Za-z0-9_.-], shorter than %d bytes",
					(int)strnlen(g->name, sizeof(g->name)), g->name,
					CKPT_GROUP_NAME_MAX);
		for (int j = 0; j < i; j++) {
			const char *o = groups[j].name;

			if (!strcmp(o, g->name))
				return log_fail(msg, CKPT_ERR_LEN, "group %s: given twice", o);
			/* its datasets could be the other's ("a" + "b/t" = "a/b" + "t") */
			if (inside(o, g->name) || inside(g->name, o))
				return log_fail(msg, CKPT_ERR_LEN, "groups %s and %s: one inside the "
						"other (a group holds everything under /<name>/)",
						o, g->name);
		}
		if (g->dtype != CKPT_FLOAT32 && g->dtype != CKPT_UINT16)
			return log_fail(msg, CKPT_ERR_LEN, "group %s: unknown dtype %d", g->name,
					(int)g->dtype);
		if (g->n < 0 || (g->n > 0 && !g->slices))
			return log_fail(msg, CKPT_ERR_LEN, "group %s: %d slices given with %s pointer",
					g->name, g->n, g->slices ? "a" : "a NULL");
		for (int k = 0; k < g->n; k++)
			if (check_slice(g->name, g->dtype == CKPT_UINT16 ? sizeof(uint16_t)
									 : sizeof(float),
					&g->slices[k], rank, msg))
				return -1;
	}
	return 0;
}

static bool is_reserved(const char *key)
{
	for (size_t i = 0; i < sizeof(reserved_keys) / sizeof(reserved_keys[0]); i++)
		if (!strcmp(key, reserved_keys[i]))
			return true;
	return false;
}

static int check_attrs(const struct ckpt_attr *attrs, int nattrs, bool saving, char *msg)
{
	if (nattrs < 0 || (nattrs > 0 && !attrs))
		return log_fail(msg, CKPT_ERR_LEN, "attributes: %d given with %s pointer", nattrs,
				attrs ? "a" : "a NULL");
	for (int i = 0; i < nattrs; i++) {
		const struct ckpt_attr *a = &attrs[i];

		if (!ckpt_args_valid_name(a->key, sizeof(a->key)))
			return log_fail(msg, CKPT_ERR_LEN, "attribute \"%.*s\": a key is '/'-separated "
					"segments of [A-Za-z0-9_.-]",
					(int)strnlen(a->key, sizeof(a->key)), a->key);
		if (a->type != CKPT_I64 && a->type != CKPT_F64 && a->type != CKPT_STR)
			return log_fail(msg, CKPT_ERR_LEN, "attribute %s: unknown type %d", a->key,
					(int)a->type);
		if (saving && is_reserved(a->key))
			return log_fail(msg, CKPT_ERR_LEN, "attribute %s: reserved (ckpt writes it)",
					a->key);
		if (saving && a->type == CKPT_STR && strnlen(a->s, sizeof(a->s)) == sizeof(a->s))
			return log_fail(msg, CKPT_ERR_LEN, "attribute %s: string not NUL-terminated",
					a->key);
		if (saving && a->type == CKPT_F64 && !isfinite(a->f))
			return log_fail(msg, CKPT_ERR_LEN, "attribute %s: not finite", a->key);
		for (int j = 0; j < i; j++)
			if (!strcmp(attrs[j].key, a->key))
				return log_fail(msg, CKPT_ERR_LEN, "attribute %s: given twice", a->key);
	}
	return 0;
}

int ckpt_args_check(const char *dir, int64_t iteration, const struct ckpt_group *groups,
		    int ngroups, const struct ckpt_attr *attrs, int nattrs,
		    const struct ckpt_options *opt, int rank, char *msg)
{
	if (!dir || !dir[0] || strlen(dir) > CKPT_DIR_MAX)
		return log_fail(msg, CKPT_ERR_LEN, "checkpoint directory: empty or longer than %d "
				"bytes", CKPT_DIR_MAX);
	if (iteration < 0)
		return log_fail(msg, CKPT_ERR_LEN, "%s: iteration %" PRId64 " is negative", dir,
				iteration);
	if (opt && (opt->compression_level < 0 || opt->compression_level > 9 ||
		    opt->keep_last < 0))
		return log_fail(msg, CKPT_ERR_LEN, "%s: compression level %d (0..9) or keep_last %d "
				"(>= 0) out of range", dir, opt->compression_level, opt->keep_last);
	if (check_groups(groups, ngroups, rank, msg))
		return -1;
	return check_attrs(attrs, nattrs, opt != NULL, msg);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static uint64_t hash_attrs(uint64_t h, const struct ckpt_attr *attrs, int nattrs, bool values)
{
	h = fnv(h, &nattrs, sizeof(nattrs));
	for (int i = 0; i < nattrs; i++) {
		const struct ckpt_attr *a = &attrs[i];

		h = fnv(h, a->key, strnlen(a->key, sizeof(a->key)) + 1);
		h = fnv(h, &a->type, sizeof(a->type));
		if (values && a->type == CKPT_I64)
			h = fnv(h, &a->i, sizeof(a->i));
		else if (values && a->type == CKPT_F64)
			h = fnv(h, &a->f, sizeof(a->f));
		else if (values)
			h = fnv(h, a->s, strnlen(a->s, sizeof(a->s)));
	}
	return h;
}

int ckpt_args_same_everywhere(MPI_Comm comm, const char *dir, int64_t iteration,
			      const struct ckpt_group *groups, int ngroups,
			      const struct ckpt_attr *attrs, int nattrs,
			      const struct ckpt_options *opt, char *msg)
{
	const uint64_t basis = 1469598103934665603ull;
	const char *what = opt ? "save" : "load";
	uint64_t h = fnv(basis, dir, strlen(dir)), hg = fnv(basis, &ngroups, sizeof(ngroups));
	uint64_t v[4];

	h = fnv(h, &iteration, sizeof(iteration));
	if (opt)
		h = fnv(h, opt, sizeof(*opt));
	h = hash_attrs(h, attrs, nattrs, opt != NULL);
	for (int i = 0; i < ngroups; i++) {
		hg = fnv(hg, groups[i].name, strlen(groups[i].name) + 1);
		hg = fnv(hg, &groups[i].dtype, sizeof(groups[i].dtype));
	}
	/* equal everywhere iff max(h) == ~max(~h), i.e. max(h) == min(h) */
	v[0] = h;
	v[1] = ~h;
	v[2] = hg;
	v[3] = ~hg;
	/* collective: all ranks of comm */
	CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, v, 4, MPI_UINT64_T, MPI_MAX, comm));
	if (v[0] != ~v[1])
		return log_fail(msg, CKPT_ERR_LEN, "%s: ranks disagree on the directory, iteration, "
				"options or attribute keys of the %s", dir, what);
	if (v[2] != ~v[3])
		return log_fail(msg, CKPT_ERR_LEN, "%s: ranks disagree on the state groups of the "
				"%s: every rank passes the same names and dtypes in the same order",
				dir, what);
	return 0;
}

int ckpt_args_check_finite(const struct ckpt_group *groups, int ngroups, int rank, char *msg)
{
	for (int i = 0; i < ngroups; i++) {
		const struct ckpt_group *g = &groups[i];

		for (int k = 0; g->owner && g->dtype == CKPT_FLOAT32 && k < g->n; k++) {
			const struct ckpt_slice *s = &g->slices[k];
			size_t numel = layout_slice_numel(&s->slice);

			for (size_t j = 0; !s->replica && j < numel; j++)
				if (!isfinite(s->data[j]))
					return log_fail(msg, CKPT_ERR_LEN, "dataset /%s/%s: a "
							"non-finite value (%g at local index %zu "
							"on rank %d)", g->name, s->slice.name,
							(double)s->data[j], j, rank);
		}
	}
	return 0;
}
