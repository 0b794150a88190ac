/*
 * spec: the run specification. One table (spec.c) lists every parameter of every
 * retnet program: its flag (also its key in a --config file), its checkpoint
 * attribute when it is saved with the model, its type and range, its default, the
 * programs that take it and its help. Parsing, the --help text, the checkpoint's
 * config/ attributes and the rules between parameters all follow from the table and
 * from one validation function, spec_validate(), that every program calls.
 *
 * A value remembers where it came from (default, command line or config file,
 * checkpoint), so that a message names it as the user knows it: "--hidden-size",
 * or "DIR/iter_0000010.h5: config/hidden_size".
 *
 * Adding a model hyperparameter that checkpoints keep: a field below, a row in the
 * table (with its attribute, and absent_ok so that checkpoints written before it,
 * which lack the attribute, load with the row's default), and the code that uses
 * the value.
 *
 * Pure: no MPI, no files but a --config file. Does not build anything from the
 * values (trainer/launch.h does).
 */
#ifndef RN_SPEC_H
#define RN_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/flags.h"

enum spec_program {
	SPEC_TRAIN = 1,    /* retnet-train */
	SPEC_EVAL = 2,     /* retnet-eval */
	SPEC_GENERATE = 4, /* retnet-generate */
	SPEC_BENCH = 8,    /* retnet-bench-step */
	SPEC_BENCH_CKPT = 16, /* retnet-bench-ckpt */
	SPEC_PREP = 32,    /* retnet-prep */
};

enum spec_origin { SPEC_DEFAULT, SPEC_GIVEN, SPEC_CHECKPOINT };

#define SPEC_MAX_ROWS 96
#define SPEC_TEXT_MAX 32

struct run_spec {
	enum spec_program program;

	/* the model (checkpoints keep these: config/...) */
	int64_t vocab_size;      /* V */
	int64_t hidden_size;     /* d */
	int64_t num_layers;      /* L */
	int64_t num_heads;       /* H */
	int64_t ffn_hidden_size; /* f; 0 on the command line: 2d */
	int64_t chunk_size;      /* C, divides T */
	int64_t seq_length;      /* T */
	int64_t seed;            /* initialisation and data order */

	/* batch, schedule, optimizer */
	int64_t micro_batch_size, global_batch_size, train_iters;
	double lr, min_lr;
	int64_t lr_warmup_iters, lr_decay_iters;
	char lr_decay_style[SPEC_TEXT_MAX];
	double weight_decay, clip_grad, adam_beta1, adam_beta2, adam_eps;

	/* data, logging, held-out estimates */
	struct flag_paths data_path, valid_data_path;
	bool reset_attention_mask; /* retention's state restarts at each document */
	bool eod_mask_loss;        /* targets after an end-of-document are not counted */
	bool no_reset_attention_mask; /* retnet-eval: not the checkpoint's resets */
	int64_t log_interval, eval_interval, eval_iters;
	char metrics[FLAGS_PATH_MAX];
	char save_raw_params[FLAGS_PATH_MAX];

	/* checkpoints and stopping */
	char save[FLAGS_PATH_MAX], load[FLAGS_PATH_MAX];
	int64_t iteration; /* the checkpoint to read (-1: the latest) */
	int64_t save_interval, keep_last, ckpt_compression_level;
	bool async_save;   /* write checkpoints in the background */
	double exit_duration_in_mins;
	double distributed_timeout_minutes; /* the watchdog (trainer/watchdog.h); 0: off */

	/* memory, precision, guards */
	bool recompute_activations;
	bool use_distributed_optimizer; /* ZeRO-1: AdamW moments sharded over DP */
	bool bf16;
	bool matmul_autotune;
	int64_t max_skipped_iters, check_weight_hash_interval;
	char inject_fault[SPEC_TEXT_MAX];

	/* the parallel layout */
	int64_t tensor_model_parallel_size, pipeline_model_parallel_size;
	int64_t context_parallel_size; /* pieces of each sequence, one per rank */
	int64_t num_layers_per_virtual_stage; /* N of interleaved 1F1B (0: plain 1F1B) */

	/* evaluation */
	struct flag_paths data;
	char output[FLAGS_PATH_MAX];
	char mode[SPEC_TEXT_MAX], form[SPEC_TEXT_MAX];

	/* generation */
	char prompt[FLAGS_PATH_MAX], prompt_file[FLAGS_PATH_MAX];
	int64_t max_new_tokens, top_k, sample_seed;
	double temperature;
	bool timing;

	/* the step benchmark */
	int64_t steps;
	bool bf16_only;

	/* the checkpoint benchmark */
	char dir[FLAGS_PATH_MAX];
	int64_t reps;
	bool keep;

	/* retnet-prep (vocab_size above: the BPE vocabulary, 0 when not given) */
	struct flag_paths input, held_out;
	char output_prefix[FLAGS_PATH_MAX];
	char split[SPEC_TEXT_MAX];
	double held_out_fraction;
	char tokenizer[SPEC_TEXT_MAX];
	char tokenizer_from[FLAGS_PATH_MAX];
	char tokenizer_type[SPEC_TEXT_MAX];	/* Megatron's: GPT2BPETokenizer */
	char vocab_file[FLAGS_PATH_MAX], merge_file[FLAGS_PATH_MAX];
	char tokenizer_json[FLAGS_PATH_MAX];	/* a Hugging Face tokenizer.json */
	bool append_eod;			/* an end-of-document id after each */
	char split_documents[SPEC_TEXT_MAX];	/* file | blank-line */
	bool force;

	/* where each row's value came from, and the checkpoint file of SPEC_CHECKPOINT */
	unsigned char origin[SPEC_MAX_ROWS];
	char origin_file[FLAGS_PATH_MAX];
};

/* The table's defaults for program p (every field of the other programs zero). */
void spec_defaults(struct run_spec *s, enum spec_program p);

/* Defaults, then argv (argv[0] skipped), then --config FILE or one of the program's
 * presets. 0; 1 when --help was asked for; -1 with one line in err. s is overwritten
 * (spec_free it first if it holds a parse); free the result with spec_free. */
int spec_parse(struct run_spec *s, enum spec_program p, int argc, char **argv, char *err,
	       size_t errlen);
/* Releases the lists of paths a parse allocated; s is then empty of them. A copy of
 * a parsed spec shares them: free one of the two only. */
void spec_free(struct run_spec *s);
void spec_print_help(enum spec_program p);

/*
 * The one validation function: every rule between parameters and with the world
 * of world_size ranks, and the range of every value a checkpoint supplied (so that
 * nothing divides, multiplies or allocates with a value a file made up). A rule is
 * checked once the program has all its values (retnet-eval learns the model from
 * the checkpoint: spec_adopt). 0, or -1 with one line in err naming the flags or
 * the checkpoint's attributes.
 */
int spec_validate(const struct run_spec *s, int world_size, char *err, size_t errlen);

/* Defaults that depend on the layout (--global-batch-size: micro-batch x DP). */
void spec_resolve(struct run_spec *s, int world_size);

/* The model's parameters as a checkpoint keeps them: one per saved row. */
struct spec_saved {
	const char *attr;    /* "config/hidden_size" */
	enum flag_type type; /* FLAG_INT: int64_t; FLAG_FLOAT: double; FLAG_TEXT: char[];
				FLAG_BOOL: bool */
	void *value;         /* into the spec passed to spec_saved_fields */
	size_t size;
	bool optional;       /* older checkpoints may lack it (then: the default) */
};
/* Fills out[] (room for SPEC_MAX_ROWS) with s's saved fields; returns the count. */
int spec_saved_fields(struct run_spec *s, struct spec_saved *out);
/* The saved fields' values came from checkpoint `file` (read into them). */
void spec_mark_saved(struct run_spec *s, const char *file);

/*
 * The model a checkpoint (file) holds, in saved (filled through spec_saved_fields),
 * into s: a shape parameter (width, layers, heads, vocabulary...) given to this
 * program must equal the checkpoint's; anything else given keeps its value (the
 * evaluator's --seq-length); the rest comes from the checkpoint. Then what follows
 * for the program: retnet-eval's chunk shrinks to a shorter --seq-length it no
 * longer divides (unless given), and its stream mode runs one sequence (micro-batch
 * 1); retnet-generate runs one token at a time (T = C = B = 1). 0, or -1 with
 * "--hidden-size: 128 does not match 64 in FILE". Validate the result.
 */
int spec_adopt(struct run_spec *s, const struct run_spec *saved, const char *file, char *err,
	       size_t errlen);

/* Was the value given (command line or config file), not defaulted or adopted? */
bool spec_given(const struct run_spec *s, const void *field);

/*
 * retnet-prep's --split: the weights of the train, validation and test parts and the
 * order they are cut from the text in. "949,50,1" is train, valid, test in that
 * order; "train:90,test:5,valid:5" names them in the order of the text. Weights are
 * non-negative decimals, at least one positive; a part of weight 0 is not written.
 * 0, or -1 with "--split: <rule>" in err.
 */
enum spec_part { SPEC_PART_TRAIN, SPEC_PART_VALID, SPEC_PART_TEST, SPEC_PARTS };
struct spec_split {
	enum spec_part order[SPEC_PARTS]; /* the parts, in the order of the text */
	double weight[SPEC_PARTS];        /* by part */
};
int spec_parse_split(const char *text, struct spec_split *out, char *err, size_t errlen);

/*
 * --inject-fault, for the tests of the guards: at iterations FIRST to LAST (1-based)
 * the last rank poisons one gradient with NaN (nan-grad) or perturbs one parameter
 * (drift). "nan-grad@12" -> (SPEC_FAULT_NAN_GRAD, 12, 12). 0, or -1 if malformed.
 */
enum spec_fault { SPEC_FAULT_NONE, SPEC_FAULT_NAN_GRAD, SPEC_FAULT_DRIFT };
int spec_parse_fault(const char *text, enum spec_fault *kind, int64_t *first, int64_t *last);

#endif
