/* tok_utf8.c - UTF-8 validation, decoding and lossy repair, the Unicode
 * character classes the Hugging Face pipeline uses (Rust's char::is_whitespace,
 * regex \w, char::is_numeric), and GPT-2's byte <-> code point table.
 *
 * The lossy repair reproduces Rust's String::from_utf8_lossy exactly: each
 * maximal prefix of a valid sequence that cannot be completed becomes one
 * U+FFFD, and a byte that cannot start a sequence becomes one U+FFFD.
 *
 * Thread: any (pure functions).
 */
#include "tokenizer/tok_int.h"

#include <utf8proc.h>

/* The second byte's allowed range depends on the lead (no overlongs, no
 * surrogates, nothing above U+10FFFF). */
static bool second_ok(unsigned char lead, unsigned char b)
{
    switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
    }
}

static size_t lead_width(unsigned char b)
{
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* Length of the valid prefix of the sequence at s (1..w), and whether it is
 * a complete character. */
static size_t seq_prefix(const unsigned char *s, size_t n, bool *complete)
{
    size_t w = lead_width(s[0]);
    *complete = false;
    if (w == 0) return 1;
    if (w == 1) {
        *complete = true;
        return 1;
    }
    if (n < 2 || !second_ok(s[0], s[1])) return 1;
    size_t k = 2;
    while (k < w && k < n && s[k] >= 0x80 && s[k] <= 0xBF) k++;
    *complete = (k == w);
    return k;
}

bool tok_utf8_valid(const char *s, size_t n, size_t *bad_off)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        bool complete;
        size_t k = seq_prefix(u + i, n - i, &complete);
        if (!complete) {
            if (bad_off) *bad_off = i;
            return false;
        }
        i += k;
    }
    return true;
}

size_t tok_utf8_next(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t w = tok_utf8_len(u[0]);
    if (w > n) w = n; /* defensive: caller promised valid UTF-8 */
    uint32_t c;
    switch (w) {
    case 1: c = u[0]; break;
    case 2: c = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F); break;
    case 3: c = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F); break;
    default:
        c = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
            ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
        break;
    }
    *cp = c;
    return w;
}

size_t tok_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool tok_utf8_append_lossy(buf *out, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of the pending valid bytes */
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        bool complete;
        size_t k = seq_prefix(u + i, n - i, &complete);
        if (complete) {
            i += k;
            continue;
        }
        if (!buf_append(out, s + run, i - run)) return false;
        if (!buf_append(out, "\xEF\xBF\xBD", 3)) return false;
        i += k;
        run = i;
    }
    return buf_append(out, s + run, n - run);
}

bool tok_cp_is_whitespace(uint32_t cp)
{
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return false;
    switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F:
    case 0x205F: case 0x3000:
        return true;
    default: return cp >= 0x2000 && cp <= 0x200A;
    }
}

bool tok_cp_is_word(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
               cp == '_';
    if (cp == 0x200C || cp == 0x200D) return true; /* Join_Control */
    /* Other_Alphabetic symbols: circled and squared Latin letters. */
    if ((cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) ||
        (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189))
        return true;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
        return true;
    default: return false;
    }
}

bool tok_cp_is_numeric(uint32_t cp)
{
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. */
static bool byte_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t tok_byte_to_cp(uint8_t b)
{
    if (byte_printable(b)) return b;
    if (b <= 0x20) return 256u + b;               /* 33 bytes */
    if (b >= 0x7F && b <= 0xA0) return 256u + 33u + (b - 0x7Fu); /* 34 bytes */
    return 256u + 33u + 34u;                      /* 0xAD */
}

int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 256) return byte_printable(cp) ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 33 + 34) return (int)(0x7F + (cp - 256 - 33));
    if (cp == 256 + 33 + 34) return 0xAD;
    return -1;
}
