/* tok_int.h - the tokenizer room's internal types, shared by the tok_*.c
 * files and never included from outside src/tokenizer/.
 *
 * Pipeline (mirrors Hugging Face `tokenizers`):
 *   text -> added tokens (non-normalized) -> normalizer per remaining segment
 *        -> added tokens (normalized) -> pre-tokenizer -> BPE per piece
 *        -> post-processor (templates)
 *   ids  -> pieces -> decoder chain -> text
 *
 * A loaded tok_tokenizer is immutable; all per-call state lives in a
 * tok_encoder (scratch), so encoding is thread-safe with one encoder per
 * thread.
 */
#ifndef SEM_TOK_INT_H
#define SEM_TOK_INT_H

#include "tokenizer/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* ===================================================================== */
/* UTF-8 and Unicode classes (tok_utf8.c)                                */
/* ===================================================================== */

/* True when s[0..n) is valid UTF-8 (no surrogates, no overlongs). */
bool tok_utf8_valid(const char *s, size_t n, size_t *bad_off);
/* Decodes one character of VALID UTF-8 at s (n > 0); returns its length. */
size_t tok_utf8_next(const char *s, size_t n, uint32_t *cp);
/* Length of the character starting at s[0] of valid UTF-8. */
static inline size_t tok_utf8_len(unsigned char lead)
{
    return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}
size_t tok_utf8_encode(uint32_t cp, char out[4]);
/* Appends s with invalid sequences replaced by U+FFFD, one per maximal
 * invalid subpart (Rust String::from_utf8_lossy). */
bool tok_utf8_append_lossy(buf *out, const char *s, size_t n);
bool tok_cp_is_whitespace(uint32_t cp); /* Unicode White_Space */
bool tok_cp_is_word(uint32_t cp);       /* Rust regex \w */
bool tok_cp_is_numeric(uint32_t cp);    /* Rust char::is_numeric: Nd, Nl, No */

/* GPT-2 byte <-> printable code point table used by ByteLevel. */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp); /* -1 when cp is not in the table */

/* ===================================================================== */
/* Hash maps (tok_map.c)                                                  */
/* ===================================================================== */

uint64_t tok_hash_bytes(const void *p, size_t n);

/* String -> int32 map that owns copies of its keys. */
typedef struct tok_strent {
    size_t off;     /* key offset in keys */
    uint32_t len;   /* key length */
    int32_t val;
    uint32_t hash;  /* low bits of tok_hash_bytes(key) */
} tok_strent;

typedef struct tok_strmap {
    uint32_t *slots;  /* entry index + 1; 0 = empty */
    size_t mask;      /* slots - 1 (power of two) */
    tok_strent *ents; /* owned */
    size_t n, cap;
    buf keys;         /* owned key bytes */
} tok_strmap;

void tok_strmap_init(tok_strmap *m);
void tok_strmap_fini(tok_strmap *m);
void tok_strmap_clear(tok_strmap *m);
/* Finds key; returns the entry index or -1. */
int64_t tok_strmap_find(const tok_strmap *m, const char *key, size_t len);
/* Inserts or overwrites (*existed tells which). Returns the entry index, or
 * -1 on OOM. */
int64_t tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val, bool *existed);
static inline const char *tok_strmap_key(const tok_strmap *m, size_t ent)
{
    return m->keys.data + m->ents[ent].off;
}

/* uint64 -> uint64 map (keys < UINT64_MAX). */
typedef struct tok_u64map {
    uint64_t *keys; /* key + 1; 0 = empty */
    uint64_t *vals;
    size_t mask, n;
} tok_u64map;

void tok_u64map_init(tok_u64map *m);
void tok_u64map_fini(tok_u64map *m);
bool tok_u64map_reserve(tok_u64map *m, size_t n);
bool tok_u64map_put(tok_u64map *m, uint64_t key, uint64_t val); /* overwrites */
bool tok_u64map_get(const tok_u64map *m, uint64_t key, uint64_t *val);

/* ===================================================================== */
/* Spans, pieces and the per-thread scratch                              */
/* ===================================================================== */

typedef struct tok_span {
    size_t start, end;
    bool match; /* produced by a pattern match */
} tok_span;

typedef struct tok_spans {
    tok_span *v;
    size_t n, cap;
} tok_spans;

bool tok_spans_push(tok_spans *s, size_t start, size_t end, bool match);

/* A pre-tokenized piece: bytes [off, off+len) of the scratch arena. */
enum {
    TOK_PIECE_AT_START = 1, /* begins at original offset 0 (Metaspace "first") */
    TOK_PIECE_BYTEMAP = 2,  /* logically ByteLevel-mapped; arena holds raw bytes */
};
typedef struct tok_piece {
    size_t off, len;
    unsigned flags;
} tok_piece;

typedef struct tok_pieces {
    tok_piece *v;
    size_t n, cap;
} tok_pieces;

bool tok_pieces_push(tok_pieces *p, size_t off, size_t len, unsigned flags);

/* BPE merge workspace. */
typedef struct tok_sym {
    tok_id id;
    int32_t prev, next; /* -1 = none */
    uint32_t len;       /* bytes covered; 0 = merged away */
} tok_sym;

typedef struct tok_heap_ent {
    uint32_t rank;
    int32_t pos;
    tok_id new_id;
} tok_heap_ent;

#define TOK_CACHE_MAX_WORD_BYTES 128
#define TOK_CACHE_MAX_ENTRIES 32768
#define TOK_CACHE_MAX_POOL ((size_t)1 << 20) /* ids kept before a reset */

struct tok_encoder {
    const struct tok_tokenizer *tok; /* borrowed */
    pcre2_match_data *md;            /* owned: one pair, any pattern */
    pcre2_match_context *mctx;       /* owned */
    pcre2_jit_stack *jit;            /* owned; made when a match outgrows 32 KiB */
    buf arena;                       /* piece bytes */
    buf norm;                        /* normalizer output */
    buf tmp, tmp2;                   /* normalizer/pre-tokenizer temporaries */
    tok_pieces pa, pb;               /* pre-tokenizer double buffer */
    tok_spans spans, spans2;
    tok_spans segs, nsegs;           /* added-token splits (raw, normalized) */
    tok_ids segidx, nsegidx;         /* their added indices (-1 = text) */
    tok_ids seg_ids;                 /* one sequence before post-processing */
    tok_ids pair_ids;
    tok_sym *syms;
    size_t syms_cap;
    tok_heap_ent *heap;
    size_t heap_cap;
    buf word; /* mapped word for BPE */
    /* Word cache: piece bytes -> offset in cache_pool of [count, ids...]. */
    tok_strmap cache;
    tok_ids cache_pool;
};

/* ===================================================================== */
/* Regex and literal patterns (tok_regex.c)                              */
/* ===================================================================== */

typedef struct tok_pattern {
    bool is_regex;
    char *lit; /* owned literal (String pattern) */
    size_t lit_len;
    pcre2_code *re; /* owned (Regex pattern) */
} tok_pattern;

/* Compiles an Oniguruma-flavoured pattern (as tokenizer.json holds) into
 * PCRE2 with UTF+UCP and JIT; \s, \S, \w, \h and \uHHHH are translated. */
sem_status tok_pattern_regex(tok_pattern *p, const char *src, size_t len, sem_err *err);
sem_status tok_pattern_literal(tok_pattern *p, const char *src, size_t len, sem_err *err);
void tok_pattern_fini(tok_pattern *p);
/* All non-overlapping matches of p in s[0..n), leftmost first, as HF
 * find_iter (an empty match right after the previous match is skipped).
 * Matches are appended to out with match=true; nothing else. */
sem_status tok_pattern_find(const tok_pattern *p, tok_encoder *enc, const char *s, size_t n,
                            tok_spans *out, sem_err *err);

/* ===================================================================== */
/* Normalizers (tok_normalize.c)                                          */
/* ===================================================================== */

typedef enum tok_norm_kind {
    TOK_NORM_SEQUENCE,
    TOK_NORM_NFC,
    TOK_NORM_NFD,
    TOK_NORM_NFKC,
    TOK_NORM_NFKD,
    TOK_NORM_PREPEND,
    TOK_NORM_REPLACE,
    TOK_NORM_STRIP,
    TOK_NORM_LOWERCASE,
} tok_norm_kind;

typedef struct tok_normalizer {
    tok_norm_kind kind;
    char *str; /* owned: Prepend text / Replace content */
    size_t str_len;
    tok_pattern pat;  /* Replace */
    bool strip_left, strip_right;
    struct tok_normalizer *items; /* owned: Sequence */
    size_t n_items;
} tok_normalizer;

void tok_normalizer_fini(tok_normalizer *n);
/* Normalizes in[0..len) into out (cleared first). */
sem_status tok_normalize(const tok_normalizer *n, tok_encoder *enc, const char *in, size_t len,
                         buf *out, sem_err *err);

/* ===================================================================== */
/* Pre-tokenizers (tok_pretok.c)                                          */
/* ===================================================================== */

typedef enum tok_split_behavior {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS,
} tok_split_behavior;

typedef enum tok_prepend_scheme {
    TOK_PREPEND_ALWAYS,
    TOK_PREPEND_NEVER,
    TOK_PREPEND_FIRST,
} tok_prepend_scheme;

typedef enum tok_pretok_kind {
    TOK_PT_SEQUENCE,
    TOK_PT_SPLIT,
    TOK_PT_BYTELEVEL,
    TOK_PT_DIGITS,
    TOK_PT_METASPACE,
    TOK_PT_WHITESPACE_SPLIT,
} tok_pretok_kind;

typedef struct tok_pretok {
    tok_pretok_kind kind;
    tok_pattern pat; /* Split; ByteLevel's GPT-2 regex when use_regex */
    tok_split_behavior behavior;
    bool invert;
    bool add_prefix_space, use_regex; /* ByteLevel */
    bool individual_digits;           /* Digits */
    uint32_t repl_cp;                 /* Metaspace */
    char repl[4];
    size_t repl_len;
    tok_prepend_scheme prepend;
    bool split;
    struct tok_pretok *items; /* owned: Sequence */
    size_t n_items;
} tok_pretok;

void tok_pretok_fini(tok_pretok *p);
/* Splits the arena bytes [off, off+len) into pieces; *out points at one of
 * the encoder's piece lists (valid until the next call). at_start: the
 * segment begins at original offset 0. */
sem_status tok_pretokenize(const tok_pretok *p, tok_encoder *enc, size_t off, size_t len,
                           bool at_start, const tok_pieces **out, sem_err *err);

/* ===================================================================== */
/* BPE model (tok_bpe.c)                                                  */
/* ===================================================================== */

typedef struct tok_bpe {
    tok_strmap vocab;    /* piece -> id */
    uint32_t *id_ent;    /* owned: id -> vocab entry + 1 (0 = none) */
    size_t n_ids;        /* max id + 1 */
    tok_u64map merges;   /* (a << 32 | b) -> (rank << 32 | new_id) */
    tok_id unk_id;       /* -1 = none */
    bool fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix; /* owned; NULL = none */
    size_t prefix_len, suffix_len;
    tok_id byte_ids[256];  /* <0xNN> ids, -1 if absent */
    tok_id bl_ids[256];    /* id of the ByteLevel char of byte b, -1 if absent */
} tok_bpe;

void tok_bpe_fini(tok_bpe *m);
/* Fills byte_ids and bl_ids after the vocab is loaded. */
void tok_bpe_prepare(tok_bpe *m);
/* Tokenizes one piece (arena bytes, flags as tok_piece) and appends ids. */
sem_status tok_bpe_encode(const tok_bpe *m, tok_encoder *enc, const char *s, size_t n,
                          bool bytemap, tok_ids *out, sem_err *err);

/* ===================================================================== */
/* Added tokens (tok_added.c)                                             */
/* ===================================================================== */

typedef struct tok_added {
    char *content; /* owned, NUL-terminated */
    size_t len;
    tok_id id;
    bool special, lstrip, rstrip, single_word, normalized;
} tok_added;

/* Byte trie for leftmost-longest matching (HF's Aho-Corasick MatchKind). */
typedef struct tok_trie {
    tok_u64map edges;  /* (node << 8 | byte) -> child */
    int32_t *term;     /* owned: node -> added index, -1 */
    size_t n_nodes, cap_nodes;
    bool first[256];   /* bytes that can start a match */
} tok_trie;

void tok_trie_init(tok_trie *t);
void tok_trie_fini(tok_trie *t);
bool tok_trie_add(tok_trie *t, const char *s, size_t n, int32_t value);
/* Splits s[0..n) on added tokens as HF find_matches: spans with match=true
 * carry the added index in *idx (parallel array, -1 for text). */
sem_status tok_added_split(const struct tok_tokenizer *tok, const tok_trie *trie, const char *s,
                           size_t n, tok_spans *out, tok_ids *idx, sem_err *err);

/* ===================================================================== */
/* Post-processor (tok_post.c)                                            */
/* ===================================================================== */

typedef struct tok_tpl_item {
    int seq;      /* -1: special ids; 0: sequence A; 1: sequence B */
    tok_id *ids;  /* owned */
    size_t n_ids;
} tok_tpl_item;

typedef struct tok_post {
    bool has_template;
    tok_tpl_item *single, *pair; /* owned */
    size_t n_single, n_pair;
} tok_post;

void tok_post_fini(tok_post *p);
/* Appends the post-processed ids of a (and b when non-NULL) to out. */
bool tok_post_apply(const tok_post *p, bool add_special, const tok_ids *a, const tok_ids *b,
                    tok_ids *out);

/* ===================================================================== */
/* Decoders (tok_decode.c)                                                */
/* ===================================================================== */

typedef enum tok_dec_kind {
    TOK_DEC_SEQUENCE,
    TOK_DEC_BYTELEVEL,
    TOK_DEC_BYTEFALLBACK,
    TOK_DEC_METASPACE,
    TOK_DEC_REPLACE,
    TOK_DEC_STRIP,
    TOK_DEC_FUSE,
} tok_dec_kind;

typedef struct tok_decoder {
    tok_dec_kind kind;
    tok_pattern pat; /* Replace */
    char *content;   /* owned: Replace content */
    size_t content_len;
    uint32_t cp;     /* Strip content / Metaspace replacement */
    size_t start, stop;
    tok_prepend_scheme prepend;
    struct tok_decoder *items; /* owned: Sequence */
    size_t n_items;
} tok_decoder;

void tok_decoder_fini(tok_decoder *d);

/* ===================================================================== */
/* The tokenizer                                                          */
/* ===================================================================== */

typedef struct tok_template_raw {
    char *name, *text; /* owned */
} tok_template_raw;

struct tok_tokenizer {
    char *name;                 /* owned: file name for messages */
    tok_bpe bpe;
    tok_added *added;           /* owned */
    size_t n_added;
    tok_u64map added_by_id;     /* id -> added index */
    tok_strmap added_map;       /* content -> added index */
    tok_trie trie_raw, trie_norm;
    bool has_trie_raw, has_trie_norm;
    tok_normalizer *normalizer; /* owned; NULL = none */
    tok_pretok *pretok;         /* owned; NULL = none */
    tok_post post;
    tok_decoder *decoder;       /* owned; NULL = join with spaces */
    size_t vocab_size;
    /* configuration */
    char *special_text[TOK_SPECIAL_COUNT]; /* owned */
    tok_id bos_id;
    tok_id *eos_ids; /* owned */
    size_t n_eos;
    tok_template_raw *templates; /* owned */
    size_t n_templates;
};

/* JSON path tracking for error messages ("/model/merges/17"). */
typedef struct tok_jpath {
    const char *file;
    char path[200];
    size_t len;
    sem_err *err;
    int depth; /* Sequence nesting */
} tok_jpath;

size_t tok_jpath_key(tok_jpath *jp, const char *key);   /* returns the old length */
size_t tok_jpath_index(tok_jpath *jp, size_t i);
void tok_jpath_pop(tok_jpath *jp, size_t old_len);
sem_status tok_jerr(tok_jpath *jp, sem_status code, const char *fmt, ...) SEM_PRINTF(3, 4);

struct json_t;
/* Component parsers (tok_load.c helpers for each concern). */
sem_status tok_parse_normalizer(struct json_t *j, tok_jpath *jp, tok_normalizer *out);
sem_status tok_parse_pretok(struct json_t *j, tok_jpath *jp, tok_pretok *out);
sem_status tok_parse_decoder(struct json_t *j, tok_jpath *jp, tok_decoder *out);
sem_status tok_parse_post(struct json_t *j, tok_jpath *jp, tok_post *out);
/* The source text of one JSON value: a span of the file (file_text and
 * base give line/column for errors) or a dump of a DOM value. */
typedef struct tok_jsrc {
    const char *p; /* NULL: absent */
    size_t n;
    const char *file_text; /* NULL: no line/column */
    size_t base;           /* offset of p in file_text */
} tok_jsrc;

/* tok_scan.c: where "model.vocab" / "model.merges" lie in the file text
 * (merges[1] == 0 when absent); false when the structure is not found. */
bool tok_scan_model_spans(const char *text, size_t len, size_t vocab[2], size_t merges[2]);
sem_status tok_parse_vocab(const tok_jsrc *src, tok_jpath *jp, tok_bpe *m);
sem_status tok_parse_merges(const tok_jsrc *src, tok_jpath *jp, tok_bpe *m);
/* The model object; its vocab and merges come from the two sources. */
sem_status tok_parse_bpe(struct json_t *j, tok_jpath *jp, tok_bpe *out, const tok_jsrc *vocab,
                         const tok_jsrc *merges);
sem_status tok_parse_pattern(struct json_t *j, tok_jpath *jp, tok_pattern *out);
/* Reads an optional string/bool/int field with type checking. */
sem_status tok_json_str(struct json_t *obj, const char *key, tok_jpath *jp, const char **out,
                        size_t *len, bool required);
sem_status tok_json_bool(struct json_t *obj, const char *key, tok_jpath *jp, bool *out);
sem_status tok_json_type(struct json_t *obj, tok_jpath *jp, const char **type);

/* Looks an id up in the added tokens, then the model vocab. */
const char *tok_piece_of(const struct tok_tokenizer *tok, tok_id id, size_t *len);
sem_status tok_finish_load(struct tok_tokenizer *tok, sem_err *err);
/* Config files (tok_config.c). */
sem_status tok_config_load(struct tok_tokenizer *tok, const char *dir, sem_err *err);

char *tok_strndup(const char *s, size_t n);

#endif /* SEM_TOK_INT_H */
