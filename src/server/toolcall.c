/* toolcall.c - tool calls out of model output, for each model family, as a
 * stream: text goes in as the engine releases it, and pieces come out
 * (plain text, call start with the function name, fragments of the
 * arguments JSON, call end) as soon as they are certain.
 *
 * Formats (what the chat templates tell the model to write):
 *   HERMES  Qwen2.5 / Qwen3 / Hermes:
 *             <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
 *           any number of them, anywhere in the output.
 *   LLAMA3  Llama 3.1+ JSON tool calling: the whole output is
 *             [<|python_tag|>]{"name": "f", "parameters": {...}}
 *           optionally several separated by ';'.
 *
 * Streaming: once a call's head `{"name": "f", "arguments": {` is seen,
 * CALL_START goes out and the arguments object streams byte for byte,
 * with a JSON scanner (strings, escapes, depth) finding where it ends. A
 * call in another shape (keys in another order, arguments as a string) is
 * held until complete and then parsed whole. Text that only looked like a
 * call (bad JSON) comes out as text, unchanged. Whitespace between calls is
 * dropped, as the OpenAI and Anthropic APIs have no place for it.
 *
 * Thread: one owner (the HTTP thread pumping the generation).
 */
#include "server/srv_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define HERMES_OPEN "<tool_call>"
#define HERMES_CLOSE "</tool_call>"
#define PY_TAG "<|python_tag|>"

typedef enum tc_state {
    TC_TEXT = 0,     /* plain text (HERMES: watching for <tool_call>) */
    TC_LLAMA_START,  /* LLAMA3: nothing but whitespace yet */
    TC_LLAMA_BETWEEN,/* LLAMA3: after a call: ';' / whitespace / next '{' */
    TC_CALL,         /* inside a call body */
} tc_state;

typedef enum call_sub {
    CS_HEAD = 0, /* matching {"name": "f", "arguments": { */
    CS_ARGS,     /* streaming the arguments object */
    CS_TAIL,     /* after the arguments: expecting } */
    CS_WHOLE,    /* other shape: parse at the end */
} call_sub;

enum { M_NEED = 0, M_MATCH, M_FAIL };

struct srv_tc {
    srv_tool_format fmt;
    srv_piece_fn emit;
    void *ctx;
    tc_state st;
    buf pend;             /* TEXT: held bytes (maybe the start of a marker / whitespace) */
    int32_t n_calls;      /* calls started */
    bool any_text;        /* non-whitespace text emitted */
    /* the current call */
    buf body;
    call_sub sub;
    size_t scan;          /* body bytes scanned by the JSON scanner */
    int32_t depth;        /* JSON depth at scan (from the body start) */
    bool in_str, esc;
    size_t args_emit;     /* CS_ARGS: body offset emitted up to */
    int32_t args_depth;   /* depth outside the arguments object */
    bool streamed;        /* CALL_START went out for this call */
};

srv_tc *srv_tc_create(srv_tool_format format, srv_piece_fn emit, void *ctx)
{
    srv_tc *tc = sem_calloc(1, sizeof *tc);
    if (!tc) return NULL;
    tc->fmt = format;
    tc->emit = emit;
    tc->ctx = ctx;
    tc->st = format == SRV_TOOLS_LLAMA3 ? TC_LLAMA_START : TC_TEXT;
    buf_init(&tc->pend);
    buf_init(&tc->body);
    return tc;
}

void srv_tc_destroy(srv_tc *tc)
{
    if (!tc) return;
    buf_fini(&tc->pend);
    buf_fini(&tc->body);
    free(tc);
}

int32_t srv_tc_n_calls(const srv_tc *tc) { return tc->n_calls; }

/* ---- emitting ------------------------------------------------------------- */

static void emit_text(srv_tc *tc, const char *s, size_t n)
{
    if (!n) return;
    for (size_t i = 0; i < n && !tc->any_text; i++)
        if (!isspace((unsigned char)s[i])) tc->any_text = true;
    srv_piece p = {SRV_PIECE_TEXT, 0, s, n};
    tc->emit(tc->ctx, &p);
}

static void emit_call(srv_tc *tc, srv_piece_kind k, const char *s, size_t n)
{
    srv_piece p = {k, tc->n_calls - 1, s, n};
    if (k == SRV_PIECE_CALL_START) p.call_index = tc->n_calls;
    tc->emit(tc->ctx, &p);
    if (k == SRV_PIECE_CALL_START) tc->n_calls++;
}

static bool all_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i])) return false;
    return true;
}

/* ---- the head matcher ------------------------------------------------------ */

typedef struct head_match {
    size_t name_off, name_len;
    size_t args_off; /* the '{' of the arguments */
} head_match;

static bool name_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '-' || c == '.' || c == ':';
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && isspace((unsigned char)s[i])) i++;
    return i;
}

/* Matches lit at s[i]: M_MATCH (advancing *i), M_NEED (input ends inside
 * it) or M_FAIL. */
static int match_lit(const char *s, size_t n, size_t *i, const char *lit)
{
    size_t l = strlen(lit), have = n - *i < l ? n - *i : l;
    if (memcmp(s + *i, lit, have)) return M_FAIL;
    if (have < l) return M_NEED;
    *i += l;
    return M_MATCH;
}

#define STEP(expr)                      \
    do {                                \
        int r_ = (expr);                \
        if (r_ != M_MATCH) return r_;   \
    } while (0)
#define WS()                            \
    do {                                \
        i = skip_ws(s, n, i);           \
        if (i == n) return M_NEED;      \
    } while (0)

static int match_head(const char *s, size_t n, head_match *hm)
{
    size_t i = 0;
    WS();
    STEP(match_lit(s, n, &i, "{"));
    WS();
    STEP(match_lit(s, n, &i, "\"name\""));
    WS();
    STEP(match_lit(s, n, &i, ":"));
    WS();
    STEP(match_lit(s, n, &i, "\""));
    hm->name_off = i;
    while (i < n && s[i] != '"') {
        if (!name_char((unsigned char)s[i]) || i - hm->name_off >= SRV_TC_MAX_NAME_BYTES)
            return M_FAIL;
        i++;
    }
    if (i == n) return M_NEED;
    hm->name_len = i - hm->name_off;
    if (!hm->name_len) return M_FAIL;
    i++;
    WS();
    STEP(match_lit(s, n, &i, ","));
    WS();
    const char *key = i + 1 < n && s[i + 1] == 'p' ? "\"parameters\"" : "\"arguments\"";
    STEP(match_lit(s, n, &i, key));
    WS();
    STEP(match_lit(s, n, &i, ":"));
    WS();
    STEP(match_lit(s, n, &i, "{"));
    hm->args_off = i - 1;
    return M_MATCH;
}

/* ---- the call body ----------------------------------------------------------- */

static void call_begin(srv_tc *tc)
{
    buf_clear(&tc->body);
    tc->st = TC_CALL;
    tc->sub = CS_HEAD;
    tc->scan = 0;
    tc->depth = 0;
    tc->in_str = tc->esc = false;
    tc->streamed = false;
}

/* Scans body[scan..limit): tracks depth; in CS_ARGS finds the end of the
 * arguments. Returns true when (LLAMA3) the outer object closed at *end. */
static bool scan_body(srv_tc *tc, size_t limit, size_t *end)
{
    const char *s = tc->body.data;
    for (; tc->scan < limit; tc->scan++) {
        char c = s[tc->scan];
        if (tc->in_str) {
            if (tc->esc) tc->esc = false;
            else if (c == '\\') tc->esc = true;
            else if (c == '"') tc->in_str = false;
            continue;
        }
        if (c == '"') tc->in_str = true;
        else if (c == '{' || c == '[') tc->depth++;
        else if (c == '}' || c == ']') {
            tc->depth--;
            if (tc->sub == CS_ARGS && tc->depth == tc->args_depth) {
                size_t args_end = tc->scan + 1; /* the arguments object is complete */
                emit_call(tc, SRV_PIECE_CALL_ARGS, s + tc->args_emit, args_end - tc->args_emit);
                tc->args_emit = args_end;
                tc->sub = CS_TAIL;
            } else if (tc->depth <= 0) {
                *end = tc->scan + 1;
                tc->scan++;
                return true;
            }
        }
    }
    return false;
}

/* Streams what is certain in body[0..limit). */
static void call_progress(srv_tc *tc, size_t limit, bool *outer_closed, size_t *outer_end)
{
    if (tc->sub == CS_HEAD) {
        head_match hm;
        int r = match_head(tc->body.data, limit, &hm);
        if (r == M_FAIL) tc->sub = CS_WHOLE;
        if (r == M_MATCH) {
            emit_call(tc, SRV_PIECE_CALL_START, tc->body.data + hm.name_off, hm.name_len);
            tc->streamed = true;
            tc->sub = CS_ARGS;
            /* scan the head (depth 1 after the outer '{') up to the args '{' */
            tc->scan = 0;
            tc->depth = 0;
            tc->in_str = tc->esc = false;
            size_t dummy;
            scan_body(tc, hm.args_off, &dummy);
            tc->args_depth = tc->depth;
            tc->args_emit = hm.args_off;
        }
    }
    *outer_closed = scan_body(tc, limit, outer_end);
    if (tc->sub == CS_ARGS && tc->scan > tc->args_emit) {
        emit_call(tc, SRV_PIECE_CALL_ARGS, tc->body.data + tc->args_emit,
                  tc->scan - tc->args_emit);
        tc->args_emit = tc->scan;
    }
}

/* A call in another shape, complete in s[0..n): parse it whole. */
static bool emit_whole(srv_tc *tc, const char *s, size_t n)
{
    json_t *v = json_loadb(s, n, 0, NULL);
    const char *name = v ? json_string_value(json_object_get(v, "name")) : NULL;
    json_t *args = v ? json_object_get(v, "arguments") : NULL;
    if (!args && v) args = json_object_get(v, "parameters");
    bool ok = name && *name && strlen(name) <= SRV_TC_MAX_NAME_BYTES &&
              (!args || json_is_object(args) || json_is_string(args));
    if (ok) {
        buf a;
        buf_init(&a);
        if (json_is_string(args)) buf_append_str(&a, json_string_value(args));
        else if (args) srv_json_append(&a, args);
        else buf_append_str(&a, "{}");
        emit_call(tc, SRV_PIECE_CALL_START, name, strlen(name));
        emit_call(tc, SRV_PIECE_CALL_ARGS, a.data ? a.data : "{}", a.data ? a.len : 2);
        emit_call(tc, SRV_PIECE_CALL_END, NULL, 0);
        buf_fini(&a);
    }
    json_decref(v);
    return ok;
}

/* The call's text is complete in body[0..n). */
static void call_end(srv_tc *tc, size_t n, const char *open_marker, const char *close_marker)
{
    if (tc->streamed) {
        emit_call(tc, SRV_PIECE_CALL_END, NULL, 0);
    } else if (!emit_whole(tc, tc->body.data, n)) {
        buf t;
        buf_init(&t);
        buf_append_str(&t, open_marker);
        buf_append(&t, tc->body.data, n);
        buf_append_str(&t, close_marker);
        emit_text(tc, t.data, t.len);
        buf_fini(&t);
    }
    tc->st = tc->fmt == SRV_TOOLS_LLAMA3 ? TC_LLAMA_BETWEEN : TC_TEXT;
}

/* ---- HERMES ------------------------------------------------------------------ */

/* TEXT state: emit text, hold a possible partial "<tool_call>", enter a call. */
static bool hermes_text(srv_tc *tc)
{
    const char *s = tc->pend.data;
    size_t n = tc->pend.len;
    const char *m = memmem(s, n, HERMES_OPEN, strlen(HERMES_OPEN));
    size_t upto = m ? (size_t)(m - s) : n;
    size_t keep = 0;
    if (!m) { /* hold a suffix that may start the marker */
        for (size_t k = strlen(HERMES_OPEN) - 1; k > 0; k--)
            if (k <= n && !memcmp(s + n - k, HERMES_OPEN, k)) {
                keep = k;
                break;
            }
        upto = n - keep;
    }
    bool ws_after_call = tc->n_calls > 0 && all_space(s, upto);
    if (ws_after_call && !m) return true; /* hold it until something else comes */
    if (!ws_after_call) emit_text(tc, s, upto); /* (whitespace between calls is dropped) */
    if (!m) {
        memmove(tc->pend.data, s + upto, keep);
        tc->pend.len = keep;
        return true;
    }
    size_t after = upto + strlen(HERMES_OPEN);
    call_begin(tc);
    bool ok = buf_append(&tc->body, s + after, n - after);
    buf_clear(&tc->pend);
    return ok;
}

/* CALL state: look for </tool_call>, stream what is certain. */
static bool hermes_call(srv_tc *tc)
{
    const char *s = tc->body.data;
    size_t n = tc->body.len, cl = strlen(HERMES_CLOSE);
    const char *m = n ? memmem(s, n, HERMES_CLOSE, cl) : NULL;
    size_t limit = m ? (size_t)(m - s) : (n >= cl - 1 ? n - (cl - 1) : 0);
    bool closed;
    size_t oend;
    if (tc->sub != CS_WHOLE) call_progress(tc, limit, &closed, &oend);
    if (!m) {
        if (n > SRV_TC_MAX_CALL_BYTES) { /* runaway: give up on it as a call */
            call_end(tc, n, HERMES_OPEN, "");
            buf_clear(&tc->body);
        }
        return true;
    }
    size_t body_len = (size_t)(m - s), rest = n - body_len - cl;
    call_end(tc, body_len, HERMES_OPEN, HERMES_CLOSE);
    buf_clear(&tc->pend);
    bool ok = buf_append(&tc->pend, s + body_len + cl, rest);
    buf_clear(&tc->body);
    return ok && hermes_text(tc);
}

/* ---- LLAMA3 ------------------------------------------------------------------- */

/* Before any text / between calls: a call starts with '{' or <|python_tag|>. */
static bool llama_start(srv_tc *tc)
{
    const char *s = tc->pend.data;
    size_t n = tc->pend.len, i = 0;
    while (i < n && (isspace((unsigned char)s[i]) || (tc->st == TC_LLAMA_BETWEEN && s[i] == ';')))
        i++;
    if (i == n) return true; /* only whitespace so far: keep holding */
    size_t body_from;
    if (s[i] == '{') {
        body_from = i;
    } else {
        size_t tl = strlen(PY_TAG), have = n - i < tl ? n - i : tl;
        if (tc->st == TC_LLAMA_START && !memcmp(s + i, PY_TAG, have)) {
            if (have < tl) return true; /* maybe the tag: hold */
            body_from = skip_ws(s, n, i + tl);
        } else { /* plain text: from here on everything is text */
            tc->st = TC_TEXT;
            if (tc->n_calls == 0) emit_text(tc, s, n);
            else emit_text(tc, s + i, n - i);
            buf_clear(&tc->pend);
            return true;
        }
    }
    call_begin(tc);
    bool ok = buf_append(&tc->body, s + body_from, n - body_from);
    buf_clear(&tc->pend);
    return ok;
}

static bool llama_call(srv_tc *tc)
{
    bool closed = false;
    size_t end = 0;
    if (tc->sub != CS_WHOLE) {
        call_progress(tc, tc->body.len, &closed, &end);
    } else {
        closed = scan_body(tc, tc->body.len, &end);
    }
    if (!closed) {
        if (tc->body.len > SRV_TC_MAX_CALL_BYTES) {
            call_end(tc, tc->body.len, "", "");
            tc->st = TC_TEXT;
            buf_clear(&tc->body);
        }
        return true;
    }
    const char *s = tc->body.data;
    size_t n = tc->body.len;
    call_end(tc, end, "", "");
    buf_clear(&tc->pend);
    bool ok = buf_append(&tc->pend, s + end, n - end);
    buf_clear(&tc->body);
    return ok;
}

/* ---- driving ------------------------------------------------------------------- */

static bool step(srv_tc *tc)
{
    for (int guard = 0; guard < 1 << 20; guard++) {
        tc_state before = tc->st;
        size_t pend = tc->pend.len, body = tc->body.len;
        bool ok = true;
        switch (tc->st) {
        case TC_TEXT:
            if (tc->fmt == SRV_TOOLS_HERMES) ok = hermes_text(tc);
            else {
                emit_text(tc, tc->pend.data, tc->pend.len);
                buf_clear(&tc->pend);
            }
            break;
        case TC_LLAMA_START:
        case TC_LLAMA_BETWEEN: ok = llama_start(tc); break;
        case TC_CALL: ok = tc->fmt == SRV_TOOLS_HERMES ? hermes_call(tc) : llama_call(tc); break;
        }
        if (!ok) return false;
        if (tc->st == before && tc->pend.len == pend && tc->body.len == body) return true;
    }
    return true;
}

bool srv_tc_feed(srv_tc *tc, const char *text, size_t len)
{
    if (!len) return true;
    if (tc->fmt == SRV_TOOLS_NONE) {
        emit_text(tc, text, len);
        return true;
    }
    buf *dst = tc->st == TC_CALL ? &tc->body : &tc->pend;
    if (!buf_append(dst, text, len)) return false;
    return step(tc);
}

bool srv_tc_finish(srv_tc *tc)
{
    if (tc->fmt == SRV_TOOLS_NONE) return true;
    if (tc->st == TC_CALL) {
        const char *open = tc->fmt == SRV_TOOLS_HERMES ? HERMES_OPEN : "";
        bool closed;
        size_t end;
        if (tc->sub != CS_WHOLE) call_progress(tc, tc->body.len, &closed, &end); /* nothing is held back now */
        if (tc->streamed) {
            emit_call(tc, SRV_PIECE_CALL_END, NULL, 0);
        } else {
            call_end(tc, tc->body.len, open, "");
        }
        buf_clear(&tc->body);
        tc->st = TC_TEXT;
    }
    /* held text: a partial marker is text; whitespace after a call is dropped */
    if (tc->pend.len && !(tc->n_calls > 0 && all_space(tc->pend.data, tc->pend.len)))
        emit_text(tc, tc->pend.data, tc->pend.len);
    buf_clear(&tc->pend);
    return true;
}

/* ---- format names and detection ------------------------------------------- */

const char *srv_tool_format_name(srv_tool_format f)
{
    switch (f) {
    case SRV_TOOLS_HERMES: return "hermes";
    case SRV_TOOLS_LLAMA3: return "llama3";
    case SRV_TOOLS_NONE: break;
    }
    return "none";
}

srv_tool_format srv_tool_format_detect(const char *src)
{
    if (!src || !strstr(src, "tools")) return SRV_TOOLS_NONE;
    if (strstr(src, "<tool_call>")) return SRV_TOOLS_HERMES;
    if (strstr(src, "<|python_tag|>") || strstr(src, "\"parameters\"") ||
        strstr(src, "<|start_header_id|>"))
        return SRV_TOOLS_LLAMA3;
    return SRV_TOOLS_NONE;
}
