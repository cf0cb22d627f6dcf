/* api_admin.c - the admin API (X-Admin-Key, checked in http.c before any
 * /admin/ route runs):
 *
 *   GET    /admin/models/current    the served model, its geometry and KV
 *                                   format, when it was loaded, the swap
 *                                   state and the process's resident bytes
 *   GET    /admin/models/available  every model under --models-dir and in
 *                                   the Hugging Face hub cache
 *   POST   /admin/models/swap       {"model_id", "timeout_seconds"}: the
 *                                   eight-step swap (swap/swap.h), run as a
 *                                   job on its own thread
 *   DELETE /admin/caches            drops every idle agent cache of the
 *                                   current model (RAM and files)
 *
 * Swap answers: 200 {"status":"success", old_model_id, new_model_id,
 * message, duration_ms, steps:[{name, ms}]}; 404 unknown model and 400 bad
 * id (nothing touched); 409 another swap is running; 504 the drain timed
 * out (abandoned: the old model keeps serving); 500 the new model failed
 * after the old one was unloaded and the old one serves again
 * (rolled_back: true); 503 the rollback failed too (degraded: true).
 * Every failure body is the OpenAI error envelope plus those fields.
 *
 * Thread: http; a swap job's run() on its job thread.
 */
#include "server/srv_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *iso_time(uint64_t wall_ms)
{
    char date[32];
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(date);
}

static json_t *quant_json(int bits, int group_size)
{
    if (!bits) return json_null();
    return json_pack("{s:i, s:i}", "bits", bits, "group_size", group_size);
}

/* ---- current ---------------------------------------------------------- */

static void describe_model(json_t *o, const swap_bundle *b)
{
    srv_backend v;
    srv_backend_from_bundle(b, &v);
    const model_spec *spec = model_get_spec(b->m);
    model_kv_geometry g = model_spec_kv_geometry(spec);
    json_object_set_new(o, "model_id", json_string(b->model_id));
    json_object_set_new(o, "dir", srv_json_text(b->dir, strlen(b->dir)));
    json_object_set_new(o, "architecture", json_string(spec->arch_name));
    json_object_set_new(o, "model_type", json_string(spec->model_type));
    json_object_set_new(o, "dtype", json_string(v.model_dtype));
    json_object_set_new(o, "quantization", quant_json(spec->quant_bits, spec->quant_group_size));
    json_object_set_new(o, "n_layers", json_integer(g.n_layers));
    json_object_set_new(o, "n_kv_heads", json_integer(g.n_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(g.head_dim));
    json_object_set_new(o, "v_head_dim", json_integer(g.v_head_dim));
    json_object_set_new(o, "max_context", json_integer(b->max_ctx));
    json_object_set_new(o, "loaded_at", iso_time(b->loaded_at_ms));
    json_object_set_new(o, "loaded_at_ms", json_integer((json_int_t)b->loaded_at_ms));
    json_object_set_new(o, "fingerprint", json_string(b->fingerprint));
    json_object_set_new(o, "weight_bytes", json_integer((json_int_t)model_weight_bytes(b->m)));
    json_object_set_new(o, "tool_format", json_string(srv_tool_format_name(v.tool_format)));
}

void srv_admin_h_current(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    srv_server *s = c->srv;
    const char *state = srv_state_now(s);
    const swap_bundle *b = srv_models_peek(s); /* never waits: a swap may be running */
    json_t *o = json_pack("{s:s, s:i, s:s, s:I, s:I, s:i}", "state", state, "block_tokens",
                          (int)s->cfg.block_tokens, "kv_format", s->cfg.kv_format, "resident_bytes",
                          (json_int_t)srv_rss_bytes(), "rss_baseline_bytes",
                          (json_int_t)atomic_load(&s->rss_baseline), "inflight", (int)srv_n_inflight(s));
    if (o && b) {
        describe_model(o, b);
    } else if (o) { /* loading, swapping or degraded: the id only, if any */
        char id[SWAP_MAX_MODEL_ID] = "";
        swap_mgr *sm = atomic_load(&s->models);
        if (sm) swap_current_model(sm, id, sizeof id);
        json_object_set_new(o, "model_id", id[0] ? json_string(id) : json_null());
        json_object_set_new(o, "tool_format", json_string(srv_tool_format_name(SRV_TOOLS_NONE)));
    }
    srv_models_put(s, b);
    if (!o) srv_errorf(&r->err, 500, NULL, NULL, "out of memory");
    r->json = o;
}

/* ---- available -------------------------------------------------------- */

void srv_admin_h_available(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    srv_server *s = c->srv;
    swap_model_info *list = NULL;
    size_t n = 0;
    sem_err err;
    sem_err_clear(&err);
    if (swap_list_models(s->cfg.models_dir, s->cfg.hf_cache, &list, &n, &err) != SEM_OK) {
        srv_error_from(&r->err, &err, NULL);
        return;
    }
    char cur[SWAP_MAX_MODEL_ID] = "";
    swap_mgr *sm = atomic_load(&s->models);
    if (sm) swap_current_model(sm, cur, sizeof cur);
    json_t *data = json_array();
    for (size_t i = 0; i < n && data; i++) {
        const swap_model_info *m = &list[i];
        json_t *geo = json_pack("{s:i, s:i, s:i, s:i}", "n_layers", m->geo.n_layers, "n_kv_heads",
                                m->geo.n_kv_heads, "head_dim", m->geo.head_dim, "v_head_dim",
                                m->geo.v_head_dim);
        json_array_append_new(
            data, json_pack("{s:s, s:o, s:s, s:o, s:I, s:o, s:b, s:b}", "id", m->id, "dir",
                            srv_json_text(m->dir, strlen(m->dir)), "architecture", m->arch,
                            "quantization", quant_json(m->quant_bits, m->quant_group_size),
                            "bytes_on_disk", (json_int_t)m->bytes_on_disk, "geometry",
                            geo ? geo : json_null(), "loaded", cur[0] && !strcmp(cur, m->id),
                            "valid", m->valid));
    }
    free(list);
    r->json = json_pack("{s:s, s:o}", "object", "list", "data", data ? data : json_array());
}

/* ---- swap ------------------------------------------------------------- */

typedef struct swap_job {
    srv_job base;                /* first: the job is freed through it */
    srv_server *srv;
    char model_id[SWAP_MAX_MODEL_ID];
    int32_t timeout_s;
    sem_status st;
    swap_result res;
} swap_job;

static void swap_job_run(srv_job *j)
{
    swap_job *sj = (swap_job *)j;
    srv_server *s = sj->srv;
    sj->st = swap_run(atomic_load(&s->models), sj->model_id, sj->timeout_s, &sj->res);
    const swap_result *res = &sj->res;
    srv_swap_result kind = sj->st == SEM_OK  ? SRV_SWAP_OK
                           : res->abandoned  ? SRV_SWAP_ABANDONED
                           : res->degraded   ? SRV_SWAP_DEGRADED
                           : res->rolled_back ? SRV_SWAP_ROLLED_BACK
                                              : SRV_SWAP_RESULT_COUNT; /* refused: not counted */
    if (kind != SRV_SWAP_RESULT_COUNT)
        srv_metrics_swap(s->metrics, kind, res->duration_ms / 1e3, res->steps, res->n_steps);
    sem_log(s->lg, sj->st ? SEM_LOG_WARN : SEM_LOG_INFO,
            "admin swap from=%s to=%s status=%s ms=%.1f rolled_back=%d degraded=%d abandoned=%d msg=\"%s\"",
            res->old_model_id[0] ? res->old_model_id : "-", sj->model_id, sem_status_name(sj->st),
            res->duration_ms, res->rolled_back, res->degraded, res->abandoned, res->message);
}

static json_t *steps_json(const swap_result *res)
{
    json_t *a = json_array();
    for (int i = 0; i < res->n_steps && a; i++)
        if (res->steps[i].done)
            json_array_append_new(a, json_pack("{s:s, s:f}", "name", res->steps[i].name, "ms",
                                               res->steps[i].ms));
    return a ? a : json_array();
}

/* The error envelope for a failed swap plus what happened. */
static void swap_failure(const swap_job *sj, srv_reply *r, int http_status, const char *code,
                         const char *status)
{
    const swap_result *res = &sj->res;
    srv_error e;
    srv_errorf(&e, http_status, code, NULL, "%s", res->message[0] ? res->message : sem_status_name(sj->st));
    json_t *o = srv_error_envelope(SRV_API_OPENAI, &e);
    if (!o) {
        r->err = e;
        return;
    }
    json_object_set_new(o, "status", json_string(status));
    json_object_set_new(o, "message", json_string(e.message));
    json_object_set_new(o, "old_model_id", json_string(res->old_model_id));
    json_object_set_new(o, "new_model_id", json_string(res->new_model_id));
    json_object_set_new(o, "rolled_back", json_boolean(res->rolled_back));
    json_object_set_new(o, "degraded", json_boolean(res->degraded));
    json_object_set_new(o, "abandoned", json_boolean(res->abandoned));
    json_object_set_new(o, "duration_ms", json_real(res->duration_ms));
    json_object_set_new(o, "steps", steps_json(res));
    r->status = http_status;
    r->json = o;
}

static void swap_job_reply(srv_job *j, srv_reply *r)
{
    swap_job *sj = (swap_job *)j;
    const swap_result *res = &sj->res;
    if (sj->st == SEM_OK) {
        r->json = json_pack("{s:s, s:s, s:s, s:s, s:f, s:o, s:I}", "status", "success", "old_model_id",
                            res->old_model_id, "new_model_id", res->new_model_id, "message",
                            res->message, "duration_ms", res->duration_ms, "steps", steps_json(res),
                            "rss_after_unload_bytes", (json_int_t)res->rss_after_unload);
        if (!r->json) srv_errorf(&r->err, 500, NULL, NULL, "out of memory");
        return;
    }
    if (res->abandoned) return swap_failure(sj, r, 504, "swap_abandoned", "abandoned");
    if (res->degraded) return swap_failure(sj, r, 503, "swap_failed_degraded", "degraded");
    if (res->rolled_back) return swap_failure(sj, r, 500, "swap_failed_rolled_back", "rolled_back");
    switch (sj->st) { /* refused before anything was touched */
    case SEM_ENOTFOUND:
        srv_errorf(&r->err, 404, "model_not_found", "model_id", "%s", res->message);
        return;
    case SEM_EBUSY:
        srv_errorf(&r->err, 409, "swap_in_progress", NULL, "%s", res->message);
        return;
    case SEM_EINVAL:
        srv_errorf(&r->err, 400, "invalid_value", "model_id", "%s", res->message);
        return;
    default: swap_failure(sj, r, srv_http_status_for(sj->st), "swap_failed", "failed");
    }
}

static void swap_job_destroy(srv_job *j) { free(j); }

void srv_admin_h_swap(srv_conn *c, const json_t *body, srv_reply *r)
{
    srv_server *s = c->srv;
    const char *id = NULL;
    int64_t timeout = 60;
    if (!srv_get_str(body, "model_id", SWAP_MAX_MODEL_ID - 1, &id, &r->err) ||
        !srv_get_int(body, "timeout_seconds", 1, 600, &timeout, &r->err))
        return;
    if (!id || !*id) {
        srv_errorf(&r->err, 400, "missing_field", "model_id", "model_id is required");
        return;
    }
    if (!atomic_load(&s->models)) {
        srv_errorf(&r->err, 503, "not_ready", NULL, "the server is still loading its first model");
        r->err.retry_after_s = 1;
        return;
    }
    swap_job *sj = sem_calloc(1, sizeof *sj);
    if (!sj) {
        srv_errorf(&r->err, 500, NULL, NULL, "out of memory");
        return;
    }
    sj->base.run = swap_job_run;
    sj->base.reply = swap_job_reply;
    sj->base.destroy = swap_job_destroy;
    sj->srv = s;
    snprintf(sj->model_id, sizeof sj->model_id, "%s", id);
    sj->timeout_s = (int32_t)timeout;
    r->job = &sj->base;
}

/* ---- caches ----------------------------------------------------------- */

void srv_admin_h_clear_caches(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    if (!srv_conn_acquire(c, r)) return;
    size_t n = 0;
    sem_err err;
    sem_err_clear(&err);
    if (eng_caches_clear(c->backend.eng, &n, &err) != SEM_OK) {
        srv_error_from(&r->err, &err, NULL);
        return;
    }
    r->json = json_pack("{s:s, s:I, s:s}", "status", "cleared", "dropped", (json_int_t)n, "model_id",
                        c->backend.model_id);
}
