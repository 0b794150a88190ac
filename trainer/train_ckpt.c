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
#include "trainer/config.h"
#include "parallel/comm.h"
#include "trainer/config.h"

enum { ATTR_MAX = 40 };

struct attr_list {
	struct ckpt_attr a[ATTR_MAX];
	int n;
};

static struct ckpt_attr *attr_add(struct attr_list *l, const char *key, enum ckpt_attr_type t)
{
	struct ckpt_attr *a;

	ENSURE(l->n < ATTR_MAX);
	a = &l->a[l->n++];
	memset(a, 0, sizeof(*a));
	snprintf(a->key, sizeof(a->key), "%s", key);
	a->type = t;
	return a;
}

static void add_i64(struct attr_list *l, const char *key, int64_t v)
{
	attr_add(l, key, CKPT_I64)->i = v;
}

static void add_str(struct attr_list *l, const char *key, const char *v)
{
	snprintf(attr_add(l, key, CKPT_STR)->s, CKPT_ATTR_STR_MAX, "%s", v);
}

/*
 * The attribute list, in one fixed order, both for writing (values from info) and
 * for reading (values ignored, types and keys used).
 */
static void attrs_of(struct attr_list *l, const struct ckpt_info *info)
{
	const struct model_config *c = &info->cfg;

	l->n = 0;
	add_i64(l, "config/vocab_size", c->vocab);
	add_i64(l, "config/hidden_size", c->hidden);
	add_i64(l, "config/num_layers", c->layers);
	add_i64(l, "config/num_heads", c->heads);
	add_i64(l, "config/ffn_hidden_size", c->ffn_hidden);
	add_i64(l, "config/chunk_size", c->chunk);
	add_i64(l, "config/seq_length", c->seq_len);
	add_i64(l, "config/seed", (int64_t)c->seed);
	add_str(l, "tokenizer/id", info->tok.id);
	add_i64(l, "tokenizer/vocab_size", info->tok.vocab);
	add_i64(l, "layout/tensor_model_parallel_size", info->tp);
	add_i64(l, "layout/pipeline_model_parallel_size", info->pp);
	add_i64(l, "layout/data_parallel_size", info->dp);
	add_i64(l, "optimizer/step", info->adam_step);
	add_i64(l, "data/epoch", (int64_t)info->loader.epoch);
	add_i64(l, "data/position", (int64_t)info->loader.position);
	add_i64(l, "data/n_windows", (int64_t)info->loader.n_windows);
	add_i64(l, "data/seq_length", (int64_t)info->loader.seq_len);
	add_i64(l, "data/seed", (int64_t)info->loader.seed);
}

/* Index of the attribute tokenizer/id in attrs_of's order. */
enum { ATTR_TOKENIZER_ID = 8 };

static void info_from_attrs(struct ckpt_info *info, const struct attr_list *l)
{
	int k = 0;
	struct model_config *c = &info->cfg;

	c->vocab = l->a[k++].i;
	c->hidden = l->a[k++].i;
	c->layers = l->a[k++].i;
	c->heads = l->a[k++].i;
	c->ffn_hidden = l->a[k++].i;
	c->chunk = l->a[k++].i;
	c->seq_len = l->a[k++].i;
	c->seed = (uint64_t)l->a[k++].i;
	c->micro_batch = 0;
	/* An id longer than the field cannot match any tokenizer: keep it cut. */
	memcpy(info->tok.id, l->a[k++].s, sizeof(info->tok.id) - 1);
	info->tok.id[sizeof(info->tok.id) - 1] = '\0';
	info->tok.vocab = (uint32_t)l->a[k++].i;
	info->tp = l->a[k++].i;
	info->pp = l->a[k++].i;
	info->dp = l->a[k++].i;
	info->adam_step = l->a[k++].i;
	info->loader.epoch = (uint64_t)l->a[k++].i;
	info->loader.position = (uint64_t)l->a[k++].i;
	info->loader.n_windows = (uint64_t)l->a[k++].i;
	info->loader.seq_len = (uint64_t)l->a[k++].i;
	info->loader.seed = (uint64_t)l->a[k++].i;
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

int train_ckpt_read_info(const char *dir, int64_t iteration, struct ckpt_info *info,
			 MPI_Comm comm, char *err, size_t errlen)
{
	struct attr_list l;

	memset(info, 0, sizeof(*info));
	attrs_of(&l, info);
	if (ckpt_load(dir, iteration, NULL, 0, l.a, l.n, comm, err, errlen))
		return -1;
	info_from_attrs(info, &l);
	info->iteration = iteration;
	ckpt_path(info->path, sizeof(info->path), dir, iteration);
	/* info_from_attrs keeps at most the field's 31 characters: refuse a longer id
	 * here rather than let its cut prefix match a real tokenizer. */
	if (strlen(l.a[ATTR_TOKENIZER_ID].s) >= sizeof(info->tok.id))
		return log_fail(err, errlen, "%s: attribute tokenizer/id: longer than %zu "
				"characters", info->path, sizeof(info->tok.id) - 1);
	return train_ckpt_check_info(info, err, errlen);
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
	const struct model_config *c = &info->cfg;

	/* Sizes from a file, checked before anyone divides or allocates with them: the
	 * model against the ranges and rules of retnet-train's own flags (every rank read
	 * the same attributes, so every rank agrees), the rest here. */
	if (config_check_model(c, info->path, err, errlen) ||
	    in_range(info, "tokenizer/vocab_size", info->tok.vocab, 1, 1 << 16, err, errlen) ||
	    in_range(info, "layout/tensor_model_parallel_size", info->tp, 1, 1 << 16, err,
		     errlen) ||
	    in_range(info, "layout/pipeline_model_parallel_size", info->pp, 1, 1 << 16, err,
		     errlen) ||
	    in_range(info, "layout/data_parallel_size", info->dp, 1, INT32_MAX, err, errlen) ||
	    in_range(info, "optimizer/step", info->adam_step, 0, INT64_MAX, err, errlen))
		return -1;
	if (!info->tok.id[0] || info->tok.vocab != (uint32_t)c->vocab)
		return log_fail(err, errlen, "%s: attribute tokenizer/vocab_size: tokenizer "
				"\"%s\" of %u ids does not fit config/vocab_size %lld",
				info->path, info->tok.id, info->tok.vocab, (long long)c->vocab);
	return 0;
}

int train_ckpt_model_config(const struct ckpt_info *info, int64_t seq_len, int64_t chunk,
			    int64_t micro_batch, int64_t tp, int64_t pp,
			    struct model_config *mc, char *err, size_t errlen)
{
	if (train_ckpt_check_info(info, err, errlen))
		return -1;
	*mc = info->cfg;
	if (seq_len > 0)
		mc->seq_len = seq_len;
	if (chunk > 0)
		mc->chunk = chunk;
	else if (mc->seq_len % mc->chunk && mc->seq_len < mc->chunk)
		mc->chunk = mc->seq_len;
	mc->micro_batch = micro_batch;
	if (micro_batch < 1 || mc->seq_len < 1 || mc->chunk < 1)
		return log_fail(err, errlen, "--micro-batch-size, --seq-length, --chunk-size: "
				"%lld, %lld, %lld must be >= 1", (long long)micro_batch,
				(long long)mc->seq_len, (long long)mc->chunk);
	if (mc->seq_len % mc->chunk)
		return log_fail(err, errlen, "--chunk-size: %lld does not divide --seq-length %lld",
				(long long)mc->chunk, (long long)mc->seq_len);
	if (tp < 1 || pp < 1 || mc->heads % tp || mc->ffn_hidden % tp)
		return log_fail(err, errlen, "--tensor-model-parallel-size: %lld does not divide "
				"the checkpoint's %lld heads and FFN width %lld", (long long)tp,
				(long long)mc->heads, (long long)mc->ffn_hidden);
	if (pp > mc->layers)
		return log_fail(err, errlen, "--pipeline-model-parallel-size: %lld stages for the "
				"checkpoint's %lld layers", (long long)pp, (long long)mc->layers);
	return 0;
}

/*
 * The state groups of the model (its parameters) and, with opt, of the AdamW
 * moments, each slice pointing into the flat blocks; *slices holds them all (free
 * it). Returns the number of groups (3, or 1 without opt).
 */
static int groups_of(struct ckpt_group gr[3], struct ckpt_slice **slices, const struct model *m,
		     const struct adamw *opt, const struct grid *g)
{
	static const char *const names[3] = {"model", "optimizer/exp_avg",
					     "optimizer/exp_avg_sq"};
	const struct param_set *p = &m->params;
	float *const base[3] = {p->data, opt ? opt->m : NULL, opt ? opt->v : NULL};
	int n = opt ? 3 : 1;
	struct ckpt_slice *s = xcalloc((size_t)n * (size_t)p->count + 1, sizeof(*s));

	for (int k = 0; k < n; k++) {
		memset(&gr[k], 0, sizeof(gr[k]));
		snprintf(gr[k].name, sizeof(gr[k].name), "%s", names[k]);
		gr[k].slices = s + (size_t)k * (size_t)p->count;
		gr[k].n = p->count;
		/* The first DP replica writes; the others hold copies of its state. */
		gr[k].owner = g->dp_rank == 0;
		for (int i = 0; i < p->count; i++) {
			const struct param_desc *d = &p->desc[i];
			struct ckpt_slice *e = &s[(size_t)k * (size_t)p->count + (size_t)i];

			e->slice = d->slice;
			/* A tensor the TP group replicates is owned by its rank 0. */
			e->replica = !d->sharded && g->tp_rank != 0;
			e->data = base[k] + d->offset;
		}
	}
	*slices = s;
	return n;
}

int train_ckpt_save(const char *dir, int64_t iteration, int compression_level,
		    int keep_last, const struct model *m, const struct adamw *opt,
		    const struct loader *train, const struct grid *g, char *err, size_t errlen)
{
	struct ckpt_info info;
	struct attr_list l;
	struct ckpt_group gr[3];
	struct ckpt_slice *s;
	int n = groups_of(gr, &s, m, opt, g);
	struct ckpt_options o = {compression_level, keep_last};
	int rc;

	memset(&info, 0, sizeof(info));
	info.cfg = m->cfg;
	info.tok = train->tok;
	info.tp = g->tp_size;
	info.pp = g->pp_size;
	info.dp = g->dp_size;
	info.adam_step = opt->step;
	loader_state_get(train, &info.loader);
	attrs_of(&l, &info);
	/* collective: the whole grid; DP replicas other than the first write nothing */
	rc = ckpt_save(dir, iteration, gr, n, l.a, l.n, &o, g->world, err, errlen);
	free(s);
	return rc;
}

int train_ckpt_load(const char *dir, int64_t iteration, struct model *m, struct adamw *opt,
		    const struct grid *g, char *err, size_t errlen)
{
	struct ckpt_group gr[3];
	struct ckpt_slice *s;
	int n = groups_of(gr, &s, m, opt, g);
	int rc;

	/* collective: the whole grid; the first DP replica must cover every tensor */
	rc = ckpt_load(dir, iteration, gr, n, NULL, 0, g->world, err, errlen);
	free(s);
	return rc;
}

int train_ckpt_build_model(struct model *m, const char *dir, int64_t iteration,
			   const struct model_config *cfg, const struct grid *g, char *err,
			   size_t errlen)
{
	const struct model_layout layout = {
		.tp_rank = g->tp_rank, .tp_size = g->tp_size, .tp_comm = g->tp_comm,
		.pp_rank = g->pp_rank, .pp_size = g->pp_size, .slots = 1,
	};

	model_init(m, cfg, &layout);
	if (train_ckpt_load(dir, iteration, m, NULL, g, err, errlen)) {
		model_free(m);
		return -1;
	}
	return 0;
}
