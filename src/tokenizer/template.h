/* template.h - the chat-template part of the tokenizer room's door: a
 * Jinja-subset interpreter (tpl_) and the chat layer on top of it (tok_chat_).
 *
 * Contract: for the chat templates shipped with Hugging Face models (Llama 3.x,
 * Qwen2.5/Qwen3, SmolLM2, Gemma 3, DeepSeek-V3, Mistral/Llama-2 style), the
 * rendered prompt is byte-identical to what @huggingface/jinja renders with
 * trim_blocks and lstrip_blocks on (the engine transformers.js uses).
 * tests/tokenizer/test_template_hf.c checks this on generated conversations;
 * docs/CHAT_TEMPLATES.md lists the known differences from Python Jinja2.
 *
 * Usage:
 *   tok_chat_template *ct;
 *   if (tok_chat_template_load("models/x", &ct, &err) != SEM_OK) ...
 *   char *prompt; size_t len;
 *   tok_chat_render(ct, messages, NULL, true, &prompt, &len, &err);  // free(prompt)
 *   for (size_t i = 0; i < tok_chat_n_stop_strings(ct); i++) ... // <|eot_id|> ...
 *
 * Errors are values: a template that does not parse, a render error (unknown
 * filter, bad operand types, raise_exception("...") in the template) or a
 * limit hit returns a sem_status with a message that names the template line
 * and column. Nothing crashes or loops forever: source size, parse depth,
 * evaluation depth, value nesting, output size and evaluation steps all have
 * named limits below.
 *
 * Threads: a parsed tpl_template / tok_chat_template is immutable and may be
 * rendered from any number of threads at once (Thread: any); each render
 * keeps its own state.
 */
#ifndef SEM_TOKENIZER_TEMPLATE_H
#define SEM_TOKENIZER_TEMPLATE_H

#include "base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;

/* ---- limits: anything above fails with SEM_ELIMIT ----------------------- */
#define TPL_MAX_SOURCE_BYTES ((size_t)1 << 20)     /* one template's text */
#define TPL_MAX_PARSE_DEPTH 96                     /* nested (), [], {}, not, - ... */
#define TPL_MAX_EVAL_DEPTH 320                     /* nested evaluation incl. macro calls */
#define TPL_MAX_VALUE_DEPTH 128                    /* nesting of lists/dicts (input too) */
#define TPL_MAX_CONTAINER_ITEMS ((size_t)1 << 22)  /* one list or dict */
#define TPL_MAX_RANGE_ITEMS ((size_t)1 << 20)      /* one range() */
#define TPL_DEFAULT_MAX_OUTPUT_BYTES ((size_t)16 << 20) /* rendered text, and any one string */
/* Work budget: node evaluations + list items + strings made (1 + bytes/64
 * each). A 1000-message chat takes about 0.1M; 5M is well under a second. */
#define TPL_DEFAULT_MAX_STEPS ((uint64_t)5000000)

/* ===================================================================== */
/* tpl_: parse once, render many times                                    */
/* ===================================================================== */

typedef struct tpl_template tpl_template; /* opaque; immutable; Thread: any */

/* Parses src[0..len) (need not be NUL-terminated) with the settings HF uses:
 * trim_blocks and lstrip_blocks on, one trailing newline dropped, and the
 * transformers-only {% generation %} tags removed (their body is kept).
 * On failure *out is untouched and err says line and column. */
sem_status tpl_parse(const char *src, size_t len, tpl_template **out, sem_err *err);
void tpl_destroy(tpl_template *t); /* NULL ok */

typedef struct tpl_render_params {
    int64_t now_unix_s;      /* clock for strftime_now(); 0 = the current time */
    bool now_utc;            /* format that clock in UTC (tests); false = local time */
    size_t max_output_bytes; /* 0 = TPL_DEFAULT_MAX_OUTPUT_BYTES */
    uint64_t max_steps;      /* 0 = TPL_DEFAULT_MAX_STEPS */
} tpl_render_params;

tpl_render_params tpl_render_default_params(void);

/* Renders t with the members of ctx (a JSON object, borrowed; NULL = empty)
 * as variables. JSON numbers with an integral value are integers, as in
 * JavaScript. p may be NULL (defaults). On success *out is a NUL-terminated
 * heap string (free with free()) and *out_len (may be NULL) its length. */
sem_status tpl_render(const tpl_template *t, const struct json_t *ctx,
                      const tpl_render_params *p, char **out, size_t *out_len, sem_err *err);

/* ===================================================================== */
/* tok_chat_: a model's chat template from tokenizer_config.json          */
/* ===================================================================== */

#define TOK_CHAT_MAX_CONFIG_BYTES ((size_t)64 << 20)
#define TOK_CHAT_MAX_STOP_STRINGS 8

typedef struct tok_chat_template tok_chat_template; /* opaque; immutable; Thread: any */

/* Reads DIR/tokenizer_config.json. `chat_template` is a string, or a list of
 * {name, template}; all named templates are parsed. bos_token/eos_token (and
 * unk/sep/pad/cls/mask) may be strings or AddedToken objects {content: ...}.
 * A config without a chat template fails with SEM_ENOTFOUND. */
sem_status tok_chat_template_load(const char *dir, tok_chat_template **out, sem_err *err);
/* Same from an already parsed config object (borrowed); name is used in errors. */
sem_status tok_chat_template_from_config(const struct json_t *config, const char *name,
                                         tok_chat_template **out, sem_err *err);
void tok_chat_template_destroy(tok_chat_template *ct); /* NULL ok */

/* One render request. messages is a JSON array (borrowed). tools is a JSON
 * array or NULL (NULL renders `tools` as none). extra (NULL or a JSON object)
 * adds template kwargs such as enable_thinking or date_string. */
typedef struct tok_chat_request {
    const struct json_t *messages;
    const struct json_t *tools;
    bool add_generation_prompt;
    const struct json_t *extra;
    const char *template_name; /* NULL = HF's rule: "tool_use" if tools and it exists, else "default" */
    const tpl_render_params *render; /* NULL = defaults */
} tok_chat_request;

sem_status tok_chat_render_ex(const tok_chat_template *ct, const tok_chat_request *req, char **out,
                              size_t *out_len, sem_err *err);
/* Shorthand for tok_chat_render_ex with no extra kwargs. out_len may be NULL. */
sem_status tok_chat_render(const tok_chat_template *ct, const struct json_t *messages,
                           const struct json_t *tools, bool add_generation_prompt, char **out,
                           size_t *out_len, sem_err *err);

/* End-of-turn marker strings (for the engine's stop set): the marker the
 * template writes after an assistant turn (found by rendering a probe
 * conversation), known markers such as <|eom_id|> that appear in the template
 * text, and the configured eos_token. Deduplicated; valid until destroy. */
size_t tok_chat_n_stop_strings(const tok_chat_template *ct);
const char *tok_chat_stop_string(const tok_chat_template *ct, size_t i);

/* The special-token strings from the config ("" when absent). */
const char *tok_chat_bos_token(const tok_chat_template *ct);
const char *tok_chat_eos_token(const tok_chat_template *ct);
/* Names of the parsed templates ("default" for a plain string). */
size_t tok_chat_n_templates(const tok_chat_template *ct);
const char *tok_chat_template_name(const tok_chat_template *ct, size_t i);

#endif /* SEM_TOKENIZER_TEMPLATE_H */
