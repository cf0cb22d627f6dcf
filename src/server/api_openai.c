/* api_openai.c - the OpenAI API: request bodies of /v1/chat/completions and
 * /v1/completions into srv_gen_req, and the response shapes (bodies and
 * stream chunks) out of a generation.
 *
 * Chat requests: messages (system, developer, user, assistant, tool) whose
 * content is a string or text parts; tools and tool_choice; max_tokens /
 * max_completion_tokens, temperature, top_p, top_k (extension), min_p
 * (extension), seed, frequency/presence/repetition penalties, logprobs and
 * top_logprobs, stop, n (1 only), stream and stream_options.include_usage.
 * Unknown fields are ignored, as the OpenAI SDKs send extras freely.
 *
 * Streams: a first chunk with the role, then content / tool_calls deltas
 * (each call's first delta has its index, id, type and name, later ones
 * only index and argument fragments), then a chunk with finish_reason, a
 * usage chunk (choices: []) when include_usage, and "data: [DONE]".
 *
 * Thread: http.
 */
#include "server/srv_int.h"

#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* Requests                                                               */
/* ===================================================================== */

#define OAI_MAX_MODEL_BYTES 256

static bool parse_model(const json_t *body, srv_gen_req *r, srv_error *e)
{
    const char *model_s = NULL;
    if (!srv_get_str(body, "model", OAI_MAX_MODEL_BYTES, &model_s, e)) return false;
    if (!model_s) return srv_errorf(e, 400, "missing_required_parameter", "model", "'model' is required");
    r->model = sem_strdup(model_s);
    return r->model ? true : srv_errorf(e, 500, NULL, NULL, "out of memory");
}

/* Sampling and length fields shared by chat and completions. */
static bool parse_sampling(const json_t *body, srv_gen_req *r, srv_error *e)
{
    double t = 1, top_p = 1, min_p = 0, fp = 0, pp = 0, rp = 1;
    int64_t top_k = 0, seed = 0, n = 1;
    const json_t *seed_v = json_object_get(body, "seed");
    if (!srv_get_num(body, "temperature", 0, 2, &t, e) ||
        !srv_get_num(body, "top_p", 0, 1, &top_p, e) ||
        !srv_get_int(body, "top_k", 0, 1 << 20, &top_k, e) ||
        !srv_get_num(body, "min_p", 0, 1, &min_p, e) ||
        !srv_get_num(body, "frequency_penalty", -2, 2, &fp, e) ||
        !srv_get_num(body, "presence_penalty", -2, 2, &pp, e) ||
        !srv_get_num(body, "repetition_penalty", 0.01, 10, &rp, e) ||
        !srv_get_int(body, "seed", INT64_MIN, INT64_MAX, &seed, e) ||
        !srv_get_int(body, "n", 1, 128, &n, e))
        return false;
    if (n != 1) return srv_errorf(e, 400, "unsupported_value", "n", "only n = 1 is supported");
    if (top_p <= 0) return srv_errorf(e, 400, "invalid_value", "top_p", "'top_p' must be > 0");
    r->sampling.temperature = (float)t;
    r->sampling.top_p = (float)top_p;
    r->sampling.top_k = (int32_t)top_k;
    r->sampling.min_p = (float)min_p;
    r->frequency_penalty = (float)fp;
    r->presence_penalty = (float)pp;
    r->repetition_penalty = (float)rp;
    r->seed_set = seed_v && !json_is_null(seed_v);
    r->seed = (uint64_t)seed;
    return srv_get_stops(body, "stop", r, e);
}

static bool parse_stream(const json_t *body, srv_gen_req *r, srv_error *e)
{
    if (!srv_get_bool(body, "stream", &r->stream, e)) return false;
    const json_t *so = json_object_get(body, "stream_options");
    if (!so || json_is_null(so)) return true;
    if (!json_is_object(so))
        return srv_errorf(e, 400, "invalid_type", "stream_options", "'stream_options' must be an object");
    if (!r->stream)
        return srv_errorf(e, 400, "invalid_value", "stream_options",
                          "'stream_options' is only allowed when 'stream' is true");
    return srv_get_bool(so, "include_usage", &r->include_usage, e);
}

static bool parse_max_tokens(const json_t *body, srv_gen_req *r, srv_error *e)
{
    int64_t a = 0, b = 0;
    if (!srv_get_int(body, "max_tokens", 1, INT32_MAX, &a, e) ||
        !srv_get_int(body, "max_completion_tokens", 1, INT32_MAX, &b, e))
        return false;
    r->max_tokens = (int32_t)(b ? b : a);
    return true;
}

/* ---- chat messages --------------------------------------------------------- */

static bool fail_oom(srv_error *e) { return srv_errorf(e, 500, NULL, NULL, "out of memory"); }

/* tool_calls of an assistant message -> the template's form (arguments as
 * an object when they parse, as HF templates expect). */
static bool convert_tool_calls(const json_t *calls, size_t mi, json_t *out_msg, srv_error *e)
{
    char where[64];
    snprintf(where, sizeof where, "messages[%zu].tool_calls", mi);
    if (!json_is_array(calls)) return srv_errorf(e, 400, "invalid_type", where, "%s must be an array", where);
    json_t *arr = json_array();
    if (!arr || json_object_set_new(out_msg, "tool_calls", arr)) return fail_oom(e);
    size_t i;
    const json_t *c;
    json_array_foreach(calls, i, c) {
        const json_t *fn = json_object_get(c, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        const json_t *args = json_object_get(fn, "arguments");
        if (!json_is_object(c) || !name || (args && !json_is_string(args) && !json_is_object(args)))
            return srv_errorf(e, 400, "invalid_type", where,
                              "%s[%zu] must be {\"id\", \"type\": \"function\", \"function\": "
                              "{\"name\": string, \"arguments\": string}}", where, i);
        json_t *a = NULL;
        if (json_is_string(args)) a = json_loads(json_string_value(args), 0, NULL);
        if (a && !json_is_object(a)) json_decref(a), a = NULL;
        if (!a) a = args ? json_deep_copy(args) : json_object();
        const json_t *id = json_object_get(c, "id");
        json_t *tc = json_pack("{s:s, s:{s:s, s:o}}", "type", "function", "function", "name", name,
                               "arguments", a);
        if (!tc) return fail_oom(e);
        if (json_is_string(id)) json_object_set(tc, "id", (json_t *)id);
        json_array_append_new(arr, tc);
    }
    return true;
}

static bool convert_message(const json_t *m, size_t i, json_t *out, srv_error *e)
{
    char where[48];
    snprintf(where, sizeof where, "messages[%zu]", i);
    if (!json_is_object(m)) return srv_errorf(e, 400, "invalid_type", where, "%s must be an object", where);
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!role) return srv_errorf(e, 400, "invalid_value", where, "%s.role must be a string", where);
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
    size_t k = 0;
    while (k < 5 && strcmp(role, roles[k])) k++;
    if (k == 5)
        return srv_errorf(e, 400, "invalid_value", where,
                          "%s.role '%.32s' is not one of system, developer, user, assistant, tool",
                          where, role);
    const json_t *content = json_object_get(m, "content");
    const json_t *calls = json_object_get(m, "tool_calls");
    bool has_calls = calls && !json_is_null(calls);
    if ((!content || json_is_null(content)) && !(k == 3 && has_calls))
        return srv_errorf(e, 400, "invalid_value", where, "%s.content is required", where);
    char cw[64];
    snprintf(cw, sizeof cw, "%s.content", where);
    char *text = NULL;
    if (!srv_content_text(content, cw, &text, e)) return false;
    json_t *o = json_pack("{s:s, s:s}", "role", k == 1 ? "system" : role, "content", text);
    free(text);
    if (!o || json_array_append_new(out, o)) return fail_oom(e);
    const json_t *name = json_object_get(m, "name");
    if (json_is_string(name)) json_object_set(o, "name", (json_t *)name);
    const json_t *tcid = json_object_get(m, "tool_call_id");
    if (k == 4 && json_is_string(tcid)) json_object_set(o, "tool_call_id", (json_t *)tcid);
    if (k == 3 && has_calls) return convert_tool_calls(calls, i, o, e);
    return true;
}

static bool parse_messages(const json_t *body, srv_gen_req *r, srv_error *e)
{
    const json_t *msgs = json_object_get(body, "messages");
    if (!msgs || json_is_null(msgs))
        return srv_errorf(e, 400, "missing_required_parameter", "messages", "'messages' is required");
    if (!json_is_array(msgs)) return srv_errorf(e, 400, "invalid_type", "messages", "'messages' must be an array");
    size_t n = json_array_size(msgs);
    if (n == 0) return srv_errorf(e, 400, "invalid_value", "messages", "'messages' must not be empty");
    if (n > SRV_MAX_MESSAGES)
        return srv_errorf(e, 400, "invalid_value", "messages", "at most %d messages", SRV_MAX_MESSAGES);
    r->messages = json_array();
    if (!r->messages) return fail_oom(e);
    for (size_t i = 0; i < n; i++)
        if (!convert_message(json_array_get(msgs, i), i, r->messages, e)) return false;
    return true;
}

/* ---- tools ------------------------------------------------------------------ */

static bool tool_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool srv_tool_add(json_t *tools, const char *name, const json_t *description,
                  const json_t *parameters, size_t i, const char *what, srv_error *e)
{
    if (!name || !tool_name_ok(name))
        return srv_errorf(e, 400, "invalid_value", what,
                          "%s[%zu]: the function name must match [A-Za-z0-9_-]{1,64}", what, i);
    if (description && !json_is_null(description) && !json_is_string(description))
        return srv_errorf(e, 400, "invalid_type", what, "%s[%zu]: description must be a string", what, i);
    if (parameters && !json_is_null(parameters) && !json_is_object(parameters))
        return srv_errorf(e, 400, "invalid_type", what, "%s[%zu]: parameters must be an object", what, i);
    json_t *fn = json_pack("{s:s}", "name", name);
    if (!fn) return fail_oom(e);
    if (json_is_string(description)) json_object_set(fn, "description", (json_t *)description);
    json_object_set_new(fn, "parameters",
                        json_is_object(parameters) ? json_deep_copy(parameters)
                                                   : json_pack("{s:s, s:{}}", "type", "object", "properties"));
    json_t *t = json_pack("{s:s, s:o}", "type", "function", "function", fn);
    if (!t || json_array_append_new(tools, t)) return fail_oom(e);
    return true;
}

static bool parse_tool_choice(const json_t *body, srv_gen_req *r, srv_error *e)
{
    const json_t *tc = json_object_get(body, "tool_choice");
    if (!tc || json_is_null(tc)) return true;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (!strcmp(s, "none")) r->tools_parse = false;
        else if (strcmp(s, "auto") && strcmp(s, "required"))
            return srv_errorf(e, 400, "invalid_value", "tool_choice",
                              "'tool_choice' must be none, auto, required or a function");
        return true;
    }
    if (!json_is_object(tc) || !json_is_string(json_object_get(json_object_get(tc, "function"), "name")))
        return srv_errorf(e, 400, "invalid_value", "tool_choice",
                          "'tool_choice' must be none, auto, required or {\"type\": \"function\", "
                          "\"function\": {\"name\": ...}}");
    return true;
}

static bool parse_tools(const json_t *body, srv_gen_req *r, srv_error *e)
{
    const json_t *tools = json_object_get(body, "tools");
    if (!tools || json_is_null(tools)) return true;
    if (!json_is_array(tools)) return srv_errorf(e, 400, "invalid_type", "tools", "'tools' must be an array");
    if (json_array_size(tools) > SRV_MAX_TOOLS)
        return srv_errorf(e, 400, "invalid_value", "tools", "at most %d tools", SRV_MAX_TOOLS);
    if (!json_array_size(tools)) return true;
    r->tools = json_array();
    if (!r->tools) return fail_oom(e);
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const char *type = json_string_value(json_object_get(t, "type"));
        const json_t *fn = json_object_get(t, "function");
        if (!type || strcmp(type, "function") || !json_is_object(fn))
            return srv_errorf(e, 400, "invalid_value", "tools",
                              "tools[%zu] must be {\"type\": \"function\", \"function\": {...}}", i);
        if (!srv_tool_add(r->tools, json_string_value(json_object_get(fn, "name")),
                          json_object_get(fn, "description"), json_object_get(fn, "parameters"), i,
                          "tools", e))
            return false;
    }
    r->tools_parse = true;
    if (!parse_tool_choice(body, r, e)) return false;
    if (!r->tools_parse) { /* tool_choice none: do not even show them */
        json_decref(r->tools);
        r->tools = NULL;
    }
    return true;
}

static bool parse_logprobs_chat(const json_t *body, srv_gen_req *r, srv_error *e)
{
    int64_t top = 0;
    if (!srv_get_bool(body, "logprobs", &r->logprobs, e) ||
        !srv_get_int(body, "top_logprobs", 0, ENG_MAX_TOP_LOGPROBS, &top, e))
        return false;
    if (top && !r->logprobs)
        return srv_errorf(e, 400, "invalid_value", "top_logprobs",
                          "'top_logprobs' needs 'logprobs' set to true");
    r->top_logprobs = (int32_t)top;
    return true;
}

static bool parse_response_format(const json_t *body, srv_error *e)
{
    const json_t *rf = json_object_get(body, "response_format");
    if (!rf || json_is_null(rf)) return true;
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!type || strcmp(type, "text"))
        return srv_errorf(e, 400, "unsupported_value", "response_format",
                          "only response_format {\"type\": \"text\"} is supported");
    return true;
}

bool srv_oai_parse_chat(const json_t *body, const srv_parse_ctx *pc, srv_gen_req *r,
                        srv_error *e)
{
    r->kind = SRV_GEN_CHAT;
    return parse_model(body, r, e) && parse_messages(body, r, e) && parse_sampling(body, r, e) &&
           parse_max_tokens(body, r, e) && parse_stream(body, r, e) &&
           parse_logprobs_chat(body, r, e) && parse_tools(body, r, e) &&
           parse_response_format(body, e) && srv_get_agent(body, pc->header_agent, r, e) &&
           srv_get_test_completion(body, pc->test_hooks, r, e);
}

/* ---- completions ---------------------------------------------------------- */

static bool parse_prompt_ids(const json_t *arr, srv_gen_req *r, srv_error *e)
{
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return srv_errorf(e, 400, "invalid_value", "prompt",
                              "prompt[%zu] must be a token id (a non-negative integer)", i);
        if (!tok_ids_push(&r->prompt_ids, (tok_id)json_integer_value(v))) return fail_oom(e);
    }
    return true;
}

static bool parse_prompt(const json_t *body, srv_gen_req *r, srv_error *e)
{
    const json_t *p = json_object_get(body, "prompt");
    if (!p || json_is_null(p)) return srv_errorf(e, 400, "missing_required_parameter", "prompt", "'prompt' is required");
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0); /* a batch of one */
    if (json_is_string(p)) {
        if (!json_string_length(p)) return srv_errorf(e, 400, "invalid_value", "prompt", "'prompt' must not be empty");
        r->prompt = sem_strdup(json_string_value(p));
        return r->prompt ? true : fail_oom(e);
    }
    if (json_is_array(p) && json_array_size(p) > 0 && json_is_integer(json_array_get(p, 0)))
        return parse_prompt_ids(p, r, e);
    return srv_errorf(e, 400, "invalid_value", "prompt",
                      "'prompt' must be a non-empty string or token list (batches are not supported)");
}

bool srv_oai_parse_completion(const json_t *body, const srv_parse_ctx *pc, srv_gen_req *r,
                              srv_error *e)
{
    r->kind = SRV_GEN_COMPLETION;
    int64_t lp = -1, best_of = 1;
    bool echo = false;
    const json_t *suffix = json_object_get(body, "suffix");
    if (!parse_model(body, r, e) || !parse_prompt(body, r, e) || !parse_sampling(body, r, e) ||
        !parse_max_tokens(body, r, e) || !parse_stream(body, r, e) ||
        !srv_get_int(body, "logprobs", 0, 5, &lp, e) || !srv_get_bool(body, "echo", &echo, e) ||
        !srv_get_int(body, "best_of", 1, 1, &best_of, e) ||
        !srv_get_agent(body, pc->header_agent, r, e) ||
        !srv_get_test_completion(body, pc->test_hooks, r, e))
        return false;
    if (echo) return srv_errorf(e, 400, "unsupported_value", "echo", "'echo' is not supported");
    if (suffix && !json_is_null(suffix))
        return srv_errorf(e, 400, "unsupported_value", "suffix", "'suffix' is not supported");
    r->logprobs = lp >= 0;
    r->top_logprobs = lp > 0 ? (int32_t)lp : 0;
    return true;
}

/* ===================================================================== */
/* Responses                                                              */
/* ===================================================================== */

const char *srv_oai_finish_reason(const srv_done *d)
{
    if (d->finish == ENG_FINISH_LENGTH) return "length";
    if (d->tool_calls) return "tool_calls";
    return "stop";
}

json_t *srv_oai_usage(const srv_done *d)
{
    return json_pack("{s:i, s:i, s:i, s:{s:i}, s:{s:i}}", "prompt_tokens", d->prompt_tokens,
                     "completion_tokens", d->completion_tokens, "total_tokens",
                     d->prompt_tokens + d->completion_tokens, "prompt_tokens_details",
                     "cached_tokens", d->cached_tokens, "completion_tokens_details",
                     "reasoning_tokens", 0);
}

static const char *model_name(const srv_gen *g)
{
    if (g->backend && g->backend->model_id) return g->backend->model_id;
    return g->req.model ? g->req.model : "default";
}

/* {id, object, created, model, choices: [choice]} (+ usage: null in streams
 * with include_usage, as OpenAI sends). */
static json_t *envelope(srv_gen *g, const char *object, json_t *choice)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:[o]}", "id", g->id, "object", object,
                          "created", (json_int_t)g->created_s, "model", model_name(g),
                          "system_fingerprint", "semantic", "choices", choice);
    if (o && g->req.stream && g->req.include_usage) json_object_set_new(o, "usage", json_null());
    return o;
}

static void emit(buf *out, json_t *chunk)
{
    if (chunk) srv_sse_json(out, NULL, chunk);
    json_decref(chunk);
}

/* ---- logprobs -------------------------------------------------------------- */

static void chat_logprob(srv_gen *g, const eng_event *tok)
{
    json_t *bytes = NULL;
    json_t *text = srv_gen_token_text(g, tok->token, &bytes); /* sets bytes: not inside json_pack's arguments */
    json_t *ent = json_pack("{s:o, s:f, s:o, s:[]}", "token", text, "logprob", (double)tok->logprob,
                            "bytes", bytes ? bytes : json_array(), "top_logprobs");
    if (!ent) return;
    json_t *top = json_object_get(ent, "top_logprobs");
    for (int32_t i = 0; i < tok->n_top && i < ENG_MAX_TOP_LOGPROBS; i++) {
        json_t *tb = NULL;
        json_t *tt = srv_gen_token_text(g, tok->top[i].id, &tb);
        json_t *alt = json_pack("{s:o, s:f, s:o}", "token", tt, "logprob", (double)tok->top[i].logprob,
                                "bytes", tb ? tb : json_array());
        if (alt) json_array_append_new(top, alt);
    }
    json_array_append_new(g->req.stream ? g->pending_lp : g->logprobs, ent);
}

/* Takes the pending stream logprobs as {"content": [...]}, or null. */
static json_t *take_pending_chat_lp(srv_gen *g)
{
    if (!g->req.logprobs || !json_array_size(g->pending_lp)) return json_null();
    json_t *lp = json_pack("{s:O}", "content", g->pending_lp);
    json_array_clear(g->pending_lp);
    return lp ? lp : json_null();
}

/* ---- chat ---------------------------------------------------------------- */

static json_t *chat_choice(json_t *delta, json_t *logprobs, const char *finish)
{
    return json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "delta", delta, "logprobs", logprobs,
                     "finish_reason", finish ? json_string(finish) : json_null());
}

static void chat_stream_start(srv_gen *g, buf *out)
{
    emit(out, envelope(g, "chat.completion.chunk",
                       chat_choice(json_pack("{s:s, s:s}", "role", "assistant", "content", ""),
                                   json_null(), NULL)));
}

static void chat_stream_piece(srv_gen *g, const srv_piece *p, buf *out)
{
    json_t *delta = NULL;
    switch (p->kind) {
    case SRV_PIECE_TEXT: delta = json_pack("{s:o}", "content", srv_json_text(p->text, p->len)); break;
    case SRV_PIECE_CALL_START:
        delta = json_pack("{s:[{s:i, s:s, s:s, s:{s:o, s:s}}]}", "tool_calls", "index",
                          p->call_index, "id", srv_gen_call_id(g, p->call_index), "type",
                          "function", "function", "name", srv_json_text(p->text, p->len),
                          "arguments", "");
        break;
    case SRV_PIECE_CALL_ARGS:
        delta = json_pack("{s:[{s:i, s:{s:o}}]}", "tool_calls", "index", p->call_index,
                          "function", "arguments", srv_json_text(p->text, p->len));
        break;
    case SRV_PIECE_CALL_END: return;
    }
    if (delta) emit(out, envelope(g, "chat.completion.chunk", chat_choice(delta, take_pending_chat_lp(g), NULL)));
}

static void stream_usage_and_done(srv_gen *g, const srv_done *d, buf *out)
{
    if (g->req.include_usage) {
        json_t *u = json_pack("{s:s, s:s, s:I, s:s, s:s, s:[], s:o}", "id", g->id, "object",
                              g->req.kind == SRV_GEN_CHAT ? "chat.completion.chunk" : "text_completion",
                              "created", (json_int_t)g->created_s, "model", model_name(g),
                              "system_fingerprint", "semantic", "choices", "usage", srv_oai_usage(d));
        emit(out, u);
    }
    srv_sse_raw(out, NULL, "[DONE]");
}

static void chat_stream_done(srv_gen *g, const srv_done *d, buf *out)
{
    emit(out, envelope(g, "chat.completion.chunk",
                       chat_choice(json_object(), take_pending_chat_lp(g), srv_oai_finish_reason(d))));
    stream_usage_and_done(g, d, out);
}

static void oai_stream_error(srv_gen *g, const srv_error *e, buf *out)
{
    (void)g;
    json_t *env = srv_error_envelope(SRV_API_OPENAI, e);
    emit(out, env);
    srv_sse_raw(out, NULL, "[DONE]");
}

static json_t *chat_tool_calls(srv_gen *g)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < g->n_calls && arr; i++) {
        const srv_call_acc *c = &g->calls[i];
        json_t *tc = json_pack("{s:s, s:s, s:{s:s, s:o}}", "id", c->id, "type", "function",
                               "function", "name", c->name ? c->name : "", "arguments",
                               srv_json_text(c->args.data ? c->args.data : "{}",
                                             c->args.data ? c->args.len : 2));
        if (tc) json_array_append_new(arr, tc);
    }
    return arr;
}

static json_t *chat_body(srv_gen *g, const srv_done *d)
{
    bool calls = g->n_calls > 0;
    json_t *content = calls && !g->text.len ? json_null()
                                            : srv_json_text(g->text.data ? g->text.data : "", g->text.len);
    json_t *msg = json_pack("{s:s, s:o, s:n}", "role", "assistant", "content", content, "refusal");
    if (msg && calls) json_object_set_new(msg, "tool_calls", chat_tool_calls(g));
    json_t *lp = g->req.logprobs ? json_pack("{s:O}", "content", g->logprobs) : json_null();
    json_t *choice = json_pack("{s:i, s:o, s:o, s:s}", "index", 0, "message", msg, "logprobs", lp,
                               "finish_reason", srv_oai_finish_reason(d));
    json_t *o = envelope(g, "chat.completion", choice);
    if (o) json_object_set_new(o, "usage", srv_oai_usage(d));
    return o;
}

const srv_fmt_ops srv_oai_chat_fmt = {
    .stream_start = chat_stream_start,
    .stream_piece = chat_stream_piece,
    .stream_done = chat_stream_done,
    .stream_error = oai_stream_error,
    .logprob = chat_logprob,
    .body = chat_body,
};

/* ---- completions (legacy text) --------------------------------------------- */

/* Completions logprobs: {tokens, token_logprobs, top_logprobs, text_offset}. */
static void cmpl_logprob(srv_gen *g, const eng_event *tok)
{
    json_t *tops = json_object();
    for (int32_t i = 0; i < tok->n_top && tops; i++) {
        json_t *t = srv_gen_token_text(g, tok->top[i].id, NULL);
        if (t) json_object_set_new(tops, json_string_value(t), json_real(tok->top[i].logprob));
        json_decref(t);
    }
    json_t *ent = json_pack("{s:o, s:f, s:o}", "token", srv_gen_token_text(g, tok->token, NULL),
                            "logprob", (double)tok->logprob, "top", tops ? tops : json_object());
    if (ent) json_array_append_new(g->req.stream ? g->pending_lp : g->logprobs, ent);
}

static json_t *cmpl_logprobs_json(srv_gen *g, json_t *ents, size_t text_base)
{
    if (!g->req.logprobs) return json_null();
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = text_base, i;
    json_t *ent;
    json_array_foreach(ents, i, ent) {
        json_t *t = json_object_get(ent, "token");
        json_array_append(toks, t);
        json_array_append(lps, json_object_get(ent, "logprob"));
        json_array_append(tops, json_object_get(ent, "top"));
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += json_string_length(t);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs",
                     tops, "text_offset", offs);
}

static json_t *cmpl_choice(json_t *text, json_t *logprobs, const char *finish)
{
    return json_pack("{s:o, s:i, s:o, s:o}", "text", text, "index", 0, "logprobs", logprobs,
                     "finish_reason", finish ? json_string(finish) : json_null());
}

static void cmpl_stream_start(srv_gen *g, buf *out) { (void)g, (void)out; }

static void cmpl_stream_piece(srv_gen *g, const srv_piece *p, buf *out)
{
    if (p->kind != SRV_PIECE_TEXT) return;
    json_t *lp = cmpl_logprobs_json(g, g->pending_lp, g->text.len);
    json_array_clear(g->pending_lp);
    buf_append(&g->text, p->text, p->len); /* streams keep the text only for offsets */
    emit(out, envelope(g, "text_completion", cmpl_choice(srv_json_text(p->text, p->len), lp, NULL)));
}

static void cmpl_stream_done(srv_gen *g, const srv_done *d, buf *out)
{
    json_t *lp = json_array_size(g->pending_lp) ? cmpl_logprobs_json(g, g->pending_lp, g->text.len)
                                                : json_null();
    emit(out, envelope(g, "text_completion",
                       cmpl_choice(json_string(""), lp, srv_oai_finish_reason(d))));
    stream_usage_and_done(g, d, out);
}

static json_t *cmpl_body(srv_gen *g, const srv_done *d)
{
    json_t *choice = cmpl_choice(srv_json_text(g->text.data ? g->text.data : "", g->text.len),
                                 cmpl_logprobs_json(g, g->logprobs, 0), srv_oai_finish_reason(d));
    json_t *o = envelope(g, "text_completion", choice);
    if (o) json_object_set_new(o, "usage", srv_oai_usage(d));
    return o;
}

const srv_fmt_ops srv_oai_completion_fmt = {
    .stream_start = cmpl_stream_start,
    .stream_piece = cmpl_stream_piece,
    .stream_done = cmpl_stream_done,
    .stream_error = oai_stream_error,
    .logprob = cmpl_logprob,
    .body = cmpl_body,
};
