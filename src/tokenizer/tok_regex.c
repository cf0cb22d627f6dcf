/* tok_regex.c - String and Regex patterns of tokenizer.json (Split
 * pre-tokenizer, Replace normalizer and decoder).
 *
 * Hugging Face compiles these regexes with Oniguruma (Ruby syntax). We use
 * PCRE2 with UTF + UCP + JIT and translate the escapes whose meaning
 * differs: Oniguruma's \s is exactly Unicode White_Space (PCRE2's also
 * takes U+180E), \w is Letter|Mark|Number|Connector_Punctuation (PCRE2's
 * lacks marks), so \b and \B are rebuilt from it, \h is a hex digit
 * (PCRE2: horizontal space), and \uHHHH is a code point. ^ and $ are line anchors in Ruby
 * syntax, hence PCRE2_MULTILINE.
 *
 * Match iteration follows HF's find_iter: leftmost matches, non-overlapping;
 * an empty match that ends where the previous match ended is skipped.
 *
 * Thread: compiled patterns are read-only; matching uses the caller's
 * tok_encoder match data (or a temporary one).
 */
#include "tokenizer/tok_int.h"

#include <stdlib.h>
#include <string.h>

/* Oniguruma's Unicode \w: Letter | Mark | Number | Connector_Punctuation. */
#define WORD_CLASS "\\p{L}\\p{M}\\p{N}\\p{Pc}"
#define WORD_SET "[" WORD_CLASS "]"
/* \b and \B follow that \w (PCRE2's own \w lacks marks). */
#define WORD_BOUNDARY "(?:(?<=" WORD_SET ")(?!" WORD_SET ")|(?<!" WORD_SET ")(?=" WORD_SET "))"
#define NOT_WORD_BOUNDARY "(?:(?<=" WORD_SET ")(?=" WORD_SET ")|(?<!" WORD_SET ")(?!" WORD_SET "))"

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Copies the escape at src[i] whole (the escaped character may be
 * multi-byte). */
static size_t copy_escape(const char *src, size_t len, size_t i, buf *out, bool *ok)
{
    size_t w = tok_utf8_len((unsigned char)src[i + 1]);
    if (i + 1 + w > len) w = len - i - 1;
    *ok = buf_append(out, src + i, 1 + w);
    return 1 + w;
}

/* Translates one escape at src[i] == '\\'; returns the bytes consumed, or 0
 * for an escape we cannot express. */
static size_t translate_escape(const char *src, size_t len, size_t i, bool in_class, buf *out,
                               bool *ok)
{
    *ok = true;
    if (i + 1 >= len) {
        *ok = buf_append(out, "\\", 1);
        return 1;
    }
    char c = src[i + 1];
    switch (c) {
    case 's': *ok = buf_append_str(out, "\\p{White_Space}"); return 2;
    case 'S': *ok = buf_append_str(out, "\\P{White_Space}"); return 2;
    case 'w': *ok = buf_append_str(out, in_class ? WORD_CLASS : "[" WORD_CLASS "]"); return 2;
    case 'W':
        if (in_class) return 0;
        *ok = buf_append_str(out, "[^" WORD_CLASS "]");
        return 2;
    case 'b':
        if (in_class) return copy_escape(src, len, i, out, ok); /* [\b]: backspace in both */
        *ok = buf_append_str(out, WORD_BOUNDARY);
        return 2;
    case 'B':
        if (in_class) return 0;
        *ok = buf_append_str(out, NOT_WORD_BOUNDARY);
        return 2;
    case 'h': *ok = buf_append_str(out, in_class ? "0-9a-fA-F" : "[0-9a-fA-F]"); return 2;
    case 'H':
        if (in_class) return 0;
        *ok = buf_append_str(out, "[^0-9a-fA-F]");
        return 2;
    case 'u':
        if (i + 6 <= len && is_hex(src[i + 2]) &&
            is_hex(src[i + 3]) && is_hex(src[i + 4]) && is_hex(src[i + 5])) {
            *ok = buf_printf(out, "\\x{%.4s}", src + i + 2);
            return 6;
        }
        return 0;
    default: return copy_escape(src, len, i, out, ok);
    }
}

/* Rewrites an Oniguruma pattern into PCRE2 syntax. */
static sem_status translate(const char *src, size_t len, buf *out, sem_err *err)
{
    bool in_class = false;
    size_t i = 0;
    while (i < len) {
        char c = src[i];
        bool ok = true;
        if (c == '\\') {
            size_t k = translate_escape(src, len, i, in_class, out, &ok);
            if (k == 0)
                return sem_errf(err, SEM_EUNSUPPORTED,
                                "regex escape '\\%c' at byte %zu is not supported", src[i + 1], i);
            if (!ok) return sem_errf(err, SEM_ENOMEM, "out of memory translating a regex");
            i += k;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            size_t j = i + 1;
            if (j < len && src[j] == '^') j++;
            if (j < len && src[j] == ']') j++; /* a leading ] is literal */
            ok = buf_append(out, src + i, j - i);
            i = j;
        } else if (in_class && c == '[' && i + 1 < len && src[i + 1] == ':') {
            const char *end = NULL;
            for (size_t j = i + 2; j + 1 < len; j++)
                if (src[j] == ':' && src[j + 1] == ']') {
                    end = src + j + 2;
                    break;
                }
            size_t k = end ? (size_t)(end - (src + i)) : 1;
            ok = buf_append(out, src + i, k);
            i += k;
        } else {
            if (in_class && c == ']') in_class = false;
            ok = buf_append(out, src + i, 1);
            i++;
        }
        if (!ok) return sem_errf(err, SEM_ENOMEM, "out of memory translating a regex");
    }
    return SEM_OK;
}

sem_status tok_pattern_regex(tok_pattern *p, const char *src, size_t len, sem_err *err)
{
    memset(p, 0, sizeof *p);
    if (len > TOK_MAX_PATTERN_BYTES)
        return sem_errf(err, SEM_ELIMIT, "regex of %zu bytes exceeds %zu", len,
                        TOK_MAX_PATTERN_BYTES);
    if (!tok_utf8_valid(src, len, NULL)) return sem_errf(err, SEM_EINVAL, "regex is not UTF-8");
    buf t;
    buf_init(&t);
    sem_status s = translate(src, len, &t, err);
    if (s != SEM_OK) {
        buf_fini(&t);
        return s;
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!cc) {
        buf_fini(&t);
        return sem_errf(err, SEM_ENOMEM, "out of memory compiling a regex");
    }
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    int ec = 0;
    PCRE2_SIZE eo = 0;
    p->re = pcre2_compile((PCRE2_SPTR)(t.data ? t.data : ""), t.len,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &ec, &eo, cc);
    pcre2_compile_context_free(cc);
    buf_fini(&t);
    if (!p->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return sem_errf(err, SEM_EINVAL, "invalid regex: %s (near byte %zu)", (char *)msg,
                        (size_t)eo);
    }
    (void)pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); /* interpreter if JIT is unavailable */
    p->is_regex = true;
    return SEM_OK;
}

sem_status tok_pattern_literal(tok_pattern *p, const char *src, size_t len, sem_err *err)
{
    memset(p, 0, sizeof *p);
    if (len > TOK_MAX_PATTERN_BYTES)
        return sem_errf(err, SEM_ELIMIT, "pattern of %zu bytes exceeds %zu", len,
                        TOK_MAX_PATTERN_BYTES);
    p->lit = tok_strndup(src, len);
    if (!p->lit) return sem_errf(err, SEM_ENOMEM, "out of memory");
    p->lit_len = len;
    return SEM_OK;
}

void tok_pattern_fini(tok_pattern *p)
{
    free(p->lit);
    if (p->re) pcre2_code_free(p->re);
    memset(p, 0, sizeof *p);
}

static sem_status find_literal(const tok_pattern *p, const char *s, size_t n, tok_spans *out,
                               sem_err *err)
{
    if (p->lit_len == 0) return SEM_OK;
    size_t pos = 0;
    while (pos + p->lit_len <= n) {
        const char *hit = memmem(s + pos, n - pos, p->lit, p->lit_len);
        if (!hit) break;
        size_t ms = (size_t)(hit - s);
        if (!tok_spans_push(out, ms, ms + p->lit_len, true))
            return sem_errf(err, SEM_ENOMEM, "out of memory");
        pos = ms + p->lit_len;
    }
    return SEM_OK;
}

static sem_status match_error(int rc, sem_err *err)
{
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return sem_errf(err, rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
                                 rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_HEAPLIMIT
                             ? SEM_ELIMIT
                             : SEM_EINVAL,
                    "regex match failed: %s", (char *)msg);
}

/* A match that ran out of PCRE2's default JIT stack is retried once with a
 * large stack (kept in the encoder for later matches, if there is one). */
static int match_once(const tok_pattern *p, PCRE2_SPTR subj, size_t n, size_t pos,
                      pcre2_match_data *md, tok_encoder *enc)
{
    pcre2_match_context *mctx = enc ? enc->mctx : NULL;
    int rc = pcre2_match(p->re, subj, n, pos, PCRE2_NO_UTF_CHECK, md, mctx);
    if (rc != PCRE2_ERROR_JIT_STACKLIMIT || (enc && enc->jit)) return rc;
    pcre2_jit_stack *jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    pcre2_match_context *tmp = enc ? NULL : pcre2_match_context_create(NULL);
    if (!jit || (!enc && !tmp)) {
        if (jit) pcre2_jit_stack_free(jit);
        if (tmp) pcre2_match_context_free(tmp);
        return rc;
    }
    pcre2_jit_stack_assign(enc ? enc->mctx : tmp, NULL, jit);
    rc = pcre2_match(p->re, subj, n, pos, PCRE2_NO_UTF_CHECK, md, enc ? enc->mctx : tmp);
    if (enc) {
        enc->jit = jit; /* kept for the encoder's later matches */
    } else {
        pcre2_match_context_free(tmp);
        pcre2_jit_stack_free(jit);
    }
    return rc;
}

static sem_status find_regex(const tok_pattern *p, pcre2_match_data *md, tok_encoder *enc,
                             const char *s, size_t n, tok_spans *out, sem_err *err)
{
    size_t pos = 0, last_end = 0;
    bool have_last = false;
    PCRE2_SPTR subj = (PCRE2_SPTR)(s ? s : "");
    while (pos <= n) {
        int rc = match_once(p, subj, n, pos, md, enc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return match_error(rc, err);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && have_last && me == last_end) {
            if (ms >= n) break;
            pos = ms + tok_utf8_len((unsigned char)s[ms]);
            continue;
        }
        if (!tok_spans_push(out, ms, me, true)) return sem_errf(err, SEM_ENOMEM, "out of memory");
        last_end = me;
        have_last = true;
        pos = me;
    }
    return SEM_OK;
}

sem_status tok_pattern_find(const tok_pattern *p, tok_encoder *enc, const char *s, size_t n,
                            tok_spans *out, sem_err *err)
{
    if (!p->is_regex) return find_literal(p, s, n, out, err);
    if (enc) return find_regex(p, enc->md, enc, s, n, out, err);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return sem_errf(err, SEM_ENOMEM, "out of memory");
    sem_status st = find_regex(p, md, NULL, s, n, out, err);
    pcre2_match_data_free(md);
    return st;
}
