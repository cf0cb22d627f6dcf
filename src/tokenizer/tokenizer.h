/* tokenizer.h - the door of the tokenizer room: Hugging Face tokenizer.json
 * (BPE, byte-level and byte-fallback), added/special tokens, encode, decode,
 * a streaming detokenizer, and the tokenizer_config.json /
 * generation_config.json facts other rooms need (BOS/EOS, chat templates).
 *
 * Contract: token ids are identical to Hugging Face `tokenizers` for the
 * same tokenizer.json (tests/tokenizer/test_tok_parity.c checks this against
 * the official npm binding on real files).
 *
 * Usage:
 *   tok_tokenizer *tok;
 *   if (tok_load_dir("models/x", &tok, &err) != SEM_OK) ...   // or tok_load_file
 *   tok_ids ids; tok_ids_init(&ids);
 *   tok_encode(tok, NULL, text, len, true, &ids, &err);       // NULL: no cache
 *   buf text; buf_init(&text);
 *   tok_decode(tok, ids.data, ids.len, false, &text, &err);
 *
 * Threads: a loaded tok_tokenizer is immutable and may be shared by any
 * number of threads (Thread: any). A tok_encoder (scratch space and word
 * cache) and a tok_stream belong to one thread at a time.
 */
#ifndef SEM_TOKENIZER_H
#define SEM_TOKENIZER_H

#include "base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int32_t tok_id;

/* ---- limits: anything above is rejected with SEM_ELIMIT ---------------- */
#define TOK_MAX_FILE_BYTES ((size_t)512 << 20)   /* tokenizer.json */
#define TOK_MAX_CONFIG_BYTES ((size_t)64 << 20)  /* tokenizer_config / generation_config */
#define TOK_MAX_VOCAB ((size_t)1 << 22)          /* ids are < this */
#define TOK_MAX_MERGES ((size_t)1 << 23)
#define TOK_MAX_ADDED ((size_t)1 << 20)
#define TOK_MAX_TOKEN_BYTES ((size_t)4096)       /* one vocab piece / added token */
#define TOK_MAX_INPUT_BYTES ((size_t)64 << 20)   /* one encode call */
#define TOK_MAX_NESTING 16                       /* Sequence inside Sequence ... */
#define TOK_MAX_PATTERN_BYTES ((size_t)16384)    /* one regex */
#define TOK_MAX_CHAT_TEMPLATES 64

/* ---- growable id vector ------------------------------------------------ */
typedef struct tok_ids {
    tok_id *data; /* owned */
    size_t len;
    size_t cap;
} tok_ids;

void tok_ids_init(tok_ids *v);
void tok_ids_fini(tok_ids *v); /* frees; reusable after tok_ids_init */
bool tok_ids_push(tok_ids *v, tok_id id); /* false on OOM */
bool tok_ids_append(tok_ids *v, const tok_id *ids, size_t n);

/* ---- loading ------------------------------------------------------------ */
typedef struct tok_tokenizer tok_tokenizer; /* opaque; immutable; Thread: any */

/* Reads DIR/tokenizer.json (required), DIR/tokenizer_config.json and
 * DIR/generation_config.json (both optional). Errors name the file and the
 * JSON path ("tokenizer.json: /model/merges/17: ..."). When the config sets
 * add_bos_token/add_eos_token and tokenizer.json's post-processor has no
 * TemplateProcessing (Llama-2/Mistral/DeepSeek style), encode with
 * add_special=true adds BOS/EOS as transformers does. */
sem_status tok_load_dir(const char *dir, tok_tokenizer **out, sem_err *err);
/* tokenizer.json alone: exactly Hugging Face `Tokenizer.from_file`. */
sem_status tok_load_file(const char *path, tok_tokenizer **out, sem_err *err);
/* tokenizer.json bytes (need not be NUL-terminated); name is used in
 * errors. Used by tests and fuzzers. */
sem_status tok_load_buffer(const char *json, size_t len, const char *name, tok_tokenizer **out,
                           sem_err *err);
void tok_destroy(tok_tokenizer *tok); /* NULL ok */

/* ---- encoding ------------------------------------------------------------ */
/* Per-thread scratch and a bounded word cache. Borrows tok (must outlive
 * it); use it only with that tokenizer. */
typedef struct tok_encoder tok_encoder; /* opaque; Thread: one owner */

sem_status tok_encoder_create(const tok_tokenizer *tok, tok_encoder **out, sem_err *err);
void tok_encoder_destroy(tok_encoder *enc); /* NULL ok */

/* Encodes len bytes of UTF-8 text and APPENDS the ids to out. enc may be
 * NULL (a temporary one is made: correct, slower). add_special applies the
 * post-processor (BOS/EOS templates). Invalid UTF-8 -> SEM_EINVAL; input
 * over TOK_MAX_INPUT_BYTES -> SEM_ELIMIT. On failure out keeps its old
 * length. */
sem_status tok_encode(const tok_tokenizer *tok, tok_encoder *enc, const char *text, size_t len,
                      bool add_special, tok_ids *out, sem_err *err);
/* A pair of sequences (the post-processor's pair template, if any). */
sem_status tok_encode_pair(const tok_tokenizer *tok, tok_encoder *enc, const char *a,
                           size_t a_len, const char *b, size_t b_len, bool add_special,
                           tok_ids *out, sem_err *err);

/* ---- decoding ------------------------------------------------------------ */
/* Appends the text of ids to out (unknown ids are skipped, as HF does);
 * skip_special drops special tokens. Invalid byte sequences become U+FFFD
 * exactly as HF does. */
sem_status tok_decode(const tok_tokenizer *tok, const tok_id *ids, size_t n, bool skip_special,
                      buf *out, sem_err *err);

/* Streaming detokenizer: feed ids one at a time, get back only complete
 * UTF-8 text. Text is decoded relative to a prefix: the streamed text equals
 * decode(prefix + generated) minus decode(prefix), so a continuation keeps
 * the leading space that Metaspace/Strip decoders remove at the very start
 * of a text. With no prefix, the first token is decoded as the start of a
 * text (what decode(all) gives). Pass the last few prompt ids (up to
 * TOK_STREAM_MAX_PREFIX are used) as prefix when generating after a prompt.
 * Bytes of an incomplete UTF-8 character (byte-fallback or byte-level
 * pieces split across tokens) are held until complete, or until
 * tok_stream_finish. */
#define TOK_STREAM_MAX_PREFIX 8
typedef struct tok_stream tok_stream; /* opaque; Thread: one owner */

sem_status tok_stream_create(const tok_tokenizer *tok, const tok_id *prefix, size_t n_prefix,
                             bool skip_special, tok_stream **out, sem_err *err);
/* Appends newly completed text (possibly nothing) to out. */
sem_status tok_stream_push(tok_stream *s, tok_id id, buf *out, sem_err *err);
/* Appends whatever is still held (e.g. U+FFFD for a cut-off character). */
sem_status tok_stream_finish(tok_stream *s, buf *out, sem_err *err);
void tok_stream_destroy(tok_stream *s); /* NULL ok */

/* ---- vocabulary ------------------------------------------------------------ */
size_t tok_vocab_size(const tok_tokenizer *tok); /* max id + 1 (model and added) */
/* The piece of id (added tokens first, then the model vocab), or NULL.
 * Valid until tok_destroy. Not NUL-terminated: use *len. */
const char *tok_id_to_piece(const tok_tokenizer *tok, tok_id id, size_t *len);
bool tok_piece_to_id(const tok_tokenizer *tok, const char *piece, size_t len, tok_id *out);
bool tok_is_special(const tok_tokenizer *tok, tok_id id); /* special added token */

/* ---- configuration facts (tokenizer_config.json, generation_config.json) -- */
typedef enum tok_special_kind {
    TOK_SPECIAL_BOS = 0,
    TOK_SPECIAL_EOS = 1,
    TOK_SPECIAL_PAD = 2,
    TOK_SPECIAL_UNK = 3,
    TOK_SPECIAL_COUNT
} tok_special_kind;

/* The token text from tokenizer_config.json (string or AddedToken object),
 * NUL-terminated, or NULL when not set. Valid until tok_destroy. */
const char *tok_special_text(const tok_tokenizer *tok, tok_special_kind kind);
/* generation_config bos_token_id, else the id of bos_token; -1 if none. */
tok_id tok_bos_id(const tok_tokenizer *tok);
/* generation_config eos_token_id (int or list) followed by the id of
 * tokenizer_config eos_token when not already listed. */
size_t tok_eos_ids(const tok_tokenizer *tok, const tok_id **ids);
bool tok_is_eos(const tok_tokenizer *tok, tok_id id);
/* Raw chat templates: a string in tokenizer_config.json is named "default";
 * a list of {name, template} keeps its names. NULL/0 when absent. */
size_t tok_config_template_count(const tok_tokenizer *tok);
const char *tok_config_template(const tok_tokenizer *tok, size_t i, const char **name);
/* By name; NULL name = "default" (or the only one). NULL if absent. */
const char *tok_config_template_find(const tok_tokenizer *tok, const char *name);

/* The chat-template engine shares this door. */
#if defined(__has_include)
#if __has_include("tokenizer/template.h")
#include "tokenizer/template.h"
#endif
#endif

#endif /* SEM_TOKENIZER_H */
