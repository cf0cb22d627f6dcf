/* health.c - the probes and /metrics.
 *
 *   /health/live     200 while the process answers at all
 *   /health/startup  200 once a model has been loaded (503 before)
 *   /health/ready    200 when serving; 503 with {"reason"} while loading,
 *                    shutting down, during a swap (draining, swapping,
 *                    rolling_back), when degraded (no model: the last swap
 *                    and its rollback failed), or when the KV pool is
 *                    nearly full (ready_pool_fraction)
 *   /health          the ready verdict plus details
 *   /metrics         Prometheus text format (metrics.c)
 *
 * All public (no API key), so orchestrators can probe them.
 *
 * Thread: http.
 */
#include "server/srv_int.h"

#include <stdlib.h>
#include <string.h>

void srv_h_live(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)c, (void)body;
    r->json = json_pack("{s:s}", "status", "ok");
}

void srv_h_startup(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    bool started = atomic_load(&c->srv->models) != NULL;
    r->status = started ? 200 : 503;
    r->json = json_pack("{s:s}", "status", started ? "started" : "starting");
}

void srv_h_ready(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    const char *why = srv_not_ready_reason(c->srv);
    r->status = *why ? 503 : 200;
    r->json = *why ? json_pack("{s:s, s:s}", "status", "not_ready", "reason", why)
                   : json_pack("{s:s}", "status", "ready");
}

/* Samples the gauges. With a model serving, *b holds its view and the
 * caller gives the bundle back (srv_models_put(s, b->bundle)); with
 * with_cache, the agent cache counters are read too (a short call on the
 * engine thread). */
static void gauges(srv_server *s, srv_gauges *g, srv_backend *b, bool with_cache)
{
    memset(g, 0, sizeof *g);
    memset(b, 0, sizeof *b);
    const swap_bundle *bundle = srv_models_peek(s);
    if (bundle) {
        srv_backend_from_bundle(bundle, b);
        g->eng = eng_get_stats(b->eng);
        g->have_eng = true;
        if (with_cache) {
            g->cache = eng_cache_stats(b->eng);
            g->have_cache = true;
        }
        g->model_id = b->model_id;
        g->model_arch = b->model_arch;
        g->model_dtype = b->model_dtype;
        g->max_ctx = b->max_ctx;
        g->loaded_at_ms = bundle->loaded_at_ms;
    }
    g->inflight = atomic_load(&s->inflight);
    g->state = srv_state_now(s);
    g->rss_bytes = srv_rss_bytes();
}

void srv_h_health(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    srv_server *s = c->srv;
    const char *why = srv_not_ready_reason(s);
    srv_gauges g;
    srv_backend b;
    gauges(s, &g, &b, false);
    r->status = *why ? 503 : 200;
    r->json = json_pack("{s:s, s:s, s:s?, s:i, s:i, s:i, s:i, s:i, s:f}", "status", *why ? "not_ready" : "ok",
                        "state", g.state, "model", g.model_id, "inflight", (int)g.inflight,
                        "running", (int)g.eng.running, "waiting", (int)g.eng.waiting,
                        "pool_blocks_used", (int)g.eng.blocks_used, "pool_blocks_total",
                        (int)g.eng.blocks_total, "uptime_s", clk_now_s() - s->t_start_s);
    if (r->json && *why) json_object_set_new(r->json, "reason", json_string(why));
    srv_models_put(s, b.bundle);
}

void srv_h_metrics(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    srv_gauges g;
    srv_backend be;
    gauges(c->srv, &g, &be, true);
    buf b;
    buf_init(&b);
    bool ok = srv_metrics_render(c->srv->metrics, &g, &b);
    srv_models_put(c->srv, be.bundle);
    if (!ok) {
        buf_fini(&b);
        srv_errorf(&r->err, 500, NULL, NULL, "out of memory");
        return;
    }
    r->text_len = b.len;
    r->text = buf_take(&b);
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
