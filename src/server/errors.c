/* errors.c - the one place where failures become HTTP: sem_status -> HTTP
 * status, HTTP status -> the OpenAI and Anthropic error types, and the two
 * error envelopes.
 *
 *   OpenAI:    {"error":{"message":..,"type":..,"param":..|null,"code":..|null}}
 *   Anthropic: {"type":"error","error":{"type":..,"message":..}}
 *
 * The official SDKs pick their typed errors from the HTTP status
 * (BadRequestError, AuthenticationError, ...), so the status is what must
 * be right; the type strings follow each API's documentation.
 *
 * Thread: any (tables are static const).
 */
#include "server/srv_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- sem_status -> HTTP ------------------------------------------------ */

static const struct {
    sem_status st;
    int http;
} status_table[] = {
    {SEM_OK, 200},
    {SEM_EINVAL, 400},
    {SEM_ENOMEM, 500},
    {SEM_EIO, 500},
    {SEM_ECORRUPT, 500},
    {SEM_EUNSUPPORTED, 400},
    {SEM_ENOTFOUND, 404},
    {SEM_EBUSY, 503},
    {SEM_ECANCELED, 503},
    {SEM_ETIMEDOUT, 503},
    {SEM_EDEGRADED, 503},
    {SEM_ELIMIT, 400},
    {SEM_EAUTH, 401},
    {SEM_EEXIST, 409},
};

int srv_http_status_for(sem_status st)
{
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++)
        if (status_table[i].st == st) return status_table[i].http;
    return 500;
}

/* ---- HTTP -> reason phrase and error types ---------------------------- */

static const struct {
    int http;
    const char *reason;
    const char *openai_type;
    const char *anthropic_type;
} http_table[] = {
    {400, "Bad Request", "invalid_request_error", "invalid_request_error"},
    {401, "Unauthorized", "authentication_error", "authentication_error"},
    {403, "Forbidden", "permission_error", "permission_error"},
    {404, "Not Found", "not_found_error", "not_found_error"},
    {405, "Method Not Allowed", "invalid_request_error", "invalid_request_error"},
    {409, "Conflict", "conflict_error", "invalid_request_error"},
    {413, "Payload Too Large", "invalid_request_error", "request_too_large"},
    {429, "Too Many Requests", "rate_limit_error", "rate_limit_error"},
    {500, "Internal Server Error", "server_error", "api_error"},
    {503, "Service Unavailable", "service_unavailable", "overloaded_error"},
};

static int http_row(int http)
{
    for (size_t i = 0; i < sizeof http_table / sizeof http_table[0]; i++)
        if (http_table[i].http == http) return (int)i;
    return -1;
}

const char *srv_error_type(srv_api api, int http_status)
{
    int i = http_row(http_status);
    if (i < 0) i = http_status >= 500 ? http_row(500) : http_row(400);
    return api == SRV_API_ANTHROPIC ? http_table[i].anthropic_type : http_table[i].openai_type;
}

const char *srv_http_reason(int http_status)
{
    if (http_status == 200) return "OK";
    if (http_status == 204) return "No Content";
    int i = http_row(http_status);
    return i < 0 ? "Error" : http_table[i].reason;
}

/* ---- building errors ----------------------------------------------------- */

bool srv_errorf(srv_error *e, int http_status, const char *code, const char *param,
                const char *fmt, ...)
{
    memset(e, 0, sizeof *e);
    e->http_status = http_status;
    e->code = code;
    if (param) snprintf(e->param, sizeof e->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

bool srv_error_from(srv_error *e, const sem_err *err, const char *param)
{
    return srv_errorf(e, srv_http_status_for(err->code), NULL, param, "%s", err->msg);
}

json_t *srv_error_envelope(srv_api api, const srv_error *e)
{
    int status = e->http_status ? e->http_status : 500;
    const char *type = srv_error_type(api, status);
    json_t *msg = srv_json_text(e->message, strlen(e->message));
    if (!msg) return NULL;
    if (api == SRV_API_ANTHROPIC)
        return json_pack("{s:s, s:{s:s, s:o}}", "type", "error", "error", "type", type, "message",
                         msg);
    json_t *param = e->param[0] ? json_string(e->param) : json_null();
    json_t *code = e->code ? json_string(e->code) : json_null();
    return json_pack("{s:{s:o, s:s, s:o, s:o}}", "error", "message", msg, "type", type, "param",
                     param, "code", code);
}
