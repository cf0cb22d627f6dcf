/* request.c - the API-neutral generation request (srv_gen_req): the field
 * readers both APIs share, agent identity, the test hook, message content,
 * and building the prompt exactly as generation (and count_tokens) sees it.
 *
 * Field readers treat an absent key and JSON null alike (the SDKs send null
 * for unset optionals) and fail with a 400 that names the field. They only
 * narrow after range checks.
 *
 * Thread: http.
 */
#include "server/srv_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void srv_gen_req_init(srv_gen_req *r)
{
    memset(r, 0, sizeof *r);
    r->sampling.temperature = 1.0f;
    r->sampling.top_p = 1.0f;
    r->repetition_penalty = 1.0f;
    tok_ids_init(&r->prompt_ids);
}

void srv_gen_req_fini(srv_gen_req *r)
{
    free(r->model);
    json_decref(r->messages);
    json_decref(r->tools);
    free(r->prompt);
    tok_ids_fini(&r->prompt_ids);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->test_completion);
    memset(r, 0, sizeof *r);
}

/* ---- field readers ------------------------------------------------------- */

static const json_t *field(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

bool srv_get_bool(const json_t *obj, const char *key, bool *out, srv_error *e)
{
    const json_t *v = field(obj, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return srv_errorf(e, 400, "invalid_type", key, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return true;
}

bool srv_get_int(const json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out,
                 srv_error *e)
{
    const json_t *v = field(obj, key);
    if (!v) return true;
    if (!json_is_integer(v))
        return srv_errorf(e, 400, "invalid_type", key, "'%s' must be an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return srv_errorf(e, 400, "invalid_value", key,
                          "'%s' is %lld; it must be between %lld and %lld", key, (long long)x,
                          (long long)lo, (long long)hi);
    *out = x;
    return true;
}

bool srv_get_num(const json_t *obj, const char *key, double lo, double hi, double *out,
                 srv_error *e)
{
    const json_t *v = field(obj, key);
    if (!v) return true;
    if (!json_is_number(v))
        return srv_errorf(e, 400, "invalid_type", key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi)
        return srv_errorf(e, 400, "invalid_value", key, "'%s' is %g; it must be between %g and %g",
                          key, x, lo, hi);
    *out = x;
    return true;
}

bool srv_get_str(const json_t *obj, const char *key, size_t max_len, const char **out,
                 srv_error *e)
{
    const json_t *v = field(obj, key);
    if (!v) return true;
    if (!json_is_string(v)) return srv_errorf(e, 400, "invalid_type", key, "'%s' must be a string", key);
    if (json_string_length(v) > max_len)
        return srv_errorf(e, 400, "invalid_value", key, "'%s' is longer than %zu bytes", key, max_len);
    *out = json_string_value(v);
    return true;
}

static bool add_stop(srv_gen_req *r, const char *key, const json_t *s, srv_error *e)
{
    if (!json_is_string(s))
        return srv_errorf(e, 400, "invalid_type", key, "'%s' must be a string or a list of strings", key);
    size_t n = json_string_length(s);
    if (n == 0) return srv_errorf(e, 400, "invalid_value", key, "'%s' entries must not be empty", key);
    if (n > SRV_MAX_STOP_BYTES)
        return srv_errorf(e, 400, "invalid_value", key, "'%s' entries are limited to %d bytes", key,
                          SRV_MAX_STOP_BYTES);
    if (memchr(json_string_value(s), '\0', n))
        return srv_errorf(e, 400, "invalid_value", key, "'%s' entries must not contain NUL", key);
    if (r->n_stop == SRV_MAX_STOP)
        return srv_errorf(e, 400, "invalid_value", key, "at most %d stop sequences", SRV_MAX_STOP);
    char *d = sem_strdup(json_string_value(s));
    if (!d) return srv_errorf(e, 500, NULL, NULL, "out of memory");
    r->stop[r->n_stop++] = d;
    return true;
}

bool srv_get_stops(const json_t *obj, const char *key, srv_gen_req *r, srv_error *e)
{
    const json_t *v = field(obj, key);
    if (!v) return true;
    if (!json_is_array(v)) return add_stop(r, key, v, e);
    size_t i;
    const json_t *s;
    json_array_foreach(v, i, s) if (!add_stop(r, key, s, e)) return false;
    return true;
}

bool srv_get_agent(const json_t *obj, const char *header_agent, srv_gen_req *r, srv_error *e)
{
    const char *from_body = NULL, *key = NULL;
    static const char *const keys[] = {"session_id", "agent_id"};
    for (size_t k = 0; k < 2; k++) {
        const json_t *v = field(obj, keys[k]);
        if (!v) continue;
        if (!json_is_string(v) ||
            !srv_agent_id_valid(json_string_value(v), json_string_length(v)))
            return srv_errorf(e, 400, "invalid_agent_id", keys[k],
                              "'%s' must match [A-Za-z0-9_.-]{1,128} and not start with '.'",
                              keys[k]);
        if (from_body && strcmp(from_body, json_string_value(v)))
            return srv_errorf(e, 400, "invalid_agent_id", keys[k],
                              "'session_id' and 'agent_id' name different agents");
        from_body = json_string_value(v);
        key = keys[k];
    }
    if (header_agent && from_body && strcmp(header_agent, from_body))
        return srv_errorf(e, 400, "invalid_agent_id", key,
                          "X-Session-ID and '%s' name different agents", key);
    const char *id = from_body ? from_body : header_agent;
    if (id) snprintf(r->agent_id, sizeof r->agent_id, "%s", id);
    return true;
}

bool srv_get_test_completion(const json_t *obj, bool test_hooks, srv_gen_req *r, srv_error *e)
{
    const char *k = "semantic_test_completion";
    const json_t *v = field(obj, k);
    if (!v) return true;
    if (!test_hooks)
        return srv_errorf(e, 400, "test_hooks_disabled", k,
                          "'%s' is a test hook; start the server with --test-hooks to use it", k);
    if (!json_is_string(v)) return srv_errorf(e, 400, "invalid_type", k, "'%s' must be a string", k);
    r->test_completion = sem_strdup(json_string_value(v));
    if (!r->test_completion) return srv_errorf(e, 500, NULL, NULL, "out of memory");
    return true;
}

bool srv_content_text(const json_t *content, const char *what, char **out, srv_error *e)
{
    if (!content || json_is_null(content)) {
        *out = sem_strdup("");
        return *out ? true : srv_errorf(e, 500, NULL, NULL, "out of memory");
    }
    if (json_is_string(content)) {
        *out = sem_strdup(json_string_value(content));
        return *out ? true : srv_errorf(e, 500, NULL, NULL, "out of memory");
    }
    if (!json_is_array(content))
        return srv_errorf(e, 400, "invalid_type", what, "%s must be a string or an array of text parts", what);
    buf b;
    buf_init(&b);
    buf_append(&b, "", 0);
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        const json_t *text = json_object_get(part, "text");
        if (!type || strcmp(type, "text") || !json_is_string(text)) {
            buf_fini(&b);
            if (type && strcmp(type, "text"))
                return srv_errorf(e, 400, "unsupported_content", what,
                                  "%s[%zu]: content type '%.40s' is not supported (text only)", what,
                                  i, type);
            return srv_errorf(e, 400, "invalid_type", what,
                              "%s[%zu] must be {\"type\": \"text\", \"text\": string}", what, i);
        }
        if (!buf_append(&b, json_string_value(text), json_string_length(text))) {
            buf_fini(&b);
            return srv_errorf(e, 500, NULL, NULL, "out of memory");
        }
    }
    *out = buf_take(&b);
    return true;
}

/* ---- the prompt ------------------------------------------------------------- */

static bool encode(const srv_backend *b, const char *text, size_t len, bool add_special,
                   tok_ids *out, srv_error *e)
{
    sem_err err;
    sem_err_clear(&err);
    sem_status st = tok_encode(b->tok, NULL, text, len, add_special, out, &err);
    if (st == SEM_OK) return true;
    sem_err_prefix(&err, "prompt: ");
    return srv_errorf(e, st == SEM_ENOMEM ? 500 : 400, NULL, NULL, "%s", err.msg);
}

bool srv_prompt_build(const srv_backend *b, const srv_gen_req *r, tok_ids *out, srv_error *e)
{
    if (r->kind == SRV_GEN_COMPLETION) {
        if (r->prompt_ids.len) {
            size_t vocab = tok_vocab_size(b->tok);
            for (size_t i = 0; i < r->prompt_ids.len; i++)
                if (r->prompt_ids.data[i] < 0 || (size_t)r->prompt_ids.data[i] >= vocab)
                    return srv_errorf(e, 400, "invalid_value", "prompt",
                                      "prompt[%zu]: token id %d is outside the vocabulary (%zu)", i,
                                      (int)r->prompt_ids.data[i], vocab);
            if (!tok_ids_append(out, r->prompt_ids.data, r->prompt_ids.len))
                return srv_errorf(e, 500, NULL, NULL, "out of memory");
            return true;
        }
        const char *p = r->prompt ? r->prompt : "";
        return encode(b, p, strlen(p), true, out, e);
    }
    if (!b->chat)
        return srv_errorf(e, 400, "no_chat_template", NULL,
                          "this model has no chat template; use /v1/completions");
    tok_chat_request cr = {0};
    cr.messages = r->messages;
    cr.tools = r->tools;
    cr.add_generation_prompt = true;
    char *text = NULL;
    size_t len = 0;
    sem_err err;
    sem_err_clear(&err);
    sem_status st = tok_chat_render_ex(b->chat, &cr, &text, &len, &err);
    if (st != SEM_OK) {
        sem_err_prefix(&err, "chat template: ");
        return srv_errorf(e, st == SEM_ENOMEM ? 500 : 400, "template_error", "messages", "%s",
                          err.msg);
    }
    bool ok = encode(b, text, len, false, out, e);
    free(text);
    return ok;
}
