#include "trainer/train_ckpt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoints/ckpt.h"
#include "common/alloc.h"
#include "common/check.h"
#include "common/log.h"
#include "data/gpt2bpe.h"
#include "parallel/comm.h"

/* One attribute of the file and the field of struct ckpt_info it comes from or
 * goes to: one list serves writing and reading, so they cannot drift apart. */
enum field_type { FIELD_I64, FIELD_F64, FIELD_STR, FIELD_U32, FIELD_U64,
		  FIELD_BOOL /* a bool, kept as an integer 0 or 1 */ };

struct attr_ref {
	const char *key;
	enum field_type type;
	void *field;
	size_t size;   /* FIELD_STR: the field's buffer */
	bool optional; /* older files may lack it: the field keeps its value */
};

#define ATTR_MAX (SPEC_MAX_ROWS + 16)

static struct attr_ref ref(const char *key, enum field_type type, void *field, size_t size)
{
	return (struct attr_ref){.key = key, .type = type, .field = field, .size = size};
}

static int attr_refs(struct ckpt_info *info, struct attr_ref *r)
{
	struct spec_saved saved[SPEC_MAX_ROWS];
	int n = spec_saved_fields(&info->model, saved), k = 0;

	for (int i = 0; i < n; i++) {
		r[k] = ref(saved[i].attr, saved[i].type == FLAG_INT ? FIELD_I64
					  : saved[i].type == FLAG_FLOAT ? FIELD_F64
					  : saved[i].type == FLAG_BOOL ? FIELD_BOOL : FIELD_STR,
			   saved[i].value, saved[i].size);
		r[k++].optional = saved[i].optional;
	}
	r[k++] = ref("tokenizer/id", FIELD_STR, info->tok.id, sizeof(info->tok.id));
	r[k++] = ref("tokenizer/vocab_size", FIELD_U32, &info->tok.vocab, 0);
	r[k] = ref("tokenizer/n_merges", FIELD_I64, &info->n_merges, 0);
	r[k++].optional = true; /* older checkpoints: no table */
	r[k] = ref("tokenizer/eod_id", FIELD_I64, &info->eod_id, 0);
	r[k++].optional = true; /* older checkpoints: -1, no end-of-document id */
	r[k] = ref("tokenizer/table_bytes", FIELD_I64, &info->table_bytes, 0);
	r[k++].optional = true; /* older checkpoints: 0, no GPT-2 table */
	r[k++] = ref("layout/tensor_model_parallel_size", FIELD_I64, &info->tp, 0);
	r[k++] = ref("layout/pipeline_model_parallel_size", FIELD_I64, &info->pp, 0);
	r[k++] = ref("layout/data_parallel_size", FIELD_I64, &info->dp, 0);
	r[k] = ref("layout/context_parallel_size", FIELD_I64, &info->cp, 0);
	r[k++].optional = true; /* files written before context parallelism: 1 */
	r[k++] = ref("optimizer/step", FIELD_I64, &info->adam_step, 0);
	r[k++] = ref("data/epoch", FIELD_U64, &info->loader.epoch, 0);
	r[k++] = ref("data/position", FIELD_U64, &info->loader.position, 0);
	r[k++] = ref("data/n_windows", FIELD_U64, &info->loader.n_windows, 0);
	r[k++] = ref("data/seq_length", FIELD_U64, &info->loader.seq_len, 0);
	r[k++] = ref("data/seed", FIELD_U64, &info->loader.seed, 0);
	ENSURE(k <= ATTR_MAX);
	return k;
}

/* The attributes of refs, with their values when `values`. */
static void attrs_of(struct ckpt_attr *a, const struct attr_ref *r, int n, bool values)
{
	for (int i = 0; i < n; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		snprintf(a[i].key, sizeof(a[i].key), "%s", r[i].key);
		a[i].type = r[i].type == FIELD_F64 ? CKPT_F64 : r[i].type == FIELD_STR ? CKPT_STR
											: CKPT_I64;
		a[i].optional = r[i].optional;
		if (!values)
			continue;
		switch (r[i].type) {
		case FIELD_I64: a[i].i = *(const int64_t *)r[i].field; break;
		case FIELD_U32: a[i].i = *(const uint32_t *)r[i].field; break;
		case FIELD_U64: a[i].i = (int64_t)*(const uint64_t *)r[i].field; break;
		case FIELD_BOOL: a[i].i = *(const bool *)r[i].field; break;
		case FIELD_F64: a[i].f = *(const double *)r[i].field; break;
		case FIELD_STR: snprintf(a[i].s, sizeof(a[i].s), "%s", (const char *)r[i].field); break;
		}
	}
}

/* The values read into the fields; -1 with err for a string longer than its field
 * (its cut prefix could match a real tokenizer). */
static int fields_of(const struct ckpt_attr *a, const struct attr_ref *r, int n,
		     const char *path, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++) {
		if (a[i].missing)
			continue; /* an optional attribute an older file lacks: the default */
		switch (r[i].type) {
		case FIELD_I64: *(int64_t *)r[i].field = a[i].i; break;
		case FIELD_U32: *(uint32_t *)r[i].field = (uint32_t)a[i].i; break;
		case FIELD_U64: *(uint64_t *)r[i].field = (uint64_t)a[i].i; break;
		case FIELD_BOOL:
			if (a[i].i != 0 && a[i].i != 1)
				return log_fail(err, errlen, "%s: attribute %s: %lld is not 0 or 1",
						path, r[i].key, (long long)a[i].i);
			*(bool *)r[i].field = a[i].i;
			break;
		case FIELD_F64: *(double *)r[i].field = a[i].f; break;
		case FIELD_STR:
			if (strlen(a[i].s) >= r[i].size)
				return log_fail(err, errlen, "%s: attribute %s: longer than %zu "
						"characters", path, r[i].key, r[i].size - 1);
			snprintf(r[i].field, r[i].size, "%s", a[i].s);
			break;
		}
	}
	return 0;
}

int train_ckpt_resolve(const char *dir, int64_t iteration, int64_t *out, MPI_Comm comm,
		       char *err, size_t errlen)
{
	int rank;
	struct {
		int64_t iteration;
		int rc;
		char msg[CKPT_ERR_LEN];
	} r = {iteration, 0, ""};

	CHECK_MPI(MPI_Comm_rank(comm, &rank));
	if (rank == 0 && iteration < 0)
		r.rc = ckpt_latest(dir, &r.iteration, r.msg, sizeof(r.msg));
	if (rank == 0 && iteration >= 0) {
		char path[CKPT_ERR_LEN / 2];

		ckpt_path(path, sizeof(path), dir, iteration);
		if (access(path, R_OK)) {
			snprintf(r.msg, sizeof(r.msg), "%s: no checkpoint of iteration %lld (%s)",
				 path, (long long)iteration, strerror(errno));
			r.rc = -1;
		}
	}
	comm_bcast(comm, &r, sizeof(r), 0);
	if (r.rc) {
		snprintf(err, errlen, "%s", r.msg);
		return -1;
	}
	*out = r.iteration;
	return 0;
}

/* The group that holds a tokenizer's table: (n, 2) uint16 `name` in "tokenizer"
 * (a BPE one's "merges", a GPT-2 one's "table"), owned by rank 0 of the call
 * (saving: listed by rank 0 alone). */
static void tokenizer_group(struct ckpt_group *g, struct ckpt_slice *s, const char *name,
			    uint16_t *merges, int64_t n, bool listed, bool owner)
{
	memset(g, 0, sizeof(*g));
	memset(s, 0, sizeof(*s));
	ENSURE(layout_slice_init(&s->slice, name, 2, n, 2, -1, 0, 0) == 0);
	s->u16 = merges;
	snprintf(g->name, sizeof(g->name), "tokenizer");
	g->dtype = CKPT_UINT16;
	g->slices = s;
	g->n = listed;
	g->owner = owner;
}

/* collective over comm: a BPE tokenizer's merge table, every rank the whole of it,
 * checked against the id the attributes gave. */
static int read_merges(const char *dir, int64_t iteration, struct ckpt_info *info,
		       MPI_Comm comm, char *err, size_t errlen)
{
	const int64_t want = (int64_t)info->tok.vocab - TOKENIZER_BYTES_VOCAB;
	char what[sizeof(info->path) + 32];
	struct tokenizer table;
	struct ckpt_group g;
	struct ckpt_slice sl;
	int rank;

	if (info->n_merges < 0)
		return 0; /* written before checkpoints carried the table */
	if (info->n_merges != (tokenizer_is_bpe(&info->tok) ? want : 0))
		return log_fail(err, errlen, "%s: attribute tokenizer/n_merges: %lld merges do not "
				"make tokenizer \"%s\" of %u ids", info->path,
				(long long)info->n_merges, info->tok.id, info->tok.vocab);
	if (info->n_merges == 0)
		return 0; /* bytes: no table */
	CHECK_MPI(MPI_Comm_rank(comm, &rank));
	info->merges = xcalloc(2 * (size_t)info->n_merges, sizeof(uint16_t));
	tokenizer_group(&g, &sl, "merges", info->merges, info->n_merges, true, rank == 0);
	/* collective: all ranks of comm; every rank reads the whole table */
	if (ckpt_load(dir, iteration, &g, 1, NULL, 0, comm, err, errlen))
		return -1;
	snprintf(what, sizeof(what), "%s: /tokenizer/merges", info->path);
	/* the same table on every rank: every rank reaches the same verdict */
	if (tokenizer_init_bpe(&table, info->merges, (uint32_t)info->n_merges, what, err,
			       errlen))
		return -1;
	if (!tokenizer_equal(&table, &info->tok))
		return log_fail(err, errlen, "%s: the table's hash gives tokenizer \"%s\", not "
				"\"%s\" of attribute tokenizer/id", what, table.id, info->tok.id);
	info->tok = table;
	return 0;
}

/* collective over comm: a GPT-2 tokenizer's table, every rank the whole of it,
 * checked (data/gpt2bpe.h) against the id and the end-of-document id the
 * attributes gave; any other tokenizer has neither a table nor an end-of-document
 * id. */
static int read_table(const char *dir, int64_t iteration, struct ckpt_info *info,
		      MPI_Comm comm, char *err, size_t errlen)
{
	char what[sizeof(info->path) + 32];
	struct tokenizer table;
	struct ckpt_group g;
	struct ckpt_slice sl;
	int rank;

	if (!gpt2bpe_is(&info->tok)) {
		if (info->table_bytes != 0 || info->eod_id != -1)
			return log_fail(err, errlen, "%s: attributes tokenizer/table_bytes %lld and "
					"tokenizer/eod_id %lld: tokenizer \"%s\" has no table and no "
					"end-of-document id", info->path,
					(long long)info->table_bytes, (long long)info->eod_id,
					info->tok.id);
		return 0;
	}
	if (info->table_bytes <= 0 || info->table_bytes % 4 || info->table_bytes > INT32_MAX)
		return log_fail(err, errlen, "%s: attribute tokenizer/table_bytes: %lld is not the "
				"size of a GPT-2 tokenizer's table (a positive multiple of 4)",
				info->path, (long long)info->table_bytes);
	CHECK_MPI(MPI_Comm_rank(comm, &rank));
	info->table = xcalloc((size_t)info->table_bytes / 2, sizeof(uint16_t));
	tokenizer_group(&g, &sl, "table", info->table, info->table_bytes / 4, true, rank == 0);
	/* collective: all ranks of comm; every rank reads the whole table */
	if (ckpt_load(dir, iteration, &g, 1, NULL, 0, comm, err, errlen))
		return -1;
	snprintf(what, sizeof(what), "%s: /tokenizer/table", info->path);
	/* the same table on every rank: every rank reaches the same verdict */
	if (gpt2bpe_table_check(&table, (const unsigned char *)info->table,
				(uint32_t)info->table_bytes, what, err, errlen))
		return -1;
	if (!tokenizer_equal(&table, &info->tok))
		return log_fail(err, errlen, "%s: the table's hash gives tokenizer \"%s\", not "
				"\"%s\" of attribute tokenizer/id", what, table.id, info->tok.id);
	if (info->eod_id != table.eod_id)
		return log_fail(err, errlen, "%s: attribute tokenizer/eod_id %lld is not the "
				"table's end-of-document id %d", info->path,
				(long long)info->eod_id, table.eod_id);
	info->tok = table;
	return 0;
}

int train_ckpt_read_info(const char *dir, int64_t iteration, struct ckpt_info *info,
			 MPI_Comm comm, char *err, size_t errlen)
{
	struct attr_ref refs[ATTR_MAX];
	struct ckpt_attr attrs[ATTR_MAX];
	int n;

	memset(info, 0, sizeof(*info));
	spec_defaults(&info->model, 0);
	info->cp = 1; /* what a file without layout/context_parallel_size was written at */
	info->n_merges = -1;
	info->eod_id = -1;
	info->tok.eod_id = -1; /* no end-of-document id (a zeroed one would be token 0) */
	n = attr_refs(info, refs);
	attrs_of(attrs, refs, n, false);
	if (ckpt_load(dir, iteration, NULL, 0, attrs, n, comm, err, errlen))
		return -1;
	info->iteration = iteration;
	ckpt_path(info->path, sizeof(info->path), dir, iteration);
	if (fields_of(attrs, refs, n, info->path, err, errlen))
		return -1;
	/* the model's values came from the file: messages name its attributes */
	spec_mark_saved(&info->model, info->path);
	if (train_ckpt_check_info(info, err, errlen) ||
	    read_merges(dir, iteration, info, comm, err, errlen) ||
	    read_table(dir, iteration, info, comm, err, errlen)) {
		train_ckpt_info_free(info);
		return -1;
	}
	return 0;
}

void train_ckpt_info_free(struct ckpt_info *info)
{
	free(info->merges);
	free(info->table);
	info->merges = NULL;
	info->table = NULL;
	info->tok.merges = NULL;
	info->tok.n_merges = 0;
	info->tok.table = NULL;
	info->tok.table_bytes = 0;
}

bool train_ckpt_lacks_merges(const struct ckpt_info *info)
{
	return (tokenizer_is_bpe(&info->tok) && !info->tok.merges) ||
	       (gpt2bpe_is(&info->tok) && !info->tok.table);
}

/* lo <= v <= hi, else the message. */
static int in_range(const struct ckpt_info *info, const char *key, int64_t v, int64_t lo,
		    int64_t hi, char *err, size_t errlen)
{
	if (v >= lo && v <= hi)
		return 0;
	return log_fail(err, errlen, "%s: attribute %s: %lld is out of range [%lld, %lld]",
			info->path, key, (long long)v, (long long)lo, (long long)hi);
}

int train_ckpt_check_info(const struct ckpt_info *info, char *err, size_t errlen)
{
	const struct run_spec *c = &info->model;

	/* Sizes from a file, checked before anyone divides or allocates with them: the
	 * model against the ranges and rules of the run specification (every rank read
	 * the same attributes, so every rank agrees), the rest here. */
	if (spec_validate(c, 1, err, errlen) ||
	    in_range(info, "tokenizer/vocab_size", info->tok.vocab, 1, 1 << 16, err, errlen) ||
	    in_range(info, "layout/tensor_model_parallel_size", info->tp, 1, 1 << 16, err,
		     errlen) ||
	    in_range(info, "layout/pipeline_model_parallel_size", info->pp, 1, 1 << 16, err,
		     errlen) ||
	    in_range(info, "layout/data_parallel_size", info->dp, 1, INT32_MAX, err, errlen) ||
	    in_range(info, "layout/context_parallel_size", info->cp, 1, 1 << 16, err, errlen) ||
	    in_range(info, "optimizer/step", info->adam_step, 0, INT64_MAX, err, errlen))
		return -1;
	if (!info->tok.id[0] || info->tok.vocab != (uint32_t)c->vocab_size)
		return log_fail(err, errlen, "%s: attribute tokenizer/vocab_size: tokenizer "
				"\"%s\" of %u ids does not fit config/vocab_size %lld",
				info->path, info->tok.id, info->tok.vocab,
				(long long)c->vocab_size);
	return 0;
}

/* The state groups of a save or a load, and the slices they point to. */
struct state_groups {
	struct ckpt_group g[4];
	struct ckpt_slice *slices;
	int n;
	struct ckpt_slice merges;   /* the tokenizer's merge or GPT-2 table (saving) */
	uint16_t *merges_copy;      /* its values (rank 0), freed with the groups */
};

/*
 * The groups the model (its parameters) and, with opt, the optimizer (its two
 * moments) declare: every slice points into their blocks. A tensor the tensor-
 * parallel group replicates is owned by its rank 0. The parameters are written by
 * the first data-parallel replica, the others holding copies; so are the moments,
 * unless the optimizer is distributed, when each data-parallel rank owns and writes
 * its own shard of them.
 */
static void groups_of(struct state_groups *sg, struct model *m, const struct adamw *opt,
		      const struct grid *g)
{
	const struct param_set *p = model_params(m);
	/* dp0: the first of the ranks that hold the same parameters (data x context) */
	const bool tp0 = g->axis[GRID_TENSOR].rank == 0, dp0 = g->replicas.rank == 0;
	struct ckpt_slice *s;

	memset(sg, 0, sizeof(*sg));
	s = sg->slices = xcalloc((size_t)p->count + 2 * (size_t)(opt ? opt->npieces : 0) + 1,
				 sizeof(*s));
	sg->g[0] = (struct ckpt_group){.name = "model", .slices = s, .n = p->count, .owner = dp0};
	for (int i = 0; i < p->count; i++)
		*s++ = (struct ckpt_slice){.slice = p->desc[i].slice,
					   .replica = !p->desc[i].sharded && !tp0,
					   .data = p->data + p->desc[i].offset};
	sg->n = 1;
	if (!opt)
		return;
	for (int k = 0; k < 2; k++) {
		float *moment = k ? opt->v : opt->m;

		sg->g[1 + k] = (struct ckpt_group){.slices = s, .n = opt->npieces,
						   .owner = opt->sharded || dp0};
		snprintf(sg->g[1 + k].name, sizeof(sg->g[1 + k].name), "%s",
			 k ? "optimizer/exp_avg_sq" : "optimizer/exp_avg");
		for (int i = 0; i < opt->npieces; i++, s++) {
			const struct adamw_piece *pc = &opt->pieces[i];
			const struct param_desc *d = &p->desc[pc->tensor];

			ENSURE(layout_slice_rows(&s->slice, &d->slice, pc->first_row, pc->rows) == 0);
			s->replica = !d->sharded && !tp0;
			s->data = moment + pc->state;
		}
	}
	sg->n = 3;
}

int train_ckpt_save(const char *dir, int64_t iteration, int compression_level,
		    int keep_last, const struct run_spec *spec, struct model *m,
		    const struct adamw *opt, const struct loader *train, const struct grid *g,
		    struct ckpt_async *async, char *err, size_t errlen)
{
	struct ckpt_info *info = xcalloc(1, sizeof(*info));
	struct attr_ref refs[ATTR_MAX];
	struct ckpt_attr attrs[ATTR_MAX];
	struct state_groups sg;
	struct ckpt_options o = {compression_level, keep_last};
	int n, rc;

	groups_of(&sg, m, opt, g);

	info->model = *spec;
	info->tok = train->tok;
	/* a BPE or GPT-2 loader's tokenizer comes from its shards, which carry the table */
	ENSURE(!tokenizer_is_bpe(&info->tok) || info->tok.merges);
	ENSURE(!gpt2bpe_is(&info->tok) || info->tok.table);
	info->n_merges = info->tok.n_merges;
	info->eod_id = info->tok.eod_id;
	info->table_bytes = info->tok.table ? info->tok.table_bytes : 0;
	if (info->tok.table) {
		const bool rank0 = g->world_rank == 0;

		/* the table's bytes as little-endian uint16 words (an x86 host) */
		sg.merges_copy = xmalloc(info->tok.table_bytes);
		memcpy(sg.merges_copy, info->tok.table, info->tok.table_bytes);
		tokenizer_group(&sg.g[sg.n++], &sg.merges, "table", sg.merges_copy,
				info->tok.table_bytes / 4, rank0, rank0);
	}
	if (info->n_merges) {
		const bool rank0 = g->world_rank == 0;

		sg.merges_copy = xmalloc(2 * (size_t)info->n_merges * sizeof(uint16_t));
		memcpy(sg.merges_copy, info->tok.merges, 2 * (size_t)info->n_merges *
							 sizeof(uint16_t));
		tokenizer_group(&sg.g[sg.n++], &sg.merges, "merges", sg.merges_copy,
				info->n_merges, rank0, rank0);
	}
	info->tp = g->axis[GRID_TENSOR].size;
	info->pp = g->axis[GRID_PIPELINE].size;
	info->dp = g->axis[GRID_DATA].size;
	info->cp = g->axis[GRID_CONTEXT].size;
	info->adam_step = opt->step;
	loader_state_get(train, &info->loader);
	n = attr_refs(info, refs);
	attrs_of(attrs, refs, n, true);
	/* collective: the whole grid; each group's owners write */
	if (async)
		rc = ckpt_async_start(async, dir, iteration, sg.g, sg.n, attrs, n, &o, err, errlen);
	else
		rc = ckpt_save(dir, iteration, sg.g, sg.n, attrs, n, &o, g->world, err, errlen);
	free(sg.slices);
	free(sg.merges_copy);
	free(info);
	return rc;
}

int train_ckpt_load(const char *dir, int64_t iteration, struct model *m, struct adamw *opt,
		    const struct grid *g, char *err, size_t errlen)
{
	struct state_groups sg;
	int rc;

	groups_of(&sg, m, opt, g);
	/* collective: the whole grid; each group's owners must cover every tensor */
	rc = ckpt_load(dir, iteration, sg.g, sg.n, NULL, 0, g->world, err, errlen);
	free(sg.slices);
	return rc;
}
