/* tok_normalize.c - tokenizer.json normalizers: NFC/NFD/NFKC/NFKD
 * (utf8proc), Prepend, Replace (String or Regex), Strip, Lowercase and
 * Sequence. Each maps a whole segment of text (the text between added
 * tokens) to a new string, as HF's NormalizedString does; we do not track
 * alignments because we never report offsets.
 *
 * Thread: the caller's (normalizers are read-only).
 */
#include "tokenizer/tok_int.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

void tok_normalizer_fini(tok_normalizer *n)
{
    if (!n) return;
    free(n->str);
    tok_pattern_fini(&n->pat);
    for (size_t i = 0; i < n->n_items; i++) tok_normalizer_fini(&n->items[i]);
    free(n->items);
    memset(n, 0, sizeof *n);
}

static bool all_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

static sem_status unicode_form(tok_norm_kind kind, const char *in, size_t len, buf *out,
                               sem_err *err)
{
    /* Every Unicode normal form leaves ASCII unchanged. */
    if (all_ascii(in, len)) {
        return buf_append(out, in, len) ? SEM_OK : sem_errf(err, SEM_ENOMEM, "out of memory");
    }
    int opt = UTF8PROC_STABLE;
    switch (kind) {
    case TOK_NORM_NFC: opt |= UTF8PROC_COMPOSE; break;
    case TOK_NORM_NFD: opt |= UTF8PROC_DECOMPOSE; break;
    case TOK_NORM_NFKC: opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    default: opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    }
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r =
        utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)len, &dst, (utf8proc_option_t)opt);
    if (r < 0) return sem_errf(err, SEM_EINVAL, "normalization failed: %s", utf8proc_errmsg(r));
    bool ok = buf_append(out, dst, (size_t)r);
    free(dst);
    return ok ? SEM_OK : sem_errf(err, SEM_ENOMEM, "out of memory");
}

static sem_status replace(const tok_normalizer *n, tok_encoder *enc, const char *in, size_t len,
                          buf *out, sem_err *err)
{
    tok_spans sp = {0};
    sem_status s = tok_pattern_find(&n->pat, enc, in, len, &sp, err);
    size_t prev = 0;
    for (size_t i = 0; s == SEM_OK && i < sp.n; i++) {
        if (!buf_append(out, in + prev, sp.v[i].start - prev) ||
            !buf_append(out, n->str, n->str_len))
            s = sem_errf(err, SEM_ENOMEM, "out of memory");
        prev = sp.v[i].end;
    }
    if (s == SEM_OK && !buf_append(out, in + prev, len - prev))
        s = sem_errf(err, SEM_ENOMEM, "out of memory");
    free(sp.v);
    return s;
}

static sem_status strip(const tok_normalizer *n, const char *in, size_t len, buf *out, sem_err *err)
{
    size_t a = 0, b = len;
    while (n->strip_left && a < b) {
        uint32_t cp;
        size_t w = tok_utf8_next(in + a, b - a, &cp);
        if (!tok_cp_is_whitespace(cp)) break;
        a += w;
    }
    while (n->strip_right && b > a) {
        size_t k = b - 1;
        while (k > a && ((unsigned char)in[k] & 0xC0) == 0x80) k--;
        uint32_t cp;
        tok_utf8_next(in + k, b - k, &cp);
        if (!tok_cp_is_whitespace(cp)) break;
        b = k;
    }
    return buf_append(out, in + a, b - a) ? SEM_OK : sem_errf(err, SEM_ENOMEM, "out of memory");
}

static sem_status lowercase(const char *in, size_t len, buf *out, sem_err *err)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t w = tok_utf8_next(in + i, len - i, &cp);
        i += w;
        char enc[8];
        size_t k;
        if (cp == 0x130) { /* the one unconditional multi-char lowercase */
            memcpy(enc, "i\xCC\x87", 3);
            k = 3;
        } else {
            k = tok_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), enc);
        }
        if (!buf_append(out, enc, k)) return sem_errf(err, SEM_ENOMEM, "out of memory");
    }
    return SEM_OK;
}

static sem_status sequence(const tok_normalizer *n, tok_encoder *enc, const char *in, size_t len,
                           buf *out, sem_err *err)
{
    buf a, b;
    buf_init(&a);
    buf_init(&b);
    sem_status s = buf_append(&a, in, len) ? SEM_OK : sem_errf(err, SEM_ENOMEM, "out of memory");
    for (size_t i = 0; s == SEM_OK && i < n->n_items; i++) {
        s = tok_normalize(&n->items[i], enc, a.data ? a.data : "", a.len, &b, err);
        buf t = a;
        a = b;
        b = t;
    }
    if (s == SEM_OK && !buf_append(out, a.data ? a.data : "", a.len))
        s = sem_errf(err, SEM_ENOMEM, "out of memory");
    buf_fini(&a);
    buf_fini(&b);
    return s;
}

sem_status tok_normalize(const tok_normalizer *n, tok_encoder *enc, const char *in, size_t len,
                         buf *out, sem_err *err)
{
    buf_clear(out);
    switch (n->kind) {
    case TOK_NORM_SEQUENCE: return sequence(n, enc, in, len, out, err);
    case TOK_NORM_NFC:
    case TOK_NORM_NFD:
    case TOK_NORM_NFKC:
    case TOK_NORM_NFKD: return unicode_form(n->kind, in, len, out, err);
    case TOK_NORM_PREPEND:
        if (len > 0 && !buf_append(out, n->str, n->str_len))
            return sem_errf(err, SEM_ENOMEM, "out of memory");
        return buf_append(out, in, len) ? SEM_OK : sem_errf(err, SEM_ENOMEM, "out of memory");
    case TOK_NORM_REPLACE: return replace(n, enc, in, len, out, err);
    case TOK_NORM_STRIP: return strip(n, in, len, out, err);
    case TOK_NORM_LOWERCASE: return lowercase(in, len, out, err);
    }
    return sem_errf(err, SEM_EINVAL, "unknown normalizer kind %d", (int)n->kind);
}
