/* jsonlim.c - request bodies as JSON, with limits, and text on its way out
 * as valid UTF-8.
 *
 * Bodies: the nesting depth is checked by a byte scan before jansson sees
 * the text (so a 1 MB "[[[[..." costs one pass and no recursion); jansson
 * then rejects invalid UTF-8, NUL inside strings (\u0000), lone surrogates
 * and numbers that do not fit an int64 or a double. The top level must be
 * an object.
 *
 * Output: jansson refuses strings that are not valid UTF-8. Model output
 * and echoed input go through srv_utf8_repair first, which replaces each
 * bad sequence with U+FFFD, so a response can always be built.
 *
 * Thread: any.
 */
#include "server/srv_int.h"

#include <string.h>

/* Depth of [] / {} outside strings; stops at the first excess. Returns the
 * byte offset of the excess, or len when within the limit. */
static size_t scan_depth(const char *d, size_t len, int32_t max_depth)
{
    int32_t depth = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < len; i++) {
        char c = d[i];
        if (in_str) {
            if (esc) esc = false;
            else if (c == '\\') esc = true;
            else if (c == '"') in_str = false;
            continue;
        }
        if (c == '"') in_str = true;
        else if (c == '[' || c == '{') {
            if (++depth > max_depth) return i;
        } else if (c == ']' || c == '}') depth--;
    }
    return len;
}

bool srv_json_parse_body(const char *data, size_t len, int32_t max_depth, json_t **out,
                         srv_error *e)
{
    if (len == 0) return srv_errorf(e, 400, "invalid_json", NULL, "request body is empty: expected a JSON object");
    size_t at = scan_depth(data, len, max_depth);
    if (at < len)
        return srv_errorf(e, 400, "invalid_json", NULL,
                          "JSON nesting deeper than %d at byte %zu", (int)max_depth, at);
    json_error_t je;
    json_t *v = json_loadb(data, len, 0, &je);
    if (!v)
        return srv_errorf(e, 400, "invalid_json", NULL,
                          "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    if (!json_is_object(v)) {
        json_decref(v);
        return srv_errorf(e, 400, "invalid_json", NULL, "request body must be a JSON object");
    }
    *out = v;
    return true;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, <= U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) need = 2, cp = c & 0x1Fu;
    else if (c >= 0xE0 && c <= 0xEF) need = 3, cp = c & 0x0Fu;
    else if (c >= 0xF0 && c <= 0xF4) need = 4, cp = c & 0x07u;
    else return 0;
    if (n < need) return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
    if (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
    return need;
}

bool srv_utf8_repair(const char *s, size_t len, buf *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < len) {
        size_t k = utf8_seq(u + i, len - i);
        if (k) {
            i += k;
            continue;
        }
        if (!buf_append(out, s + run, i - run) || !buf_append(out, "\xEF\xBF\xBD", 3))
            return false;
        i++;
        run = i;
    }
    return buf_append(out, s + run, len - run);
}

json_t *srv_json_text(const char *s, size_t len)
{
    json_t *v = json_stringn(s, len);
    if (v) return v;
    buf b;
    buf_init(&b);
    if (!srv_utf8_repair(s, len, &b) || !buf_append(&b, "", 0)) {
        buf_fini(&b);
        return NULL;
    }
    v = json_stringn(b.data ? b.data : "", b.len);
    buf_fini(&b);
    return v;
}

static int dump_cb(const char *s, size_t n, void *ctx)
{
    return buf_append((buf *)ctx, s, n) ? 0 : -1;
}

bool srv_json_append(buf *out, const json_t *v)
{
    return json_dump_callback(v, dump_cb, out, JSON_COMPACT) == 0;
}
