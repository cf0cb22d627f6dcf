/* api_agents.c - the agents API: each agent's KV cache for the current
 * model (cache/cache.h through the engine's door).
 *
 *   GET    /v1/agents        {"object":"list","model","data":[agent...]}
 *   GET    /v1/agents/{id}   one agent: 404 when it has no cache
 *   DELETE /v1/agents/{id}   drops the agent's cache, RAM and file;
 *                            ?evict_only=true keeps the file (the agent
 *                            turns warm and reloads from disk next time);
 *                            404 unknown, 409 while a request uses it
 *
 * An agent: {"id","object":"agent","model","tier" (hot: in RAM; warm: a
 * file), "tokens", "bytes" (KV bytes in RAM or on disk), "last_used_at"
 * (unix seconds), "hits", "dirty" (not yet written), "pinned" (a request
 * uses it), "anonymous" (a prefix-matched conversation without an id)}.
 *
 * Caches live per model namespace: these routes see the current model's
 * agents only (another model's files stay on disk until it comes back).
 *
 * Thread: http (each call is a short job on the engine thread).
 */
#include "server/srv_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static json_t *agent_json(const cache_entry_info *e, const char *model_id)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:b}", "id", e->agent_id,
                     "object", "agent", "model", model_id, "tier", cache_tier_name(e->tier), "tokens",
                     (json_int_t)e->n_tokens, "bytes", (json_int_t)e->bytes, "last_used_at",
                     (json_int_t)(e->last_use_ms / 1000), "last_used_ms", (json_int_t)e->last_use_ms,
                     "hits", (json_int_t)e->hits, "dirty", e->dirty, "pinned", e->pinned, "anonymous",
                     e->anonymous);
}

/* The current model's agent list (caller frees *out). */
static bool list_agents(srv_conn *c, srv_reply *r, cache_entry_info **out, size_t *n)
{
    if (!srv_conn_acquire(c, r)) return false;
    sem_err err;
    sem_err_clear(&err);
    if (eng_agents_list(c->backend.eng, out, n, &err) != SEM_OK) return srv_error_from(&r->err, &err, NULL);
    return true;
}

static bool path_agent_ok(srv_conn *c, srv_reply *r)
{
    if (srv_agent_id_valid(c->path_param, strlen(c->path_param))) return true;
    return srv_errorf(&r->err, 400, "invalid_agent_id", "id",
                      "agent ids match [A-Za-z0-9_.-]{1,128} and do not start with '.'");
}

void srv_h_agents(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    cache_entry_info *list = NULL;
    size_t n = 0;
    if (!list_agents(c, r, &list, &n)) return;
    json_t *data = json_array();
    for (size_t i = 0; i < n && data; i++) json_array_append_new(data, agent_json(&list[i], c->backend.model_id));
    free(list);
    r->json = json_pack("{s:s, s:s, s:o}", "object", "list", "model", c->backend.model_id, "data",
                        data ? data : json_array());
}

void srv_h_agent(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    if (!path_agent_ok(c, r)) return;
    cache_entry_info *list = NULL;
    size_t n = 0;
    if (!list_agents(c, r, &list, &n)) return;
    for (size_t i = 0; i < n && !r->json; i++)
        if (!strcmp(list[i].agent_id, c->path_param)) r->json = agent_json(&list[i], c->backend.model_id);
    free(list);
    if (!r->json)
        srv_errorf(&r->err, 404, "agent_not_found", "id", "agent '%s' has no cache for model %.128s",
                   c->path_param, c->backend.model_id);
}

void srv_h_agent_delete(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    if (!path_agent_ok(c, r)) return;
    bool evict_only = false;
    const char *q = srv_conn_query(c, "evict_only");
    if (q) {
        if (!strcasecmp(q, "true") || !strcmp(q, "1")) evict_only = true;
        else if (strcasecmp(q, "false") && strcmp(q, "0")) {
            srv_errorf(&r->err, 400, "invalid_value", "evict_only", "evict_only must be true or false");
            return;
        }
    }
    if (!srv_conn_acquire(c, r)) return;
    sem_err err;
    sem_err_clear(&err);
    sem_status st = eng_agent_delete(c->backend.eng, c->path_param, evict_only, &err);
    if (st == SEM_ENOTFOUND) {
        srv_errorf(&r->err, 404, "agent_not_found", "id", "agent '%s' has no cache for model %.128s",
                   c->path_param, c->backend.model_id);
        return;
    }
    if (st == SEM_EBUSY) {
        srv_errorf(&r->err, 409, "agent_busy", "id", "agent '%s' has a request running; retry when it ends",
                   c->path_param);
        return;
    }
    if (st) {
        srv_error_from(&r->err, &err, NULL);
        return;
    }
    r->json = json_pack("{s:s, s:s, s:b, s:b}", "id", c->path_param, "object", "agent.deleted", "deleted", 1,
                        "evict_only", evict_only);
}
