/* routes.c - the route table: one row per endpoint (method, path template,
 * auth level, error envelope, handler). Adding an endpoint is adding a row.
 *
 * Path templates are exact paths, or end in "{id}", which matches one
 * non-empty path segment (at most SRV_MAX_ID_BYTES bytes), or with
 * id_has_slashes the rest of the path (model ids are "org/name"; at most
 * SWAP_MAX_MODEL_ID - 1 bytes, no empty segment). The templates double as
 * the metrics labels, so raw paths never become labels.
 *
 * Thread: any (static const).
 */
#include "server/srv_int.h"

#include <stdio.h>
#include <string.h>

const srv_route srv_routes[] = {
    {"POST", "/v1/chat/completions", SRV_AUTH_API, SRV_API_OPENAI, srv_h_chat, false},
    {"POST", "/v1/completions", SRV_AUTH_API, SRV_API_OPENAI, srv_h_completions, false},
    {"POST", "/v1/messages", SRV_AUTH_API, SRV_API_ANTHROPIC, srv_h_messages, false},
    {"POST", "/v1/messages/count_tokens", SRV_AUTH_API, SRV_API_ANTHROPIC, srv_h_count_tokens, false},
    {"GET", "/v1/models", SRV_AUTH_API, SRV_API_OPENAI, srv_h_models, false},
    {"GET", "/v1/models/{id}", SRV_AUTH_API, SRV_API_OPENAI, srv_h_model, true},
    {"GET", "/health", SRV_AUTH_PUBLIC, SRV_API_OPENAI, srv_h_health, false},
    {"GET", "/health/live", SRV_AUTH_PUBLIC, SRV_API_OPENAI, srv_h_live, false},
    {"GET", "/health/startup", SRV_AUTH_PUBLIC, SRV_API_OPENAI, srv_h_startup, false},
    {"GET", "/health/ready", SRV_AUTH_PUBLIC, SRV_API_OPENAI, srv_h_ready, false},
    {"GET", "/metrics", SRV_AUTH_PUBLIC, SRV_API_OPENAI, srv_h_metrics, false},
    {"GET", "/admin/models/current", SRV_AUTH_ADMIN, SRV_API_OPENAI, srv_admin_h_current, false},
    {"GET", "/admin/models/available", SRV_AUTH_ADMIN, SRV_API_OPENAI, srv_admin_h_available, false},
    {"POST", "/admin/models/swap", SRV_AUTH_ADMIN, SRV_API_OPENAI, srv_admin_h_swap, false},
    {"DELETE", "/admin/caches", SRV_AUTH_ADMIN, SRV_API_OPENAI, srv_admin_h_clear_caches, false},
    {"GET", "/v1/agents", SRV_AUTH_API, SRV_API_OPENAI, srv_h_agents, false},
    {"GET", "/v1/agents/{id}", SRV_AUTH_API, SRV_API_OPENAI, srv_h_agent, false},
    {"DELETE", "/v1/agents/{id}", SRV_AUTH_API, SRV_API_OPENAI, srv_h_agent_delete, false},
};
const size_t srv_n_routes = sizeof srv_routes / sizeof srv_routes[0];

/* Metric labels, in table order ("other" is added by metrics.c). */
const char *const srv_route_names[] = {
    "/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/messages/count_tokens",
    "/v1/models", "/v1/models/{id}", "/health", "/health/live", "/health/startup",
    "/health/ready", "/metrics", "/admin/models/current", "/admin/models/available",
    "/admin/models/swap", "/admin/caches", "/v1/agents", "/v1/agents/{id}", "/v1/agents/{id}",
};
_Static_assert(sizeof srv_route_names / sizeof srv_route_names[0] ==
                   sizeof srv_routes / sizeof srv_routes[0],
               "one metrics label per route");

/* Does path match route r? Fills param for "{id}" templates. */
static bool path_match(const srv_route *r, const char *path, char *param, size_t cap)
{
    const char *tmpl = r->path;
    const char *brace = strstr(tmpl, "{id}");
    if (!brace) return !strcmp(tmpl, path);
    size_t pre = (size_t)(brace - tmpl);
    if (strncmp(tmpl, path, pre)) return false;
    const char *seg = path + pre;
    size_t n = strlen(seg);
    if (n == 0) return false;
    if (r->id_has_slashes) {
        if (n >= SWAP_MAX_MODEL_ID || seg[0] == '/' || seg[n - 1] == '/' || strstr(seg, "//"))
            return false;
    } else if (n > SRV_MAX_ID_BYTES || strchr(seg, '/')) {
        return false;
    }
    if (param && cap > n) memcpy(param, seg, n + 1);
    return true;
}

const srv_route *srv_route_find(const char *method, const char *path, bool *path_ok,
                                char *param, size_t param_cap)
{
    *path_ok = false;
    for (size_t i = 0; i < srv_n_routes; i++) {
        if (!path_match(&srv_routes[i], path, param, param_cap)) continue;
        *path_ok = true;
        if (!strcmp(srv_routes[i].method, method)) return &srv_routes[i];
    }
    return NULL;
}

void srv_route_allow(const char *path, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < srv_n_routes; i++) {
        if (!path_match(&srv_routes[i], path, NULL, 0) || strstr(out, srv_routes[i].method))
            continue;
        int w = snprintf(out + n, cap - n, "%s%s", n ? ", " : "", srv_routes[i].method);
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
    if (n + 10 < cap) snprintf(out + n, cap - n, "%sOPTIONS", n ? ", " : "");
}
