/* tok_decode.c - ids -> text: look each id up (added tokens first, then the
 * model vocab; unknown ids are skipped, special ones too when asked), then
 * run HF's decoder chain over the list of token strings: ByteLevel,
 * ByteFallback, Metaspace, Replace, Strip, Fuse and Sequence. Without a
 * decoder the tokens are joined with spaces, as HF does.
 *
 * Each decoder maps a list of strings to a new list (HF decode_chain); the
 * result is their concatenation. Lossy UTF-8 repair happens only where HF
 * does it: ByteLevel (from_utf8_lossy over all bytes) and ByteFallback (a
 * run of <0xNN> tokens that is not valid UTF-8 becomes one U+FFFD per byte).
 *
 * Thread: any (read-only tokenizer, local scratch).
 */
#include "tokenizer/tok_int.h"

#include <stdlib.h>
#include <string.h>

#define OOM(err) sem_errf(err, SEM_ENOMEM, "out of memory")

void tok_decoder_fini(tok_decoder *d)
{
    if (!d) return;
    tok_pattern_fini(&d->pat);
    free(d->content);
    for (size_t i = 0; i < d->n_items; i++) tok_decoder_fini(&d->items[i]);
    free(d->items);
    memset(d, 0, sizeof *d);
}

/* A list of strings stored in one buffer. */
typedef struct dlist {
    buf b;
    tok_span *v; /* [start, end) into b; .match unused */
    size_t n, cap;
} dlist;

static void dl_init(dlist *l) { memset(l, 0, sizeof *l); }
static void dl_fini(dlist *l)
{
    buf_fini(&l->b);
    free(l->v);
    dl_init(l);
}
static void dl_clear(dlist *l)
{
    buf_clear(&l->b);
    l->n = 0;
}
static const char *dl_str(const dlist *l, size_t i) { return l->b.data + l->v[i].start; }
static size_t dl_len(const dlist *l, size_t i) { return l->v[i].end - l->v[i].start; }

/* Starts a new string; append its bytes with dl_add_bytes. */
static bool dl_begin(dlist *l)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        tok_span *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return false;
        l->v = nv;
        l->cap = nc;
    }
    if (!l->b.data && !buf_reserve(&l->b, 64)) return false;
    l->v[l->n++] = (tok_span){l->b.len, l->b.len, false};
    return true;
}
static bool dl_add_bytes(dlist *l, const void *p, size_t n)
{
    if (!buf_append(&l->b, p, n)) return false;
    l->v[l->n - 1].end = l->b.len;
    return true;
}
static bool dl_push(dlist *l, const void *p, size_t n) { return dl_begin(l) && dl_add_bytes(l, p, n); }

/* ---- the decoders ------------------------------------------------------------ */

static bool bytelevel(const dlist *in, dlist *out)
{
    buf raw;
    buf_init(&raw);
    bool ok = true;
    for (size_t i = 0; i < in->n && ok; i++) {
        const char *s = dl_str(in, i);
        size_t n = dl_len(in, i), at = raw.len;
        /* All chars in the table: their bytes; otherwise the token as is. */
        for (size_t j = 0; j < n && ok;) {
            uint32_t cp;
            j += tok_utf8_next(s + j, n - j, &cp);
            int b = tok_cp_to_byte(cp);
            if (b < 0) {
                raw.len = at;
                ok = buf_append(&raw, s, n);
                break;
            }
            char c = (char)b;
            ok = buf_append(&raw, &c, 1);
        }
    }
    ok = ok && dl_begin(out);
    if (ok) {
        buf fixed;
        buf_init(&fixed);
        ok = tok_utf8_append_lossy(&fixed, raw.data ? raw.data : "", raw.len) &&
             dl_add_bytes(out, fixed.data ? fixed.data : "", fixed.len);
        buf_fini(&fixed);
    }
    buf_fini(&raw);
    return ok;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xNN>" -> byte, as HF's u8::from_str_radix(&tok[3..5], 16) accepts it. */
static int byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hex_val(s[3]), lo = hex_val(s[4]);
    if (s[3] == '+' && lo >= 0) return lo;
    if (hi < 0 || lo < 0) return -1;
    return hi * 16 + lo;
}

static bool flush_bytes(buf *bytes, dlist *out)
{
    if (bytes->len == 0) return true;
    bool ok;
    if (tok_utf8_valid(bytes->data, bytes->len, NULL)) {
        ok = dl_push(out, bytes->data, bytes->len);
    } else {
        ok = true;
        for (size_t i = 0; i < bytes->len && ok; i++) ok = dl_push(out, "\xEF\xBF\xBD", 3);
    }
    buf_clear(bytes);
    return ok;
}

static bool bytefallback(const dlist *in, dlist *out)
{
    buf bytes;
    buf_init(&bytes);
    bool ok = true;
    for (size_t i = 0; i < in->n && ok; i++) {
        int b = byte_token(dl_str(in, i), dl_len(in, i));
        if (b >= 0) {
            char c = (char)b;
            ok = buf_append(&bytes, &c, 1);
            continue;
        }
        ok = flush_bytes(&bytes, out) && dl_push(out, dl_str(in, i), dl_len(in, i));
    }
    ok = ok && flush_bytes(&bytes, out);
    buf_fini(&bytes);
    return ok;
}

static bool metaspace(const tok_decoder *d, const dlist *in, dlist *out)
{
    for (size_t i = 0; i < in->n; i++) {
        const char *s = dl_str(in, i);
        size_t n = dl_len(in, i);
        if (!dl_begin(out)) return false;
        for (size_t j = 0; j < n;) {
            uint32_t cp;
            size_t w = tok_utf8_next(s + j, n - j, &cp);
            bool ok = true;
            if (cp != d->cp) ok = dl_add_bytes(out, s + j, w);
            else if (!(i == 0 && d->prepend != TOK_PREPEND_NEVER)) ok = dl_add_bytes(out, " ", 1);
            if (!ok) return false;
            j += w;
        }
    }
    return true;
}

static sem_status replace(const tok_decoder *d, const dlist *in, dlist *out, sem_err *err)
{
    tok_spans sp = {0};
    sem_status st = SEM_OK;
    for (size_t i = 0; i < in->n && st == SEM_OK; i++) {
        const char *s = dl_str(in, i);
        size_t n = dl_len(in, i), prev = 0;
        sp.n = 0;
        st = tok_pattern_find(&d->pat, NULL, s, n, &sp, err);
        if (st != SEM_OK) break;
        if (!dl_begin(out)) st = OOM(err);
        s = dl_str(in, i); /* in is not out: stable */
        for (size_t k = 0; st == SEM_OK && k < sp.n; k++) {
            if (!dl_add_bytes(out, s + prev, sp.v[k].start - prev) ||
                !dl_add_bytes(out, d->content, d->content_len))
                st = OOM(err);
            prev = sp.v[k].end;
        }
        if (st == SEM_OK && !dl_add_bytes(out, s + prev, n - prev)) st = OOM(err);
    }
    free(sp.v);
    return st;
}

/* Strip: up to `start` leading and `stop` trailing copies of one char. */
static bool strip(const tok_decoder *d, const dlist *in, dlist *out)
{
    for (size_t i = 0; i < in->n; i++) {
        const char *s = dl_str(in, i);
        size_t n = dl_len(in, i), a = 0, b = n;
        for (size_t k = 0; k < d->start && a < n; k++) {
            uint32_t cp;
            size_t w = tok_utf8_next(s + a, n - a, &cp);
            if (cp != d->cp) break;
            a += w;
        }
        for (size_t k = 0; k < d->stop && b > a; k++) {
            size_t j = b - 1;
            while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
            uint32_t cp;
            tok_utf8_next(s + j, b - j, &cp);
            if (cp != d->cp) break;
            b = j;
        }
        if (!dl_push(out, s + a, b - a)) return false;
    }
    return true;
}

static bool fuse(const dlist *in, dlist *out)
{
    if (!dl_begin(out)) return false;
    for (size_t i = 0; i < in->n; i++)
        if (!dl_add_bytes(out, dl_str(in, i), dl_len(in, i))) return false;
    return true;
}

static sem_status run_one(const tok_decoder *d, const dlist *in, dlist *out, sem_err *err);

static sem_status run_sequence(const tok_decoder *d, const dlist *in, dlist *out, sem_err *err)
{
    dlist a, b;
    dl_init(&a);
    dl_init(&b);
    sem_status st = SEM_OK;
    for (size_t i = 0; i < in->n && st == SEM_OK; i++)
        if (!dl_push(&a, dl_str(in, i), dl_len(in, i))) st = OOM(err);
    for (size_t k = 0; k < d->n_items && st == SEM_OK; k++) {
        dl_clear(&b);
        st = run_one(&d->items[k], &a, &b, err);
        dlist t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < a.n && st == SEM_OK; i++)
        if (!dl_push(out, dl_str(&a, i), dl_len(&a, i))) st = OOM(err);
    dl_fini(&a);
    dl_fini(&b);
    return st;
}

static sem_status run_one(const tok_decoder *d, const dlist *in, dlist *out, sem_err *err)
{
    bool ok = true;
    switch (d->kind) {
    case TOK_DEC_SEQUENCE: return run_sequence(d, in, out, err);
    case TOK_DEC_REPLACE: return replace(d, in, out, err);
    case TOK_DEC_BYTELEVEL: ok = bytelevel(in, out); break;
    case TOK_DEC_BYTEFALLBACK: ok = bytefallback(in, out); break;
    case TOK_DEC_METASPACE: ok = metaspace(d, in, out); break;
    case TOK_DEC_STRIP: ok = strip(d, in, out); break;
    case TOK_DEC_FUSE: ok = fuse(in, out); break;
    }
    return ok ? SEM_OK : OOM(err);
}

sem_status tok_decode(const tok_tokenizer *tok, const tok_id *ids, size_t n, bool skip_special,
                      buf *out, sem_err *err)
{
    dlist in, res;
    dl_init(&in);
    dl_init(&res);
    sem_status st = SEM_OK;
    for (size_t i = 0; i < n && st == SEM_OK; i++) {
        size_t len;
        const char *p = tok_piece_of(tok, ids[i], &len);
        if (!p || (skip_special && tok_is_special(tok, ids[i]))) continue;
        if (!dl_push(&in, p, len)) st = OOM(err);
    }
    if (st == SEM_OK && tok->decoder) st = run_one(tok->decoder, &in, &res, err);
    const dlist *fin = tok->decoder ? &res : &in;
    size_t old = out->len;
    for (size_t i = 0; i < fin->n && st == SEM_OK; i++) {
        bool ok = (tok->decoder || i == 0 || buf_append(out, " ", 1)) &&
                  buf_append(out, dl_str(fin, i), dl_len(fin, i));
        if (!ok) st = OOM(err);
    }
    if (st == SEM_OK && !out->data && !buf_reserve(out, 0)) st = OOM(err);
    if (st != SEM_OK) {
        out->len = old;
        if (out->data) out->data[old] = '\0';
    }
    dl_fini(&in);
    dl_fini(&res);
    return st;
}
