/* metrics.c - the server's counters and histograms, rendered in the
 * Prometheus text exposition format (version 0.0.4) for GET /metrics.
 *
 * Label cardinality is bounded by construction: routes are the templates
 * from the route table (plus "other" for anything unmatched), statuses come
 * from a fixed list (plus "other"), cache tiers, swap results and swap
 * steps are enums. No raw path, agent id or model output ever becomes a
 * label; the only free-text labels are the served model's own id, arch
 * and dtype.
 *
 * The agent cache series (semantic_agent_cache_*) are the cache store's own
 * counters, read at render time from the current model's engine: they
 * count since that model was loaded and restart from zero after a swap, as
 * counters do after a process restart (rate() handles it).
 *
 * Thread: any; one mutex guards everything (updates are a few adds).
 */
#include "server/srv_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const int known_status[] = {200, 204, 400, 401, 403, 404, 405, 409,
                                   413, 429, 500, 503, 504, 0 /* other */};
#define N_STATUS (sizeof known_status / sizeof known_status[0])

#define MAX_BUCKETS 16
typedef struct histo {
    const double *le; /* upper bounds, ascending; +Inf implied */
    size_t n_le;
    uint64_t counts[MAX_BUCKETS + 1]; /* per bucket (not cumulative); last = +Inf */
    uint64_t count;
    double sum;
} histo;

static const double latency_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1, 2.5, 5, 10, 30, 60, 120};
static const double itl_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1, 0.25, 0.5, 1, 2.5};
static const double swap_le[] = {0.5, 1, 2, 5, 10, 30, 60, 120, 300};

struct srv_metrics {
    pthread_mutex_t mu;             /* guards everything below */
    const char *const *routes;      /* borrowed; n_routes templates */
    size_t n_routes;
    uint64_t *requests;             /* [(n_routes + 1) * N_STATUS] */
    histo *latency;                 /* [n_routes + 1] */
    histo ttft, itl, swap_s;
    uint64_t counters[SRV_C_COUNT];
    uint64_t cache[SRV_TIER_COUNT];
    uint64_t swaps[SRV_SWAP_RESULT_COUNT];
    double last_step_ms[SWAP_N_STEPS]; /* the last swap that ran its steps */
    bool have_steps;
};

static const char *const swap_results[SRV_SWAP_RESULT_COUNT] = {"ok", "rolled_back", "degraded",
                                                                "abandoned"};

static void histo_init(histo *h, const double *le, size_t n)
{
    memset(h, 0, sizeof *h);
    SEM_ASSERT(n <= MAX_BUCKETS);
    h->le = le;
    h->n_le = n;
}

static void histo_observe(histo *h, double v)
{
    size_t i = 0;
    while (i < h->n_le && v > h->le[i]) i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

sem_status srv_metrics_create(const char *const *route_names, size_t n_routes,
                              srv_metrics **out, sem_err *err)
{
    srv_metrics *m = sem_calloc(1, sizeof *m);
    if (!m) return sem_errf(err, SEM_ENOMEM, "metrics: out of memory");
    m->routes = route_names;
    m->n_routes = n_routes;
    m->requests = sem_calloc((n_routes + 1) * N_STATUS, sizeof *m->requests);
    m->latency = sem_calloc(n_routes + 1, sizeof *m->latency);
    if (!m->requests || !m->latency) {
        srv_metrics_destroy(m);
        return sem_errf(err, SEM_ENOMEM, "metrics: out of memory");
    }
    for (size_t i = 0; i <= n_routes; i++)
        histo_init(&m->latency[i], latency_le, sizeof latency_le / sizeof latency_le[0]);
    histo_init(&m->ttft, latency_le, sizeof latency_le / sizeof latency_le[0]);
    histo_init(&m->itl, itl_le, sizeof itl_le / sizeof itl_le[0]);
    histo_init(&m->swap_s, swap_le, sizeof swap_le / sizeof swap_le[0]);
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return SEM_OK;
}

void srv_metrics_destroy(srv_metrics *m)
{
    if (!m) return;
    if (m->requests && m->latency) pthread_mutex_destroy(&m->mu);
    free(m->requests);
    free(m->latency);
    free(m);
}

static size_t status_index(int http_status)
{
    for (size_t i = 0; i + 1 < N_STATUS; i++)
        if (known_status[i] == http_status) return i;
    return N_STATUS - 1;
}

void srv_metrics_request(srv_metrics *m, size_t route, int http_status, double duration_s)
{
    if (!m) return;
    if (route > m->n_routes) route = m->n_routes;
    for (size_t i = 0; i < route && route < m->n_routes; i++) /* GET and DELETE of one template share series */
        if (!strcmp(m->routes[i], m->routes[route])) {
            route = i;
            break;
        }
    pthread_mutex_lock(&m->mu);
    m->requests[route * N_STATUS + status_index(http_status)]++;
    histo_observe(&m->latency[route], duration_s);
    pthread_mutex_unlock(&m->mu);
}

static void observe_locked(srv_metrics *m, histo *h, double v)
{
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    histo_observe(h, v);
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_ttft(srv_metrics *m, double s) { observe_locked(m, m ? &m->ttft : NULL, s); }
void srv_metrics_inter_token(srv_metrics *m, double s) { observe_locked(m, m ? &m->itl : NULL, s); }

void srv_metrics_add(srv_metrics *m, srv_counter c, uint64_t n)
{
    if (!m || c >= SRV_C_COUNT) return;
    pthread_mutex_lock(&m->mu);
    m->counters[c] += n;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_cache(srv_metrics *m, srv_cache_tier tier)
{
    if (!m || tier >= SRV_TIER_COUNT) return;
    pthread_mutex_lock(&m->mu);
    m->cache[tier]++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_swap(srv_metrics *m, srv_swap_result r, double duration_s,
                      const swap_step *steps, int n_steps)
{
    if (!m || r >= SRV_SWAP_RESULT_COUNT) return;
    pthread_mutex_lock(&m->mu);
    m->swaps[r]++;
    histo_observe(&m->swap_s, duration_s);
    if (steps && n_steps > 1) { /* more than the drain ran */
        for (int i = 0; i < SWAP_N_STEPS; i++)
            m->last_step_ms[i] = i < n_steps && steps[i].done ? steps[i].ms : 0;
        m->have_steps = true;
    }
    pthread_mutex_unlock(&m->mu);
}

uint64_t srv_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, rss = 0;
    int n = fscanf(f, "%llu %llu", &size, &rss);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? (uint64_t)rss * (uint64_t)page : 0;
}

/* ---- rendering ------------------------------------------------------------ */

/* A label value with \, " and newline escaped. */
static bool label(buf *o, const char *v)
{
    bool ok = true;
    for (const char *p = v ? v : ""; *p && ok; p++) {
        if (*p == '\\') ok = buf_append_str(o, "\\\\");
        else if (*p == '"') ok = buf_append_str(o, "\\\"");
        else if (*p == '\n') ok = buf_append_str(o, "\\n");
        else ok = buf_append(o, p, 1);
    }
    return ok;
}

static bool head(buf *o, const char *name, const char *type, const char *help)
{
    return buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Writes one histogram's series; lbl is `route="x",` or "" (label prefix). */
static bool histo_write(buf *o, const char *name, const char *lbl, const histo *h)
{
    uint64_t cum = 0;
    bool ok = true;
    for (size_t i = 0; i < h->n_le && ok; i++) {
        cum += h->counts[i];
        ok = buf_printf(o, "%s_bucket{%sle=\"%g\"} %" PRIu64 "\n", name, lbl, h->le[i], cum);
    }
    cum += h->counts[h->n_le];
    size_t l = strlen(lbl);
    int bare = l ? (int)(l - 1) : 0; /* without the trailing comma */
    return ok && buf_printf(o, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, lbl, cum) &&
           buf_printf(o, "%s_sum%s%.*s%s %.9g\n", name, l ? "{" : "", bare, lbl, l ? "}" : "",
                      h->sum) &&
           buf_printf(o, "%s_count%s%.*s%s %" PRIu64 "\n", name, l ? "{" : "", bare, lbl,
                      l ? "}" : "", h->count);
}

static const char *route_name(const srv_metrics *m, size_t i)
{
    return i < m->n_routes ? m->routes[i] : "other";
}

static bool render_requests(srv_metrics *m, buf *o)
{
    bool ok = head(o, "semantic_http_requests_total", "counter",
                   "HTTP requests by route template and status.");
    for (size_t r = 0; r <= m->n_routes && ok; r++) {
        for (size_t s = 0; s < N_STATUS && ok; s++) {
            uint64_t n = m->requests[r * N_STATUS + s];
            if (!n) continue;
            char st[16];
            if (known_status[s]) snprintf(st, sizeof st, "%d", known_status[s]);
            else snprintf(st, sizeof st, "other");
            ok = buf_append_str(o, "semantic_http_requests_total{route=\"") &&
                 label(o, route_name(m, r)) &&
                 buf_printf(o, "\",status=\"%s\"} %" PRIu64 "\n", st, n);
        }
    }
    ok = ok && head(o, "semantic_http_request_duration_seconds", "histogram",
                    "HTTP request latency by route template (streams: until the last byte).");
    for (size_t r = 0; r <= m->n_routes && ok; r++) {
        if (!m->latency[r].count) continue;
        buf l;
        buf_init(&l);
        ok = buf_append_str(&l, "route=\"") && label(&l, route_name(m, r)) &&
             buf_append_str(&l, "\",") &&
             histo_write(o, "semantic_http_request_duration_seconds", l.data, &m->latency[r]);
        buf_fini(&l);
    }
    return ok;
}

static bool render_tokens(srv_metrics *m, buf *o)
{
    static const char *const tiers[SRV_TIER_COUNT] = {"hot", "warm", "cold"};
    bool ok = head(o, "semantic_time_to_first_token_seconds", "histogram",
                   "Time from a complete request to its first generated token.") &&
              histo_write(o, "semantic_time_to_first_token_seconds", "", &m->ttft) &&
              head(o, "semantic_inter_token_seconds", "histogram",
                   "Time between consecutive tokens of a request.") &&
              histo_write(o, "semantic_inter_token_seconds", "", &m->itl) &&
              head(o, "semantic_prompt_tokens_total", "counter", "Prompt tokens in.") &&
              buf_printf(o, "semantic_prompt_tokens_total %" PRIu64 "\n",
                         m->counters[SRV_C_PROMPT_TOKENS]) &&
              head(o, "semantic_completion_tokens_total", "counter", "Generated tokens out.") &&
              buf_printf(o, "semantic_completion_tokens_total %" PRIu64 "\n",
                         m->counters[SRV_C_COMPLETION_TOKENS]) &&
              head(o, "semantic_cached_prompt_tokens_total", "counter",
                   "Prompt tokens reused from a cache instead of prefilled.") &&
              buf_printf(o, "semantic_cached_prompt_tokens_total %" PRIu64 "\n",
                         m->counters[SRV_C_CACHED_TOKENS]) &&
              head(o, "semantic_cache_lookups_total", "counter",
                   "Generation requests by the cache tier their prefix came from.");
    for (size_t t = 0; t < SRV_TIER_COUNT && ok; t++)
        ok = buf_printf(o, "semantic_cache_lookups_total{tier=\"%s\"} %" PRIu64 "\n", tiers[t],
                        m->cache[t]);
    return ok;
}

static bool render_events(srv_metrics *m, buf *o)
{
    static const char *const steps[SWAP_N_STEPS] = {"drain", "evict", "shutdown", "unload",
                                                    "load", "reconfigure", "update_tag", "reinit"};
    bool ok = head(o, "semantic_client_disconnects_total", "counter",
                   "Requests cancelled because the client went away.") &&
              buf_printf(o, "semantic_client_disconnects_total %" PRIu64 "\n",
                         m->counters[SRV_C_CLIENT_DISCONNECTS]) &&
              head(o, "semantic_rate_limited_total", "counter", "Requests refused with 429.") &&
              buf_printf(o, "semantic_rate_limited_total %" PRIu64 "\n",
                         m->counters[SRV_C_RATE_LIMITED]) &&
              head(o, "semantic_swaps_total", "counter",
                   "Model swaps by result (ok, rolled_back, degraded, abandoned).");
    for (size_t i = 0; i < SRV_SWAP_RESULT_COUNT && ok; i++)
        ok = buf_printf(o, "semantic_swaps_total{result=\"%s\"} %" PRIu64 "\n", swap_results[i],
                        m->swaps[i]);
    ok = ok && head(o, "semantic_swap_duration_seconds", "histogram", "Model swap durations.") &&
         histo_write(o, "semantic_swap_duration_seconds", "", &m->swap_s) &&
         head(o, "semantic_swap_last_step_seconds", "gauge",
              "Each step's time in the last swap that got past the drain.");
    for (size_t i = 0; i < SWAP_N_STEPS && ok && m->have_steps; i++)
        ok = buf_printf(o, "semantic_swap_last_step_seconds{step=\"%s\"} %.9g\n", steps[i],
                        m->last_step_ms[i] / 1e3);
    return ok;
}

static bool counter(buf *o, const char *name, const char *help, uint64_t v, bool have)
{
    return head(o, name, "counter", help) &&
           (!have || buf_printf(o, "%s %" PRIu64 "\n", name, v));
}

/* The agent cache store's counters (absent while no model serves). */
static bool render_agent_cache(const srv_gauges *g, buf *o)
{
    const cache_stats *c = &g->cache;
    bool h = g->have_cache;
    bool ok = head(o, "semantic_agent_cache_hits_total", "counter",
                   "Agent cache lookups that reused KV, by tier (since the model was loaded).");
    if (ok && h)
        ok = buf_printf(o, "semantic_agent_cache_hits_total{tier=\"hot\"} %" PRIu64 "\n", c->hits_hot) &&
             buf_printf(o, "semantic_agent_cache_hits_total{tier=\"warm\"} %" PRIu64 "\n", c->hits_warm);
    ok = ok &&
         counter(o, "semantic_agent_cache_misses_total", "Agent cache lookups that reused nothing.", c->misses, h) &&
         counter(o, "semantic_agent_cache_written_bytes_total", "Bytes written to agent cache files.",
                 c->bytes_written, h) &&
         counter(o, "semantic_agent_cache_read_bytes_total", "Bytes read from agent cache files.",
                 c->bytes_read, h) &&
         counter(o, "semantic_agent_cache_files_written_total", "Agent cache files written.",
                 c->files_written, h) &&
         counter(o, "semantic_agent_cache_quarantined_total",
                 "Agent cache files found corrupt or incompatible and moved to quarantine/.",
                 c->quarantined, h) &&
         counter(o, "semantic_agent_cache_evictions_total", "Hot agent caches evicted from RAM.",
                 c->evictions, h) &&
         head(o, "semantic_agent_cache_entries", "gauge", "Agent cache entries by tier.");
    if (ok && h)
        ok = buf_printf(o, "semantic_agent_cache_entries{tier=\"hot\"} %u\n", (unsigned)c->entries_hot) &&
             buf_printf(o, "semantic_agent_cache_entries{tier=\"warm\"} %u\n", (unsigned)c->entries_warm);
    ok = ok && head(o, "semantic_agent_cache_disk_bytes", "gauge", "Bytes of agent cache files on disk.");
    if (ok && h) ok = buf_printf(o, "semantic_agent_cache_disk_bytes %" PRIu64 "\n", c->disk_bytes);
    return ok;
}

static bool gauge(buf *o, const char *name, const char *help, double v)
{
    return head(o, name, "gauge", help) && buf_printf(o, "%s %.17g\n", name, v);
}

static bool render_gauges(const srv_gauges *g, buf *o)
{
    static const char *const states[] = {"loading",      "serving",  "draining",     "swapping",
                                         "rolling_back", "degraded", "shutting_down"};
    const eng_stats *e = &g->eng;
    bool ok = gauge(o, "semantic_requests_inflight", "Generations holding an engine request.",
                    g->inflight) &&
              gauge(o, "semantic_batch_size", "Sequences in the engine's last step.",
                    g->have_eng ? e->last_batch_size : 0) &&
              gauge(o, "semantic_requests_running", "Requests in the running batch.",
                    g->have_eng ? e->running : 0) &&
              gauge(o, "semantic_queue_depth", "Requests waiting for admission.",
                    g->have_eng ? e->waiting : 0) &&
              gauge(o, "semantic_pool_blocks_used", "KV pool blocks in use.",
                    g->have_eng ? e->blocks_used : 0) &&
              gauge(o, "semantic_pool_blocks_total", "KV pool blocks in all.",
                    g->have_eng ? e->blocks_total : 0) &&
              gauge(o, "semantic_kv_bytes_used",
                    "KV pool bytes holding KV, running and cached (sliding layers: their windows).",
                    g->have_eng ? (double)e->kv_bytes_used : 0) &&
              gauge(o, "semantic_kv_bytes_total", "KV pool bytes in all (the arena).",
                    g->have_eng ? (double)e->kv_bytes_total : 0) &&
              head(o, "semantic_engine_steps_total", "counter", "Engine forward passes.") &&
              buf_printf(o, "semantic_engine_steps_total %" PRIu64 "\n",
                         g->have_eng ? e->steps : 0) &&
              gauge(o, "process_resident_memory_bytes", "Resident memory of the process.",
                    (double)g->rss_bytes) &&
              head(o, "semantic_state", "gauge", "Server state (1 for the current one).");
    for (size_t i = 0; i < sizeof states / sizeof states[0] && ok; i++)
        ok = buf_printf(o, "semantic_state{state=\"%s\"} %d\n", states[i],
                        g->state && !strcmp(g->state, states[i]));
    ok = ok && head(o, "semantic_model_info", "gauge", "The served model (value 1).");
    if (ok && g->model_id) {
        ok = buf_append_str(o, "semantic_model_info{model=\"") && label(o, g->model_id) &&
             buf_append_str(o, "\",arch=\"") && label(o, g->model_arch) &&
             buf_append_str(o, "\",dtype=\"") && label(o, g->model_dtype) &&
             buf_printf(o, "\",max_context=\"%d\"} 1\n", (int)g->max_ctx);
    }
    ok = ok && head(o, "semantic_model_loaded_timestamp_seconds", "gauge",
                    "When the served model was loaded (unix time).");
    if (ok && g->model_id)
        ok = buf_printf(o, "semantic_model_loaded_timestamp_seconds %.3f\n", (double)g->loaded_at_ms / 1e3);
    return ok && render_agent_cache(g, o);
}

bool srv_metrics_render(srv_metrics *m, const srv_gauges *g, buf *out)
{
    pthread_mutex_lock(&m->mu);
    bool ok = render_requests(m, out) && render_tokens(m, out) && render_events(m, out);
    pthread_mutex_unlock(&m->mu);
    return ok && render_gauges(g, out);
}
