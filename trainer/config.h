/*
 * config: the settings of retnet-train (and later retnet-eval), from command-line
 * flags named as in Megatron-LM and from --config FILE (the same keys without the
 * dashes or with them, "key value" or "key = value", one per line, # comments).
 * Flags given on the command line win over the file, whatever their order.
 * Parsing and validation are pure (no MPI, no files but the config file): every
 * error is one line naming the flag (or file:line) and the rule it broke.
 */
#ifndef RN_CONFIG_H
#define RN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trainer/flags.h"

#define CONFIG_MAX_PATHS FLAGS_MAX_PATHS
#define CONFIG_PATH_MAX FLAGS_PATH_MAX

struct train_config {
	/* model */
	int64_t num_layers, hidden_size, num_heads, ffn_hidden_size, seq_length, chunk_size;
	int64_t vocab_size;
	/* batch and schedule */
	int64_t micro_batch_size, global_batch_size, train_iters;
	double lr, min_lr;
	int64_t lr_warmup_iters, lr_decay_iters;
	char lr_decay_style[16];
	double weight_decay, clip_grad, adam_beta1, adam_beta2, adam_eps;
	int64_t seed;
	/* data */
	char data_path[CONFIG_MAX_PATHS][CONFIG_PATH_MAX];
	int n_data_path;
	char valid_data_path[CONFIG_MAX_PATHS][CONFIG_PATH_MAX];
	int n_valid_data_path;
	/* logging and evaluation */
	int64_t log_interval, eval_interval, eval_iters;
	char metrics[CONFIG_PATH_MAX];
	char save_raw_params[CONFIG_PATH_MAX]; /* tests and debugging */
	/* checkpoints */
	char save[CONFIG_PATH_MAX], load[CONFIG_PATH_MAX];
	int64_t save_interval, keep_last, ckpt_compression_level;
	double exit_duration_in_mins;
	bool recompute_activations;
	/* guards: non-finite steps, data-parallel replica drift, test fault injection */
	int64_t max_skipped_iters, check_weight_hash_interval;
	char inject_fault[32];
	/* parallel layout */
	int64_t tensor_model_parallel_size, pipeline_model_parallel_size;
	/* precision */
	bool bf16; /* bf16 matmuls, float32 accumulation, float32 weights and AdamW */
	bool help;
};

void config_defaults(struct train_config *c);

/* Parse argv (argv[0] skipped). 0, or -1 with one line in err. */
int config_parse_args(struct train_config *c, int argc, char **argv, char *err, size_t errlen);

/* Cross-field rules for a world of world_size ranks. 0, or -1 with one line in err. */
int config_validate(const struct train_config *c, int world_size, char *err, size_t errlen);

/*
 * --inject-fault, for the tests of the guards: at iterations FIRST to LAST (1-based),
 * the last rank poisons one gradient with NaN (nan-grad) or perturbs one parameter
 * (drift).
 */
enum fault_kind { FAULT_NONE, FAULT_NAN_GRAD, FAULT_DRIFT };
/* "nan-grad@12" -> (FAULT_NAN_GRAD, 12, 12), "drift@3-5" -> (FAULT_DRIFT, 3, 5);
 * 0, or -1 if malformed. Outputs may be NULL. */
int config_parse_fault(const char *spec, enum fault_kind *kind, int64_t *first, int64_t *last);

/*
 * A model configuration read from a file (a checkpoint's attributes config/...):
 * every size within the range of its flag (--hidden-size for config/hidden_size,
 * ...) and the same rules as config_validate (heads divide the width into even
 * heads of at least 4 lanes, the chunk divides the sequence), checked before
 * anything divides, multiplies or allocates with them; within the ranges no size
 * computed from them overflows 64 bits. where names the file. 0, or -1 with one
 * line in err: "<where>: config/<key>: <value> <rule>".
 */
struct model_config;
int config_check_model(const struct model_config *mc, const char *where, char *err,
		       size_t errlen);

/* The --help text. */
void config_print_help(const char *program);

#endif
