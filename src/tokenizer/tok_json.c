/* tok_json.c - tokenizer.json component parsers: patterns, normalizers,
 * pre-tokenizers, post-processors and decoders, plus the JSON-path error
 * helpers every loader uses ("tokenizer.json: /pre_tokenizer/pretokenizers/0:
 * unknown behavior 'Foo'").
 *
 * Everything read from the file is type-checked here; a component we do
 * not implement is SEM_EUNSUPPORTED naming its type, never silently
 * ignored (it would change the ids).
 *
 * Thread: load-time only (the caller's).
 */
#include "tokenizer/tok_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* JSON path and typed fields                                             */
/* ===================================================================== */

/* Appends s, escaped as an RFC 6901 reference token unless raw. */
static void jp_append(tok_jpath *jp, const char *s, bool raw)
{
    size_t cap = sizeof jp->path;
    for (; *s && jp->len + 3 < cap; s++) {
        if (!raw && (*s == '~' || *s == '/')) {
            jp->path[jp->len++] = '~';
            jp->path[jp->len++] = *s == '~' ? '0' : '1';
        } else {
            jp->path[jp->len++] = *s;
        }
    }
    jp->path[jp->len] = '\0';
}

size_t tok_jpath_key(tok_jpath *jp, const char *key)
{
    size_t old = jp->len;
    char tmp[48];
    snprintf(tmp, sizeof tmp, "%.40s", key); /* long keys are cut */
    jp_append(jp, "/", true);
    jp_append(jp, tmp, false);
    return old;
}

size_t tok_jpath_index(tok_jpath *jp, size_t i)
{
    size_t old = jp->len;
    char tmp[32];
    snprintf(tmp, sizeof tmp, "/%zu", i);
    jp_append(jp, tmp, true);
    return old;
}

void tok_jpath_pop(tok_jpath *jp, size_t old_len)
{
    jp->len = old_len;
    jp->path[old_len] = '\0';
}

sem_status tok_jerr(tok_jpath *jp, sem_status code, const char *fmt, ...)
{
    char msg[SEM_ERR_MSG_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sem_errf(jp->err, code, "%s: %s: %s", jp->file, jp->len ? jp->path : "/", msg);
}

static const char *jtype(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

sem_status tok_json_str(json_t *obj, const char *key, tok_jpath *jp, const char **out, size_t *len,
                        bool required)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = NULL;
        if (len) *len = 0;
        if (!required) return SEM_OK;
        return tok_jerr(jp, SEM_ECORRUPT, "missing string field '%s'", key);
    }
    if (!json_is_string(v)) {
        size_t old = tok_jpath_key(jp, key);
        sem_status s = tok_jerr(jp, SEM_ECORRUPT, "expected a string, found %s", jtype(v));
        tok_jpath_pop(jp, old);
        return s;
    }
    *out = json_string_value(v);
    if (len) *len = json_string_length(v);
    return SEM_OK;
}

sem_status tok_json_bool(json_t *obj, const char *key, tok_jpath *jp, bool *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return SEM_OK;
    if (!json_is_boolean(v)) {
        size_t old = tok_jpath_key(jp, key);
        sem_status s = tok_jerr(jp, SEM_ECORRUPT, "expected a boolean, found %s", jtype(v));
        tok_jpath_pop(jp, old);
        return s;
    }
    *out = json_is_true(v);
    return SEM_OK;
}

static sem_status json_size(json_t *obj, const char *key, tok_jpath *jp, size_t max, size_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return SEM_OK;
    size_t old = tok_jpath_key(jp, key);
    sem_status s = SEM_OK;
    if (!json_is_integer(v)) s = tok_jerr(jp, SEM_ECORRUPT, "expected an integer, found %s", jtype(v));
    else if (json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        s = tok_jerr(jp, SEM_ECORRUPT, "value %lld out of range [0, %zu]",
                     (long long)json_integer_value(v), max);
    else *out = (size_t)json_integer_value(v);
    tok_jpath_pop(jp, old);
    return s;
}

sem_status tok_json_type(json_t *obj, tok_jpath *jp, const char **type)
{
    if (!json_is_object(obj))
        return tok_jerr(jp, SEM_ECORRUPT, "expected an object, found %s", jtype(obj));
    return tok_json_str(obj, "type", jp, type, NULL, true);
}

char *tok_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Exactly one character, as HF's `char` fields require. */
static sem_status one_char(json_t *obj, const char *key, tok_jpath *jp, bool required, uint32_t *cp)
{
    const char *s;
    size_t n;
    sem_status st = tok_json_str(obj, key, jp, &s, &n, required);
    if (st != SEM_OK || !s) return st;
    uint32_t c = 0;
    size_t w = n ? tok_utf8_next(s, n, &c) : 0;
    if (n == 0 || w != n) {
        size_t old = tok_jpath_key(jp, key);
        st = tok_jerr(jp, SEM_ECORRUPT, "expected exactly one character, found \"%.20s\"", s);
        tok_jpath_pop(jp, old);
        return st;
    }
    *cp = c;
    return SEM_OK;
}

static sem_status prepend_scheme(json_t *obj, tok_jpath *jp, tok_prepend_scheme *out)
{
    const char *ps;
    sem_status st = tok_json_str(obj, "prepend_scheme", jp, &ps, NULL, false);
    if (st != SEM_OK) return st;
    tok_prepend_scheme sch = TOK_PREPEND_ALWAYS;
    if (ps && !strcmp(ps, "first")) sch = TOK_PREPEND_FIRST;
    else if (ps && !strcmp(ps, "never")) sch = TOK_PREPEND_NEVER;
    else if (ps && strcmp(ps, "always") != 0)
        return tok_jerr(jp, SEM_ECORRUPT, "unknown prepend_scheme '%.40s'", ps);
    bool aps = true;
    json_t *a = json_object_get(obj, "add_prefix_space");
    if ((st = tok_json_bool(obj, "add_prefix_space", jp, &aps)) != SEM_OK) return st;
    if (a && json_is_false(a)) {
        if (ps && sch != TOK_PREPEND_NEVER)
            return tok_jerr(jp, SEM_ECORRUPT, "add_prefix_space does not match prepend_scheme");
        sch = TOK_PREPEND_NEVER;
    }
    *out = sch;
    return SEM_OK;
}

/* Generic array-of-components walker with nesting limit. */
typedef sem_status (*item_parser)(json_t *j, tok_jpath *jp, void *item);

static sem_status parse_items(json_t *obj, const char *key, tok_jpath *jp, size_t item_size,
                              item_parser parse, void (*fini)(void *), void **items, size_t *n)
{
    json_t *arr = json_object_get(obj, key);
    size_t old = tok_jpath_key(jp, key);
    sem_status st = SEM_OK;
    if (!json_is_array(arr)) {
        st = tok_jerr(jp, SEM_ECORRUPT, "expected an array, found %s", arr ? jtype(arr) : "nothing");
        tok_jpath_pop(jp, old);
        return st;
    }
    if (jp->depth >= TOK_MAX_NESTING) {
        st = tok_jerr(jp, SEM_ELIMIT, "Sequence nesting deeper than %d", TOK_MAX_NESTING);
        tok_jpath_pop(jp, old);
        return st;
    }
    size_t cnt = json_array_size(arr);
    char *v = cnt ? calloc(cnt, item_size) : NULL;
    if (cnt && !v) st = tok_jerr(jp, SEM_ENOMEM, "out of memory");
    size_t done = 0;
    jp->depth++;
    for (; st == SEM_OK && done < cnt; done++) {
        size_t o2 = tok_jpath_index(jp, done);
        st = parse(json_array_get(arr, done), jp, v + done * item_size);
        if (st == SEM_OK) tok_jpath_pop(jp, o2);
    }
    jp->depth--;
    if (st != SEM_OK) {
        for (size_t i = 0; i + 1 < done; i++) fini(v + i * item_size);
        free(v);
        return st; /* path left pointing at the failing item */
    }
    tok_jpath_pop(jp, old);
    *items = v;
    *n = cnt;
    return SEM_OK;
}

/* ===================================================================== */
/* Patterns                                                               */
/* ===================================================================== */

sem_status tok_parse_pattern(json_t *j, tok_jpath *jp, tok_pattern *out)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(j))
        return tok_jerr(jp, SEM_ECORRUPT, "pattern: expected an object, found %s", j ? jtype(j) : "nothing");
    json_t *str = json_object_get(j, "String"), *re = json_object_get(j, "Regex");
    if ((str != NULL) == (re != NULL))
        return tok_jerr(jp, SEM_ECORRUPT, "pattern needs exactly one of String or Regex");
    json_t *v = str ? str : re;
    if (!json_is_string(v))
        return tok_jerr(jp, SEM_ECORRUPT, "pattern: expected a string, found %s", jtype(v));
    sem_err e2;
    sem_err_clear(&e2);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    sem_status st = str ? tok_pattern_literal(out, s, n, &e2) : tok_pattern_regex(out, s, n, &e2);
    if (st != SEM_OK) return tok_jerr(jp, st, "%s", e2.msg);
    return SEM_OK;
}

static sem_status parse_pattern_field(json_t *obj, tok_jpath *jp, tok_pattern *out)
{
    size_t old = tok_jpath_key(jp, "pattern");
    sem_status st = tok_parse_pattern(json_object_get(obj, "pattern"), jp, out);
    if (st == SEM_OK) tok_jpath_pop(jp, old);
    return st;
}

/* ===================================================================== */
/* Normalizers                                                            */
/* ===================================================================== */

static sem_status norm_item(json_t *j, tok_jpath *jp, void *item)
{
    return tok_parse_normalizer(j, jp, item);
}
static void norm_fini(void *p) { tok_normalizer_fini(p); }

sem_status tok_parse_normalizer(json_t *j, tok_jpath *jp, tok_normalizer *out)
{
    memset(out, 0, sizeof *out);
    const char *type;
    sem_status st = tok_json_type(j, jp, &type);
    if (st != SEM_OK) return st;
    static const struct { const char *name; tok_norm_kind kind; } simple[] = {
        {"NFC", TOK_NORM_NFC}, {"NFD", TOK_NORM_NFD}, {"NFKC", TOK_NORM_NFKC},
        {"NFKD", TOK_NORM_NFKD}, {"Lowercase", TOK_NORM_LOWERCASE}};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (!strcmp(type, simple[i].name)) {
            out->kind = simple[i].kind;
            return SEM_OK;
        }
    const char *s;
    size_t n;
    if (!strcmp(type, "Sequence")) {
        out->kind = TOK_NORM_SEQUENCE;
        return parse_items(j, "normalizers", jp, sizeof(tok_normalizer), norm_item, norm_fini,
                           (void **)&out->items, &out->n_items);
    }
    if (!strcmp(type, "Prepend")) {
        out->kind = TOK_NORM_PREPEND;
        if ((st = tok_json_str(j, "prepend", jp, &s, &n, true)) != SEM_OK) return st;
        out->str = tok_strndup(s, n);
        out->str_len = n;
        return out->str ? SEM_OK : tok_jerr(jp, SEM_ENOMEM, "out of memory");
    }
    if (!strcmp(type, "Replace")) {
        out->kind = TOK_NORM_REPLACE;
        if ((st = tok_json_str(j, "content", jp, &s, &n, true)) != SEM_OK) return st;
        if (!(out->str = tok_strndup(s, n))) return tok_jerr(jp, SEM_ENOMEM, "out of memory");
        out->str_len = n;
        if ((st = parse_pattern_field(j, jp, &out->pat)) != SEM_OK) tok_normalizer_fini(out);
        return st;
    }
    if (!strcmp(type, "Strip")) {
        out->kind = TOK_NORM_STRIP;
        out->strip_left = out->strip_right = true;
        if ((st = tok_json_bool(j, "strip_left", jp, &out->strip_left)) != SEM_OK) return st;
        return tok_json_bool(j, "strip_right", jp, &out->strip_right);
    }
    return tok_jerr(jp, SEM_EUNSUPPORTED, "normalizer type '%.40s' is not supported", type);
}

/* ===================================================================== */
/* Pre-tokenizers                                                         */
/* ===================================================================== */

static sem_status pretok_item(json_t *j, tok_jpath *jp, void *item)
{
    return tok_parse_pretok(j, jp, item);
}
static void pretok_fini(void *p) { tok_pretok_fini(p); }

static sem_status split_behavior(json_t *j, tok_jpath *jp, tok_split_behavior *out)
{
    const char *b;
    sem_status st = tok_json_str(j, "behavior", jp, &b, NULL, true);
    if (st != SEM_OK) return st;
    static const struct { const char *name; tok_split_behavior b; } names[] = {
        {"Removed", TOK_SPLIT_REMOVED}, {"Isolated", TOK_SPLIT_ISOLATED},
        {"MergedWithPrevious", TOK_SPLIT_MERGED_PREV}, {"MergedWithNext", TOK_SPLIT_MERGED_NEXT},
        {"Contiguous", TOK_SPLIT_CONTIGUOUS}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(b, names[i].name)) {
            *out = names[i].b;
            return SEM_OK;
        }
    return tok_jerr(jp, SEM_ECORRUPT, "unknown split behavior '%.40s'", b);
}

/* Moves the items of nested Sequences up into one flat list. */
static sem_status flatten(tok_pretok *seq, tok_jpath *jp)
{
    size_t total = 0;
    for (size_t i = 0; i < seq->n_items; i++)
        total += seq->items[i].kind == TOK_PT_SEQUENCE ? seq->items[i].n_items : 1;
    if (total == seq->n_items) return SEM_OK;
    tok_pretok *flat = calloc(total, sizeof *flat);
    if (!flat) return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < seq->n_items; i++) {
        tok_pretok *it = &seq->items[i];
        if (it->kind != TOK_PT_SEQUENCE) {
            flat[k++] = *it;
            continue;
        }
        for (size_t c = 0; c < it->n_items; c++) flat[k++] = it->items[c];
        free(it->items);
    }
    free(seq->items);
    seq->items = flat;
    seq->n_items = total;
    return SEM_OK;
}

#define GPT2_REGEX \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define WHITESPACE_REGEX "\\w+|[^\\w\\s]+"

static sem_status builtin_regex(tok_pattern *p, const char *re, tok_jpath *jp)
{
    sem_err e2;
    sem_status st = tok_pattern_regex(p, re, strlen(re), &e2);
    return st == SEM_OK ? SEM_OK : tok_jerr(jp, st, "%s", e2.msg);
}

static sem_status parse_metaspace_pt(json_t *j, tok_jpath *jp, tok_pretok *out)
{
    out->kind = TOK_PT_METASPACE;
    out->repl_cp = 0x2581;
    sem_status st = one_char(j, "replacement", jp, false, &out->repl_cp);
    if (st != SEM_OK) return st;
    out->repl_len = tok_utf8_encode(out->repl_cp, out->repl);
    out->split = true;
    if ((st = tok_json_bool(j, "split", jp, &out->split)) != SEM_OK) return st;
    return prepend_scheme(j, jp, &out->prepend);
}

sem_status tok_parse_pretok(json_t *j, tok_jpath *jp, tok_pretok *out)
{
    memset(out, 0, sizeof *out);
    const char *type;
    sem_status st = tok_json_type(j, jp, &type);
    if (st != SEM_OK) return st;
    if (!strcmp(type, "Sequence")) {
        out->kind = TOK_PT_SEQUENCE;
        st = parse_items(j, "pretokenizers", jp, sizeof(tok_pretok), pretok_item, pretok_fini,
                         (void **)&out->items, &out->n_items);
        if (st == SEM_OK && (st = flatten(out, jp)) != SEM_OK) tok_pretok_fini(out);
        return st;
    }
    if (!strcmp(type, "Split")) {
        out->kind = TOK_PT_SPLIT;
        if ((st = split_behavior(j, jp, &out->behavior)) != SEM_OK ||
            (st = tok_json_bool(j, "invert", jp, &out->invert)) != SEM_OK)
            return st;
        return parse_pattern_field(j, jp, &out->pat);
    }
    if (!strcmp(type, "ByteLevel")) {
        out->kind = TOK_PT_BYTELEVEL;
        out->add_prefix_space = out->use_regex = true; /* HF defaults */
        if ((st = tok_json_bool(j, "add_prefix_space", jp, &out->add_prefix_space)) != SEM_OK ||
            (st = tok_json_bool(j, "use_regex", jp, &out->use_regex)) != SEM_OK)
            return st;
        return out->use_regex ? builtin_regex(&out->pat, GPT2_REGEX, jp) : SEM_OK;
    }
    if (!strcmp(type, "Digits")) {
        out->kind = TOK_PT_DIGITS;
        return tok_json_bool(j, "individual_digits", jp, &out->individual_digits);
    }
    if (!strcmp(type, "Metaspace")) return parse_metaspace_pt(j, jp, out);
    if (!strcmp(type, "WhitespaceSplit")) {
        out->kind = TOK_PT_WHITESPACE_SPLIT;
        return SEM_OK;
    }
    if (!strcmp(type, "Whitespace")) { /* HF: split on \w+|[^\w\s]+, keep the matches */
        out->kind = TOK_PT_SPLIT;
        out->behavior = TOK_SPLIT_REMOVED;
        out->invert = true;
        return builtin_regex(&out->pat, WHITESPACE_REGEX, jp);
    }
    return tok_jerr(jp, SEM_EUNSUPPORTED, "pre-tokenizer type '%.40s' is not supported", type);
}

/* ===================================================================== */
/* Decoders                                                               */
/* ===================================================================== */

static sem_status dec_item(json_t *j, tok_jpath *jp, void *item)
{
    return tok_parse_decoder(j, jp, item);
}
static void dec_fini(void *p) { tok_decoder_fini(p); }

sem_status tok_parse_decoder(json_t *j, tok_jpath *jp, tok_decoder *out)
{
    memset(out, 0, sizeof *out);
    const char *type;
    sem_status st = tok_json_type(j, jp, &type);
    if (st != SEM_OK) return st;
    if (!strcmp(type, "Sequence")) {
        out->kind = TOK_DEC_SEQUENCE;
        return parse_items(j, "decoders", jp, sizeof(tok_decoder), dec_item, dec_fini,
                           (void **)&out->items, &out->n_items);
    }
    if (!strcmp(type, "ByteLevel")) out->kind = TOK_DEC_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) out->kind = TOK_DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) out->kind = TOK_DEC_FUSE;
    else if (!strcmp(type, "Metaspace")) {
        out->kind = TOK_DEC_METASPACE;
        out->cp = 0x2581;
        if ((st = one_char(j, "replacement", jp, false, &out->cp)) != SEM_OK) return st;
        return prepend_scheme(j, jp, &out->prepend);
    } else if (!strcmp(type, "Replace")) {
        out->kind = TOK_DEC_REPLACE;
        const char *s;
        size_t n;
        if ((st = tok_json_str(j, "content", jp, &s, &n, true)) != SEM_OK) return st;
        if (!(out->content = tok_strndup(s, n))) return tok_jerr(jp, SEM_ENOMEM, "out of memory");
        out->content_len = n;
        if ((st = parse_pattern_field(j, jp, &out->pat)) != SEM_OK) tok_decoder_fini(out);
        return st;
    } else if (!strcmp(type, "Strip")) {
        out->kind = TOK_DEC_STRIP;
        if ((st = one_char(j, "content", jp, true, &out->cp)) != SEM_OK ||
            (st = json_size(j, "start", jp, TOK_MAX_INPUT_BYTES, &out->start)) != SEM_OK)
            return st;
        return json_size(j, "stop", jp, TOK_MAX_INPUT_BYTES, &out->stop);
    } else {
        return tok_jerr(jp, SEM_EUNSUPPORTED, "decoder type '%.40s' is not supported", type);
    }
    return SEM_OK;
}

/* ===================================================================== */
/* Post-processors                                                        */
/* ===================================================================== */

static sem_status tpl_add(tok_tpl_item **items, size_t *n, int seq, const tok_id *ids, size_t n_ids,
                          tok_jpath *jp)
{
    tok_tpl_item *v = realloc(*items, (*n + 1) * sizeof *v);
    if (!v) return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    *items = v;
    tok_tpl_item *it = &v[(*n)++];
    it->seq = seq;
    it->n_ids = n_ids;
    it->ids = NULL;
    if (n_ids) {
        it->ids = malloc(n_ids * sizeof *ids);
        if (!it->ids) {
            (*n)--;
            return tok_jerr(jp, SEM_ENOMEM, "out of memory");
        }
        memcpy(it->ids, ids, n_ids * sizeof *ids);
    }
    return SEM_OK;
}

static sem_status special_ids(json_t *specials, const char *name, tok_jpath *jp, tok_id *ids,
                              size_t cap, size_t *n)
{
    json_t *sp = json_object_get(specials, name);
    if (!json_is_object(sp))
        return tok_jerr(jp, SEM_ECORRUPT, "special token '%.40s' is not in special_tokens", name);
    json_t *arr = json_object_get(sp, "ids");
    if (!json_is_array(arr) || json_array_size(arr) > cap)
        return tok_jerr(jp, SEM_ECORRUPT, "special token '%.40s': ids must be an array of at most %zu",
                        name, cap);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) >= TOK_MAX_VOCAB)
            return tok_jerr(jp, SEM_ECORRUPT, "special token '%.40s': bad id at %zu", name, i);
        ids[i] = (tok_id)json_integer_value(v);
    }
    *n = json_array_size(arr);
    return SEM_OK;
}

static bool all_digits(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

/* HF Piece from a string: "id" or "id:type_id"; "$", "$A"/"$a", "$B"/"$b"
 * or "$<n>" (sequence A with type n) are sequences, anything else a
 * special token. Returns 0/1 for A/B, -1 for a special, -2 if invalid. */
static int parse_piece_name(char *name)
{
    char *colon = strchr(name, ':');
    if (colon) {
        if (strchr(colon + 1, ':') || !all_digits(colon + 1)) return -2;
        *colon = '\0';
    }
    if (name[0] != '$') return -1;
    const char *r = name + 1;
    if (!*r || !strcmp(r, "A") || !strcmp(r, "a") || all_digits(r)) return 0;
    if (!strcmp(r, "B") || !strcmp(r, "b")) return 1;
    return -2;
}

static sem_status tpl_piece(json_t *pc, json_t *specials, tok_jpath *jp, tok_tpl_item **items,
                            size_t *n)
{
    tok_id ids[64];
    size_t n_ids = 0;
    if (json_is_string(pc)) {
        char name[256];
        snprintf(name, sizeof name, "%s", json_string_value(pc));
        int seq = parse_piece_name(name);
        if (seq == -2) return tok_jerr(jp, SEM_ECORRUPT, "bad template piece '%.40s'", name);
        if (seq >= 0) return tpl_add(items, n, seq, NULL, 0, jp);
        sem_status st = special_ids(specials, name, jp, ids, 64, &n_ids);
        return st != SEM_OK ? st : tpl_add(items, n, -1, ids, n_ids, jp);
    }
    json_t *sp = json_object_get(pc, "SpecialToken"), *sq = json_object_get(pc, "Sequence");
    if (!json_is_object(pc) || (!sp == !sq))
        return tok_jerr(jp, SEM_ECORRUPT, "template piece must be SpecialToken or Sequence");
    const char *id;
    sem_status st = tok_json_str(sp ? sp : sq, "id", jp, &id, NULL, true);
    if (st != SEM_OK) return st;
    if (sq) {
        if (strcmp(id, "A") && strcmp(id, "B"))
            return tok_jerr(jp, SEM_ECORRUPT, "sequence id must be A or B, found '%.40s'", id);
        return tpl_add(items, n, id[0] == 'A' ? 0 : 1, NULL, 0, jp);
    }
    if ((st = special_ids(specials, id, jp, ids, 64, &n_ids)) != SEM_OK) return st;
    return tpl_add(items, n, -1, ids, n_ids, jp);
}

static sem_status tpl_list(json_t *j, const char *key, json_t *specials, tok_jpath *jp,
                           tok_tpl_item **items, size_t *n)
{
    json_t *t = json_object_get(j, key);
    size_t old = tok_jpath_key(jp, key);
    sem_status st = SEM_OK;
    if (json_is_string(t)) { /* "[CLS] $A [SEP]" */
        char *copy = tok_strndup(json_string_value(t), json_string_length(t)), *save = NULL;
        if (!copy) return tok_jerr(jp, SEM_ENOMEM, "out of memory");
        for (char *w = strtok_r(copy, " ", &save); w && st == SEM_OK; w = strtok_r(NULL, " ", &save)) {
            json_t *js = json_string(w);
            st = js ? tpl_piece(js, specials, jp, items, n) : tok_jerr(jp, SEM_ENOMEM, "out of memory");
            json_decref(js);
        }
        free(copy);
    } else if (json_is_array(t)) {
        for (size_t i = 0; i < json_array_size(t) && st == SEM_OK; i++) {
            size_t o2 = tok_jpath_index(jp, i);
            st = tpl_piece(json_array_get(t, i), specials, jp, items, n);
            if (st == SEM_OK) tok_jpath_pop(jp, o2);
        }
    } else if (t && !json_is_null(t)) {
        st = tok_jerr(jp, SEM_ECORRUPT, "expected a template array or string, found %s", jtype(t));
    }
    if (st == SEM_OK) tok_jpath_pop(jp, old);
    return st;
}

static sem_status parse_template(json_t *j, tok_jpath *jp, tok_post *out)
{
    json_t *specials = json_object_get(j, "special_tokens");
    if (specials && !json_is_object(specials) && !json_is_null(specials))
        return tok_jerr(jp, SEM_ECORRUPT, "special_tokens: expected an object");
    out->has_template = true;
    sem_status st = tpl_list(j, "single", specials, jp, &out->single, &out->n_single);
    if (st == SEM_OK) st = tpl_list(j, "pair", specials, jp, &out->pair, &out->n_pair);
    return st;
}

/* BertProcessing / RobertaProcessing: "sep": ["[SEP]", 102]. */
static sem_status bert_like(json_t *j, tok_jpath *jp, bool roberta, tok_post *out)
{
    tok_id ids[2];
    const char *keys[2] = {"cls", "sep"};
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(j, keys[k]);
        json_t *id = json_array_get(v, 1);
        if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(id) ||
            json_integer_value(id) < 0 || (uint64_t)json_integer_value(id) >= TOK_MAX_VOCAB)
            return tok_jerr(jp, SEM_ECORRUPT, "%s: expected [token, id]", keys[k]);
        ids[k] = (tok_id)json_integer_value(id);
    }
    out->has_template = true;
    sem_status st = SEM_OK;
    tok_id cls = ids[0], sep = ids[1];
    st = tpl_add(&out->single, &out->n_single, -1, &cls, 1, jp);
    if (st == SEM_OK) st = tpl_add(&out->single, &out->n_single, 0, NULL, 0, jp);
    if (st == SEM_OK) st = tpl_add(&out->single, &out->n_single, -1, &sep, 1, jp);
    tok_id mid[2] = {sep, sep};
    if (st == SEM_OK) st = tpl_add(&out->pair, &out->n_pair, -1, &cls, 1, jp);
    if (st == SEM_OK) st = tpl_add(&out->pair, &out->n_pair, 0, NULL, 0, jp);
    if (st == SEM_OK) st = tpl_add(&out->pair, &out->n_pair, -1, mid, roberta ? 2 : 1, jp);
    if (st == SEM_OK) st = tpl_add(&out->pair, &out->n_pair, 1, NULL, 0, jp);
    if (st == SEM_OK) st = tpl_add(&out->pair, &out->n_pair, -1, &sep, 1, jp);
    return st;
}

static sem_status post_one(json_t *j, tok_jpath *jp, tok_post *out);

static sem_status post_sequence(json_t *j, tok_jpath *jp, tok_post *out)
{
    json_t *arr = json_object_get(j, "processors");
    size_t old = tok_jpath_key(jp, "processors");
    if (!json_is_array(arr)) return tok_jerr(jp, SEM_ECORRUPT, "expected an array");
    if (jp->depth >= TOK_MAX_NESTING)
        return tok_jerr(jp, SEM_ELIMIT, "Sequence nesting deeper than %d", TOK_MAX_NESTING);
    jp->depth++;
    sem_status st = SEM_OK;
    for (size_t i = 0; i < json_array_size(arr) && st == SEM_OK; i++) {
        size_t o2 = tok_jpath_index(jp, i);
        tok_post one = {0};
        st = post_one(json_array_get(arr, i), jp, &one);
        if (st == SEM_OK && one.has_template && out->has_template)
            st = tok_jerr(jp, SEM_EUNSUPPORTED, "more than one template post-processor");
        if (st == SEM_OK && one.has_template) *out = one;
        else tok_post_fini(&one);
        if (st == SEM_OK) tok_jpath_pop(jp, o2);
    }
    jp->depth--;
    if (st == SEM_OK) tok_jpath_pop(jp, old);
    return st;
}

static sem_status post_one(json_t *j, tok_jpath *jp, tok_post *out)
{
    const char *type;
    sem_status st = tok_json_type(j, jp, &type);
    if (st != SEM_OK) return st;
    if (!strcmp(type, "ByteLevel")) st = SEM_OK;
    else if (!strcmp(type, "TemplateProcessing")) st = parse_template(j, jp, out);
    else if (!strcmp(type, "BertProcessing")) st = bert_like(j, jp, false, out);
    else if (!strcmp(type, "RobertaProcessing")) st = bert_like(j, jp, true, out);
    else if (!strcmp(type, "Sequence")) st = post_sequence(j, jp, out);
    else st = tok_jerr(jp, SEM_EUNSUPPORTED, "post-processor type '%.40s' is not supported", type);
    if (st != SEM_OK) tok_post_fini(out);
    return st;
}

sem_status tok_parse_post(json_t *j, tok_jpath *jp, tok_post *out)
{
    memset(out, 0, sizeof *out);
    return post_one(j, jp, out);
}
