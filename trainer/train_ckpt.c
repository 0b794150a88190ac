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
	if (ckpt_load(dir, iteration, NULL, 0, l.a, l.n, comm, false, err, errlen))
		return -1;
	info_from_attrs(info, &l);
	info->iteration = iteration;
	ckpt_path(info->path, sizeof(info->path), dir, iteration);
	/* Sizes from a file: checked before the caller divides or allocates with them
	 * (every rank read the same attributes, so every rank agrees). */
	if (config_check_model(&info->cfg, info->path, err, errlen))
		return -1;
	for (int k = 0; k < l.n; k++)
		if (!strcmp(l.a[k].key, "tokenizer/vocab_size") && l.a[k].i != info->cfg.vocab)
			return log_fail(err, errlen, "%s: tokenizer/vocab_size %lld does not "
					"match config/vocab_size %lld", info->path,
					(long long)l.a[k].i, (long long)info->cfg.vocab);
	return 0;
}

/* One entry per parameter tensor, pointing into the flat blocks. */
static struct ckpt_entry *entries_of(const struct model *m, const struct adamw *opt,
				     const struct grid *g)
{
	const struct param_set *p = &m->params;
	struct ckpt_entry *e = xcalloc((size_t)p->count + 1, sizeof(*e));

	for (int i = 0; i < p->count; i++) {
		const struct param_desc *d = &p->desc[i];

		e[i].slice = d->slice;
		/* A tensor the TP group replicates is owned by its rank 0. */
		e[i].replica = d->slice.split_dim < 0 && g->tp_rank != 0;
		e[i].model = p->data + d->offset;
		e[i].exp_avg = opt ? opt->m + d->offset : NULL;
		e[i].exp_avg_sq = opt ? opt->v + d->offset : NULL;
	}
	return e;
}

int train_ckpt_save(const char *dir, int64_t iteration, int compression_level,
		    int keep_last, const struct model *m, const struct adamw *opt,
		    const struct loader *train, const struct grid *g, char *err, size_t errlen)
{
	struct ckpt_info info;
	struct attr_list l;
	struct ckpt_entry *e = entries_of(m, opt, g);
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
	rc = ckpt_save(dir, iteration, e, m->params.count, l.a, l.n, &o, g->world,
		       g->dp_rank == 0, err, errlen);
	free(e);
	return rc;
}

int train_ckpt_load(const char *dir, int64_t iteration, struct model *m, struct adamw *opt,
		    const struct grid *g, char *err, size_t errlen)
{
	struct ckpt_entry *e = entries_of(m, opt, g);
	int rc;

	/* collective: the whole grid; the first DP replica must cover every tensor */
	rc = ckpt_load(dir, iteration, e, m->params.count, NULL, 0, g->world, g->dp_rank == 0,
		       err, errlen);
	free(e);
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
