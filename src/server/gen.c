/* gen.c - one generation: the engine request and the response state that
 * turns its events into an API's response.
 *
 * Flow: srv_gen_create (request moved in) -> srv_gen_submit (eng_submit
 * with on_event) -> srv_gen_pump whenever on_event has woken the HTTP side
 * -> events go through the tool-call parser -> pieces go to the API's
 * formatter (SSE for streams) or into accumulators (text, calls, logprobs)
 * that the formatter turns into one JSON body at DONE.
 *
 * srv_gen_on_event is public so tests drive the formatters with synthetic
 * events, without an engine.
 *
 * Thread: the HTTP thread that owns the connection (one at a time; MHD
 * never runs two callbacks of one connection at once). The engine only
 * calls the on_event hook, which is the HTTP layer's, not this file's.
 */
#include "server/srv_int.h"

#include <stdlib.h>
#include <string.h>

static void on_piece(void *ctx, const srv_piece *p);

srv_gen *srv_gen_create(const srv_fmt_ops *fmt, srv_gen_req *req, const srv_backend *b,
                        srv_idgen *ids, srv_metrics *metrics)
{
    srv_gen *g = sem_calloc(1, sizeof *g);
    if (!g) return NULL;
    g->fmt = fmt;
    g->req = *req;
    srv_gen_req_init(req); /* moved */
    g->backend = b;
    g->ids = ids;
    g->metrics = metrics;
    static const char *const prefix[] = {"chatcmpl-", "cmpl-", "msg_"};
    srv_idgen_str(ids, prefix[g->req.kind], g->id, sizeof g->id);
    g->created_s = (int64_t)(clk_wall_ms() / 1000);
    buf_init(&g->text);
    g->anth_block = -1;
    srv_tool_format tf = g->req.tools_parse && b ? b->tool_format : SRV_TOOLS_NONE;
    g->tc = srv_tc_create(tf, on_piece, g);
    g->logprobs = json_array();
    g->pending_lp = json_array();
    if (!g->tc || !g->logprobs || !g->pending_lp) {
        srv_gen_destroy(g);
        return NULL;
    }
    return g;
}

void srv_gen_destroy(srv_gen *g)
{
    if (!g) return;
    if (g->er) eng_request_release(g->er);
    srv_gen_req_fini(&g->req);
    srv_tc_destroy(g->tc);
    buf_fini(&g->text);
    for (size_t i = 0; i < g->n_calls; i++) {
        free(g->calls[i].name);
        buf_fini(&g->calls[i].args);
    }
    free(g->calls);
    json_decref(g->logprobs);
    json_decref(g->pending_lp);
    json_decref(g->result);
    free(g->stop_string);
    free(g);
}

/* ---- budget and submission -------------------------------------------------- */

bool srv_gen_budget(int32_t n_prompt, int32_t req_max, int32_t default_max, int32_t max_ctx,
                    int32_t *out, srv_error *e)
{
    if (n_prompt <= 0) return srv_errorf(e, 400, "invalid_value", NULL, "the prompt is empty");
    if (n_prompt >= max_ctx)
        return srv_errorf(e, 400, "context_length_exceeded", "messages",
                          "this model's maximum context length is %d tokens, but the prompt has "
                          "%d tokens (no room for a completion)",
                          (int)max_ctx, (int)n_prompt);
    int32_t room = max_ctx - n_prompt;
    if (req_max > 0) {
        if (req_max > room)
            return srv_errorf(e, 400, "context_length_exceeded", "max_tokens",
                              "this model's maximum context length is %d tokens; you requested "
                              "%lld tokens (%d in the prompt, %d for the completion)",
                              (int)max_ctx, (long long)n_prompt + req_max, (int)n_prompt,
                              (int)req_max);
        *out = req_max;
        return true;
    }
    *out = default_max > 0 && default_max < room ? default_max : room;
    return true;
}

bool srv_gen_submit(srv_gen *g, const tok_ids *prompt, const srv_submit_opts *o, srv_error *e)
{
    const srv_backend *b = g->backend;
    int32_t n_prompt = prompt->len > INT32_MAX ? INT32_MAX : (int32_t)prompt->len;
    int32_t max_tokens;
    if (!srv_gen_budget(n_prompt, g->req.max_tokens, o->default_max_tokens, b->max_ctx,
                        &max_tokens, e))
        return false;
    tok_ids forced;
    tok_ids_init(&forced);
    if (g->req.test_completion) {
        sem_err err;
        sem_err_clear(&err);
        const char *t = g->req.test_completion;
        if (tok_encode(b->tok, NULL, t, strlen(t), false, &forced, &err) != SEM_OK) {
            tok_ids_fini(&forced);
            return srv_error_from(e, &err, "semantic_test_completion");
        }
    }
    eng_request_params p = eng_request_default_params();
    p.prompt = prompt->data;
    p.n_prompt = prompt->len;
    p.max_tokens = max_tokens;
    p.sampling = g->req.sampling;
    p.seed = g->req.seed_set ? g->req.seed : srv_idgen_u64(g->ids);
    p.frequency_penalty = g->req.frequency_penalty;
    p.presence_penalty = g->req.presence_penalty;
    p.repetition_penalty = g->req.repetition_penalty;
    p.logprobs = g->req.logprobs;
    p.top_logprobs = g->req.top_logprobs;
    p.stop = (const char *const *)g->req.stop;
    p.n_stop = g->req.n_stop;
    p.queue_timeout_ms = o->queue_timeout_ms;
    p.agent_id = g->req.agent_id[0] ? g->req.agent_id : NULL;
    p.forced = forced.len ? forced.data : NULL;
    p.n_forced = forced.len;
    p.on_event = o->on_event;
    p.on_event_ctx = o->on_event_ctx;
    sem_err err;
    sem_err_clear(&err);
    sem_status st = eng_submit(b->eng, &p, &g->er, &err);
    tok_ids_fini(&forced);
    if (st != SEM_OK) return srv_error_from(e, &err, NULL);
    g->prompt_tokens = n_prompt;
    g->t_submit_s = clk_now_s();
    return true;
}

/* ---- events -> pieces -> formatter ------------------------------------------ */

static srv_call_acc *call_new(srv_gen *g)
{
    if (g->n_calls == g->cap_calls) {
        size_t cap = g->cap_calls ? g->cap_calls * 2 : 4;
        srv_call_acc *c = realloc(g->calls, cap * sizeof *c);
        if (!c) return NULL;
        g->calls = c;
        g->cap_calls = cap;
    }
    srv_call_acc *c = &g->calls[g->n_calls++];
    memset(c, 0, sizeof *c);
    buf_init(&c->args);
    return c;
}

/* The id of tool call i, made once (streams and bodies agree). */
const char *srv_gen_call_id(srv_gen *g, int32_t i)
{
    while (g->n_calls <= (size_t)i)
        if (!call_new(g)) return "call_oom";
    srv_call_acc *c = &g->calls[i];
    if (!c->id[0])
        srv_idgen_str(g->ids, g->req.kind == SRV_GEN_MESSAGES ? "toolu_" : "call_", c->id,
                      sizeof c->id);
    return c->id;
}

static void on_piece(void *ctx, const srv_piece *p)
{
    srv_gen *g = ctx;
    if (p->kind == SRV_PIECE_CALL_START) g->done.tool_calls = true;
    if (g->req.stream) {
        g->fmt->stream_piece(g, p, g->stream_out);
        return;
    }
    switch (p->kind) {
    case SRV_PIECE_TEXT: buf_append(&g->text, p->text, p->len); break;
    case SRV_PIECE_CALL_START: {
        srv_gen_call_id(g, p->call_index);
        if ((size_t)p->call_index < g->n_calls) {
            srv_call_acc *c = &g->calls[p->call_index];
            free(c->name);
            c->name = strndup(p->text, p->len);
        }
        break;
    }
    case SRV_PIECE_CALL_ARGS:
        if ((size_t)p->call_index < g->n_calls)
            buf_append(&g->calls[p->call_index].args, p->text, p->len);
        break;
    case SRV_PIECE_CALL_END: break;
    }
}

static void note_token_time(srv_gen *g)
{
    double now = clk_now_s();
    if (g->n_tokens == 1) {
        g->t_first_s = now;
        if (g->t_submit_s > 0) srv_metrics_ttft(g->metrics, now - g->t_submit_s);
    } else if (g->t_last_s > 0) {
        srv_metrics_inter_token(g->metrics, now - g->t_last_s);
    }
    g->t_last_s = now;
}

static void finish_error(srv_gen *g, const eng_event *ev, buf *out)
{
    srv_error e;
    switch (ev->finish) {
    case ENG_FINISH_TIMEOUT:
        srv_errorf(&e, 503, "queue_timeout", NULL,
                   "the request was not admitted within the queue timeout; retry later");
        e.retry_after_s = 1;
        break;
    case ENG_FINISH_CANCELLED:
        srv_errorf(&e, 503, "cancelled", NULL, "the request was cancelled (client gone or server shutting down)");
        break;
    default:
        srv_errorf(&e, srv_http_status_for(ev->status ? ev->status : SEM_EIO), NULL, NULL,
                   "generation failed: %s", ev->message[0] ? ev->message : "engine error");
        break;
    }
    srv_gen_fail(g, &e, out);
}

static void on_done(srv_gen *g, const eng_event *ev, buf *out)
{
    if (ev->text_len) srv_tc_feed(g->tc, ev->text, ev->text_len); /* text held back until the end */
    srv_tc_finish(g->tc);
    srv_done *d = &g->done;
    d->finish = ev->finish;
    free(g->stop_string);
    g->stop_string = ev->stop_string ? sem_strdup(ev->stop_string) : NULL;
    d->stop_string = g->stop_string;
    d->prompt_tokens = ev->prompt_tokens ? ev->prompt_tokens : g->prompt_tokens;
    d->cached_tokens = ev->cached_tokens;
    d->cache_write_tokens = ev->cache_write_tokens;
    d->cache_hit = ev->cache_hit;
    d->completion_tokens = ev->completion_tokens;
    srv_metrics_add(g->metrics, SRV_C_PROMPT_TOKENS, (uint64_t)(d->prompt_tokens > 0 ? d->prompt_tokens : 0));
    srv_metrics_add(g->metrics, SRV_C_COMPLETION_TOKENS,
                    (uint64_t)(d->completion_tokens > 0 ? d->completion_tokens : 0));
    srv_metrics_add(g->metrics, SRV_C_CACHED_TOKENS, (uint64_t)(d->cached_tokens > 0 ? d->cached_tokens : 0));
    srv_metrics_cache(g->metrics, ev->cache_hit == CACHE_HOT    ? SRV_TIER_HOT
                                  : ev->cache_hit == CACHE_WARM ? SRV_TIER_WARM
                                                                : SRV_TIER_COLD);
    if (ev->finish != ENG_FINISH_STOP && ev->finish != ENG_FINISH_LENGTH) {
        finish_error(g, ev, out);
        return;
    }
    if (g->req.stream) g->fmt->stream_done(g, d, out);
    else g->result = g->fmt->body(g, d);
    g->finished = true;
}

void srv_gen_on_event(srv_gen *g, const eng_event *ev, buf *out)
{
    if (g->finished) return;
    g->stream_out = out;
    if (ev->kind == ENG_EV_TOKEN) {
        g->n_tokens++;
        note_token_time(g);
        if (g->req.logprobs && g->fmt->logprob) g->fmt->logprob(g, ev);
        srv_tc_feed(g->tc, ev->text ? ev->text : "", ev->text_len);
    } else {
        on_done(g, ev, out);
    }
    g->stream_out = NULL;
}

void srv_gen_fail(srv_gen *g, const srv_error *e, buf *out)
{
    if (g->finished) return;
    g->error = *e;
    if (g->req.stream && out) g->fmt->stream_error(g, e, out);
    g->finished = true;
}

bool srv_gen_pump(srv_gen *g, buf *out)
{
    while (!g->finished && g->er) {
        eng_event *ev = NULL;
        if (eng_request_next(g->er, 0, &ev) != SEM_OK) break;
        srv_gen_on_event(g, ev, out);
        eng_event_free(ev);
    }
    return g->finished;
}

/* ---- shared bits for formatters ---------------------------------------------- */

json_t *srv_gen_token_text(srv_gen *g, tok_id id, json_t **bytes)
{
    buf b;
    buf_init(&b);
    sem_err err;
    sem_err_clear(&err);
    if (g->backend && g->backend->tok) tok_decode(g->backend->tok, &id, 1, false, &b, &err);
    const char *s = b.data ? b.data : "";
    if (bytes) {
        *bytes = json_array();
        for (size_t i = 0; i < b.len && *bytes; i++)
            json_array_append_new(*bytes, json_integer((unsigned char)s[i]));
    }
    json_t *t = srv_json_text(s, b.len);
    buf_fini(&b);
    return t;
}
