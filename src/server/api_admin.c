/* api_admin.c - the admin API (X-Admin-Key, checked in http.c before any
 * /admin/ route runs). A stub until the swap issue lands: it reports the
 * current model and the server state. POST /admin/models/swap and the
 * agents API will add rows to routes.c and handlers here.
 *
 * Thread: http.
 */
#include "server/srv_int.h"

void srv_admin_h_current(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    srv_server *s = c->srv;
    pthread_mutex_lock(&s->backend_mu);
    srv_backend b = s->backend;
    bool have = s->have_backend;
    pthread_mutex_unlock(&s->backend_mu);
    srv_state st = atomic_load(&s->draining) ? SRV_STATE_DRAINING : srv_get_state(s);
    r->json = json_pack("{s:s?, s:s?, s:s?, s:i, s:s, s:s, s:i}", "model_id", have ? b.model_id : NULL,
                        "arch", have ? b.model_arch : NULL, "dtype", have ? b.model_dtype : NULL,
                        "max_context", have ? (int)b.max_ctx : 0, "state", srv_state_name(st),
                        "tool_format", srv_tool_format_name(have ? b.tool_format : SRV_TOOLS_NONE),
                        "inflight", (int)srv_n_inflight(s));
}
