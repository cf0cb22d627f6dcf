/* api_anthropic.c - the Anthropic Messages API: request bodies of
 * /v1/messages and /v1/messages/count_tokens into srv_gen_req, and the
 * response shapes out of a generation.
 *
 * Requests: model, max_tokens (required for messages), system (a string or
 * text blocks), messages (user / assistant; content a string or blocks:
 * text, tool_use, tool_result; thinking blocks are skipped), temperature
 * (0..1), top_p, top_k, stop_sequences, stream, tools, tool_choice.
 * The conversation becomes the template's form: tool_result blocks become
 * role "tool" messages, tool_use blocks become the assistant's tool_calls.
 *
 * Streams follow the documented event order:
 *   message_start, content_block_start, ping, content_block_delta...,
 *   content_block_stop, (more blocks), message_delta, message_stop.
 * Blocks open lazily: text opens a text block, a tool call a tool_use block
 * whose input streams as input_json_delta fragments. message_delta carries
 * the final usage (input_tokens, output_tokens, cache_read_input_tokens,
 * cache_creation_input_tokens), which the SDK takes over message_start's.
 *
 * Thread: http.
 */
#include "server/srv_int.h"

#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* Requests                                                               */
/* ===================================================================== */

static bool oom(srv_error *e) { return srv_errorf(e, 500, NULL, NULL, "out of memory"); }

static bool push_msg(json_t *out, const char *role, const char *content, srv_error *e)
{
    json_t *m = json_pack("{s:s, s:s}", "role", role, "content", content);
    if (!m || json_array_append_new(out, m)) return oom(e);
    return true;
}

static bool parse_system(const json_t *body, json_t *out, srv_error *e)
{
    const json_t *sys = json_object_get(body, "system");
    if (!sys || json_is_null(sys)) return true;
    char *text = NULL;
    if (!srv_content_text(sys, "system", &text, e)) return false;
    bool ok = !*text || push_msg(out, "system", text, e);
    free(text);
    return ok;
}

/* A tool_result block -> {"role": "tool", "tool_call_id", "content"}. */
static bool tool_result(const json_t *blk, const char *where, json_t *out, srv_error *e)
{
    const char *id = json_string_value(json_object_get(blk, "tool_use_id"));
    if (!id) return srv_errorf(e, 400, NULL, where, "%s: tool_result needs a string tool_use_id", where);
    char *text = NULL;
    if (!srv_content_text(json_object_get(blk, "content"), where, &text, e)) return false;
    json_t *m = json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id", id, "content", text);
    free(text);
    if (!m || json_array_append_new(out, m)) return oom(e);
    return true;
}

/* A tool_use block -> an entry of the assistant's tool_calls. */
static bool tool_use(const json_t *blk, const char *where, json_t *calls, srv_error *e)
{
    const char *id = json_string_value(json_object_get(blk, "id"));
    const char *name = json_string_value(json_object_get(blk, "name"));
    const json_t *input = json_object_get(blk, "input");
    if (!id || !name || !json_is_object(input))
        return srv_errorf(e, 400, NULL, where,
                          "%s: tool_use needs string id and name and an object input", where);
    json_t *c = json_pack("{s:s, s:s, s:{s:s, s:O}}", "id", id, "type", "function", "function",
                          "name", name, "arguments", input);
    if (!c || json_array_append_new(calls, c)) return oom(e);
    return true;
}

/* One content block of message i. */
static bool content_block(const json_t *blk, const char *where, bool user, buf *text,
                          json_t *calls, json_t *out, srv_error *e)
{
    const char *type = json_string_value(json_object_get(blk, "type"));
    if (!json_is_object(blk) || !type)
        return srv_errorf(e, 400, NULL, where, "%s must be an object with a type", where);
    if (!strcmp(type, "text")) {
        const json_t *t = json_object_get(blk, "text");
        if (!json_is_string(t)) return srv_errorf(e, 400, NULL, where, "%s.text must be a string", where);
        return buf_append(text, json_string_value(t), json_string_length(t)) ? true : oom(e);
    }
    if (!strcmp(type, "tool_result") && user) return tool_result(blk, where, out, e);
    if (!strcmp(type, "tool_use") && !user) return tool_use(blk, where, calls, e);
    if (!strcmp(type, "thinking") || !strcmp(type, "redacted_thinking")) return true;
    return srv_errorf(e, 400, NULL, where, "%s: content block type '%.40s' is not supported here",
                      where, type);
}

static bool convert_message(const json_t *m, size_t i, json_t *out, srv_error *e)
{
    char where[64];
    snprintf(where, sizeof where, "messages.%zu", i);
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!json_is_object(m) || !role)
        return srv_errorf(e, 400, NULL, where, "%s must be an object with a role", where);
    bool user = !strcmp(role, "user");
    if (!user && strcmp(role, "assistant"))
        return srv_errorf(e, 400, NULL, where, "%s.role '%.32s' must be user or assistant", where, role);
    const json_t *content = json_object_get(m, "content");
    if (json_is_string(content)) return push_msg(out, role, json_string_value(content), e);
    if (!json_is_array(content))
        return srv_errorf(e, 400, NULL, where, "%s.content must be a string or an array of blocks", where);
    buf text;
    buf_init(&text);
    buf_append(&text, "", 0);
    json_t *calls = json_array();
    bool ok = calls != NULL;
    size_t n_before = json_array_size(out), k;
    const json_t *blk;
    json_array_foreach(content, k, blk) {
        char bw[96];
        snprintf(bw, sizeof bw, "%s.content.%zu", where, k);
        if (!(ok = content_block(blk, bw, user, &text, calls, out, e))) break;
    }
    /* a user turn of only tool results needs no empty user message after them */
    if (ok && (!user || text.len || json_array_size(out) == n_before))
        ok = push_msg(out, role, text.data ? text.data : "", e);
    if (ok && json_array_size(calls))
        json_object_set(json_array_get(out, json_array_size(out) - 1), "tool_calls", calls);
    json_decref(calls);
    buf_fini(&text);
    return ok;
}

static bool parse_messages(const json_t *body, srv_gen_req *r, srv_error *e)
{
    const json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs)) return srv_errorf(e, 400, NULL, "messages", "messages: an array is required");
    size_t n = json_array_size(msgs);
    if (n == 0) return srv_errorf(e, 400, NULL, "messages", "messages: at least one message is required");
    if (n > SRV_MAX_MESSAGES) return srv_errorf(e, 400, NULL, "messages", "at most %d messages", SRV_MAX_MESSAGES);
    r->messages = json_array();
    if (!r->messages) return oom(e);
    if (!parse_system(body, r->messages, e)) return false;
    for (size_t i = 0; i < n; i++)
        if (!convert_message(json_array_get(msgs, i), i, r->messages, e)) return false;
    return true;
}

static bool parse_tools(const json_t *body, srv_gen_req *r, srv_error *e)
{
    const json_t *tools = json_object_get(body, "tools");
    if (!tools || json_is_null(tools)) return true;
    if (!json_is_array(tools)) return srv_errorf(e, 400, NULL, "tools", "tools: must be an array");
    if (json_array_size(tools) > SRV_MAX_TOOLS) return srv_errorf(e, 400, NULL, "tools", "at most %d tools", SRV_MAX_TOOLS);
    if (!json_array_size(tools)) return true;
    r->tools = json_array();
    if (!r->tools) return oom(e);
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const char *type = json_string_value(json_object_get(t, "type"));
        if (type && strcmp(type, "custom"))
            return srv_errorf(e, 400, NULL, "tools", "tools.%zu: tool type '%.40s' is not supported", i, type);
        if (!srv_tool_add(r->tools, json_string_value(json_object_get(t, "name")),
                          json_object_get(t, "description"), json_object_get(t, "input_schema"), i,
                          "tools", e))
            return false;
    }
    r->tools_parse = true;
    const json_t *tc = json_object_get(body, "tool_choice");
    if (tc && !json_is_null(tc)) {
        const char *ty = json_string_value(json_object_get(tc, "type"));
        if (!ty || (strcmp(ty, "auto") && strcmp(ty, "any") && strcmp(ty, "tool") && strcmp(ty, "none")))
            return srv_errorf(e, 400, NULL, "tool_choice", "tool_choice.type must be auto, any, tool or none");
        if (!strcmp(ty, "none")) {
            r->tools_parse = false;
            json_decref(r->tools);
            r->tools = NULL;
        }
    }
    return true;
}

static bool parse_common(const json_t *body, const srv_parse_ctx *pc, bool need_max,
                         srv_gen_req *r, srv_error *e)
{
    r->kind = SRV_GEN_MESSAGES;
    const char *model_s = NULL;
    int64_t max_tokens = 0, top_k = 0;
    double t = 1, top_p = 1;
    if (!srv_get_str(body, "model", 256, &model_s, e)) return false;
    if (!model_s) return srv_errorf(e, 400, NULL, "model", "model: field required");
    r->model = sem_strdup(model_s);
    if (!r->model) return oom(e);
    if (need_max && !json_object_get(body, "max_tokens"))
        return srv_errorf(e, 400, NULL, "max_tokens", "max_tokens: field required");
    if (!srv_get_int(body, "max_tokens", 1, INT32_MAX, &max_tokens, e) ||
        !srv_get_num(body, "temperature", 0, 1, &t, e) ||
        !srv_get_num(body, "top_p", 0, 1, &top_p, e) ||
        !srv_get_int(body, "top_k", 0, 1 << 20, &top_k, e) ||
        !srv_get_bool(body, "stream", &r->stream, e) ||
        !srv_get_stops(body, "stop_sequences", r, e))
        return false;
    if (top_p <= 0) return srv_errorf(e, 400, NULL, "top_p", "top_p: must be > 0");
    const json_t *ss = json_object_get(body, "stop_sequences");
    if (ss && !json_is_null(ss) && !json_is_array(ss))
        return srv_errorf(e, 400, NULL, "stop_sequences", "stop_sequences: must be an array of strings");
    r->max_tokens = (int32_t)max_tokens;
    r->sampling.temperature = (float)t;
    r->sampling.top_p = (float)top_p;
    r->sampling.top_k = (int32_t)top_k;
    return parse_messages(body, r, e) && parse_tools(body, r, e) &&
           srv_get_agent(body, pc->header_agent, r, e) &&
           srv_get_test_completion(body, pc->test_hooks, r, e);
}

bool srv_anth_parse_messages(const json_t *body, const srv_parse_ctx *pc, srv_gen_req *r,
                             srv_error *e)
{
    return parse_common(body, pc, true, r, e);
}

bool srv_anth_parse_count(const json_t *body, const srv_parse_ctx *pc, srv_gen_req *r,
                          srv_error *e)
{
    return parse_common(body, pc, false, r, e);
}

/* ===================================================================== */
/* Responses                                                              */
/* ===================================================================== */

const char *srv_anth_stop_reason(const srv_done *d)
{
    if (d->finish == ENG_FINISH_LENGTH) return "max_tokens";
    if (d->tool_calls) return "tool_use";
    if (d->stop_string) return "stop_sequence";
    return "end_turn";
}

/* input_tokens counts what was neither read from nor written to the cache,
 * as Anthropic's usage does (total = input + cache_read + cache_creation). */
static json_t *usage(const srv_done *d, bool with_output)
{
    int32_t input = d->prompt_tokens - d->cached_tokens - d->cache_write_tokens;
    json_t *u = json_pack("{s:i, s:i, s:i}", "input_tokens", input < 0 ? 0 : input,
                          "cache_creation_input_tokens", d->cache_write_tokens,
                          "cache_read_input_tokens", d->cached_tokens);
    if (u && with_output) json_object_set_new(u, "output_tokens", json_integer(d->completion_tokens));
    return u;
}

static const char *model_name(const srv_gen *g)
{
    if (g->backend && g->backend->model_id) return g->backend->model_id;
    return g->req.model ? g->req.model : "default";
}

static void event(buf *out, const char *name, json_t *data)
{
    if (data) srv_sse_json(out, name, data);
    json_decref(data);
}

static void stream_start(srv_gen *g, buf *out)
{
    srv_done d = {0};
    d.prompt_tokens = g->prompt_tokens;
    json_t *u = usage(&d, true);
    event(out, "message_start",
          json_pack("{s:s, s:{s:s, s:s, s:s, s:[], s:s, s:n, s:n, s:o}}", "type", "message_start",
                    "message", "id", g->id, "type", "message", "role", "assistant", "content",
                    "model", model_name(g), "stop_reason", "stop_sequence", "usage", u));
}

static void block_stop(srv_gen *g, buf *out)
{
    if (g->anth_block < 0) return;
    event(out, "content_block_stop",
          json_pack("{s:s, s:i}", "type", "content_block_stop", "index", g->anth_block));
    g->anth_block = -1;
}

static void block_start(srv_gen *g, json_t *block, buf *out)
{
    block_stop(g, out);
    g->anth_block = g->anth_n_blocks++;
    event(out, "content_block_start",
          json_pack("{s:s, s:i, s:o}", "type", "content_block_start", "index", g->anth_block,
                    "content_block", block));
    if (g->anth_block == 0) event(out, "ping", json_pack("{s:s}", "type", "ping"));
}

static void delta(srv_gen *g, json_t *d, buf *out)
{
    event(out, "content_block_delta",
          json_pack("{s:s, s:i, s:o}", "type", "content_block_delta", "index", g->anth_block,
                    "delta", d));
}

static void stream_piece(srv_gen *g, const srv_piece *p, buf *out)
{
    switch (p->kind) {
    case SRV_PIECE_TEXT:
        if (g->anth_block < 0 || !g->anth_text_open) {
            block_start(g, json_pack("{s:s, s:s}", "type", "text", "text", ""), out);
            g->anth_text_open = true;
        }
        delta(g, json_pack("{s:s, s:o}", "type", "text_delta", "text", srv_json_text(p->text, p->len)), out);
        break;
    case SRV_PIECE_CALL_START:
        block_start(g, json_pack("{s:s, s:s, s:o, s:{}}", "type", "tool_use", "id",
                                 srv_gen_call_id(g, p->call_index), "name",
                                 srv_json_text(p->text, p->len), "input"),
                    out);
        g->anth_text_open = false;
        break;
    case SRV_PIECE_CALL_ARGS:
        delta(g, json_pack("{s:s, s:o}", "type", "input_json_delta", "partial_json",
                           srv_json_text(p->text, p->len)), out);
        break;
    case SRV_PIECE_CALL_END: block_stop(g, out); break;
    }
}

static void stream_done(srv_gen *g, const srv_done *d, buf *out)
{
    if (g->anth_n_blocks == 0) { /* an empty answer still has its (empty) text block */
        block_start(g, json_pack("{s:s, s:s}", "type", "text", "text", ""), out);
    }
    block_stop(g, out);
    event(out, "message_delta",
          json_pack("{s:s, s:{s:s, s:o}, s:o}", "type", "message_delta", "delta", "stop_reason",
                    srv_anth_stop_reason(d), "stop_sequence",
                    d->stop_string ? srv_json_text(d->stop_string, strlen(d->stop_string)) : json_null(),
                    "usage", usage(d, true)));
    event(out, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

static void stream_error(srv_gen *g, const srv_error *e, buf *out)
{
    (void)g;
    event(out, "error", srv_error_envelope(SRV_API_ANTHROPIC, e));
}

static json_t *tool_use_block(const srv_call_acc *c)
{
    json_t *input = c->args.len ? json_loadb(c->args.data, c->args.len, 0, NULL) : NULL;
    if (input && !json_is_object(input)) json_decref(input), input = NULL;
    return json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", c->id, "name",
                     c->name ? c->name : "", "input", input ? input : json_object());
}

static json_t *body(srv_gen *g, const srv_done *d)
{
    json_t *content = json_array();
    if (!content) return NULL;
    if (g->text.len || !g->n_calls)
        json_array_append_new(content, json_pack("{s:s, s:o}", "type", "text", "text",
                                                 srv_json_text(g->text.data ? g->text.data : "", g->text.len)));
    for (size_t i = 0; i < g->n_calls; i++) json_array_append_new(content, tool_use_block(&g->calls[i]));
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o}", "id", g->id, "type", "message",
                     "role", "assistant", "model", model_name(g), "content", content, "stop_reason",
                     srv_anth_stop_reason(d), "stop_sequence",
                     d->stop_string ? srv_json_text(d->stop_string, strlen(d->stop_string)) : json_null(),
                     "usage", usage(d, true));
}

const srv_fmt_ops srv_anth_messages_fmt = {
    .stream_start = stream_start,
    .stream_piece = stream_piece,
    .stream_done = stream_done,
    .stream_error = stream_error,
    .logprob = NULL,
    .body = body,
};
