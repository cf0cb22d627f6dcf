/* template_str.c - string helpers for the template engine: UTF-8 decoding,
 * JavaScript's whitespace set (what trim()/\s mean in the reference), UTF-16
 * lengths and indexing (JS strings are UTF-16, so "length" and s[i] count
 * code units), case mapping, and JS number parsing (ToNumber, parseInt,
 * parseFloat).
 *
 * Strings are UTF-8 throughout; invalid bytes decode as U+FFFD one byte at a
 * time so that no input can make a loop stall. A lone UTF-16 surrogate (what
 * s[i] yields inside an astral character in JavaScript, or a "\ud800"
 * escape) is kept as its 3-byte WTF-8 form so that length, tojson and
 * ordering still see one code unit; tpl_render turns such bytes into proper
 * UTF-8 at the end (pairs joined, lone ones as U+FFFD, like node's output).
 *
 * Thread: any (pure functions).
 */
#include "tokenizer/template_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ===================================================================== */
/* UTF-8                                                                   */
/* ===================================================================== */

size_t tpl_utf8_decode(const char *s, size_t len, size_t i, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[i];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        n = 2, v = c & 0x1Fu, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, v = c & 0x0Fu, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, v = c & 0x07u, min = 0x10000;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    if (len - i < n) {
        *cp = 0xFFFD;
        return 1;
    }
    for (size_t k = 1; k < n; k++) {
        if ((u[i + k] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        v = (v << 6) | (u[i + k] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF) { /* surrogates pass: WTF-8, see the top */
        *cp = 0xFFFD;
        return 1;
    }
    *cp = v;
    return n;
}

/* ===================================================================== */
/* JavaScript whitespace (WhiteSpace + LineTerminator)                      */
/* ===================================================================== */

bool tpl_js_space(uint32_t cp)
{
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    switch (cp) {
    case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000: case 0xFEFF:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

size_t tpl_js_space_at(const char *s, size_t len, size_t i)
{
    if (i >= len) return 0;
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) return tpl_js_space(c) ? 1 : 0;
    if (c != 0xC2 && c != 0xE1 && c != 0xE2 && c != 0xE3 && c != 0xEF) return 0;
    uint32_t cp;
    size_t n = tpl_utf8_decode(s, len, i, &cp);
    return tpl_js_space(cp) ? n : 0;
}

size_t tpl_js_space_before(const char *s, size_t i)
{
    if (i == 0) return 0;
    size_t start = i - 1;
    while (start > 0 && i - start < 4 && ((unsigned char)s[start] & 0xC0) == 0x80) start--;
    uint32_t cp;
    size_t n = tpl_utf8_decode(s, i, start, &cp);
    return start + n == i && tpl_js_space(cp) ? n : 0;
}

void tpl_js_trim(const char *s, size_t len, bool left, bool right, size_t *start, size_t *end)
{
    size_t a = 0, b = len, w;
    if (left)
        while (a < b && (w = tpl_js_space_at(s, b, a)) > 0) a += w;
    if (right)
        while (b > a && (w = tpl_js_space_before(s, b)) > 0 && b - w >= a) b -= w;
    *start = a;
    *end = b;
}

/* ===================================================================== */
/* UTF-16 views                                                            */
/* ===================================================================== */

bool tpl_wtf8_to_utf8(const char *s, size_t len, buf *out)
{
    for (size_t i = 0; i < len;) {
        uint32_t cp, lo;
        size_t n = tpl_utf8_decode(s, len, i, &cp);
        if (n != 3 || cp < 0xD800 || cp > 0xDFFF) {
            if (!buf_append(out, s + i, n)) return false;
            i += n;
            continue;
        }
        size_t m = i + 3 < len ? tpl_utf8_decode(s, len, i + 3, &lo) : 0;
        char tmp[4];
        if (cp <= 0xDBFF && m == 3 && lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000u + ((cp - 0xD800u) << 10) + (lo - 0xDC00u);
            n = 6;
        } else {
            cp = 0xFFFD;
        }
        if (!buf_append(out, tmp, tok_utf8_encode(cp, tmp))) return false;
        i += n;
    }
    return true;
}

bool tpl_has_surrogates(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    while ((p = memchr(p, 0xED, (size_t)(end - p))) != NULL) {
        if (p + 1 < end && (unsigned char)p[1] >= 0xA0) return true;
        p++;
    }
    return false;
}

size_t tpl_utf16_len(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += tpl_utf8_decode(s, len, i, &cp);
        n += cp >= 0x10000 ? 2 : 1;
    }
    return n;
}

static void utf16_units(uint32_t cp, uint32_t *hi, uint32_t *lo);

bool tpl_utf16_at(const char *s, size_t len, int64_t idx, buf *out, bool *found)
{
    *found = false;
    if (idx < 0) idx += (int64_t)tpl_utf16_len(s, len);
    if (idx < 0) return true;
    uint64_t unit = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = tpl_utf8_decode(s, len, i, &cp);
        uint64_t w = cp >= 0x10000 ? 2 : 1;
        if ((uint64_t)idx < unit + w) {
            *found = true;
            if (w == 1) return buf_append(out, s + i, n);
            uint32_t hi, lo;
            utf16_units(cp, &hi, &lo);
            char tmp[4];
            size_t k = tok_utf8_encode((uint64_t)idx == unit ? hi : lo, tmp); /* half a pair */
            return buf_append(out, tmp, k);
        }
        unit += w;
        i += n;
    }
    return true;
}

static void utf16_units(uint32_t cp, uint32_t *hi, uint32_t *lo)
{
    if (cp < 0x10000) {
        *hi = cp;
        *lo = 0;
    } else {
        *hi = 0xD800u + ((cp - 0x10000u) >> 10);
        *lo = 0xDC00u + ((cp - 0x10000u) & 0x3FFu);
    }
}

int tpl_utf16_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i = 0, j = 0;
    while (i < alen && j < blen) {
        uint32_t ca, cb;
        i += tpl_utf8_decode(a, alen, i, &ca);
        j += tpl_utf8_decode(b, blen, j, &cb);
        if (ca == cb) continue;
        uint32_t ah, al, bh, bl;
        utf16_units(ca, &ah, &al);
        utf16_units(cb, &bh, &bl);
        if (ah != bh) return ah < bh ? -1 : 1;
        return al < bl ? -1 : 1;
    }
    if (i < alen) return 1;
    if (j < blen) return -1;
    return 0;
}

/* ===================================================================== */
/* Case mapping (String#toUpperCase / toLowerCase)                         */
/* ===================================================================== */

typedef struct special_upper {
    uint32_t cp;
    uint32_t to[3];
} special_upper;

/* The unconditional one-to-many upper mappings of SpecialCasing.txt that
 * utf8proc's simple mapping lacks (Greek iota-subscript forms omitted). */
static const special_upper SPECIAL_UPPER[] = {
    {0x00DF, {0x53, 0x53, 0}},        {0x0149, {0x2BC, 0x4E, 0}},     {0x01F0, {0x4A, 0x30C, 0}},
    {0x0390, {0x399, 0x308, 0x301}},  {0x03B0, {0x3A5, 0x308, 0x301}}, {0x0587, {0x535, 0x552, 0}},
    {0x1E96, {0x48, 0x331, 0}},       {0x1E97, {0x54, 0x308, 0}},     {0x1E98, {0x57, 0x30A, 0}},
    {0x1E99, {0x59, 0x30A, 0}},       {0x1E9A, {0x41, 0x2BE, 0}},     {0xFB00, {0x46, 0x46, 0}},
    {0xFB01, {0x46, 0x49, 0}},        {0xFB02, {0x46, 0x4C, 0}},      {0xFB03, {0x46, 0x46, 0x49}},
    {0xFB04, {0x46, 0x46, 0x4C}},     {0xFB05, {0x53, 0x54, 0}},      {0xFB06, {0x53, 0x54, 0}},
    {0xFB13, {0x544, 0x546, 0}},      {0xFB14, {0x544, 0x535, 0}},    {0xFB15, {0x544, 0x53B, 0}},
    {0xFB16, {0x54E, 0x546, 0}},      {0xFB17, {0x544, 0x53D, 0}},
};

static bool put_cp(buf *out, uint32_t cp)
{
    char tmp[4];
    return buf_append(out, tmp, tok_utf8_encode(cp, tmp));
}

static bool is_cased_letter(uint32_t cp)
{
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}

static bool upper_cp(uint32_t cp, buf *out)
{
    if (cp < 0x80) return put_cp(out, cp >= 'a' && cp <= 'z' ? cp - 32 : cp);
    for (size_t k = 0; k < sizeof SPECIAL_UPPER / sizeof SPECIAL_UPPER[0]; k++) {
        if (SPECIAL_UPPER[k].cp != cp) continue;
        for (size_t m = 0; m < 3 && SPECIAL_UPPER[k].to[m]; m++)
            if (!put_cp(out, SPECIAL_UPPER[k].to[m])) return false;
        return true;
    }
    return put_cp(out, (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp));
}

/* Final sigma: a capital sigma after a cased letter and not before one. */
static bool final_sigma(const char *s, size_t len, size_t i, size_t n, uint32_t prev)
{
    if (!is_cased_letter(prev)) return false;
    if (i + n >= len) return true;
    uint32_t next;
    tpl_utf8_decode(s, len, i + n, &next);
    return !is_cased_letter(next);
}

static bool lower_cp(const char *s, size_t len, size_t i, size_t n, uint32_t cp, uint32_t prev,
                     buf *out)
{
    if (cp < 0x80) return put_cp(out, cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    if (cp == 0x130) return put_cp(out, 0x69) && put_cp(out, 0x307);
    if (cp == 0x3A3 && final_sigma(s, len, i, n, prev)) return put_cp(out, 0x3C2);
    return put_cp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
}

bool tpl_case_map(const char *s, size_t len, bool upper, buf *out)
{
    uint32_t prev = 0;
    if (!buf_reserve(out, len)) return false;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = tpl_utf8_decode(s, len, i, &cp);
        bool ok = upper ? upper_cp(cp, out) : lower_cp(s, len, i, n, cp, prev, out);
        if (!ok) return false;
        prev = cp;
        i += n;
    }
    return true;
}

static bool ascii_word(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* value.replace(/\b\w/g, c => c.toUpperCase()): only ASCII word characters
 * count, and the rest of each word keeps its case. */
bool tpl_title_case(const char *s, size_t len, buf *out)
{
    if (!buf_append(out, s, len)) return false;
    char *d = out->data + out->len - len;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)d[i];
        bool boundary = i == 0 || !ascii_word((unsigned char)d[i - 1]);
        if (boundary && c >= 'a' && c <= 'z') d[i] = (char)(c - 32);
    }
    return true;
}

/* charAt(0).toUpperCase() + slice(1): the first UTF-16 unit only, so an
 * astral first character stays as it is. */
bool tpl_capitalize(const char *s, size_t len, buf *out)
{
    if (len == 0) return true;
    uint32_t cp;
    size_t n = tpl_utf8_decode(s, len, 0, &cp);
    bool ok = cp >= 0x10000 ? buf_append(out, s, n) : upper_cp(cp, out);
    return ok && buf_append(out, s + n, len - n);
}

/* ===================================================================== */
/* JS number parsing                                                       */
/* ===================================================================== */

static bool is_d(char c) { return c >= '0' && c <= '9'; }

/* Length of the longest StrDecimalLiteral prefix of s (unsigned part). */
static size_t decimal_prefix(const char *s, size_t len, bool *is_inf)
{
    size_t i = 0, digits = 0;
    *is_inf = false;
    if (len >= 8 && memcmp(s, "Infinity", 8) == 0) {
        *is_inf = true;
        return 8;
    }
    while (i < len && is_d(s[i])) i++, digits++;
    if (i < len && s[i] == '.') {
        size_t j = i + 1, frac = 0;
        while (j < len && is_d(s[j])) j++, frac++;
        if (digits || frac) i = j, digits += frac;
    }
    if (!digits) return 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < len && (s[j] == '+' || s[j] == '-')) j++;
        size_t e0 = j;
        while (j < len && is_d(s[j])) j++;
        if (j > e0) i = j;
    }
    return i;
}

static double parse_span(const char *s, size_t len)
{
    char tmp[128];
    if (len >= sizeof tmp) {
        char *h = malloc(len + 1);
        if (!h) return NAN;
        memcpy(h, s, len);
        h[len] = '\0';
        double v = strtod(h, NULL);
        free(h);
        return v;
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return strtod(tmp, NULL);
}

static double parse_radix(const char *s, size_t len, unsigned radix)
{
    if (len == 0) return NAN;
    double v = 0;
    for (size_t i = 0; i < len; i++) {
        int d = s[i] >= '0' && s[i] <= '9' ? s[i] - '0'
                : s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10
                : s[i] >= 'A' && s[i] <= 'F' ? s[i] - 'A' + 10 : 99;
        if (d >= (int)radix) return NAN;
        v = v * radix + d;
    }
    return v;
}

double tpl_js_to_number(const char *s, size_t len)
{
    size_t a, b;
    tpl_js_trim(s, len, true, true, &a, &b);
    s += a;
    len = b - a;
    if (len == 0) return 0;
    if (len > 2 && s[0] == '0') {
        char k = s[1];
        if (k == 'x' || k == 'X') return parse_radix(s + 2, len - 2, 16);
        if (k == 'o' || k == 'O') return parse_radix(s + 2, len - 2, 8);
        if (k == 'b' || k == 'B') return parse_radix(s + 2, len - 2, 2);
    }
    double sign = 1;
    size_t i = 0;
    if (s[0] == '+' || s[0] == '-') {
        sign = s[0] == '-' ? -1 : 1;
        i = 1;
    }
    bool inf;
    size_t n = decimal_prefix(s + i, len - i, &inf);
    if (n == 0 || i + n != len) return NAN;
    return inf ? sign * INFINITY : sign * parse_span(s + i, n);
}

static size_t skip_js_space(const char *s, size_t len)
{
    size_t i = 0, w;
    while ((w = tpl_js_space_at(s, len, i)) > 0) i += w;
    return i;
}

bool tpl_js_parse_int(const char *s, size_t len, double *out)
{
    size_t i = skip_js_space(s, len);
    double sign = 1;
    if (i < len && (s[i] == '+' || s[i] == '-')) sign = s[i++] == '-' ? -1 : 1;
    size_t d0 = i;
    while (i < len && is_d(s[i])) i++;
    if (i == d0) return false;
    *out = sign * parse_span(s + d0, i - d0);
    return true;
}

bool tpl_js_parse_float(const char *s, size_t len, double *out)
{
    size_t i = skip_js_space(s, len);
    double sign = 1;
    if (i < len && (s[i] == '+' || s[i] == '-')) sign = s[i++] == '-' ? -1 : 1;
    bool inf;
    size_t n = decimal_prefix(s + i, len - i, &inf);
    if (n == 0) return false;
    *out = inf ? sign * INFINITY : sign * parse_span(s + i, n);
    return true;
}
