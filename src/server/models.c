/* models.c - the current model, as a request sees it.
 *
 * The swap manager (swap/swap.h) owns the loaded model and its engine and
 * hands them out as reference-counted bundles. A request that needs the
 * model takes the bundle (srv_conn_acquire) into its connection and gives
 * it back when it is completely over (srv_conn_release: http.c calls it
 * when a non-generation handler returns and when a generation's
 * connection ends, stream and disconnect included), so a swap's drain step
 * waits exactly for the requests that use the old model.
 *
 * HTTP threads never wait for a swap: swap_acquire is always called with a
 * zero timeout. While a swap runs the request is parked (r->wait): http.c
 * suspends its connection and the watchdog resumes it when the swap is
 * over or the request's own queue budget has passed; then the handler runs
 * again from the start.
 *
 * Thread: http (the watchdog only reads the swap state).
 */
#include "server/srv_int.h"

#include <stdio.h>
#include <string.h>

void srv_backend_from_bundle(const swap_bundle *b, srv_backend *out)
{
    memset(out, 0, sizeof *out);
    out->bundle = b;
    out->eng = b->eng;
    out->tok = b->tok;
    out->chat = b->chat;
    out->model_id = b->model_id;
    out->max_ctx = b->max_ctx;
    const model_spec *spec = model_get_spec(b->m);
    out->model_arch = spec->arch_name;
    if (spec->quant_bits) snprintf(out->model_dtype, sizeof out->model_dtype, "q%d", spec->quant_bits);
    else snprintf(out->model_dtype, sizeof out->model_dtype, "float");
    out->tool_format = SRV_TOOLS_NONE;
    if (!b->chat) return;
    for (size_t i = 0; i < tok_config_template_count(b->tok) && out->tool_format == SRV_TOOLS_NONE; i++)
        out->tool_format = srv_tool_format_detect(tok_config_template(b->tok, i, NULL));
}

const char *srv_state_now(srv_server *s)
{
    if (atomic_load(&s->draining)) return "shutting_down";
    swap_mgr *sm = atomic_load(&s->models);
    if (!sm) return "loading";
    return swap_state_name(swap_get_state(sm));
}

int64_t srv_conn_queue_budget_ms(srv_conn *c)
{
    int64_t budget = c->own_timeout_ms >= 0 ? c->own_timeout_ms : c->srv->cfg.queue_timeout_ms;
    if (budget <= 0) return 0;
    int64_t left = budget - (int64_t)((clk_now_s() - c->t_start_s) * 1e3);
    return left > 0 ? left : -1; /* -1: spent */
}

bool srv_conn_acquire(srv_conn *c, srv_reply *r)
{
    if (c->backend.bundle) return true;
    srv_server *s = c->srv;
    if (atomic_load(&s->draining))
        return srv_errorf(&r->err, 503, "shutting_down", NULL, "the server is shutting down");
    swap_mgr *sm = atomic_load(&s->models);
    if (!sm) {
        srv_errorf(&r->err, 503, "not_ready", NULL, "the server is not ready: loading the model");
        r->err.retry_after_s = 1;
        return false;
    }
    const swap_bundle *b = NULL;
    sem_err err;
    sem_err_clear(&err);
    sem_status st = swap_acquire(sm, 0, &b, &err);
    if (st == SEM_OK) {
        srv_backend_from_bundle(b, &c->backend);
        return true;
    }
    if (st == SEM_EDEGRADED)
        return srv_errorf(&r->err, 503, "model_degraded", NULL, "%s", err.msg);
    if (srv_conn_queue_budget_ms(c) >= 0) {
        r->wait = true; /* a swap is running and the request may still wait */
        return false;
    }
    srv_errorf(&r->err, 503, "model_swapping", NULL,
               "the model is being swapped and this request's queue timeout passed; retry shortly");
    r->err.retry_after_s = 1;
    return false;
}

void srv_conn_release(srv_conn *c)
{
    if (!c || !c->backend.bundle) return;
    swap_mgr *sm = atomic_load(&c->srv->models);
    swap_release(sm, c->backend.bundle);
    memset(&c->backend, 0, sizeof c->backend);
}

const swap_bundle *srv_models_peek(srv_server *s)
{
    swap_mgr *sm = atomic_load(&s->models);
    const swap_bundle *b = NULL;
    sem_err err;
    if (!sm || swap_acquire(sm, 0, &b, &err) != SEM_OK) return NULL;
    return b;
}

void srv_models_put(srv_server *s, const swap_bundle *b)
{
    if (b) swap_release(atomic_load(&s->models), b);
}
