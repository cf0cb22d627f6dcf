/* endpoints.c - the handlers of the generation and model routes: parse the
 * body with the API's parser, then hand over to srv_generation_start (chat,
 * completions, messages), count tokens, or list the model. Each takes the
 * current model with srv_conn_acquire (it may be parked during a swap and
 * run again afterwards); http.c gives it back.
 *
 * Thread: http.
 */
#include "server/srv_int.h"

#include <string.h>
#include <time.h>

static srv_parse_ctx parse_ctx(srv_conn *c)
{
    srv_parse_ctx pc = {c->srv->cfg.test_hooks, c->agent[0] ? c->agent : NULL};
    return pc;
}

typedef bool (*parse_fn)(const json_t *, const srv_parse_ctx *, srv_gen_req *, srv_error *);

static void generate(srv_conn *c, const json_t *body, srv_reply *r, parse_fn parse,
                     const srv_fmt_ops *fmt)
{
    srv_gen_req req;
    srv_gen_req_init(&req);
    srv_parse_ctx pc = parse_ctx(c);
    if (parse(body, &pc, &req, &r->err)) srv_generation_start(c, &req, fmt, r);
    srv_gen_req_fini(&req);
}

void srv_h_chat(srv_conn *c, const json_t *body, srv_reply *r)
{
    generate(c, body, r, srv_oai_parse_chat, &srv_oai_chat_fmt);
}

void srv_h_completions(srv_conn *c, const json_t *body, srv_reply *r)
{
    generate(c, body, r, srv_oai_parse_completion, &srv_oai_completion_fmt);
}

void srv_h_messages(srv_conn *c, const json_t *body, srv_reply *r)
{
    generate(c, body, r, srv_anth_parse_messages, &srv_anth_messages_fmt);
}

/* Exactly the tokens generation would prefill. */
void srv_h_count_tokens(srv_conn *c, const json_t *body, srv_reply *r)
{
    srv_gen_req req;
    srv_gen_req_init(&req);
    srv_parse_ctx pc = parse_ctx(c);
    tok_ids ids;
    tok_ids_init(&ids);
    if (srv_anth_parse_count(body, &pc, &req, &r->err) && srv_conn_acquire(c, r)) {
        if (req.tools && c->backend.tool_format == SRV_TOOLS_NONE)
            srv_errorf(&r->err, 400, "tools_unsupported", "tools",
                       "this model's chat template does not render tools");
        else if (srv_prompt_build(&c->backend, &req, &ids, &r->err))
            r->json = json_pack("{s:I}", "input_tokens", (json_int_t)ids.len);
    }
    tok_ids_fini(&ids);
    srv_gen_req_fini(&req);
}

/* One model in the OpenAI or (with anthropic-version) the Anthropic shape. */
static json_t *model_json(srv_conn *c, const srv_backend *b)
{
    if (c->api == SRV_API_ANTHROPIC) {
        char date[32];
        time_t t = (time_t)(clk_wall_ms() / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return json_pack("{s:s, s:s, s:s, s:s}", "type", "model", "id", b->model_id,
                         "display_name", b->model_id, "created_at", date);
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:i}", "id", b->model_id, "object", "model", "created",
                     (json_int_t)(clk_wall_ms() / 1000), "owned_by", "semantic",
                     "max_model_len", (int)b->max_ctx);
}

/* Lists the served model; an empty list when none is (degraded). */
void srv_h_models(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    if (!srv_conn_acquire(c, r)) {
        if (r->wait || !r->err.code || strcmp(r->err.code, "model_degraded")) return;
        memset(&r->err, 0, sizeof r->err);
    }
    json_t *data = json_array();
    if (c->backend.bundle) json_array_append_new(data, model_json(c, &c->backend));
    if (c->api == SRV_API_ANTHROPIC) {
        const json_t *first = json_object_get(json_array_get(data, 0), "id");
        r->json = json_pack("{s:o, s:b, s:O, s:O}", "data", data, "has_more", 0, "first_id",
                            first ? first : json_null(), "last_id", first ? first : json_null());
    } else {
        r->json = json_pack("{s:s, s:o}", "object", "list", "data", data);
    }
}

void srv_h_model(srv_conn *c, const json_t *body, srv_reply *r)
{
    (void)body;
    if (!srv_conn_acquire(c, r)) return;
    if (strcmp(c->path_param, c->backend.model_id) && strcmp(c->path_param, "default")) {
        srv_errorf(&r->err, 404, "model_not_found", "model", "the model '%.128s' is not loaded",
                   c->path_param);
        return;
    }
    r->json = model_json(c, &c->backend);
}
