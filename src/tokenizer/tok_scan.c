/* tok_scan.c - fast loading of the two big parts of tokenizer.json, the
 * BPE vocab (string -> id, up to 262k entries) and merges (up to 515k
 * pairs), straight from the file text into the hash maps.
 *
 * Building a jansson DOM for these costs a heap object per string; instead
 * tok_load.c asks tok_scan_model_spans() where "model.vocab" and
 * "model.merges" lie, blanks them in a copy that jansson parses (the rest
 * is small), and hands the spans to tok_parse_vocab()/tok_parse_merges().
 * These parsers are strict JSON (as jansson: escapes, surrogate pairs,
 * UTF-8, no control characters, no NUL, no duplicate keys), so a file is
 * accepted or rejected exactly as before; errors carry line and column of
 * the original file and the JSON path. If the structural scan cannot find
 * the spans, the loader falls back to jansson for the whole file and feeds
 * these parsers a dump of the DOM values.
 *
 * Thread: load-time only.
 */
#include "tokenizer/tok_int.h"

#include <stdlib.h>
#include <string.h>

#define SCAN_MAX_DEPTH 512

/* ===================================================================== */
/* Structural scan: find the spans, validate nothing else.               */
/* ===================================================================== */

typedef struct scan {
    const char *s;
    size_t n, i;
} scan;

static void ws(scan *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\n' || c->s[c->i] == '\r' ||
                           c->s[c->i] == '\t'))
        c->i++;
}

static bool skip_string(scan *c)
{
    if (c->i >= c->n || c->s[c->i] != '"') return false;
    const char *p = c->s + c->i + 1, *end = c->s + c->n;
    for (;;) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q) return false;
        size_t bs = 0; /* an odd run of backslashes escapes the quote */
        while (q - bs > p && q[-1 - (ptrdiff_t)bs] == '\\') bs++;
        if (bs % 2 == 0) {
            c->i = (size_t)(q + 1 - c->s);
            return true;
        }
        p = q + 1;
    }
}

static bool skip_value(scan *c, int depth)
{
    if (depth > SCAN_MAX_DEPTH || c->i >= c->n) return false;
    char ch = c->s[c->i];
    if (ch == '"') return skip_string(c);
    if (ch == '{' || ch == '[') {
        char close = ch == '{' ? '}' : ']';
        c->i++;
        ws(c);
        if (c->i < c->n && c->s[c->i] == close) {
            c->i++;
            return true;
        }
        for (;;) {
            if (ch == '{') {
                if (!skip_string(c)) return false;
                ws(c);
                if (c->i >= c->n || c->s[c->i++] != ':') return false;
                ws(c);
            }
            if (!skip_value(c, depth + 1)) return false;
            ws(c);
            if (c->i >= c->n) return false;
            if (c->s[c->i] == ',') {
                c->i++;
                ws(c);
                continue;
            }
            if (c->s[c->i] != close) return false;
            c->i++;
            return true;
        }
    }
    size_t start = c->i; /* number or literal */
    while (c->i < c->n && (strchr("+-.eE", c->s[c->i]) || (c->s[c->i] >= '0' && c->s[c->i] <= '9') ||
                           (c->s[c->i] >= 'a' && c->s[c->i] <= 'z')))
        c->i++;
    return c->i > start;
}

static bool key_equals(const scan *c, size_t key_start, const char *want)
{
    size_t len = c->i - key_start; /* includes both quotes */
    size_t wl = strlen(want);
    return len == wl + 2 && memcmp(c->s + key_start + 1, want, wl) == 0;
}

/* Walks an object's members; for each key in `keys`, records the value
 * span. Returns false on structural trouble. */
static bool object_members(scan *c, const char *const *keys, size_t n_keys, size_t (*spans)[2],
                           bool descend_model)
{
    ws(c);
    if (c->i >= c->n || c->s[c->i] != '{') return false;
    c->i++;
    ws(c);
    if (c->i < c->n && c->s[c->i] == '}') return true;
    for (;;) {
        size_t ks = c->i;
        if (!skip_string(c)) return false;
        bool is_model = descend_model && key_equals(c, ks, "model");
        int which = -1;
        for (size_t k = 0; k < n_keys && !descend_model; k++)
            if (spans[k][1] == 0 && key_equals(c, ks, keys[k])) which = (int)k;
        ws(c);
        if (c->i >= c->n || c->s[c->i++] != ':') return false;
        ws(c);
        size_t vs = c->i;
        if (is_model) {
            if (c->i < c->n && c->s[c->i] == '{') {
                if (!object_members(c, keys, n_keys, spans, false)) return false;
            } else if (!skip_value(c, 1)) {
                return false;
            }
            descend_model = false; /* a second "model" is jansson's to reject */
        } else if (!skip_value(c, 1)) {
            return false;
        }
        if (which >= 0) {
            spans[which][0] = vs;
            spans[which][1] = c->i;
        }
        ws(c);
        if (c->i >= c->n) return false;
        if (c->s[c->i] == ',') {
            c->i++;
            ws(c);
            continue;
        }
        if (c->s[c->i] != '}') return false;
        c->i++;
        return true;
    }
}

bool tok_scan_model_spans(const char *text, size_t len, size_t vocab[2], size_t merges[2])
{
    static const char *const keys[2] = {"vocab", "merges"};
    size_t spans[2][2] = {{0, 0}, {0, 0}};
    scan c = {text, len, 0};
    if (!object_members(&c, keys, 2, spans, true)) return false;
    ws(&c);
    if (c.i != len || spans[0][1] == 0) return false;
    memcpy(vocab, spans[0], sizeof spans[0]);
    memcpy(merges, spans[1], sizeof spans[1]);
    return true;
}

/* ===================================================================== */
/* Strict parsing of the two values                                       */
/* ===================================================================== */

typedef struct jin {
    const char *s;
    size_t n, i;
    const tok_jsrc *src;
    tok_jpath *jp;
    buf str[2]; /* decoded strings that had escapes */
} jin;

static sem_status syntax(jin *in, const char *what)
{
    if (!in->src->file_text)
        return tok_jerr(in->jp, SEM_ECORRUPT, "invalid JSON: %s", what);
    size_t off = in->src->base + in->i, line = 1, col = 1;
    for (size_t k = 0; k < off; k++) {
        if (in->src->file_text[k] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return tok_jerr(in->jp, SEM_ECORRUPT, "invalid JSON at line %zu column %zu: %s", line, col, what);
}

static void jws(jin *in)
{
    while (in->i < in->n && (in->s[in->i] == ' ' || in->s[in->i] == '\n' || in->s[in->i] == '\r' ||
                             in->s[in->i] == '\t'))
        in->i++;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* One escape at s[i] == '\\' into b; returns the bytes consumed or 0. */
static size_t unescape(const char *s, size_t n, size_t i, buf *b)
{
    if (i + 1 >= n) return 0;
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *hit = strchr(from, s[i + 1]);
    if (hit && s[i + 1]) {
        buf_append(b, &to[hit - from], 1);
        return 2;
    }
    if (s[i + 1] != 'u' || i + 6 > n) return 0;
    int cp = hex4(s + i + 2);
    size_t used = 6;
    if (cp < 0 || cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) return 0;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (i + 12 > n || s[i + 6] != '\\' || s[i + 7] != 'u') return 0;
        int lo = hex4(s + i + 8);
        if (lo < 0xDC00 || lo > 0xDFFF) return 0;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        used = 12;
    }
    char u[4];
    buf_append(b, u, tok_utf8_encode((uint32_t)cp, u));
    return used;
}

/* Reads a string; *out points into the source or into in->str[slot]. */
static sem_status read_string(jin *in, int slot, const char **out, size_t *len)
{
    if (in->i >= in->n || in->s[in->i] != '"') return syntax(in, "expected a string");
    size_t start = ++in->i;
    bool esc = false;
    const unsigned char *p = (const unsigned char *)in->s + start, *lim = (const unsigned char *)in->s + in->n;
    while (p < lim && *p != '"') {
        if (*p < 0x20) {
            in->i = (size_t)(p - (const unsigned char *)in->s);
            return syntax(in, "control character in string");
        }
        if (*p == '\\') {
            esc = true;
            p++;
        }
        p++;
    }
    if (p > lim) p = lim; /* a trailing backslash stepped past the end */
    in->i = (size_t)(p - (const unsigned char *)in->s);
    if (p >= lim) return syntax(in, "unterminated string");
    size_t end = in->i++;
    if (!tok_utf8_valid(in->s + start, end - start, NULL)) return syntax(in, "invalid UTF-8 in string");
    if (!esc) {
        *out = in->s + start;
        *len = end - start;
        return SEM_OK;
    }
    buf *b = &in->str[slot];
    buf_clear(b);
    if (!buf_reserve(b, end - start)) return tok_jerr(in->jp, SEM_ENOMEM, "out of memory");
    for (size_t k = start; k < end;) {
        if (in->s[k] != '\\') {
            size_t r = k;
            while (r < end && in->s[r] != '\\') r++;
            buf_append(b, in->s + k, r - k);
            k = r;
            continue;
        }
        size_t used = unescape(in->s, end, k, b);
        if (!used) {
            in->i = k;
            return syntax(in, "invalid escape in string");
        }
        k += used;
    }
    *out = b->data;
    *len = b->len;
    return SEM_OK;
}

/* Skips a value we do not want, to tell "valid JSON, wrong shape" (a
 * semantic error) from a syntax error. */
static bool skip_any(jin *in)
{
    scan c = {in->s, in->n, in->i};
    if (!skip_value(&c, 1)) return false;
    in->i = c.i;
    return true;
}

/* Expects ',' (more) or `close` (done) after an item. */
static sem_status next_item(jin *in, char close, bool *more)
{
    jws(in);
    if (in->i < in->n && in->s[in->i] == ',') {
        in->i++;
        jws(in);
        *more = true;
        return SEM_OK;
    }
    if (in->i < in->n && in->s[in->i] == close) {
        in->i++;
        *more = false;
        return SEM_OK;
    }
    return syntax(in, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
}

/* A vocab id: a JSON integer in [0, TOK_MAX_VOCAB). */
static sem_status read_id(jin *in, const char *key, size_t *id)
{
    size_t st = in->i;
    bool neg = in->i < in->n && in->s[in->i] == '-';
    size_t k = in->i + neg, digits = 0;
    uint64_t v = 0;
    while (k < in->n && in->s[k] >= '0' && in->s[k] <= '9' && digits < 19) {
        v = v * 10 + (uint64_t)(in->s[k] - '0');
        k++;
        digits++;
    }
    bool is_int = digits > 0 && (k >= in->n || !strchr(".eE0123456789", in->s[k])) &&
                  !(digits > 1 && in->s[in->i + neg] == '0');
    if (!is_int || neg || v >= TOK_MAX_VOCAB) {
        in->i = st;
        if (!skip_any(in)) return syntax(in, "invalid value");
        tok_jpath_key(in->jp, key);
        return tok_jerr(in->jp, SEM_ECORRUPT, "id must be an integer in [0, %zu)", TOK_MAX_VOCAB);
    }
    in->i = k;
    *id = (size_t)v;
    return SEM_OK;
}

static void jin_init(jin *in, const tok_jsrc *src, tok_jpath *jp)
{
    memset(in, 0, sizeof *in);
    in->s = src->p;
    in->n = src->n;
    in->src = src;
    in->jp = jp;
    buf_init(&in->str[0]);
    buf_init(&in->str[1]);
}

static void jin_fini(jin *in)
{
    buf_fini(&in->str[0]);
    buf_fini(&in->str[1]);
}

static sem_status vocab_entry(jin *in, tok_bpe *m, size_t *max_id)
{
    const char *key = NULL;
    size_t klen = 0, id = 0;
    sem_status st = read_string(in, 0, &key, &klen);
    if (st != SEM_OK) return st;
    jws(in);
    if (in->i >= in->n || in->s[in->i++] != ':') return syntax(in, "expected ':'");
    jws(in);
    char keyz[48];
    snprintf(keyz, sizeof keyz, "%.*s", (int)(klen < 40 ? klen : 40), key);
    if ((st = read_id(in, keyz, &id)) != SEM_OK) return st;
    if (klen > TOK_MAX_TOKEN_BYTES) {
        tok_jpath_key(in->jp, keyz);
        return tok_jerr(in->jp, SEM_ELIMIT, "token of %zu bytes exceeds %zu", klen, TOK_MAX_TOKEN_BYTES);
    }
    if (m->vocab.n >= TOK_MAX_VOCAB)
        return tok_jerr(in->jp, SEM_ELIMIT, "more than %zu entries", TOK_MAX_VOCAB);
    bool existed;
    if (tok_strmap_put(&m->vocab, key, klen, (int32_t)id, &existed) < 0)
        return tok_jerr(in->jp, SEM_ENOMEM, "out of memory");
    if (existed) return syntax(in, "duplicate object key");
    if (id > *max_id) *max_id = id;
    return SEM_OK;
}

sem_status tok_parse_vocab(const tok_jsrc *src, tok_jpath *jp, tok_bpe *m)
{
    size_t old = tok_jpath_key(jp, "vocab");
    if (!src->p) return tok_jerr(jp, SEM_ECORRUPT, "expected an object");
    jin in;
    jin_init(&in, src, jp);
    sem_status st = SEM_OK;
    size_t max_id = 0;
    jws(&in);
    if (in.i >= in.n || in.s[in.i] != '{') {
        st = skip_any(&in) ? tok_jerr(jp, SEM_ECORRUPT, "expected an object") : syntax(&in, "invalid value");
    } else {
        in.i++;
        jws(&in);
        bool more = !(in.i < in.n && in.s[in.i] == '}');
        if (!more) in.i++;
        while (st == SEM_OK && more) {
            st = vocab_entry(&in, m, &max_id);
            if (st == SEM_OK) st = next_item(&in, '}', &more);
        }
    }
    jin_fini(&in);
    if (st != SEM_OK) return st;
    m->n_ids = m->vocab.n ? max_id + 1 : 0;
    m->id_ent = calloc(m->n_ids ? m->n_ids : 1, sizeof *m->id_ent);
    if (!m->id_ent) return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    for (size_t e = 0; e < m->vocab.n; e++) {
        size_t id = (size_t)m->vocab.ents[e].val;
        if (!m->id_ent[id]) m->id_ent[id] = (uint32_t)(e + 1); /* duplicate ids: first wins */
    }
    tok_jpath_pop(jp, old);
    return SEM_OK;
}

/* ---- merges ---------------------------------------------------------------- */

static tok_id lookup(const tok_bpe *m, const char *s, size_t n)
{
    int64_t e = tok_strmap_find(&m->vocab, s, n);
    return e < 0 ? -1 : m->vocab.ents[e].val;
}

static sem_status merge_shape(jin *in, size_t index)
{
    if (!skip_any(in)) return syntax(in, "invalid value");
    tok_jpath_index(in->jp, index);
    return tok_jerr(in->jp, SEM_ECORRUPT, "merge must be \"a b\" or [\"a\", \"b\"]");
}

/* One merge, "a b" or ["a", "b"], into (a, al, b, bl). */
static sem_status merge_parts(jin *in, size_t index, const char **a, size_t *al, const char **b,
                              size_t *bl)
{
    size_t start = in->i;
    sem_status st;
    if (in->i < in->n && in->s[in->i] == '"') {
        const char *s;
        size_t n;
        if ((st = read_string(in, 0, &s, &n)) != SEM_OK) return st;
        const char *sp = memchr(s, ' ', n);
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) {
            tok_jpath_index(in->jp, index);
            return tok_jerr(in->jp, SEM_ECORRUPT, "merge must be \"a b\" with exactly one space");
        }
        *a = s;
        *al = (size_t)(sp - s);
        *b = sp + 1;
        *bl = n - *al - 1;
        return SEM_OK;
    }
    if (in->i >= in->n || in->s[in->i] != '[') return merge_shape(in, index);
    in->i++;
    jws(in);
    if (in->i >= in->n || in->s[in->i] != '"') goto shape;
    if ((st = read_string(in, 0, a, al)) != SEM_OK) return st;
    jws(in);
    if (in->i >= in->n || in->s[in->i++] != ',') goto shape;
    jws(in);
    if (in->i >= in->n || in->s[in->i] != '"') goto shape;
    if ((st = read_string(in, 1, b, bl)) != SEM_OK) return st;
    jws(in);
    if (in->i < in->n && in->s[in->i] == ']') {
        in->i++;
        return SEM_OK;
    }
shape:
    in->i = start;
    return merge_shape(in, index);
}

static sem_status add_merge(tok_bpe *m, const char *a, size_t al, const char *b, size_t bl,
                            size_t rank, buf *tmp, tok_jpath *jp, size_t index)
{
    const char *why = NULL;
    tok_id ia = lookup(m, a, al), ib = lookup(m, b, bl), nid = -1;
    if (ia < 0) why = "merge token is not in the vocab";
    else if (ib < 0) why = "merge token is not in the vocab";
    else if (bl < m->prefix_len) why = "merge token lacks the subword prefix";
    if (!why) {
        buf_clear(tmp);
        if (!buf_append(tmp, a, al) || !buf_append(tmp, b + m->prefix_len, bl - m->prefix_len))
            return tok_jerr(jp, SEM_ENOMEM, "out of memory");
        nid = lookup(m, tmp->data, tmp->len);
        if (nid < 0) why = "merged token is not in the vocab";
    }
    if (why) {
        tok_jpath_index(jp, index);
        const char *which = ia < 0 ? a : b;
        size_t wl = ia < 0 ? al : bl;
        if (nid < 0 && ia >= 0 && ib >= 0) which = tmp->data, wl = tmp->len;
        return tok_jerr(jp, SEM_ECORRUPT, "%s: \"%.*s\"", why, (int)(wl < 60 ? wl : 60), which);
    }
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    /* A repeated pair keeps the later rank, as HF's HashMap collect does. */
    if (!tok_u64map_put(&m->merges, key, ((uint64_t)rank << 32) | (uint32_t)nid))
        return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    return SEM_OK;
}

static sem_status merges_body(jin *in, tok_bpe *m)
{
    buf tmp;
    buf_init(&tmp);
    sem_status st = SEM_OK;
    in->i++;
    jws(in);
    bool more = !(in->i < in->n && in->s[in->i] == ']');
    if (!more) in->i++;
    for (size_t rank = 0; st == SEM_OK && more; rank++) {
        if (rank >= TOK_MAX_MERGES) {
            st = tok_jerr(in->jp, SEM_ELIMIT, "more than %zu merges", TOK_MAX_MERGES);
            break;
        }
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        st = merge_parts(in, rank, &a, &al, &b, &bl);
        if (st == SEM_OK) st = add_merge(m, a, al, b, bl, rank, &tmp, in->jp, rank);
        if (st == SEM_OK) st = next_item(in, ']', &more);
    }
    buf_fini(&tmp);
    return st;
}

sem_status tok_parse_merges(const tok_jsrc *src, tok_jpath *jp, tok_bpe *m)
{
    if (!src->p) return SEM_OK;
    size_t old = tok_jpath_key(jp, "merges");
    jin in;
    jin_init(&in, src, jp);
    jws(&in);
    sem_status st;
    if (in.i + 4 <= in.n && !memcmp(in.s + in.i, "null", 4)) {
        st = SEM_OK;
    } else if (in.i >= in.n || in.s[in.i] != '[') {
        st = skip_any(&in) ? tok_jerr(jp, SEM_ECORRUPT, "expected an array") : syntax(&in, "invalid value");
    } else {
        st = merges_body(&in, m);
    }
    jin_fini(&in);
    if (st == SEM_OK) tok_jpath_pop(jp, old);
    return st;
}
