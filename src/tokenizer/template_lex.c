/* template_lex.c - preprocessing and tokenizing of chat templates, plus the
 * AST arena.
 *
 * Mirrors @huggingface/jinja's lexer step by step, because whitespace
 * handling is where renders differ first:
 *   1. one trailing "\n" of the template is dropped;
 *   2. lstrip_blocks: spaces/tabs between a line start and "{%", "{#" or "{-"
 *      are removed (not before "{{");
 *   3. trim_blocks: the "\n" right after "%}", "#}" or "-}" is removed;
 *   4. {% generation %} / {% endgeneration %} tags are cut out; with "-" on a
 *      side the whitespace on that side goes too;
 *   5. tokens: text outside tags; inside tags identifiers, numbers (a sign
 *      directly before digits belongs to the number unless the previous token
 *      ends an operand), strings with \n \t \r \b \f \v \' \" \\ \xHH \uHHHH
 *      escapes, and operators. "{%-"/"{{-" trim the text before (JS trimEnd),
 *      "-%}"/"-}}" skip whitespace after.
 * Each preprocessing pass keeps a map from output byte to source byte so that
 * errors name the line and column of the original text.
 *
 * Thread: any (pure functions over the caller's buffers).
 */
#include "tokenizer/template_int.h"

#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* Arena                                                                   */
/* ===================================================================== */

struct tpl_arena_chunk {
    tpl_arena_chunk *next;
    size_t cap;
    _Alignas(16) unsigned char data[];
};

void tpl_arena_init(tpl_arena *a) { memset(a, 0, sizeof *a); }

void tpl_arena_fini(tpl_arena *a)
{
    tpl_arena_chunk *c = a->head;
    while (c) {
        tpl_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    memset(a, 0, sizeof *a);
}

void *tpl_arena_alloc(tpl_arena *a, size_t bytes)
{
    size_t need = (bytes + 15u) & ~(size_t)15u;
    if (need < bytes) return NULL;
    if (!a->head || a->cap - a->used < need) {
        size_t cap = need > 16384 ? need : 16384;
        size_t total;
        if (!sem_add_size(sizeof(tpl_arena_chunk), cap, &total)) return NULL;
        tpl_arena_chunk *c = malloc(total);
        if (!c) return NULL;
        c->next = a->head;
        c->cap = cap;
        a->head = c;
        a->used = 0;
        a->cap = cap;
    }
    void *p = a->head->data + a->used;
    a->used += need;
    memset(p, 0, bytes);
    return p;
}

char *tpl_arena_strdup(tpl_arena *a, const char *s, size_t len)
{
    if (len == SIZE_MAX) return NULL;
    char *p = tpl_arena_alloc(a, len + 1);
    if (!p) return NULL;
    if (len) memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* ===================================================================== */
/* Positions                                                               */
/* ===================================================================== */

void tpl_line_col(const char *src, size_t len, size_t off, unsigned *line, unsigned *col)
{
    unsigned l = 1, c = 1;
    if (off > len) off = len;
    for (size_t i = 0; i < off; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (ch == '\n') {
            l++;
            c = 1;
        } else if ((ch & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* ===================================================================== */
/* Preprocessing passes over (text, map)                                   */
/* ===================================================================== */

typedef struct pp_text {
    char *s;     /* owned */
    uint32_t *m; /* owned: source offset of each byte */
    size_t n, cap;
} pp_text;

static bool pp_push(pp_text *t, char ch, uint32_t src_off)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        char *s = realloc(t->s, cap + 1);
        if (!s) return false;
        t->s = s;
        uint32_t *m = realloc(t->m, cap * sizeof *m + sizeof *m);
        if (!m) return false;
        t->m = m;
        t->cap = cap;
    }
    t->s[t->n] = ch;
    t->m[t->n] = src_off;
    t->n++;
    return true;
}

static bool pp_copy(pp_text *dst, const pp_text *src, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (!pp_push(dst, src->s[i], src->m[i])) return false;
    return true;
}

static void pp_free(pp_text *t)
{
    free(t->s);
    free(t->m);
    memset(t, 0, sizeof *t);
}

/* JS /m line terminators: \n, \r, U+2028, U+2029. Returns true when the
 * position i is a line start. */
static bool pp_line_start(const pp_text *t, size_t i)
{
    if (i == 0) return true;
    char p = t->s[i - 1];
    if (p == '\n' || p == '\r') return true;
    return i >= 3 && (unsigned char)t->s[i - 3] == 0xE2 && (unsigned char)t->s[i - 2] == 0x80 &&
           ((unsigned char)p == 0xA8 || (unsigned char)p == 0xA9);
}

/* /^[ \t]*({[#%-])/gm -> "$1" */
static bool pp_lstrip_blocks(const pp_text *in, pp_text *out)
{
    for (size_t i = 0; i < in->n;) {
        if (pp_line_start(in, i)) {
            size_t j = i;
            while (j < in->n && (in->s[j] == ' ' || in->s[j] == '\t')) j++;
            if (j + 1 < in->n && in->s[j] == '{' &&
                (in->s[j + 1] == '#' || in->s[j + 1] == '%' || in->s[j + 1] == '-'))
                i = j;
        }
        if (!pp_push(out, in->s[i], in->m[i])) return false;
        i++;
    }
    return true;
}

/* /([#%-]})\n/g -> "$1" */
static bool pp_trim_blocks(const pp_text *in, pp_text *out)
{
    for (size_t i = 0; i < in->n;) {
        char c = in->s[i];
        if ((c == '#' || c == '%' || c == '-') && i + 2 < in->n && in->s[i + 1] == '}' &&
            in->s[i + 2] == '\n') {
            if (!pp_copy(out, in, i, i + 2)) return false;
            i += 3;
            continue;
        }
        if (!pp_push(out, c, in->m[i])) return false;
        i++;
    }
    return true;
}

static size_t pp_skip_space(const pp_text *t, size_t i)
{
    size_t w;
    while (i < t->n && (w = tpl_js_space_at(t->s, t->n, i)) > 0) i += w;
    return i;
}

static bool pp_has(const pp_text *t, size_t i, const char *lit)
{
    size_t l = strlen(lit);
    return i <= t->n && t->n - i >= l && memcmp(t->s + i, lit, l) == 0;
}

/* Matches /{%(-?)\s*(?:end)?generation\s*(-?)%}/ at j; fills the end offset
 * and the two strip flags. */
static bool pp_match_generation(const pp_text *t, size_t j, size_t *end, bool *lstrip,
                                bool *rstrip)
{
    if (!pp_has(t, j, "{%")) return false;
    size_t k = j + 2;
    *lstrip = k < t->n && t->s[k] == '-';
    if (*lstrip) k++;
    k = pp_skip_space(t, k);
    if (pp_has(t, k, "endgeneration")) k += 13;
    else if (pp_has(t, k, "generation")) k += 10;
    else return false;
    k = pp_skip_space(t, k);
    *rstrip = k < t->n && t->s[k] == '-';
    if (*rstrip) k++;
    if (!pp_has(t, k, "%}")) return false;
    *end = k + 2;
    return true;
}

/* /(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs ->
 * (lstrip ? "" : before) + (rstrip ? "" : after) */
static bool pp_generation(const pp_text *in, pp_text *out)
{
    size_t i = 0;
    while (i < in->n) {
        size_t j = pp_skip_space(in, i), end;
        bool ls, rs;
        if (j < in->n && pp_match_generation(in, j, &end, &ls, &rs)) {
            size_t after = pp_skip_space(in, end);
            if (!ls && !pp_copy(out, in, i, j)) return false;
            if (!rs && !pp_copy(out, in, end, after)) return false;
            i = after;
            continue;
        }
        /* Every start inside one whitespace run reaches the same j, so the
         * whole run fails at once (keeps this linear). */
        size_t stop = j > i ? j : i + 1;
        if (!pp_copy(out, in, i, stop)) return false;
        i = stop;
    }
    return true;
}

typedef bool (*pp_pass)(const pp_text *in, pp_text *out);

static sem_status preprocess(const char *src, size_t len, pp_text *res, sem_err *err)
{
    pp_text cur = {0};
    if (len && src[len - 1] == '\n') len--;
    for (size_t i = 0; i < len; i++)
        if (!pp_push(&cur, src[i], (uint32_t)i)) goto oom;
    static const pp_pass passes[] = {pp_lstrip_blocks, pp_trim_blocks, pp_generation};
    for (size_t p = 0; p < sizeof passes / sizeof passes[0]; p++) {
        pp_text next = {0};
        if (!passes[p](&cur, &next)) {
            pp_free(&next);
            goto oom;
        }
        pp_free(&cur);
        cur = next;
    }
    if (!pp_push(&cur, '\0', (uint32_t)len)) goto oom; /* sentinel, not counted */
    cur.n--;
    *res = cur;
    return SEM_OK;
oom:
    pp_free(&cur);
    return sem_errf(err, SEM_ENOMEM, "template: out of memory while preprocessing");
}

/* ===================================================================== */
/* Tokenizer                                                               */
/* ===================================================================== */

typedef struct lexer {
    const char *src; /* original source, for error positions */
    size_t src_len;
    pp_text pp;      /* preprocessed text */
    tpl_arena *arena;
    tpl_token *toks;
    size_t n, cap;
    size_t c;        /* cursor in pp */
    int curly;       /* depth of { inside an expression */
    sem_err *err;
} lexer;

static sem_status lex_fail(lexer *lx, size_t at, const char *what)
{
    unsigned line, col;
    size_t off = at < lx->pp.n ? lx->pp.m[at] : lx->src_len;
    tpl_line_col(lx->src, lx->src_len, off, &line, &col);
    return sem_errf(lx->err, SEM_EINVAL, "template line %u column %u: %s", line, col, what);
}

static sem_status lex_push(lexer *lx, tpl_tok_type type, size_t at, const char *s, size_t len)
{
    if (lx->n == lx->cap) {
        size_t cap = lx->cap ? lx->cap * 2 : 64;
        tpl_token *t = realloc(lx->toks, cap * sizeof *t);
        if (!t) return sem_errf(lx->err, SEM_ENOMEM, "template: out of memory");
        lx->toks = t;
        lx->cap = cap;
    }
    tpl_token *t = &lx->toks[lx->n++];
    t->type = type;
    t->pos = at < lx->pp.n ? lx->pp.m[at] : (uint32_t)lx->src_len;
    t->s = s;
    t->len = len;
    return SEM_OK;
}

static tpl_tok_type lex_last(const lexer *lx) { return lx->n ? lx->toks[lx->n - 1].type : (tpl_tok_type)-1; }

static bool lex_at(const lexer *lx, const char *lit)
{
    size_t l = strlen(lit);
    return lx->pp.n - lx->c >= l && memcmp(lx->pp.s + lx->c, lit, l) == 0;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_word(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* JS trimEnd on the previous text token; an emptied token is dropped. */
static void lex_strip_trailing(lexer *lx)
{
    if (!lx->n || lx->toks[lx->n - 1].type != TT_TEXT) return;
    tpl_token *t = &lx->toks[lx->n - 1];
    size_t end = t->len, w;
    while (end > 0 && (w = tpl_js_space_before(t->s, end)) > 0) end -= w;
    t->len = end;
    if (end == 0) lx->n--;
}

static void lex_skip_leading(lexer *lx)
{
    size_t w;
    while (lx->c < lx->pp.n && (w = tpl_js_space_at(lx->pp.s, lx->pp.n, lx->c)) > 0) lx->c += w;
}

static sem_status lex_text(lexer *lx, bool *pushed)
{
    size_t start = lx->c;
    const char *s = lx->pp.s;
    while (lx->c < lx->pp.n &&
           !(s[lx->c] == '{' && lx->c + 1 < lx->pp.n &&
             (s[lx->c + 1] == '%' || s[lx->c + 1] == '{' || s[lx->c + 1] == '#')))
        lx->c++;
    *pushed = lx->c > start;
    return *pushed ? lex_push(lx, TT_TEXT, start, s + start, lx->c - start) : SEM_OK;
}

static sem_status lex_comment(lexer *lx)
{
    size_t at = lx->c;
    lx->c += 2;
    bool strip_before = lx->c < lx->pp.n && lx->pp.s[lx->c] == '-';
    if (strip_before) lx->c++;
    size_t start = lx->c;
    while (!(lx->c + 1 < lx->pp.n && lx->pp.s[lx->c] == '#' && lx->pp.s[lx->c + 1] == '}')) {
        if (lx->c + 2 >= lx->pp.n) return lex_fail(lx, at, "missing end of comment tag");
        lx->c++;
    }
    size_t len = lx->c - start;
    bool strip_after = len > 0 && lx->pp.s[lx->c - 1] == '-';
    if (strip_after) len--;
    if (strip_before) lex_strip_trailing(lx);
    sem_status s = lex_push(lx, TT_COMMENT, at, lx->pp.s + start, len);
    lx->c += 2;
    if (strip_after) lex_skip_leading(lx);
    return s;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool lex_hex(const lexer *lx, size_t at, size_t n, uint32_t *v)
{
    if (lx->pp.n - at < n) return false;
    uint32_t x = 0;
    for (size_t i = 0; i < n; i++) {
        int h = hex_val(lx->pp.s[at + i]);
        if (h < 0) return false;
        x = x * 16u + (uint32_t)h;
    }
    *v = x;
    return true;
}

static bool buf_put_cp(buf *b, uint32_t cp)
{
    char tmp[4];
    size_t n = tok_utf8_encode(cp, tmp);
    return buf_append(b, tmp, n);
}

/* One escape after a backslash at lx->c (already past the backslash). */
static sem_status lex_escape(lexer *lx, size_t at, buf *b)
{
    if (lx->c >= lx->pp.n) return lex_fail(lx, at, "unexpected end of input");
    char e = lx->pp.s[lx->c++];
    static const char from[] = "ntrbfv'\"\\", to[] = "\n\t\r\b\f\v'\"\\";
    const char *hit = memchr(from, e, sizeof from - 1);
    if (hit) return buf_append(b, &to[hit - from], 1) ? SEM_OK : lex_fail(lx, at, "out of memory");
    if (e != 'x' && e != 'u') return lex_fail(lx, lx->c - 1, "unexpected escaped character");
    uint32_t cp;
    size_t n = e == 'x' ? 2 : 4;
    if (!lex_hex(lx, lx->c, n, &cp)) return lex_fail(lx, lx->c, "invalid hexadecimal escape sequence");
    lx->c += n;
    if (e == 'u' && cp >= 0xD800 && cp <= 0xDBFF) {
        uint32_t lo;
        if (lx->pp.n - lx->c >= 6 && lx->pp.s[lx->c] == '\\' && lx->pp.s[lx->c + 1] == 'u' &&
            lex_hex(lx, lx->c + 2, 4, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000u + ((cp - 0xD800u) << 10) + (lo - 0xDC00u);
            lx->c += 6;
        } /* else a lone surrogate, kept as WTF-8 (see template_str.c) */
    }
    return buf_put_cp(b, cp) ? SEM_OK : lex_fail(lx, at, "out of memory");
}

static sem_status lex_string(lexer *lx)
{
    size_t at = lx->c;
    char q = lx->pp.s[lx->c++];
    buf b;
    buf_init(&b);
    sem_status s = SEM_OK;
    for (;;) {
        if (lx->c >= lx->pp.n) {
            s = lex_fail(lx, at, "unexpected end of input in string literal");
            break;
        }
        char ch = lx->pp.s[lx->c];
        if (ch == q) break;
        if (ch == '\\') {
            lx->c++;
            if ((s = lex_escape(lx, at, &b)) != SEM_OK) break;
            continue;
        }
        if (!buf_append(&b, &ch, 1)) {
            s = lex_fail(lx, at, "out of memory");
            break;
        }
        lx->c++;
    }
    if (s == SEM_OK) {
        lx->c++; /* closing quote */
        char *v = tpl_arena_strdup(lx->arena, b.data ? b.data : "", b.len);
        s = v ? lex_push(lx, TT_STRING, at, v, b.len) : lex_fail(lx, at, "out of memory");
    }
    buf_fini(&b);
    return s;
}

/* Digits [. digits] starting at lx->c; `sign` (or 0) is prepended. */
static sem_status lex_number(lexer *lx, size_t at, char sign, bool allow_frac, bool *got)
{
    size_t start = lx->c;
    while (lx->c < lx->pp.n && is_digit(lx->pp.s[lx->c])) lx->c++;
    *got = lx->c > start;
    if (!*got) return SEM_OK;
    if (lx->c >= lx->pp.n) return lex_fail(lx, at, "unexpected end of input");
    if (allow_frac && lx->pp.s[lx->c] == '.' && lx->c + 1 < lx->pp.n &&
        is_digit(lx->pp.s[lx->c + 1])) {
        lx->c++;
        while (lx->c < lx->pp.n && is_digit(lx->pp.s[lx->c])) lx->c++;
        if (lx->c >= lx->pp.n) return lex_fail(lx, at, "unexpected end of input");
    }
    size_t len = lx->c - start + (sign ? 1u : 0u);
    char *v = tpl_arena_alloc(lx->arena, len + 1);
    if (!v) return lex_fail(lx, at, "out of memory");
    size_t o = 0;
    if (sign) v[o++] = sign;
    memcpy(v + o, lx->pp.s + start, lx->c - start);
    return lex_push(lx, TT_NUMBER, at, v, len);
}

typedef struct lex_op {
    const char *s;
    tpl_tok_type type;
} lex_op;

static const lex_op LEX_OPS[] = {
    {"{%", TT_OPEN_STMT}, {"%}", TT_CLOSE_STMT}, {"{{", TT_OPEN_EXPR}, {"}}", TT_CLOSE_EXPR},
    {"(", TT_LPAREN},     {")", TT_RPAREN},      {"{", TT_LBRACE},     {"}", TT_RBRACE},
    {"[", TT_LBRACKET},   {"]", TT_RBRACKET},    {",", TT_COMMA},      {".", TT_DOT},
    {":", TT_COLON},      {"|", TT_PIPE},        {"<=", TT_CMP_OP},    {">=", TT_CMP_OP},
    {"==", TT_CMP_OP},    {"!=", TT_CMP_OP},     {"<", TT_CMP_OP},     {">", TT_CMP_OP},
    {"+", TT_ADD_OP},     {"-", TT_ADD_OP},      {"~", TT_ADD_OP},     {"**", TT_POW_OP},
    {"*", TT_MUL_OP},     {"//", TT_MUL_OP},     {"/", TT_MUL_OP},     {"%", TT_MUL_OP},
    {"=", TT_EQUALS},
};

static sem_status lex_operator(lexer *lx, bool *matched)
{
    *matched = false;
    for (size_t i = 0; i < sizeof LEX_OPS / sizeof LEX_OPS[0]; i++) {
        const lex_op *op = &LEX_OPS[i];
        if (op->type == TT_CLOSE_EXPR && lx->curly > 0) continue; /* "}}" closing a dict */
        if (!lex_at(lx, op->s)) continue;
        if (op->type == TT_OPEN_EXPR) lx->curly = 0;
        else if (op->type == TT_LBRACE) lx->curly++;
        else if (op->type == TT_RBRACE) lx->curly--;
        size_t at = lx->c, l = strlen(op->s);
        lx->c += l;
        *matched = true;
        return lex_push(lx, op->type, at, op->s, l);
    }
    return SEM_OK;
}

/* A sign is unary unless the previous token ends an operand. */
static sem_status lex_sign(lexer *lx, bool *done)
{
    tpl_tok_type last = lex_last(lx);
    *done = false;
    if (last == TT_IDENT || last == TT_NUMBER || last == TT_STRING || last == TT_RPAREN ||
        last == TT_RBRACKET)
        return SEM_OK;
    size_t at = lx->c;
    char sign = lx->pp.s[lx->c++];
    bool got;
    sem_status s = lex_number(lx, at, sign, true, &got);
    if (s != SEM_OK) return s;
    *done = true;
    return got ? SEM_OK : lex_push(lx, TT_UNARY_OP, at, sign == '-' ? "-" : "+", 1);
}

/* One token inside {% %} / {{ }} at lx->c (after whitespace). */
static sem_status lex_in_tag(lexer *lx)
{
    char ch = lx->pp.s[lx->c];
    sem_status s;
    bool done;
    if (ch == '-' || ch == '+') {
        if ((s = lex_sign(lx, &done)) != SEM_OK || done) return s;
    }
    if ((s = lex_operator(lx, &done)) != SEM_OK || done) return s;
    if (ch == '\'' || ch == '"') return lex_string(lx);
    size_t at = lx->c;
    if (is_digit(ch)) return lex_number(lx, at, 0, lex_last(lx) != TT_DOT, &done);
    if (is_word(ch)) {
        while (lx->c < lx->pp.n && is_word(lx->pp.s[lx->c])) lx->c++;
        if (lx->c >= lx->pp.n) return lex_fail(lx, at, "unexpected end of input");
        return lex_push(lx, TT_IDENT, at, lx->pp.s + at, lx->c - at);
    }
    return lex_fail(lx, at, "unexpected character");
}

static sem_status lex_step(lexer *lx)
{
    tpl_tok_type last = lex_last(lx);
    sem_status s;
    if (last == (tpl_tok_type)-1 || last == TT_CLOSE_STMT || last == TT_CLOSE_EXPR ||
        last == TT_COMMENT) {
        bool pushed;
        if ((s = lex_text(lx, &pushed)) != SEM_OK || pushed) return s;
    }
    if (lex_at(lx, "{#")) return lex_comment(lx);
    if (lex_at(lx, "{%-") || lex_at(lx, "{{-")) {
        bool expr = lx->pp.s[lx->c + 1] == '{';
        lex_strip_trailing(lx);
        if (expr) lx->curly = 0;
        s = lex_push(lx, expr ? TT_OPEN_EXPR : TT_OPEN_STMT, lx->c, expr ? "{{" : "{%", 2);
        lx->c += 3;
        return s;
    }
    size_t w;
    while ((w = tpl_js_space_at(lx->pp.s, lx->pp.n, lx->c)) > 0) {
        lx->c += w;
        if (lx->c >= lx->pp.n) return lex_fail(lx, lx->c, "unexpected end of input");
    }
    if (lex_at(lx, "-%}") || lex_at(lx, "-}}")) {
        bool expr = lx->pp.s[lx->c + 1] == '}';
        s = lex_push(lx, expr ? TT_CLOSE_EXPR : TT_CLOSE_STMT, lx->c, expr ? "}}" : "%}", 2);
        lx->c += 3;
        lex_skip_leading(lx);
        return s;
    }
    return lex_in_tag(lx);
}

sem_status tpl_lex(const char *src, size_t len, tpl_arena *a, tpl_lexed *out, sem_err *err)
{
    lexer lx = {.src = src, .src_len = len, .arena = a, .err = err};
    sem_status s = preprocess(src, len, &lx.pp, err);
    if (s != SEM_OK) return s;
    while (lx.c < lx.pp.n)
        if ((s = lex_step(&lx)) != SEM_OK) break;
    free(lx.pp.m);
    if (s != SEM_OK) {
        free(lx.pp.s);
        free(lx.toks);
        return s;
    }
    out->toks = lx.toks;
    out->n = lx.n;
    out->text = lx.pp.s;
    return SEM_OK;
}

void tpl_lexed_fini(tpl_lexed *lx)
{
    free(lx->toks);
    free(lx->text);
    memset(lx, 0, sizeof *lx);
}
