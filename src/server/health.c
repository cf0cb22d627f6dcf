/* health.c - the probes and /metrics.
 *
 *   /health/live     200 while the process answers at all
 *   /health/startup  200 once a model has been loaded (503 before)
 *   /health/ready    200 when serving; 503 with {"reason"} while loading,
 *                    draining, swapping, degraded, or when the KV pool is
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
    pthread_mutex_lock(&c->srv->backend_mu);
    bool started = c->srv->ever_served;
    pthread_mutex_unlock(&c->srv->backend_mu);
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

static void gauges(srv_server *s, srv_gauges *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_lock(&s->backend_mu);
    srv_backend b = s->backend;
    bool have = s->have_backend;
    pthread_mutex_unlock(&s->backend_mu);
    if (have && b.eng) {
        g->eng = eng_get_stats(b.eng);
        g->have_eng = true;
    }
    if (have) {
        g->model_id = b.model_id;
        g->model_arch = b.model_arch;
        g->model_dtype = b.model_dtype;
        g->max_ctx = b.max_ctx;
    }
    g->inflight = atomic_load(&s->inflight);
    g->state = atomic_load(&s->draining) ? SRV_STATE_DRAINING : (srv_state)atomic_load(&s->state);
    g->rss_bytes = srv_rss_bytes();
}

void srv_h_health(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    srv_server *s = c->srv;
    const char *why = srv_not_ready_reason(s);
    srv_gauges g;
    gauges(s, &g);
    r->status = *why ? 503 : 200;
    r->json = json_pack("{s:s, s:s, s:s?, s:i, s:i, s:i, s:i, s:i, s:f}", "status", *why ? "not_ready" : "ok",
                        "state", srv_state_name(g.state), "model", g.model_id, "inflight", (int)g.inflight,
                        "running", (int)g.eng.running, "waiting", (int)g.eng.waiting,
                        "pool_blocks_used", (int)g.eng.blocks_used, "pool_blocks_total",
                        (int)g.eng.blocks_total, "uptime_s", clk_now_s() - s->t_start_s);
    if (r->json && *why) json_object_set_new(r->json, "reason", json_string(why));
}

void srv_h_metrics(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    srv_gauges g;
    gauges(c->srv, &g);
    buf b;
    buf_init(&b);
    if (!srv_metrics_render(c->srv->metrics, &g, &b)) {
        buf_fini(&b);
        srv_errorf(&r->err, 500, NULL, NULL, "out of memory");
        return;
    }
    r->text_len = b.len;
    r->text = buf_take(&b);
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
