#include "trainer/spec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "parallel/pipeline.h"

enum { TR = SPEC_TRAIN, EV = SPEC_EVAL, GE = SPEC_GENERATE, BE = SPEC_BENCH,
       BC = SPEC_BENCH_CKPT, PR = SPEC_PREP };

/* The programs that read the model from a checkpoint rather than from their flags. */
#define MODEL_FROM_CHECKPOINT (SPEC_EVAL | SPEC_GENERATE)

struct spec_row {
	struct flag_row flag;
	unsigned programs;  /* the programs that take the flag */
	const char *attr;   /* the checkpoint attribute that keeps it, or NULL */
	unsigned saved;     /* SHAPE, ABSENT_OK for a row with an attribute; else 0 */
};

enum {
	SHAPE = 1,     /* part of the model's shape: a checkpoint must agree */
	/* checkpoints written before the row existed lack the attribute: they load
	 * with the row's default (which must be the behaviour they were trained with) */
	ABSENT_OK = 2,
};

#define F(field) offsetof(struct run_spec, field)
#define SZ(field) sizeof(((struct run_spec *)0)->field)
/* type, offset, size, min, max, choices of a struct flag_row */
#define INT(field, lo, hi) FLAG_INT, F(field), 0, lo, hi, NULL
#define REAL(field, lo, hi) FLAG_FLOAT, F(field), 0, lo, hi, NULL
#define TEXT(field) FLAG_TEXT, F(field), SZ(field), 0, 0, NULL
#define CHOICE(field, words) FLAG_CHOICE, F(field), SZ(field), 0, 0, words
#define PATHS(field) FLAG_PATHS, F(field), 0, 0, 0, NULL
#define BOOL(field) FLAG_BOOL, F(field), 0, 0, 0, NULL
#define BIG 9.2e18

/*
 * The table. Columns: flag (also the --config key) and type with its field and
 * range; default ("" = derived, as the help says); help; programs; checkpoint
 * attribute; SHAPE (a checkpoint must agree) and ABSENT_OK (older checkpoints may lack
 * it; every checkpoint has the first eight). A flag appears once per program; a
 * second row for other programs gives them another default or help.
 */
static const struct spec_row table[] = {
	/* the model */
	{{"num-layers", INT(num_layers, 1, 4096), "2", "transformer blocks L"},
	 TR | BE | BC, "config/num_layers", SHAPE},
	{{"hidden-size", INT(hidden_size, 2, 1 << 20), "64", "model width d"},
	 TR | BE | BC, "config/hidden_size", SHAPE},
	{{"num-heads", INT(num_heads, 1, 4096), "4", "retention heads H (d/H even, >= 4)"},
	 TR | BE | BC, "config/num_heads", SHAPE},
	{{"ffn-hidden-size", INT(ffn_hidden_size, 1, 1 << 22), "", "FFN width f (default 2d)"},
	 TR | BE | BC, "config/ffn_hidden_size", SHAPE},
	{{"seq-length", INT(seq_length, 1, 1 << 24), "32",
	  "tokens per sequence T (retnet-eval: per window or stream piece, default the "
	  "checkpoint's)"}, TR | EV | BE | BC, "config/seq_length", 0},
	{{"chunk-size", INT(chunk_size, 1, 1 << 16), "8",
	  "retention chunk C, divides T (retnet-eval: default the checkpoint's)"},
	 TR | EV | BE | BC, "config/chunk_size", 0},
	{{"vocab-size", INT(vocab_size, 2, 1 << 16), "256", "vocabulary V (256: byte tokenizer)"},
	 TR | BE | BC, "config/vocab_size", SHAPE},
	{{"seed", INT(seed, 0, BIG), "1234", "initialisation and data order"},
	 TR | BE | BC, "config/seed", 0},

	/* batch, schedule, optimizer */
	{{"micro-batch-size", INT(micro_batch_size, 1, 1 << 20), "2",
	  "sequences per rank per forward"}, TR | BE | BC, NULL, 0},
	{{"micro-batch-size", INT(micro_batch_size, 1, 1 << 20), "1",
	  "windows per forward (windows mode)"}, EV, NULL, 0},
	{{"global-batch-size", INT(global_batch_size, 1, 1 << 24), "",
	  "sequences per optimizer step (default micro-batch x data-parallel size)"},
	 TR, NULL, 0},
	{{"train-iters", INT(train_iters, 1, BIG), "20", "optimizer steps"}, TR, NULL, 0},
	{{"lr", REAL(lr, 0, 10), "1e-3", "peak learning rate"}, TR, NULL, 0},
	{{"min-lr", REAL(min_lr, 0, 10), "1e-4", "learning rate at the end of decay"},
	 TR, NULL, 0},
	{{"lr-warmup-iters", INT(lr_warmup_iters, 0, BIG), "0", "linear warm-up steps"},
	 TR, NULL, 0},
	{{"lr-decay-iters", INT(lr_decay_iters, 0, BIG), "",
	  "decay ends here (default --train-iters)"}, TR, NULL, 0},
	{{"lr-decay-style", CHOICE(lr_decay_style, "linear|cosine|constant"), "linear",
	  "learning-rate decay after warm-up"}, TR, NULL, 0},
	{{"weight-decay", REAL(weight_decay, 0, 10), "0.05", "AdamW decay on matrices"},
	 TR, NULL, 0},
	{{"clip-grad", REAL(clip_grad, 0, 1e30), "2.0", "global gradient norm limit (0: off)"},
	 TR, NULL, 0},
	{{"adam-beta1", REAL(adam_beta1, 0, 0.999999), "0.9", "AdamW beta1"}, TR, NULL, 0},
	{{"adam-beta2", REAL(adam_beta2, 0, 0.999999), "0.98", "AdamW beta2"}, TR, NULL, 0},
	{{"adam-eps", REAL(adam_eps, 1e-30, 1), "1e-8", "AdamW epsilon"}, TR, NULL, 0},

	/* data, logging, held-out estimates */
	{{"data-path", PATHS(data_path), "", "training token shards (retnet-prep)"},
	 TR, NULL, 0},
	{{"valid-data-path", PATHS(valid_data_path), "", "held-out token shards"},
	 TR, NULL, 0},
	{{"reset-attention-mask", BOOL(reset_attention_mask), "",
	  "retention's state restarts at each document of a window: a document starts "
	  "after each end-of-document token of the corpus's tokenizer (training and "
	  "held-out estimates; retnet-eval: default the checkpoint's)"},
	 TR | EV, "config/reset_attention_mask", ABSENT_OK},
	{{"no-reset-attention-mask", BOOL(no_reset_attention_mask), "",
	  "score without document resets, whatever the checkpoint was trained with"},
	 EV, NULL, 0},
	{{"eod-mask-loss", BOOL(eod_mask_loss), "",
	  "do not count the loss where the input token is the end-of-document token (the "
	  "prediction of the next document's first token); the loss is the mean over the "
	  "counted targets of the global batch"}, TR, "config/eod_mask_loss", ABSENT_OK},
	{{"log-interval", INT(log_interval, 1, BIG), "1", "steps between log lines"},
	 TR, NULL, 0},
	{{"eval-interval", INT(eval_interval, 0, BIG), "0",
	  "steps between held-out evaluations (0: only at the end)"}, TR, NULL, 0},
	{{"eval-iters", INT(eval_iters, 1, BIG), "4", "held-out batches per evaluation"},
	 TR, NULL, 0},
	{{"metrics", TEXT(metrics), "", "JSON-lines metrics file"}, TR, NULL, 0},
	{{"save-raw-params", TEXT(save_raw_params), "",
	  "write rank 0's float32 parameter block here at the end (tests, debugging)"},
	 TR, NULL, 0},

	/* checkpoints and stopping */
	{{"save", TEXT(save), "",
	  "checkpoint directory to write (every --save-interval and at the end)"},
	 TR, NULL, 0},
	{{"save-interval", INT(save_interval, 0, BIG), "0",
	  "steps between checkpoints (0: only at the end)"}, TR, NULL, 0},
	{{"load", TEXT(load), "",
	  "checkpoint directory: retnet-train resumes from its latest checkpoint (none "
	  "there yet: from the seed); retnet-eval and retnet-generate read the model from it "
	  "(required)"}, TR | EV | GE, NULL, 0},
	{{"iteration", INT(iteration, -1, BIG), "-1",
	  "the checkpoint's iteration (-1: the latest)"}, EV | GE, NULL, 0},
	{{"async-save", BOOL(async_save), "",
	  "write checkpoints in the background: training goes on while a copy is written; "
	  "the next save, the end and a stop wait for it"}, TR, NULL, 0},
	{{"keep-last", INT(keep_last, 0, 1 << 20), "0",
	  "keep this many newest checkpoints (0: all)"}, TR, NULL, 0},
	{{"ckpt-compression-level", INT(ckpt_compression_level, 0, 9), "1",
	  "deflate level of checkpoints (0: off)"}, TR, NULL, 0},
	{{"exit-duration-in-mins", REAL(exit_duration_in_mins, 0, 1e9), "0",
	  "stop with a checkpoint after this many minutes (0: never); exit status 3"},
	 TR, NULL, 0},
	{{"distributed-timeout-minutes", REAL(distributed_timeout_minutes, 0, 1e6), "10",
	  "end the job (exit status 5) when no step or checkpoint completes for this many "
	  "minutes: a stalled collective, a network partition (0: never)"}, TR, NULL, 0},

	/* memory, precision, guards */
	{{"recompute-activations", BOOL(recompute_activations), "",
	  "keep only each block's input; backward recomputes the rest (less memory)"},
	 TR | BE, NULL, 0},
	{{"use-distributed-optimizer", BOOL(use_distributed_optimizer), "",
	  "shard the AdamW moments over the data-parallel ranks (ZeRO-1): gradients are "
	  "reduce-scattered, each rank updates its shard, parameters are all-gathered"},
	 TR, NULL, 0},
	{{"bf16", BOOL(bf16), "",
	  "bf16 matmuls (float32 accumulation, weights, gradients and AdamW state); needs "
	  "AVX512-BF16; command line only (retnet-bench-step: times bf16 and fp32 steps in "
	  "turn)"}, TR | EV | BE, NULL, 0},
	{{"matmul-autotune", BOOL(matmul_autotune), "",
	  "after the first step, time oneDNN's implementations of each large matmul (the "
	  "ranks of a pipeline stage together) and keep the fastest (a few seconds); "
	  "faster on some machines, but a resumed run is then not bit-identical to an "
	  "uninterrupted one; command line only"}, TR | BE, NULL, 0},
	{{"max-skipped-iters", INT(max_skipped_iters, 1, 1 << 20), "5",
	  "consecutive steps with a non-finite loss or gradient that end the run"},
	 TR, NULL, 0},
	{{"check-weight-hash-across-dp-replicas-interval",
	  INT(check_weight_hash_interval, 0, BIG), "0",
	  "steps between checks that all data-parallel replicas hold the same parameters "
	  "(0: never)"}, TR, NULL, 0},
	{{"inject-fault", TEXT(inject_fault), "",
	  "tests only: nan-grad@ITER[-LAST] or drift@ITER[-LAST] on the last rank"},
	 TR, NULL, 0},

	/* the parallel layout */
	{{"tensor-model-parallel-size", INT(tensor_model_parallel_size, 1, 1 << 16), "1",
	  "tensor-parallel ranks (divides heads and f)"}, TR | EV | GE, NULL, 0},
	{{"pipeline-model-parallel-size", INT(pipeline_model_parallel_size, 1, 1 << 16), "1",
	  "pipeline stages (at most --num-layers)"}, TR | EV | GE, NULL, 0},
	{{"context-parallel-size", INT(context_parallel_size, 1, 1 << 16), "1",
	  "ranks that each take a contiguous piece of every sequence, the retention state "
	  "passed between them (T divisible by it x --chunk-size)"}, TR | EV, NULL, 0},
	{{"num-layers-per-virtual-pipeline-stage", INT(num_layers_per_virtual_stage, 1, 4096), "",
	  "interleaved 1F1B: cut the model into chunks of N layers; pipeline rank p holds "
	  "chunks p, p + PP, p + 2 PP, ... (--num-layers divisible by PP x N; micro-batches "
	  "per data-parallel rank a multiple of PP; default: one chunk per rank, plain 1F1B)"},
	 TR, NULL, 0},

	/* evaluation */
	{{"data", PATHS(data), "", "corpora: token shards or raw text, plain or gzip (required)"},
	 EV, NULL, 0},
	{{"output", TEXT(output), "", "JSON lines, one object per corpus"}, EV, NULL, 0},
	{{"mode", CHOICE(mode, "windows|stream"), "windows",
	  "windows (state reset per window) or stream (one sequence)"}, EV, NULL, 0},
	{{"form", CHOICE(form, "chunkwise|parallel|recurrent"), "chunkwise",
	  "the form of retention (retnet-bench-step: chunkwise or parallel)"},
	 EV | BE, NULL, 0},

	/* generation */
	{{"prompt", TEXT(prompt), "", "text to continue"}, GE, NULL, 0},
	{{"prompt-file", TEXT(prompt_file), "", "text to continue, from a file (plain or gzip)"},
	 GE, NULL, 0},
	{{"max-new-tokens", INT(max_new_tokens, 0, 1e12), "200", "tokens to sample"},
	 GE, NULL, 0},
	{{"temperature", REAL(temperature, 0, 100), "1.0",
	  "softmax temperature (0: always the most likely token)"}, GE, NULL, 0},
	{{"top-k", INT(top_k, 0, 1 << 20), "0", "sample among the k most likely (0: all)"},
	 GE, NULL, 0},
	{{"seed", INT(sample_seed, 0, BIG), "1", "sampling seed"}, GE, NULL, 0},
	{{"timing", BOOL(timing), "",
	  "report the prompt's and the new tokens' time per token on stderr"}, GE, NULL, 0},

	/* the step benchmark */
	{{"steps", INT(steps, 1, 1 << 20), "3", "timed steps per precision"}, BE, NULL, 0},
	{{"bf16-only", BOOL(bf16_only), "", "time bf16 steps only (for a profiler)"},
	 BE, NULL, 0},

	/* the checkpoint benchmark */
	{{"dir", TEXT(dir), "", "directory for the checkpoints (default: a new one in /tmp)"},
	 BC, NULL, 0},
	{{"reps", INT(reps, 1, 1000), "2", "rounds per compression level (best of)"},
	 BC, NULL, 0},
	{{"keep", BOOL(keep), "", "keep the checkpoints written"}, BC, NULL, 0},

	/* retnet-prep */
	{{"input", PATHS(input), "", "text files or directories: the words that are not flags"},
	 PR, NULL, 0},
	{{"output-prefix", TEXT(output_prefix), "",
	  "write PREFIX-train.bin, PREFIX-valid.bin and PREFIX-test.bin (required)"}, PR, NULL, 0},
	{{"split", TEXT(split), "90,5,5",
	  "weights of the train, validation and test parts, cut in that order at line "
	  "starts (949,50,1 or 0.9,0.05,0.05); name them to cut in another order "
	  "(train:90,test:5,valid:5); a part of weight 0 is not written"}, PR, NULL, 0},
	{{"held-out-fraction", REAL(held_out_fraction, 0, 1), "",
	  "two parts only: hold out the last F of the text by bytes as validation, cut at "
	  "a line start (0 < F < 1); no test part"}, PR, NULL, 0},
	{{"held-out", PATHS(held_out), "",
	  "two parts only: this file or directory is the validation text (repeat the flag "
	  "for more); the INPUTs are all training text"}, PR, NULL, 0},
	{{"tokenizer", CHOICE(tokenizer, "bytes|bpe"), "bytes",
	  "bytes: one token per byte (vocabulary 256); bpe: byte pairs learned from the "
	  "training part"}, PR, NULL, 0},
	{{"vocab-size", INT(vocab_size, 257, 65536), "",
	  "bpe: the vocabulary (the model's --vocab-size must match)"}, PR, NULL, 0},
	{{"tokenizer-from", TEXT(tokenizer_from), "",
	  "encode with an existing tokenizer: a checkpoint directory's (its latest) or a "
	  "token shard's"}, PR, NULL, 0},
	{{"tokenizer-type", CHOICE(tokenizer_type, "GPT2BPETokenizer"), "",
	  "Megatron-LM's name: GPT2BPETokenizer encodes with GPT-2's byte-level BPE read "
	  "from --vocab-file and --merge-file (instead of --tokenizer)"}, PR, NULL, 0},
	{{"vocab-file", TEXT(vocab_file), "",
	  "GPT2BPETokenizer: GPT-2's vocab.json (token -> id)"}, PR, NULL, 0},
	{{"merge-file", TEXT(merge_file), "",
	  "GPT2BPETokenizer: GPT-2's merges.txt (one merge per line, in rank order)"},
	 PR, NULL, 0},
	{{"tokenizer-json", TEXT(tokenizer_json), "",
	  "encode with a Hugging Face tokenizer.json of GPT-2's kind (model BPE, ByteLevel "
	  "pre-tokenizer)"}, PR, NULL, 0},
	{{"append-eod", BOOL(append_eod), "",
	  "end each document with the tokenizer's end-of-document id (GPT-2's "
	  "<|endoftext|>); the byte tokenizer and --tokenizer bpe have none"}, PR, NULL, 0},
	{{"split-documents", CHOICE(split_documents, "file|blank-line"), "file",
	  "with --append-eod, what a document is: each input file, or each block of lines "
	  "that a blank line ends (a run of two or more '\\n') and each file's end"},
	 PR, NULL, 0},
	{{"force", BOOL(force), "", "overwrite existing outputs"}, PR, NULL, 0},
};

#define NROWS (sizeof(table) / sizeof(table[0]))

/* The step benchmark's configurations (retnet-bench-step --config NAME). */
static const struct flag_preset bench_presets[] = {
	{"bench-small", "vocab-size 256\nhidden-size 512\nnum-layers 6\nnum-heads 4\n"
			"ffn-hidden-size 1024\nchunk-size 128\nseq-length 2048\n"
			"micro-batch-size 4\nseed 1\n"},
	{"tiny", "vocab-size 256\nhidden-size 64\nnum-layers 2\nnum-heads 4\n"
		 "ffn-hidden-size 128\nchunk-size 8\nseq-length 32\nmicro-batch-size 2\nseed 1\n"},
	{NULL, NULL},
};

static const struct {
	enum spec_program program;
	const char *name, *usage;
} programs[] = {
	{SPEC_TRAIN, "retnet-train", "mpirun -n N retnet-train --data-path SHARD... [flags]"},
	{SPEC_EVAL, "retnet-eval", "mpirun -n N retnet-eval --load DIR --data FILE... [flags]"},
	{SPEC_GENERATE, "retnet-generate",
	 "[mpirun -n TPxPP] retnet-generate --load DIR [--prompt TEXT | --prompt-file FILE] "
	 "[flags]"},
	{SPEC_BENCH, "retnet-bench-step", "retnet-bench-step [--config bench-small|tiny|FILE] "
					  "[flags]"},
	{SPEC_BENCH_CKPT, "retnet-bench-ckpt", "mpiexec -n N retnet-bench-ckpt [--config "
					       "bench-small|tiny|FILE] [flags]"},
	{SPEC_PREP, "retnet-prep",
	 "retnet-prep --output-prefix PREFIX [--split TRAIN,VALID,TEST | --held-out-fraction F "
	 "| --held-out PATH...]\n"
	 "                   [--tokenizer bytes | --tokenizer bpe --vocab-size V | "
	 "--tokenizer-from CHECKPOINT_DIR|SHARD\n"
	 "                    | --tokenizer-type GPT2BPETokenizer --vocab-file F --merge-file F "
	 "| --tokenizer-json F]\n"
	 "                   [--append-eod [--split-documents file|blank-line]] [--force] "
	 "INPUT...\n"
	 "Turns text (plain or gzip, detected by content; files, or directories whose regular\n"
	 "files are taken in sorted name order) into token shards. A bad input is one line,\n"
	 "exit status 2, and nothing is written."},
};

/* The rows of program p, in table order; returns the count. */
static size_t rows_of(enum spec_program p, struct flag_row *rows, size_t *index)
{
	size_t n = 0;

	ENSURE(NROWS <= SPEC_MAX_ROWS);
	for (size_t i = 0; i < NROWS; i++)
		if (table[i].programs & p) {
			if (rows)
				rows[n] = table[i].flag;
			if (index)
				index[n] = i;
			n++;
		}
	return n;
}

/* The row of field `off` that program p takes, else the first row of that field. */
static size_t row_of(enum spec_program p, size_t off)
{
	size_t any = NROWS;

	for (size_t i = 0; i < NROWS; i++) {
		if (table[i].flag.offset != off)
			continue;
		if (table[i].programs & p)
			return i;
		if (any == NROWS)
			any = i;
	}
	ENSURE(any < NROWS);
	return any;
}

void spec_defaults(struct run_spec *s, enum spec_program p)
{
	char err[256];

	memset(s, 0, sizeof(*s));
	s->program = p;
	/* program p's defaults, and those of the saved rows: a checkpoint that lacks
	 * an attribute (written before it existed) means its default */
	for (size_t i = 0; i < NROWS; i++) {
		const struct flag_row *o = &table[i].flag;

		if ((!(table[i].programs & p) && !table[i].attr) || !o->def || !o->def[0] ||
		    o->type == FLAG_BOOL)
			continue;
		if ((table[i].programs & p) || row_of(p, o->offset) == i)
			if (flags_set(o, s, o->def, o->name, err, sizeof(err)))
				FATAL("spec table: %s", err);
	}
}

/* Defaults that follow from other values of the same run. */
static void derive(struct run_spec *s)
{
	if (s->program & (SPEC_TRAIN | SPEC_BENCH | SPEC_BENCH_CKPT)) {
		if (!s->ffn_hidden_size)
			s->ffn_hidden_size = 2 * s->hidden_size;
		if (!s->lr_decay_iters)
			s->lr_decay_iters = s->train_iters;
	}
}

int spec_parse(struct run_spec *s, enum spec_program p, int argc, char **argv, char *err,
	       size_t errlen)
{
	struct flag_row rows[SPEC_MAX_ROWS];
	size_t index[SPEC_MAX_ROWS];
	bool given[SPEC_MAX_ROWS];
	struct flag_parse fp = {
		.rows = rows, .count = rows_of(p, rows, index), .given = given,
		.presets = p & (SPEC_BENCH | SPEC_BENCH_CKPT) ? bench_presets : NULL,
		.default_preset = p & (SPEC_BENCH | SPEC_BENCH_CKPT) ? "bench-small" : NULL,
		.positional = p == SPEC_PREP ? "input" : NULL,
	};
	int rc;

	spec_defaults(s, p);
	rc = flags_parse(&fp, s, argc, argv, err, errlen);
	for (size_t i = 0; i < fp.count; i++)
		s->origin[index[i]] = given[i] ? SPEC_GIVEN : SPEC_DEFAULT;
	derive(s);
	return rc;
}

void spec_free(struct run_spec *s)
{
	for (size_t i = 0; i < NROWS; i++)
		if (table[i].flag.type == FLAG_PATHS)
			flag_paths_free((struct flag_paths *)((char *)s + table[i].flag.offset));
}

void spec_print_help(enum spec_program p)
{
	struct flag_row rows[SPEC_MAX_ROWS];
	struct flag_parse fp = {
		.rows = rows, .count = rows_of(p, rows, NULL),
		.presets = p & (SPEC_BENCH | SPEC_BENCH_CKPT) ? bench_presets : NULL,
		.default_preset = p & (SPEC_BENCH | SPEC_BENCH_CKPT) ? "bench-small" : NULL,
		.positional = p == SPEC_PREP ? "input" : NULL,
	};

	for (size_t i = 0; i < sizeof(programs) / sizeof(programs[0]); i++)
		if (programs[i].program == p)
			printf("usage: %s\n", programs[i].usage);
	printf("Flags (also as 'key value' lines in --config FILE; the command line wins):\n");
	flags_print_help(&fp);
}

bool spec_given(const struct run_spec *s, const void *field)
{
	size_t off = (size_t)((const char *)field - (const char *)s);

	return s->origin[row_of(s->program, off)] == SPEC_GIVEN;
}

/* ---- validation ------------------------------------------------------------ */

/* Has the run a value for the field: one of its flags, or adopted from a checkpoint? */
static bool have(const struct run_spec *s, size_t off)
{
	size_t r = row_of(s->program, off);

	return (table[r].programs & s->program) || s->origin[r] == SPEC_CHECKPOINT;
}

/* How a message names the field: "--hidden-size", or for a value a checkpoint
 * supplied "FILE: config/hidden_size" (lead) or "config/hidden_size". */
static const char *name_of(const struct run_spec *s, size_t off, bool lead, char *buf,
			   size_t len)
{
	size_t r = row_of(s->program, off);

	if (s->origin[r] == SPEC_CHECKPOINT && table[r].attr && lead)
		snprintf(buf, len, "%s: %s", s->origin_file, table[r].attr);
	else if (s->origin[r] == SPEC_CHECKPOINT && table[r].attr)
		snprintf(buf, len, "%s", table[r].attr);
	else
		snprintf(buf, len, "--%s", table[r].flag.name);
	return buf;
}

#define NAME(field, lead) name_of(s, F(field), lead, names[lead], sizeof(names[lead]))
#define HAVE(field) have(s, F(field))

/* Every value a checkpoint supplied, within its flag's range. */
static int check_ranges(const struct run_spec *s, char *err, size_t errlen)
{
	char where[FLAGS_PATH_MAX + 128];

	for (size_t i = 0; i < NROWS; i++) {
		const struct flag_row *o = &table[i].flag;
		double v;

		if (s->origin[i] != SPEC_CHECKPOINT || (o->type != FLAG_INT && o->type != FLAG_FLOAT))
			continue;
		v = o->type == FLAG_INT ? (double)*(const int64_t *)((const char *)s + o->offset)
					: *(const double *)((const char *)s + o->offset);
		if (v >= o->min && v <= o->max)
			continue;
		name_of(s, o->offset, true, where, sizeof(where));
		if (o->type == FLAG_INT)
			return log_fail(err, errlen, "%s: %lld is out of range [%.0f, %.0f] (that of "
					"--%s)", where,
					(long long)*(const int64_t *)((const char *)s + o->offset),
					o->min, o->max, o->name);
		return log_fail(err, errlen, "%s: %g is out of range [%g, %g] (that of --%s)", where,
				v, o->min, o->max, o->name);
	}
	return 0;
}

/* retnet-prep: what it needs given, and which flags exclude which. */
static int check_prep(const struct run_spec *s, int world, char *err, size_t errlen)
{
	const bool split = spec_given(s, s->split), fraction = spec_given(s, &s->held_out_fraction);
	const bool held = s->held_out.n > 0, bpe = !strcmp(s->tokenizer, "bpe");
	const bool gpt2 = s->tokenizer_type[0] != '\0';
	struct spec_split sp;

	if (!s->output_prefix[0])
		return log_fail(err, errlen, "--output-prefix: required (see --help)");
	if (s->input.n == 0)
		return log_fail(err, errlen, "INPUT: at least one input file or directory is "
				"required (see --help)");
	if (fraction && held)
		return log_fail(err, errlen, "--held-out-fraction: give either it or --held-out, "
				"not both");
	if (split && (fraction || held))
		return log_fail(err, errlen, "--split: give one of --split, --held-out-fraction "
				"and --held-out");
	if (fraction && !(s->held_out_fraction > 0 && s->held_out_fraction < 1))
		return log_fail(err, errlen, "--held-out-fraction: %g must be above 0 and below 1",
				s->held_out_fraction);
	if (spec_parse_split(s->split, &sp, err, errlen))
		return -1;
	if (bpe && !held && !fraction && !(sp.weight[SPEC_PART_TRAIN] > 0))
		return log_fail(err, errlen, "--split: '%s': --tokenizer bpe learns from the train "
				"part: its weight must be above 0", s->split);
	if (s->tokenizer_from[0] && (spec_given(s, s->tokenizer) || s->vocab_size))
		return log_fail(err, errlen, "--tokenizer-from: the tokenizer comes from there: "
				"give no --tokenizer or --vocab-size");
	if (gpt2 && s->tokenizer_json[0])
		return log_fail(err, errlen, "--tokenizer-json: give it or --tokenizer-type "
				"GPT2BPETokenizer, not both");
	if ((gpt2 || s->tokenizer_json[0]) &&
	    (spec_given(s, s->tokenizer) || s->vocab_size || s->tokenizer_from[0]))
		return log_fail(err, errlen, "%s: the tokenizer comes from %s: give no --tokenizer, "
				"--vocab-size or --tokenizer-from",
				gpt2 ? "--tokenizer-type" : "--tokenizer-json",
				gpt2 ? "--vocab-file and --merge-file" : "that file");
	if (gpt2 && (!s->vocab_file[0] || !s->merge_file[0]))
		return log_fail(err, errlen, "--tokenizer-type: GPT2BPETokenizer needs --vocab-file "
				"and --merge-file");
	if (!gpt2 && (s->vocab_file[0] || s->merge_file[0]))
		return log_fail(err, errlen, "%s: only with --tokenizer-type GPT2BPETokenizer",
				s->vocab_file[0] ? "--vocab-file" : "--merge-file");
	if (s->append_eod && !gpt2 && !s->tokenizer_json[0] && !s->tokenizer_from[0])
		return log_fail(err, errlen, "--append-eod: the %s tokenizer has no end-of-document "
				"id: use --tokenizer-type GPT2BPETokenizer or --tokenizer-json",
				bpe ? "bpe" : "byte");
	if (spec_given(s, s->split_documents) && !s->append_eod)
		return log_fail(err, errlen, "--split-documents: only with --append-eod (documents "
				"end with the end-of-document id)");
	if (bpe && !s->vocab_size)
		return log_fail(err, errlen, "--vocab-size: required with --tokenizer bpe");
	if (!bpe && s->vocab_size)
		return log_fail(err, errlen, "--vocab-size: only for --tokenizer bpe (the byte "
				"tokenizer's vocabulary is 256)");
	if (world != 1)
		return log_fail(err, errlen, "retnet-prep: runs as one process, not %d", world);
	return 0;
}

/* What each program needs given, and what its flags exclude. */
static int check_program(const struct run_spec *s, int world, char *err, size_t errlen)
{
	const int64_t tp = s->tensor_model_parallel_size, pp = s->pipeline_model_parallel_size;

	switch (s->program) {
	case SPEC_TRAIN:
		if (s->data_path.n == 0)
			return log_fail(err, errlen, "--data-path: required (token shards from "
					"retnet-prep)");
		if (s->save_interval > 0 && !s->save[0])
			return log_fail(err, errlen, "--save-interval: needs --save DIR");
		if (s->async_save && !s->save[0])
			return log_fail(err, errlen, "--async-save: needs --save DIR");
		if (s->inject_fault[0] && spec_parse_fault(s->inject_fault, NULL, NULL, NULL))
			return log_fail(err, errlen, "--inject-fault: '%s' is not KIND@ITER or "
					"KIND@FIRST-LAST, KIND nan-grad or drift", s->inject_fault);
		if (s->min_lr > s->lr)
			return log_fail(err, errlen, "--min-lr: %g is above --lr %g", s->min_lr, s->lr);
		if (s->distributed_timeout_minutes > 0 && s->distributed_timeout_minutes < 0.05)
			return log_fail(err, errlen, "--distributed-timeout-minutes: %g is below 0.05 "
					"(3 s), too short to tell a stall from a slow step (0 turns "
					"the watchdog off)", s->distributed_timeout_minutes);
		return 0;
	case SPEC_EVAL:
		if (!s->load[0])
			return log_fail(err, errlen, "--load: required (a checkpoint directory)");
		if (s->data.n == 0)
			return log_fail(err, errlen, "--data: required (one or more corpora)");
		if (!strcmp(s->mode, "stream") && !strcmp(s->form, "parallel"))
			return log_fail(err, errlen, "--form: parallel cannot carry a state across "
					"pieces: use --mode windows or --form chunkwise|recurrent");
		if (!strcmp(s->mode, "stream") && s->context_parallel_size > 1)
			return log_fail(err, errlen, "--context-parallel-size: stream mode carries one "
					"state from piece to piece on one rank: use --mode windows");
		if (strcmp(s->form, "chunkwise") && s->context_parallel_size > 1)
			return log_fail(err, errlen, "--context-parallel-size: the pieces of a window "
					"pass their states in the chunkwise form only, not --form %s",
					s->form);
		if (s->no_reset_attention_mask && spec_given(s, &s->reset_attention_mask))
			return log_fail(err, errlen, "--no-reset-attention-mask: not with "
					"--reset-attention-mask");
		if (!strcmp(s->mode, "stream") && world % (tp * pp) == 0 && world != tp * pp)
			return log_fail(err, errlen, "--mode: stream scores one sequence: run with "
					"world = TP x PP = %lld ranks (no data parallelism), not %d",
					(long long)(tp * pp), world);
		return 0;
	case SPEC_GENERATE:
		if (!s->load[0])
			return log_fail(err, errlen, "--load: required (a checkpoint directory)");
		if (s->prompt[0] && s->prompt_file[0])
			return log_fail(err, errlen, "--prompt-file: give --prompt or --prompt-file, "
					"not both");
		if (world != tp * pp)
			return log_fail(err, errlen, "--tensor-model-parallel-size: generation is one "
					"sequence: run with TP x PP = %lld ranks, not %d",
					(long long)(tp * pp), world);
		return 0;
	case SPEC_BENCH:
		if (!strcmp(s->form, "recurrent"))
			return log_fail(err, errlen, "--form: recurrent has no backward: chunkwise or "
					"parallel");
		if (world != 1)
			return log_fail(err, errlen, "retnet-bench-step: times one rank, not %d", world);
		return 0;
	case SPEC_BENCH_CKPT:
		return 0;
	case SPEC_PREP:
		return check_prep(s, world, err, errlen);
	}
	return 0;
}

/* The model's own rules, once the run has the values. */
static int check_model(const struct run_spec *s, char *err, size_t errlen)
{
	char names[2][FLAGS_PATH_MAX + 128];

	if (HAVE(hidden_size) && HAVE(num_heads)) {
		if (s->hidden_size % s->num_heads)
			return log_fail(err, errlen, "%s: %lld does not divide %s %lld",
					NAME(num_heads, 1), (long long)s->num_heads,
					NAME(hidden_size, 0), (long long)s->hidden_size);
		if ((s->hidden_size / s->num_heads) % 2 || s->hidden_size / s->num_heads < 4)
			return log_fail(err, errlen, "%s: head width %lld / %lld must be even and "
					">= 4 (the rotation pairs lanes)", NAME(num_heads, 1),
					(long long)s->hidden_size, (long long)s->num_heads);
	}
	if (HAVE(seq_length) && HAVE(chunk_size) && s->seq_length % s->chunk_size)
		return log_fail(err, errlen, "%s: %lld does not divide %s %lld", NAME(chunk_size, 1),
				(long long)s->chunk_size, NAME(seq_length, 0),
				(long long)s->seq_length);
	return 0;
}

/* Interleaved 1F1B: whole chunks of N layers, PP x N of them per round of the
 * pipeline, and the schedule's groups of PP micro-batches (parallel/pipeline.h). */
static int check_virtual_stages(const struct run_spec *s, int64_t dp, char *err,
				size_t errlen)
{
	const int64_t pp = s->pipeline_model_parallel_size, n = s->num_layers_per_virtual_stage;
	const int64_t micro = s->global_batch_size ? s->global_batch_size /
						     (s->micro_batch_size * dp) : 1;

	if (s->program != SPEC_TRAIN || !n)
		return 0;
	if (pp < 2)
		return log_fail(err, errlen, "--num-layers-per-virtual-pipeline-stage: needs "
				"--pipeline-model-parallel-size 2 or more");
	if (s->num_layers % (pp * n))
		return log_fail(err, errlen, "--num-layers-per-virtual-pipeline-stage: --num-layers "
				"%lld is not a multiple of --pipeline-model-parallel-size %lld x %lld",
				(long long)s->num_layers, (long long)pp, (long long)n);
	if (!pipeline_interleaved_valid((int)pp, (int)(s->num_layers / (pp * n)),
					(int)micro))
		return log_fail(err, errlen, "--num-layers-per-virtual-pipeline-stage: the "
				"micro-batches per data-parallel rank (--global-batch-size / "
				"--micro-batch-size / DP = %lld) must be a multiple of "
				"--pipeline-model-parallel-size %lld", (long long)micro, (long long)pp);
	return 0;
}

/* The parallel layout against the world and the model. */
static int check_layout(const struct run_spec *s, int world, char *err, size_t errlen)
{
	char names[2][FLAGS_PATH_MAX + 128];
	const int64_t tp = s->tensor_model_parallel_size, pp = s->pipeline_model_parallel_size;
	const int64_t cp = HAVE(context_parallel_size) ? s->context_parallel_size : 1;
	int64_t dp;

	if (!HAVE(tensor_model_parallel_size))
		return 0;
	if (world % (tp * cp * pp))
		return log_fail(err, errlen, "--tensor-model-parallel-size: world size %d is not "
				"divisible by TP %lld x CP %lld x PP %lld", world, (long long)tp,
				(long long)cp, (long long)pp);
	if (cp > 1 && HAVE(seq_length) && HAVE(chunk_size) &&
	    s->seq_length % (cp * s->chunk_size)) {
		char chunk[FLAGS_PATH_MAX + 128];

		name_of(s, F(chunk_size), false, chunk, sizeof(chunk));
		return log_fail(err, errlen, "--context-parallel-size: %lld pieces of %s %lld are "
				"not each a multiple of %s %lld", (long long)cp,
				NAME(seq_length, 0), (long long)s->seq_length, chunk,
				(long long)s->chunk_size);
	}
	if (HAVE(num_heads) && s->num_heads % tp)
		return log_fail(err, errlen, "--tensor-model-parallel-size: %lld does not divide %s "
				"%lld", (long long)tp, NAME(num_heads, 0), (long long)s->num_heads);
	if (HAVE(ffn_hidden_size) && s->ffn_hidden_size % tp)
		return log_fail(err, errlen, "--tensor-model-parallel-size: %lld does not divide %s "
				"%lld", (long long)tp, NAME(ffn_hidden_size, 0),
				(long long)s->ffn_hidden_size);
	if (HAVE(num_layers) && pp > s->num_layers)
		return log_fail(err, errlen, "--pipeline-model-parallel-size: %lld stages for %s "
				"%lld", (long long)pp, NAME(num_layers, 0), (long long)s->num_layers);
	dp = world / (tp * cp * pp);
	if (s->program == SPEC_TRAIN && s->global_batch_size &&
	    s->global_batch_size % (s->micro_batch_size * dp))
		return log_fail(err, errlen, "--global-batch-size: %lld is not a multiple of "
				"--micro-batch-size %lld x data-parallel size %lld",
				(long long)s->global_batch_size, (long long)s->micro_batch_size,
				(long long)dp);
	return check_virtual_stages(s, dp, err, errlen);
}

int spec_validate(const struct run_spec *s, int world_size, char *err, size_t errlen)
{
	if (check_ranges(s, err, errlen) || check_model(s, err, errlen))
		return -1;
	if (s->program && (check_layout(s, world_size, err, errlen) ||
			   check_program(s, world_size, err, errlen)))
		return -1;
	return 0;
}

void spec_resolve(struct run_spec *s, int world_size)
{
	const int64_t cp = s->context_parallel_size ? s->context_parallel_size : 1;
	const int64_t dp = world_size / (s->tensor_model_parallel_size * cp *
					  s->pipeline_model_parallel_size);

	if (s->program == SPEC_TRAIN && !s->global_batch_size)
		s->global_batch_size = s->micro_batch_size * dp;
}

/* ---- checkpoints ----------------------------------------------------------- */

/* Bytes of a saved row's value in struct run_spec. */
static size_t value_size(const struct flag_row *o)
{
	switch (o->type) {
	case FLAG_INT: return sizeof(int64_t);
	case FLAG_FLOAT: return sizeof(double);
	case FLAG_BOOL: return sizeof(bool);
	default: return o->size;
	}
}

int spec_saved_fields(struct run_spec *s, struct spec_saved *out)
{
	int n = 0;

	for (size_t i = 0; i < NROWS; i++) {
		const struct flag_row *o = &table[i].flag;

		if (!table[i].attr)
			continue;
		ENSURE(o->type == FLAG_INT || o->type == FLAG_FLOAT || o->type == FLAG_TEXT ||
		       o->type == FLAG_CHOICE || o->type == FLAG_BOOL);
		out[n++] = (struct spec_saved){
			.attr = table[i].attr,
			.type = o->type == FLAG_CHOICE ? FLAG_TEXT : o->type,
			.value = (char *)s + o->offset,
			.size = value_size(o),
			.optional = table[i].saved & ABSENT_OK,
		};
	}
	return n;
}

void spec_mark_saved(struct run_spec *s, const char *file)
{
	for (size_t i = 0; i < NROWS; i++)
		if (table[i].attr)
			s->origin[i] = SPEC_CHECKPOINT;
	snprintf(s->origin_file, sizeof(s->origin_file), "%s", file);
}

static bool same_value(const struct flag_row *o, const void *a, const void *b)
{
	if (o->type == FLAG_INT)
		return *(const int64_t *)a == *(const int64_t *)b;
	if (o->type == FLAG_FLOAT)
		return *(const double *)a == *(const double *)b;
	if (o->type == FLAG_BOOL)
		return *(const bool *)a == *(const bool *)b;
	return !strcmp(a, b);
}

static void value_text(const struct flag_row *o, const void *v, char *buf, size_t len)
{
	if (o->type == FLAG_INT)
		snprintf(buf, len, "%lld", (long long)*(const int64_t *)v);
	else if (o->type == FLAG_FLOAT)
		snprintf(buf, len, "%g", *(const double *)v);
	else if (o->type == FLAG_BOOL)
		snprintf(buf, len, "%s", *(const bool *)v ? "true" : "false");
	else
		snprintf(buf, len, "'%s'", (const char *)v);
}

/* How retnet-eval and retnet-generate run a checkpoint's model. */
static void fit_to_program(struct run_spec *s)
{
	const bool chunk_given = s->origin[row_of(s->program, F(chunk_size))] == SPEC_GIVEN;

	if (s->program == SPEC_EVAL) {
		/* a chunk that no longer divides a shorter --seq-length shrinks to it */
		if (!chunk_given && s->chunk_size > 0 && s->seq_length % s->chunk_size &&
		    s->seq_length < s->chunk_size)
			s->chunk_size = s->seq_length;
		if (!strcmp(s->mode, "stream"))
			s->micro_batch_size = 1;
		/* scored as trained unless told otherwise */
		if (s->no_reset_attention_mask)
			s->reset_attention_mask = false;
	}
	if (s->program == SPEC_GENERATE) {
		/* one token per forward, its state carried to the next */
		s->seq_length = 1;
		s->chunk_size = 1;
		s->micro_batch_size = 1;
	}
}

int spec_adopt(struct run_spec *s, const struct run_spec *saved, const char *file, char *err,
	       size_t errlen)
{
	snprintf(s->origin_file, sizeof(s->origin_file), "%s", file);
	for (size_t i = 0; i < NROWS; i++) {
		const struct flag_row *o = &table[i].flag;
		char *mine = (char *)s + o->offset;
		const char *theirs = (const char *)saved + o->offset;
		const bool taken = table[i].programs & s->program;
		char a[64], b[64];

		if (!table[i].attr || (!taken && row_of(s->program, o->offset) != i))
			continue;
		if (taken && (table[i].saved & SHAPE)) {
			if (same_value(o, mine, theirs))
				continue;
			value_text(o, mine, a, sizeof(a));
			value_text(o, theirs, b, sizeof(b));
			return log_fail(err, errlen, "--%s: %s does not match %s in %s", o->name, a,
					b, file);
		}
		if (taken && (s->origin[i] == SPEC_GIVEN || !(s->program & MODEL_FROM_CHECKPOINT)))
			continue;
		memcpy(mine, theirs, value_size(o));
		s->origin[i] = SPEC_CHECKPOINT;
	}
	fit_to_program(s);
	return 0;
}

int spec_parse_split(const char *text, struct spec_split *out, char *err, size_t errlen)
{
	static const char *const names[SPEC_PARTS] = {"train", "valid", "test"};
	const char *p = text;
	int k = 0, named = -1;
	bool seen[SPEC_PARTS] = {false, false, false};

	memset(out, 0, sizeof(*out));
	for (; k < SPEC_PARTS; k++) {
		size_t len = strcspn(p, ",");
		const char *colon = memchr(p, ':', len);
		enum spec_part part = (enum spec_part)k;
		char *end;
		double w;

		if (named >= 0 && named != (colon != NULL))
			return log_fail(err, errlen, "--split: '%s': name all three parts or none",
					text);
		named = colon != NULL;
		if (colon) {
			int j = 0;

			while (j < SPEC_PARTS && (strlen(names[j]) != (size_t)(colon - p) ||
						  strncmp(p, names[j], (size_t)(colon - p))))
				j++;
			if (j == SPEC_PARTS || seen[j])
				return log_fail(err, errlen, "--split: '%s': the parts are train, valid "
						"and test, each once", text);
			part = (enum spec_part)j;
			p = colon + 1;
			len = strcspn(p, ",");
		}
		seen[part] = true;
		errno = 0;
		w = strtod(p, &end);
		if (errno || end == p || (size_t)(end - p) != len || !(w >= 0) || w > 1e15)
			return log_fail(err, errlen, "--split: '%s': weights are numbers >= 0, three "
					"of them, comma-separated", text);
		out->order[k] = part;
		out->weight[part] = w;
		p += len;
		if (k + 1 < SPEC_PARTS && *p++ != ',')
			return log_fail(err, errlen, "--split: '%s': three comma-separated weights "
					"(train, valid, test)", text);
	}
	if (*p)
		return log_fail(err, errlen, "--split: '%s': three comma-separated weights (train, "
				"valid, test)", text);
	if (!(out->weight[0] + out->weight[1] + out->weight[2] > 0))
		return log_fail(err, errlen, "--split: '%s': some part's weight must be above 0",
				text);
	return 0;
}

int spec_parse_fault(const char *text, enum spec_fault *kind, int64_t *first, int64_t *last)
{
	static const char *const names[] = {[SPEC_FAULT_NAN_GRAD] = "nan-grad",
					    [SPEC_FAULT_DRIFT] = "drift"};
	const char *at = strchr(text, '@');
	char *end;
	long long a, b;

	if (!at || at[1] < '0' || at[1] > '9')
		return -1;
	a = b = strtoll(at + 1, &end, 10);
	if (*end == '-') {
		if (end[1] < '0' || end[1] > '9')
			return -1;
		b = strtoll(end + 1, &end, 10);
	}
	if (*end || a < 1 || b < a)
		return -1;
	for (int k = SPEC_FAULT_NAN_GRAD; k <= SPEC_FAULT_DRIFT; k++)
		if (strlen(names[k]) == (size_t)(at - text) &&
		    !strncmp(text, names[k], (size_t)(at - text))) {
			if (kind)
				*kind = (enum spec_fault)k;
			if (first)
				*first = a;
			if (last)
				*last = b;
			return 0;
		}
	return -1;
}
