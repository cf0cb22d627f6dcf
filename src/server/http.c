/* http.c - libmicrohttpd glue and the server lifecycle: requests in,
 * routing, auth, body limits, responses out, generations streamed without
 * pinning a thread, client disconnects, drain and stop.
 *
 * Threads:
 *   - MHD's pool (http_threads, epoll) runs on_access, the SSE reader and
 *     on_completed. MHD never runs two callbacks of one connection at once,
 *     so a srv_conn belongs to whichever pool thread is running it.
 *   - The engine thread calls on_engine_event after each event of a
 *     request. It only sets `wake` and, if the connection is suspended,
 *     resumes it (under c->mu, the only lock shared with the engine).
 *   - The watchdog thread polls the sockets of live generations for a
 *     hang-up (MHD cannot see one while a connection is suspended) and
 *     cancels their engine requests. It also resumes requests parked
 *     during a swap (models.c) once the swap is over, their queue budget
 *     has passed or their client has gone.
 *   - A job thread (a swap) runs one srv_job while its connection is
 *     suspended, then resumes it; the reply is sent from the HTTP thread.
 *
 * A generation's connection is either suspended (waiting for an event) or
 * being pumped: pump_or_suspend drains events and suspends only after
 * checking `wake` under c->mu, so an event is never missed.
 *
 * Bodies: Content-Length above a hard cap gets 413 at once; any other body
 * over the limit is read and dropped, then answered with 413 (so the client
 * sees the answer, not a reset).
 */
#include "server/srv_int.h"

#include <microhttpd.h>

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SSE_BLOCK_BYTES 16384
#define WATCHDOG_PERIOD_MS 100
#define HARD_BODY_CAP(limit) ((limit) * 4 > ((size_t)64 << 20) ? (limit) * 4 : ((size_t)64 << 20))

static void on_engine_event(void *ctx);

/* ===================================================================== */
/* Small services                                                         */
/* ===================================================================== */

const char *srv_conn_header(srv_conn *c, const char *name)
{
    return MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, name);
}

const char *srv_conn_query(srv_conn *c, const char *name)
{
    return MHD_lookup_connection_value(c->mhd, MHD_GET_ARGUMENT_KIND, name);
}

static const char *cors_origin(srv_conn *c)
{
    srv_server *s = c->srv;
    const char *origin = srv_conn_header(c, "Origin");
    if (!origin || (!s->cors_any && !s->n_cors)) return NULL;
    if (s->cors_any) return "*";
    for (size_t i = 0; i < s->n_cors; i++)
        if (!strcmp(s->cors[i], origin)) return origin;
    return NULL;
}

static void add_headers(srv_conn *c, struct MHD_Response *resp, double retry_after_s)
{
    MHD_add_response_header(resp, "X-Request-ID", c->reqid);
    MHD_add_response_header(resp, "request-id", c->reqid);
    const char *origin = cors_origin(c);
    if (origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(resp, "Vary", "Origin");
        MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                "X-Request-ID, request-id, Retry-After");
    }
    if (retry_after_s > 0) {
        char ra[32];
        long secs = (long)retry_after_s;
        if ((double)secs < retry_after_s) secs++;
        snprintf(ra, sizeof ra, "%ld", secs < 1 ? 1L : secs);
        MHD_add_response_header(resp, "Retry-After", ra);
    }
    if (atomic_load(&c->srv->draining)) {
        MHD_add_response_header(resp, "Connection", "close");
    } else { /* tell clients when we close idle connections, so they do not reuse one we closed */
        char ka[32];
        snprintf(ka, sizeof ka, "timeout=%u", (unsigned)c->srv->cfg.idle_timeout_s);
        MHD_add_response_header(resp, "Keep-Alive", ka);
    }
}

static enum MHD_Result queue_bytes(srv_conn *c, int status, const char *ctype, const char *data,
                                   size_t len, double retry_after_s, const char *allow)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    if (ctype) MHD_add_response_header(resp, "Content-Type", ctype);
    if (allow) MHD_add_response_header(resp, "Allow", allow);
    add_headers(c, resp, retry_after_s);
    enum MHD_Result r = MHD_queue_response(c->mhd, (unsigned int)status, resp);
    MHD_destroy_response(resp);
    c->status = status;
    c->responded = true;
    return r;
}

static enum MHD_Result queue_json(srv_conn *c, int status, const json_t *j, double retry_after_s,
                                  const char *allow)
{
    buf b;
    buf_init(&b);
    if (!j || !srv_json_append(&b, j) || !buf_append_str(&b, "\n")) {
        buf_fini(&b);
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}\n";
        return queue_bytes(c, 500, "application/json", oom, sizeof oom - 1, 0, NULL);
    }
    enum MHD_Result r = queue_bytes(c, status, "application/json", b.data, b.len, retry_after_s, allow);
    buf_fini(&b);
    return r;
}

static enum MHD_Result queue_error(srv_conn *c, const srv_error *e, const char *allow)
{
    int status = e->http_status ? e->http_status : 500;
    sem_log(c->srv->lg, status >= 500 ? SEM_LOG_WARN : SEM_LOG_INFO,
            "http error req=%s route=%s status=%d msg=\"%s\"", c->reqid,
            c->route ? c->route->path : "other", status, e->message);
    if (status == 429) srv_metrics_add(c->srv->metrics, SRV_C_RATE_LIMITED, 1);
    json_t *env = srv_error_envelope(c->api, e);
    enum MHD_Result r = queue_json(c, status, env, e->retry_after_s, allow);
    json_decref(env);
    return r;
}

/* ===================================================================== */
/* Backend, readiness, live list                                          */
/* ===================================================================== */

const char *srv_not_ready_reason(srv_server *s)
{
    const char *state = srv_state_now(s);
    if (strcmp(state, "serving")) return state;
    const swap_bundle *b = srv_models_peek(s);
    if (!b) return srv_state_now(s); /* a swap began just now */
    eng_stats st = eng_get_stats(b->eng);
    srv_models_put(s, b);
    if (st.blocks_total > 0 && (double)st.blocks_used >= s->cfg.ready_pool_fraction * (double)st.blocks_total)
        return "pool_full";
    return "";
}

/* Links c into the live list. Caller holds live_mu. */
static void live_link(srv_conn *c)
{
    srv_server *s = c->srv;
    if (c->live) return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    c->fd = ci ? ci->connect_fd : -1;
    c->live_prev = NULL;
    c->live_next = s->live;
    if (s->live) s->live->live_prev = c;
    s->live = c;
    c->live = true;
}

static void live_add(srv_conn *c)
{
    pthread_mutex_lock(&c->srv->live_mu);
    live_link(c);
    pthread_mutex_unlock(&c->srv->live_mu);
}

static void live_remove(srv_conn *c)
{
    srv_server *s = c->srv;
    pthread_mutex_lock(&s->live_mu);
    if (c->live) {
        if (c->live_prev) c->live_prev->live_next = c->live_next;
        else s->live = c->live_next;
        if (c->live_next) c->live_next->live_prev = c->live_prev;
        c->live = false;
    }
    c->waiting = false;
    pthread_mutex_unlock(&s->live_mu);
}

/* Cancels every live generation; with `abort`, also fails them without
 * waiting for the engine and resumes suspended ones (parked requests
 * included: they answer 503). Returns how many. */
static int32_t live_cancel_all(srv_server *s, bool abort)
{
    int32_t n = 0;
    pthread_mutex_lock(&s->live_mu);
    for (srv_conn *c = s->live; c; c = c->live_next) {
        if (c->gen && c->gen->er) eng_request_cancel(c->gen->er);
        n++;
        if (!abort) continue;
        atomic_store(&c->aborted, true);
        on_engine_event(c);
    }
    pthread_mutex_unlock(&s->live_mu);
    return n;
}

/* ===================================================================== */
/* Generations                                                            */
/* ===================================================================== */

static void on_engine_event(void *ctx)
{
    srv_conn *c = ctx;
    atomic_store(&c->wake, true);
    pthread_mutex_lock(&c->mu);
    if (c->suspended) {
        c->suspended = false;
        MHD_resume_connection(c->mhd);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Drains ready events. True when there is output or the generation is
 * over; false after suspending the connection until the next event. */
static bool pump_or_suspend(srv_conn *c)
{
    for (;;) {
        atomic_store(&c->wake, false);
        buf *out = c->streaming ? &c->out : NULL;
        if (atomic_load(&c->aborted) && !c->gen->finished) {
            srv_error e;
            srv_errorf(&e, 503, "shutting_down", NULL, "the server is shutting down");
            srv_gen_fail(c->gen, &e, out);
        }
        bool done = srv_gen_pump(c->gen, out);
        if (done || c->out.len > c->out_off) return true;
        pthread_mutex_lock(&c->mu);
        if (atomic_load(&c->wake) || atomic_load(&c->aborted)) {
            pthread_mutex_unlock(&c->mu);
            continue;
        }
        c->suspended = true;
        MHD_suspend_connection(c->mhd);
        pthread_mutex_unlock(&c->mu);
        return false;
    }
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *dst, size_t max)
{
    (void)pos;
    srv_conn *c = cls;
    for (;;) {
        if (c->out_off < c->out.len) {
            size_t n = c->out.len - c->out_off;
            if (n > max) n = max;
            memcpy(dst, c->out.data + c->out_off, n);
            c->out_off += n;
            return (ssize_t)n;
        }
        buf_clear(&c->out);
        c->out_off = 0;
        if (c->gen->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!pump_or_suspend(c)) return 0;
    }
}

static enum MHD_Result gen_continue(srv_conn *c)
{
    if (!pump_or_suspend(c)) return MHD_YES;
    srv_gen *g = c->gen;
    if (g->error.http_status) return queue_error(c, &g->error, NULL);
    return queue_json(c, 200, g->result, 0, NULL);
}

static enum MHD_Result gen_respond(srv_conn *c)
{
    if (!c->gen->req.stream) return gen_continue(c);
    c->streaming = true;
    c->gen->fmt->stream_start(c->gen, &c->out);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK_BYTES, sse_reader, c, NULL);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    add_headers(c, resp, 0);
    enum MHD_Result r = MHD_queue_response(c->mhd, 200, resp);
    MHD_destroy_response(resp);
    c->status = 200;
    c->responded = true;
    return r;
}

void srv_generation_start(srv_conn *c, srv_gen_req *req, const srv_fmt_ops *fmt, srv_reply *r)
{
    srv_server *s = c->srv;
    if (!srv_conn_acquire(c, r)) return;
    if (req->tools && c->backend.tool_format == SRV_TOOLS_NONE) {
        srv_errorf(&r->err, 400, "tools_unsupported", "tools",
                   "this model's chat template does not render tools");
        return;
    }
    double now = clk_now_s(), retry = 1;
    if (!srv_rl_take(s->rl_global, "", now, &retry) ||
        (req->agent_id[0] && !srv_rl_take(s->rl_agent, req->agent_id, now, &retry))) {
        srv_errorf(&r->err, 429, "rate_limit_exceeded", NULL,
                   "rate limit exceeded%s; retry after %.1f s",
                   req->agent_id[0] ? " (global or per agent)" : "", retry);
        r->err.retry_after_s = retry;
        return;
    }
    if (atomic_fetch_add(&s->inflight, 1) >= s->cfg.max_inflight) {
        atomic_fetch_sub(&s->inflight, 1);
        srv_errorf(&r->err, 503, "overloaded", NULL, "too many requests in flight (%d); retry later",
                   (int)s->cfg.max_inflight);
        r->err.retry_after_s = 1;
        return;
    }
    c->counted_inflight = true;
    tok_ids prompt;
    tok_ids_init(&prompt);
    snprintf(c->agent, sizeof c->agent, "%s", req->agent_id);
    if (!srv_prompt_build(&c->backend, req, &prompt, &r->err)) {
        tok_ids_fini(&prompt);
        return;
    }
    c->gen = srv_gen_create(fmt, req, &c->backend, &s->ids, s->metrics);
    if (!c->gen) {
        tok_ids_fini(&prompt);
        srv_errorf(&r->err, 500, NULL, NULL, "out of memory");
        return;
    }
    /* what is left of the request's queue budget after waiting for a swap */
    int64_t budget = srv_conn_queue_budget_ms(c);
    srv_submit_opts o = {s->cfg.default_max_tokens, budget < 0 ? 1 : budget, on_engine_event, c};
    bool ok = srv_gen_submit(c->gen, &prompt, &o, &r->err);
    tok_ids_fini(&prompt);
    if (!ok) {
        srv_gen_destroy(c->gen);
        c->gen = NULL;
        return;
    }
    live_add(c);
    r->gen_started = true;
}

/* ===================================================================== */
/* Requests                                                               */
/* ===================================================================== */

static srv_conn *conn_create(srv_server *s, struct MHD_Connection *mc)
{
    srv_conn *c = sem_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->srv = s;
    c->mhd = mc;
    c->t_start_s = clk_now_s();
    c->route_idx = srv_n_routes;
    c->fd = -1;
    buf_init(&c->body);
    buf_init(&c->out);
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

static void conn_destroy(srv_conn *c)
{
    if (!c) return;
    if (c->job) {
        if (c->job->started && !c->job->joined) pthread_join(c->job->th, NULL);
        c->job->destroy(c->job);
    }
    /* Taking mu waits out an on_event in flight (the engine guarantees
     * none starts after eng_request_release). */
    pthread_mutex_lock(&c->mu);
    pthread_mutex_unlock(&c->mu);
    srv_gen_destroy(c->gen); /* the engine request first: the bundle's engine must still run */
    srv_conn_release(c);
    if (c->counted_inflight) atomic_fetch_sub(&c->srv->inflight, 1);
    buf_fini(&c->body);
    buf_fini(&c->out);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static srv_auth_level path_auth(const srv_conn *c, const char *path)
{
    if (c->route) return c->route->auth;
    if (!strncmp(path, "/admin/", 7) || !strcmp(path, "/admin")) return SRV_AUTH_ADMIN;
    if (!strncmp(path, "/v1/", 4)) return SRV_AUTH_API;
    return SRV_AUTH_PUBLIC;
}

/* First call: headers only. Route, ids, early errors. */
static enum MHD_Result headers_received(srv_conn *c, const char *url, const char *method)
{
    srv_server *s = c->srv;
    size_t n = 0;
    const char *rid = NULL;
    if (MHD_lookup_connection_value_n(c->mhd, MHD_HEADER_KIND, "X-Request-ID", 12, &rid, &n) ==
            MHD_YES &&
        srv_request_id_valid(rid, n))
        memcpy(c->reqid, rid, n + 1);
    else
        srv_idgen_str(&s->ids, "req_", c->reqid, sizeof c->reqid);
    c->is_get = !strcmp(method, "GET");
    c->is_post = !strcmp(method, "POST");
    c->is_delete = !strcmp(method, "DELETE");
    c->is_options = !strcmp(method, "OPTIONS");
    bool path_ok = false;
    c->route = srv_route_find(method, url, &path_ok, c->path_param, sizeof c->path_param);
    if (c->route) c->route_idx = (size_t)(c->route - srv_routes);
    c->api = (c->route && c->route->api == SRV_API_ANTHROPIC) || !strncmp(url, "/v1/messages", 12) ||
                     srv_conn_header(c, "anthropic-version")
                 ? SRV_API_ANTHROPIC
                 : SRV_API_OPENAI;
    c->headers_seen = true;
    if (!c->route && !c->is_options) {
        if (path_ok) srv_errorf(&c->early, 405, "method_not_allowed", NULL, "method %.16s is not allowed here", method);
        else srv_errorf(&c->early, 404, "not_found", NULL, "no such endpoint");
    }
    const char *sid = NULL;
    if (MHD_lookup_connection_value_n(c->mhd, MHD_HEADER_KIND, "X-Session-ID", 12, &sid, &n) == MHD_YES) {
        if (!srv_agent_id_valid(sid, n)) {
            if (!c->early.http_status)
                srv_errorf(&c->early, 400, "invalid_agent_id", "X-Session-ID",
                           "X-Session-ID must match [A-Za-z0-9_.-]{1,128} and not start with '.'");
        } else {
            memcpy(c->agent, sid, n + 1);
        }
    }
    c->own_timeout_ms = -1;
    const char *qt = srv_conn_header(c, "X-Queue-Timeout-Ms");
    if (qt) {
        char *end;
        errno = 0;
        long long v = strtoll(qt, &end, 10);
        if (errno || end == qt || *end || v < 1 || v > 86400000) {
            if (!c->early.http_status)
                srv_errorf(&c->early, 400, "invalid_value", "X-Queue-Timeout-Ms",
                           "X-Queue-Timeout-Ms must be an integer in 1..86400000");
        } else {
            c->own_timeout_ms = v;
        }
    }
    const char *cl = srv_conn_header(c, "Content-Length");
    unsigned long long len = cl ? strtoull(cl, NULL, 10) : 0;
    if (len > s->cfg.max_body_bytes) {
        srv_errorf(&c->early, 413, "request_too_large", NULL,
                   "request body of %llu bytes is over the limit of %zu bytes", len,
                   s->cfg.max_body_bytes);
        if (len > HARD_BODY_CAP(s->cfg.max_body_bytes)) return queue_error(c, &c->early, NULL);
    }
    return MHD_YES;
}

static void body_chunk(srv_conn *c, const char *data, size_t n)
{
    if (c->body_too_big) return;
    if (n > c->srv->cfg.max_body_bytes - c->body.len || !buf_append(&c->body, data, n)) {
        c->body_too_big = true;
        buf_fini(&c->body);
    }
}

static bool check_auth(srv_conn *c, const char *path, srv_error *e)
{
    srv_server *s = c->srv;
    switch (path_auth(c, path)) {
    case SRV_AUTH_PUBLIC: return true;
    case SRV_AUTH_API:
        if (srv_auth_check_api(&s->auth, srv_conn_header(c, "Authorization"),
                               srv_conn_header(c, "x-api-key")))
            return true;
        return srv_errorf(e, 401, "invalid_api_key", NULL,
                          "missing or invalid API key (Authorization: Bearer KEY or x-api-key: KEY)");
    case SRV_AUTH_ADMIN:
        switch (srv_auth_check_admin(&s->auth, srv_conn_header(c, "X-Admin-Key"))) {
        case SRV_ADMIN_OK: return true;
        case SRV_ADMIN_DISABLED:
            return srv_errorf(e, 403, "admin_disabled", NULL,
                              "the admin API is disabled: set SEMANTIC_ADMIN_KEY to enable it");
        case SRV_ADMIN_MISSING:
        case SRV_ADMIN_WRONG: break;
        }
        return srv_errorf(e, 401, "invalid_admin_key", NULL, "missing or invalid X-Admin-Key");
    }
    return false;
}

static enum MHD_Result preflight(srv_conn *c)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    if (cors_origin(c)) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        const char *h = srv_conn_header(c, "Access-Control-Request-Headers");
        bool sane = h && strlen(h) < 1024;
        for (const char *p = h; sane && *p; p++)
            sane = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                   (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == ',' || *p == ' ';
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                sane ? h : "Authorization, Content-Type, X-API-Key, X-Session-ID, "
                                           "X-Request-ID, X-Queue-Timeout-Ms, anthropic-version");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    add_headers(c, resp, 0);
    enum MHD_Result r = MHD_queue_response(c->mhd, 204, resp);
    MHD_destroy_response(resp);
    c->status = 204;
    c->responded = true;
    return r;
}

static enum MHD_Result send_reply(srv_conn *c, srv_reply *r)
{
    enum MHD_Result res;
    if (r->err.http_status) res = queue_error(c, &r->err, NULL);
    else if (r->text)
        res = queue_bytes(c, r->status ? r->status : 200, r->content_type, r->text, r->text_len, 0, NULL);
    else res = queue_json(c, r->status ? r->status : 200, r->json, 0, NULL);
    json_decref(r->json);
    free(r->text);
    return res;
}

/* Parks c until the swap is over (the watchdog resumes it). */
static enum MHD_Result park(srv_conn *c)
{
    srv_server *s = c->srv;
    pthread_mutex_lock(&s->live_mu);
    if (atomic_load(&s->draining)) { /* srv_stop's resume-all may have passed already */
        pthread_mutex_unlock(&s->live_mu);
        srv_error e;
        srv_errorf(&e, 503, "shutting_down", NULL, "the server is shutting down");
        return queue_error(c, &e, NULL);
    }
    live_link(c);
    c->waiting = true;
    pthread_mutex_lock(&c->mu);
    c->suspended = true;
    MHD_suspend_connection(c->mhd);
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&s->live_mu);
    return MHD_YES;
}

static void *job_main(void *arg)
{
    srv_conn *c = arg;
    srv_server *s = c->srv;
    c->job->run(c->job);
    atomic_store(&c->job->done, true);
    on_engine_event(c); /* resume the connection: job_continue replies */
    atomic_fetch_sub(&s->jobs, 1);
    return NULL;
}

/* The job is over: its reply. Else (a spurious resume) suspend again. */
static enum MHD_Result job_continue(srv_conn *c)
{
    srv_job *j = c->job;
    pthread_mutex_lock(&c->mu);
    if (!atomic_load(&j->done)) {
        c->suspended = true;
        MHD_suspend_connection(c->mhd);
        pthread_mutex_unlock(&c->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&c->mu);
    pthread_join(j->th, NULL);
    j->joined = true;
    srv_reply r;
    memset(&r, 0, sizeof r);
    j->reply(j, &r);
    return send_reply(c, &r);
}

static enum MHD_Result job_start(srv_conn *c, srv_job *j)
{
    srv_server *s = c->srv;
    c->job = j;
    atomic_init(&j->done, false);
    atomic_fetch_add(&s->jobs, 1);
    if (pthread_create(&j->th, NULL, job_main, c)) {
        atomic_fetch_sub(&s->jobs, 1);
        srv_error e;
        srv_errorf(&e, 500, NULL, NULL, "cannot start a thread for the job");
        return queue_error(c, &e, NULL);
    }
    j->started = true;
    return job_continue(c);
}

/* Last call: the whole request is here (or a parked one resumed). */
static enum MHD_Result request_complete(srv_conn *c, const char *url)
{
    srv_server *s = c->srv;
    if (c->is_options) return preflight(c);
    live_remove(c); /* a parked request, resumed */
    if (atomic_load(&c->client_gone)) return MHD_NO;
    srv_error e;
    if (!check_auth(c, url, &e)) return queue_error(c, &e, NULL);
    if (c->early.http_status) {
        char allow[64] = "";
        if (c->early.http_status == 405) srv_route_allow(url, allow, sizeof allow);
        return queue_error(c, &c->early, allow[0] ? allow : NULL);
    }
    if (c->body_too_big) {
        srv_errorf(&e, 413, "request_too_large", NULL, "request body is over the limit of %zu bytes",
                   s->cfg.max_body_bytes);
        return queue_error(c, &e, NULL);
    }
    bool health = !strncmp(c->route->path, "/health", 7) || !strcmp(c->route->path, "/metrics");
    if (atomic_load(&s->draining) && !health) {
        srv_errorf(&e, 503, "shutting_down", NULL, "the server is shutting down");
        return queue_error(c, &e, NULL);
    }
    json_t *body = NULL;
    if (c->is_post &&
        !srv_json_parse_body(c->body.data ? c->body.data : "", c->body.len, s->cfg.max_json_depth,
                             &body, &e))
        return queue_error(c, &e, NULL);
    srv_reply r;
    memset(&r, 0, sizeof r);
    c->route->handler(c, body, &r);
    json_decref(body);
    if (r.gen_started) return gen_respond(c);
    srv_conn_release(c); /* the handler is done with the model */
    if (r.job) return job_start(c, r.job);
    if (r.wait && !r.err.http_status) return park(c);
    return send_reply(c, &r);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *mc, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    (void)version;
    srv_conn *c = *con_cls;
    if (!c) {
        c = conn_create(cls, mc);
        if (!c) return MHD_NO;
        *con_cls = c;
        return headers_received(c, url, method);
    }
    if (*upload_data_size) {
        body_chunk(c, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (c->job) return c->responded ? MHD_YES : job_continue(c);
    if (c->gen) return gen_continue(c);
    if (c->responded) return MHD_YES;
    return request_complete(c, url);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)mc;
    srv_server *s = cls;
    srv_conn *c = *con_cls;
    if (!c) return;
    *con_cls = NULL;
    live_remove(c);
    bool gone = c->gen && (atomic_load(&c->client_gone) || !c->gen->finished ||
                           toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
    if (gone) {
        if (c->gen->er) eng_request_cancel(c->gen->er);
        srv_metrics_add(s->metrics, SRV_C_CLIENT_DISCONNECTS, 1);
    }
    double ms = (clk_now_s() - c->t_start_s) * 1e3;
    int status = c->responded ? c->status : 499;
    srv_metrics_request(s->metrics, c->route_idx, status, ms / 1e3);
    const srv_done *d = c->gen ? &c->gen->done : NULL;
    sem_log(s->lg, SEM_LOG_INFO,
            "http req=%s route=%s status=%d ms=%.1f agent=%s prompt_tokens=%d cached_tokens=%d "
            "completion_tokens=%d finish=%s%s",
            c->reqid, c->route ? c->route->path : "other", status, ms, c->agent[0] ? c->agent : "-",
            d ? (d->prompt_tokens ? d->prompt_tokens : c->gen->prompt_tokens) : 0, d ? d->cached_tokens : 0, d ? d->completion_tokens : 0,
            d && c->gen->finished && !c->gen->error.http_status ? eng_finish_name(d->finish) : "-",
            gone ? " client_gone=1" : toe != MHD_REQUEST_TERMINATED_COMPLETED_OK ? " aborted=1" : "");
    conn_destroy(c);
}

/* ===================================================================== */
/* The watchdog: hang-ups of suspended connections                        */
/* ===================================================================== */

/* Resumes parked requests whose wait is over: the swap has ended (serving
 * or degraded), their queue budget has passed, the server is shutting down
 * or the client has gone. Caller holds live_mu. */
static void wake_parked(srv_server *s)
{
    swap_mgr *sm = atomic_load(&s->models);
    swap_state st = sm ? swap_get_state(sm) : SWAP_LOADING;
    bool settled = st == SWAP_SERVING || st == SWAP_DEGRADED || atomic_load(&s->draining);
    for (srv_conn *c = s->live; c; c = c->live_next) {
        if (!c->waiting) continue;
        if (!settled && !atomic_load(&c->client_gone) && srv_conn_queue_budget_ms(c) >= 0) continue;
        c->waiting = false;
        on_engine_event(c);
    }
}

static void *watchdog_main(void *arg)
{
    srv_server *s = arg;
    struct pollfd *fds = NULL;
    srv_conn **conns = NULL;
    size_t cap = 0;
    while (!atomic_load(&s->watchdog_stop)) {
        struct timespec ts = {0, WATCHDOG_PERIOD_MS * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&s->live_mu);
        size_t n = 0;
        for (srv_conn *c = s->live; c; c = c->live_next) {
            if (c->fd < 0 || atomic_load(&c->client_gone)) continue;
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                struct pollfd *f = realloc(fds, nc * sizeof *f);
                if (f) fds = f;
                srv_conn **cc = realloc(conns, nc * sizeof *cc);
                if (cc) conns = cc;
                if (!f || !cc) break;
                cap = nc;
            }
            fds[n] = (struct pollfd){.fd = c->fd, .events = POLLRDHUP};
            conns[n++] = c;
        }
        if (n && poll(fds, (nfds_t)n, 0) > 0) {
            for (size_t i = 0; i < n; i++) {
                if (!(fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) continue;
                atomic_store(&conns[i]->client_gone, true);
                if (conns[i]->gen && conns[i]->gen->er) eng_request_cancel(conns[i]->gen->er);
                sem_log(s->lg, SEM_LOG_INFO, "http client gone req=%s: cancelling", conns[i]->reqid);
            }
        }
        wake_parked(s);
        pthread_mutex_unlock(&s->live_mu);
    }
    free(fds);
    free(conns);
    return NULL;
}

/* ===================================================================== */
/* Lifecycle                                                              */
/* ===================================================================== */

const char *srv_state_name(srv_state st)
{
    static const char *const names[] = {"loading", "serving", "shutting_down"};
    return (unsigned)st < sizeof names / sizeof names[0] ? names[st] : "unknown";
}

srv_config srv_default_config(void)
{
    srv_config c = {0};
    c.host = "127.0.0.1";
    c.port = 8000;
    c.http_threads = 4;
    c.max_body_bytes = SRV_DEFAULT_MAX_BODY_BYTES;
    c.max_json_depth = SRV_DEFAULT_MAX_JSON_DEPTH;
    c.idle_timeout_s = 60;
    c.max_inflight = 256;
    c.agent_rate_limit_burst = 1;
    c.rate_limit_burst = 1;
    c.ready_pool_fraction = 0.95;
    return c;
}

static sem_status bind_listen(const char *host, uint16_t port, int *out_fd, uint16_t *out_port,
                              sem_err *err)
{
    char ps[8];
    snprintf(ps, sizeof ps, "%u", (unsigned)port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc) return sem_errf(err, SEM_EINVAL, "--host %s: %s", host, gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1024)) {
        int e = errno;
        if (fd >= 0) close(fd);
        freeaddrinfo(res);
        return sem_errf(err, e == EADDRINUSE ? SEM_EBUSY : SEM_EIO, "listen on %s:%u: %s", host,
                        (unsigned)port, strerror(e));
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *out_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *out_fd = fd;
    return SEM_OK;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    sem_log(cls, SEM_LOG_DEBUG, "mhd: %s", line);
}

static sem_status parse_cors(srv_server *s, sem_err *err)
{
    for (char *p = s->cors_csv; p && *p;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        while (*p == ' ') p++;
        size_t n = strlen(p);
        while (n && p[n - 1] == ' ') p[--n] = '\0';
        if (!strcmp(p, "*")) s->cors_any = true;
        else if (n) {
            if (s->n_cors == SRV_MAX_CORS)
                return sem_errf(err, SEM_ELIMIT, "CORS: at most %d origins", SRV_MAX_CORS);
            s->cors[s->n_cors++] = p;
        }
        p = comma ? comma + 1 : p + n;
    }
    return SEM_OK;
}

static sem_status validate(const srv_config *c, sem_err *err)
{
    if (c->http_threads < 1 || c->http_threads > 256)
        return sem_errf(err, SEM_EINVAL, "http threads must be 1..256 (got %d)", (int)c->http_threads);
    if (c->max_body_bytes < 1024 || c->max_body_bytes > SRV_MAX_BODY_BYTES)
        return sem_errf(err, SEM_EINVAL, "max body bytes must be 1024..%zu", SRV_MAX_BODY_BYTES);
    if (c->max_json_depth < 2 || c->max_json_depth > SRV_MAX_JSON_DEPTH)
        return sem_errf(err, SEM_EINVAL, "max JSON depth must be 2..%d", SRV_MAX_JSON_DEPTH);
    if (c->max_inflight < 1) return sem_errf(err, SEM_EINVAL, "max inflight must be >= 1");
    if (!(c->ready_pool_fraction > 0 && c->ready_pool_fraction <= 1))
        return sem_errf(err, SEM_EINVAL, "ready pool fraction must be in (0, 1]");
    return SEM_OK;
}

static sem_status server_init(srv_server *s, const srv_config *cfg, sem_err *err)
{
    s->cfg = *cfg;
    s->lg = cfg->lg;
    s->listen_fd = -1;
    s->host = sem_strdup(cfg->host ? cfg->host : "127.0.0.1");
    s->cors_csv = cfg->cors_origins ? sem_strdup(cfg->cors_origins) : NULL;
    s->cfg.host = s->host;
    s->cfg.cors_origins = NULL;
    s->cfg.api_keys = s->cfg.admin_key = NULL; /* kept only inside auth */
    s->models_dir = cfg->models_dir ? sem_strdup(cfg->models_dir) : NULL;
    s->hf_cache = cfg->hf_cache ? sem_strdup(cfg->hf_cache) : NULL;
    s->kv_format = sem_strdup(cfg->kv_format ? cfg->kv_format : "f16");
    s->cfg.models_dir = s->models_dir;
    s->cfg.hf_cache = s->hf_cache;
    s->cfg.kv_format = s->kv_format;
    pthread_mutex_init(&s->live_mu, NULL);
    atomic_init(&s->models, NULL);
    atomic_init(&s->rss_baseline, 0);
    atomic_init(&s->state, SRV_STATE_LOADING);
    atomic_init(&s->inflight, 0);
    atomic_init(&s->jobs, 0);
    atomic_init(&s->draining, false);
    atomic_init(&s->watchdog_stop, false);
    s->t_start_s = clk_now_s();
    srv_idgen_init(&s->ids, srv_random_seed());
    sem_status st;
    if (!s->host || (cfg->cors_origins && !s->cors_csv) || (cfg->models_dir && !s->models_dir) ||
        (cfg->hf_cache && !s->hf_cache) || !s->kv_format)
        return sem_errf(err, SEM_ENOMEM, "out of memory");
    if ((st = parse_cors(s, err)) || (st = srv_auth_init(&s->auth, cfg->api_keys, cfg->admin_key, err)) ||
        (st = srv_rl_create(cfg->rate_limit_rps, cfg->rate_limit_burst, 1, &s->rl_global, err)) ||
        (st = srv_rl_create(cfg->agent_rate_limit_rps, cfg->agent_rate_limit_burst, SRV_RL_MAX_KEYS,
                            &s->rl_agent, err)) ||
        (st = srv_metrics_create(srv_route_names, srv_n_routes, &s->metrics, err)))
        return st;
    return bind_listen(s->host, cfg->port, &s->listen_fd, &s->port, err);
}

static void server_free(srv_server *s)
{
    if (s->listen_fd >= 0) close(s->listen_fd);
    srv_auth_fini(&s->auth);
    srv_rl_destroy(s->rl_global);
    srv_rl_destroy(s->rl_agent);
    srv_metrics_destroy(s->metrics);
    pthread_mutex_destroy(&s->live_mu);
    free(s->host);
    free(s->cors_csv);
    free(s->models_dir);
    free(s->hf_cache);
    free(s->kv_format);
    free(s);
}

sem_status srv_start(const srv_config *cfg, srv_server **out, sem_err *err)
{
    sem_status st = validate(cfg, err);
    if (st) return st;
    srv_server *s = sem_calloc(1, sizeof *s);
    if (!s) return sem_errf(err, SEM_ENOMEM, "out of memory");
    if ((st = server_init(s, cfg, err))) {
        server_free(s);
        return st;
    }
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG;
    s->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s, MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)cfg->http_threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->idle_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s->lg, MHD_OPTION_END);
    if (!s->mhd) {
        server_free(s); /* still ours: closes listen_fd */
        return sem_errf(err, SEM_EIO, "libmicrohttpd failed to start on %s:%u", cfg->host,
                        (unsigned)cfg->port);
    }
    s->listen_fd = -1; /* MHD's now, until MHD_quiesce_daemon hands it back */
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s)) {
        MHD_stop_daemon(s->mhd);
        server_free(s);
        return sem_errf(err, SEM_EIO, "cannot start the watchdog thread");
    }
    s->watchdog_started = true;
    sem_log(s->lg, SEM_LOG_INFO, "http listening host=%s port=%u threads=%d", s->host,
            (unsigned)s->port, (int)cfg->http_threads);
    *out = s;
    return SEM_OK;
}

uint16_t srv_port(const srv_server *s) { return s->port; }

void srv_set_models(srv_server *s, swap_mgr *sm, uint64_t rss_baseline_bytes)
{
    atomic_store(&s->rss_baseline, rss_baseline_bytes);
    atomic_store(&s->models, sm);
    srv_state old = (srv_state)atomic_exchange(&s->state, (int)SRV_STATE_SERVING);
    if (old != SRV_STATE_SERVING)
        sem_log(s->lg, SEM_LOG_INFO, "server state %s -> serving", srv_state_name(old));
}

srv_state srv_get_state(const srv_server *s) { return (srv_state)atomic_load(&s->state); }

int32_t srv_n_inflight(const srv_server *s) { return atomic_load(&s->inflight); }

static bool wait_idle(srv_server *s, int64_t timeout_ms)
{
    double deadline = clk_now_s() + (double)timeout_ms / 1e3;
    while (atomic_load(&s->inflight) > 0) {
        if (clk_now_s() >= deadline) return false;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return true;
}

int32_t srv_drain(srv_server *s, int64_t timeout_ms)
{
    atomic_store(&s->draining, true);
    atomic_store(&s->state, (int)SRV_STATE_SHUTTING_DOWN);
    if (!s->stopped_accepting) {
        MHD_socket fd = MHD_quiesce_daemon(s->mhd);
        if (fd != MHD_INVALID_SOCKET) s->listen_fd = fd; /* closed after MHD stops */
        s->stopped_accepting = true;
    }
    sem_log(s->lg, SEM_LOG_INFO, "drain: waiting for %d requests (up to %lld ms)",
            (int)atomic_load(&s->inflight), (long long)timeout_ms);
    if (wait_idle(s, timeout_ms)) return 0;
    int32_t n = live_cancel_all(s, false);
    sem_log(s->lg, SEM_LOG_WARN, "drain: timeout; cancelled %d requests", (int)n);
    if (!wait_idle(s, 5000)) live_cancel_all(s, true);
    wait_idle(s, 2000);
    return n;
}

void srv_stop(srv_server *s)
{
    if (!s) return;
    if (!s->stopped_accepting) srv_drain(s, 0);
    live_cancel_all(s, true); /* nothing may stay suspended when MHD stops */
    wait_idle(s, 2000);
    if (atomic_load(&s->jobs) > 0) sem_log(s->lg, SEM_LOG_INFO, "stop: waiting for a swap to finish");
    while (atomic_load(&s->jobs) > 0) { /* a swap ends on its own (bounded by its timeout) */
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(s->mhd);
    atomic_store(&s->watchdog_stop, true);
    if (s->watchdog_started) pthread_join(s->watchdog, NULL);
    sem_log(s->lg, SEM_LOG_INFO, "http stopped");
    server_free(s);
}
