/* chat.c - a model's chat template: loading it from tokenizer_config.json,
 * choosing among named templates, rendering a conversation into the prompt
 * string, and finding the end-of-turn markers for the stop set.
 *
 * The render context is what transformers(.js) apply_chat_template passes:
 * messages, add_generation_prompt, tools (none when absent), documents
 * (none), the special tokens bos/eos/unk/sep/pad/cls/mask that the config
 * sets (strings or AddedToken {content}), then any extra kwargs, which win.
 * Template choice follows HF: a plain string is the template; from a list of
 * {name, template}, "tool_use" when tools are given (even an empty list) and
 * it exists, else "default", else an error.
 *
 * Thread: load on any thread; a loaded tok_chat_template is immutable and
 * renders from any thread.
 */
#include "tokenizer/template_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define CHAT_MAX_TEMPLATES 64

struct tok_chat_template {
    size_t n;                              /* parsed templates */
    char *names[CHAT_MAX_TEMPLATES];       /* owned */
    tpl_template *tpls[CHAT_MAX_TEMPLATES]; /* owned */
    bool list_form;                        /* chat_template was a list */
    json_t *special;                       /* owned: special-token strings for the context */
    char *bos, *eos;                       /* owned; "" when absent */
    char *stops[TOK_CHAT_MAX_STOP_STRINGS]; /* owned */
    size_t n_stops;
};

static const char *const SPECIAL_KEYS[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                           "pad_token", "cls_token", "mask_token"};

/* Markers that end a turn when a template writes them literally. */
static const char *const KNOWN_END_MARKERS[] = {
    "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<end_of_turn>",
    ("<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"), "<|end|>",
};

void tok_chat_template_destroy(tok_chat_template *ct)
{
    if (!ct) return;
    for (size_t i = 0; i < ct->n; i++) {
        free(ct->names[i]);
        tpl_destroy(ct->tpls[i]);
    }
    for (size_t i = 0; i < ct->n_stops; i++) free(ct->stops[i]);
    json_decref(ct->special);
    free(ct->bos);
    free(ct->eos);
    free(ct);
}

/* A special token: "<s>" or {"content": "<s>", ...} (AddedToken). */
static const char *token_string(const json_t *v)
{
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) {
        const json_t *c = json_object_get(v, "content");
        if (json_is_string(c)) return json_string_value(c);
    }
    return NULL;
}

static sem_status add_template(tok_chat_template *ct, const char *name, const char *src,
                               size_t len, const char *cfg, sem_err *err)
{
    if (ct->n >= CHAT_MAX_TEMPLATES)
        return sem_errf(err, SEM_ELIMIT, "%s: more than %d chat templates", cfg, CHAT_MAX_TEMPLATES);
    tpl_template *t;
    sem_status s = tpl_parse(src, len, &t, err);
    if (s != SEM_OK) {
        sem_err_prefix(err, "%s: chat_template '%s': ", cfg, name);
        return s;
    }
    ct->names[ct->n] = sem_strdup(name);
    ct->tpls[ct->n] = t;
    ct->n++;
    if (!ct->names[ct->n - 1]) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", cfg);
    return SEM_OK;
}

static sem_status load_templates(tok_chat_template *ct, const json_t *v, const char *cfg, sem_err *err)
{
    if (json_is_string(v)) return add_template(ct, "default", json_string_value(v), json_string_length(v), cfg, err);
    if (!json_is_array(v) || json_array_size(v) == 0)
        return sem_errf(err, SEM_ENOTFOUND, "%s: no chat_template", cfg);
    ct->list_form = true;
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        const json_t *name = json_object_get(e, "name"), *tpl = json_object_get(e, "template");
        if (!json_is_string(name) || !json_is_string(tpl))
            return sem_errf(err, SEM_ECORRUPT,
                            "%s: /chat_template/%zu: chat templates must be objects with \"name\" and \"template\" strings",
                            cfg, i);
        sem_status s = add_template(ct, json_string_value(name), json_string_value(tpl), json_string_length(tpl), cfg, err);
        if (s != SEM_OK) return s;
    }
    return SEM_OK;
}

static sem_status load_special(tok_chat_template *ct, const json_t *config, const char *cfg, sem_err *err)
{
    if (!(ct->special = json_object())) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", cfg);
    for (size_t i = 0; i < sizeof SPECIAL_KEYS / sizeof SPECIAL_KEYS[0]; i++) {
        const char *s = token_string(json_object_get(config, SPECIAL_KEYS[i]));
        if (s && *s && json_object_set_new(ct->special, SPECIAL_KEYS[i], json_string(s)) != 0)
            return sem_errf(err, SEM_ENOMEM, "%s: out of memory", cfg);
    }
    const char *b = token_string(json_object_get(config, "bos_token"));
    const char *e = token_string(json_object_get(config, "eos_token"));
    ct->bos = sem_strdup(b ? b : "");
    ct->eos = sem_strdup(e ? e : "");
    return ct->bos && ct->eos ? SEM_OK : sem_errf(err, SEM_ENOMEM, "%s: out of memory", cfg);
}

/* ===================================================================== */
/* Stop strings                                                            */
/* ===================================================================== */

static void add_stop(tok_chat_template *ct, const char *s, size_t len)
{
    if (len == 0 || ct->n_stops >= TOK_CHAT_MAX_STOP_STRINGS) return;
    for (size_t i = 0; i < ct->n_stops; i++)
        if (strlen(ct->stops[i]) == len && memcmp(ct->stops[i], s, len) == 0) return;
    char *c = malloc(len + 1);
    if (!c) return;
    memcpy(c, s, len);
    c[len] = '\0';
    ct->stops[ct->n_stops++] = c;
}

#define PROBE_REPLY "Semantic-probe-reply-7f3a"

/* Renders [system?, user, assistant] and returns what follows the reply. */
static char *probe_suffix(const tok_chat_template *ct, bool with_system)
{
    json_t *msgs = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "user", "content", "Hi", "role",
                             "assistant", "content", PROBE_REPLY);
    if (msgs && with_system)
        json_array_insert_new(msgs, 0, json_pack("{s:s,s:s}", "role", "system", "content", "S"));
    char *out = NULL;
    sem_err err;
    tpl_render_params rp = tpl_render_default_params();
    rp.now_unix_s = 1;
    tok_chat_request req = {.messages = msgs, .render = &rp};
    if (msgs && tok_chat_render_ex(ct, &req, &out, NULL, &err) != SEM_OK) out = NULL;
    json_decref(msgs);
    return out;
}

/* The marker right after the assistant's text: "<...>" or "[...]". */
static void stops_from_probe(tok_chat_template *ct)
{
    char *out = probe_suffix(ct, false);
    if (!out) out = probe_suffix(ct, true);
    if (!out) return;
    const char *p = strstr(out, PROBE_REPLY), *last = NULL;
    while (p) {
        last = p;
        p = strstr(p + 1, PROBE_REPLY);
    }
    if (last) {
        const char *q = last + strlen(PROBE_REPLY);
        while (*q == ' ' || *q == '\n' || *q == '\t' || *q == '\r') q++;
        char close = *q == '<' ? '>' : *q == '[' ? ']' : 0;
        const char *e = close ? strchr(q, close) : NULL;
        if (e && e - q < 64) add_stop(ct, q, (size_t)(e - q) + 1);
    }
    free(out);
}

static void find_stops(tok_chat_template *ct)
{
    stops_from_probe(ct);
    for (size_t k = 0; k < sizeof KNOWN_END_MARKERS / sizeof KNOWN_END_MARKERS[0]; k++)
        for (size_t i = 0; i < ct->n; i++)
            if (strstr(ct->tpls[i]->src, KNOWN_END_MARKERS[k])) {
                add_stop(ct, KNOWN_END_MARKERS[k], strlen(KNOWN_END_MARKERS[k]));
                break;
            }
    add_stop(ct, ct->eos, strlen(ct->eos));
}

/* ===================================================================== */
/* Loading                                                                 */
/* ===================================================================== */

sem_status tok_chat_template_from_config(const json_t *config, const char *name,
                                         tok_chat_template **out, sem_err *err)
{
    const char *cfg = name ? name : "tokenizer_config.json";
    if (!json_is_object(config)) return sem_errf(err, SEM_ECORRUPT, "%s: not a JSON object", cfg);
    tok_chat_template *ct = calloc(1, sizeof *ct);
    if (!ct) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", cfg);
    sem_status s = load_templates(ct, json_object_get(config, "chat_template"), cfg, err);
    if (s == SEM_OK) s = load_special(ct, config, cfg, err);
    if (s != SEM_OK) {
        tok_chat_template_destroy(ct);
        return s;
    }
    find_stops(ct);
    *out = ct;
    return SEM_OK;
}

sem_status tok_chat_template_load(const char *dir, tok_chat_template **out, sem_err *err)
{
    char path[4096];
    if (!fs_join(path, sizeof path, dir, "tokenizer_config.json"))
        return sem_errf(err, SEM_EINVAL, "%s: path too long", dir);
    /* Not js_load_file: configs hold integers beyond 64 bits
     * (model_max_length 1e30), which jansson only takes as reals. */
    char *data;
    size_t len;
    sem_status s = fs_read_file(path, TOK_CHAT_MAX_CONFIG_BYTES, &data, &len, err);
    if (s != SEM_OK) return s;
    json_error_t je;
    json_t *config = json_loadb(data, len, JSON_DECODE_INT_AS_REAL, &je);
    free(data);
    if (!config)
        return sem_errf(err, SEM_ECORRUPT, "%s: invalid JSON at line %d column %d: %s", path, je.line,
                        je.column, je.text);
    s = tok_chat_template_from_config(config, path, out, err);
    json_decref(config);
    return s;
}

/* ===================================================================== */
/* Rendering                                                               */
/* ===================================================================== */

static const tpl_template *find_named(const tok_chat_template *ct, const char *name)
{
    for (size_t i = 0; i < ct->n; i++)
        if (!strcmp(ct->names[i], name)) return ct->tpls[i];
    return NULL;
}

static sem_status choose(const tok_chat_template *ct, const tok_chat_request *req,
                         const tpl_template **t, sem_err *err)
{
    if (req->template_name) {
        *t = find_named(ct, req->template_name);
        return *t ? SEM_OK : sem_errf(err, SEM_ENOTFOUND, "no chat template named '%s'", req->template_name);
    }
    if (!ct->list_form) {
        *t = ct->tpls[0];
        return SEM_OK;
    }
    *t = req->tools ? find_named(ct, "tool_use") : NULL;
    if (!*t) *t = find_named(ct, "default");
    return *t ? SEM_OK
              : sem_errf(err, SEM_ENOTFOUND,
                         "this model has multiple chat templates and none is named 'default'");
}

/* jansson's refcounts are not const-correct: the context only takes and
 * drops references to the caller's values, it never modifies them. */
static json_t *unconst(const json_t *j) { return (json_t *)(uintptr_t)j; }

static json_t *build_context(const tok_chat_template *ct, const tok_chat_request *req)
{
    json_t *ctx = json_object();
    if (!ctx) return NULL;
    bool ok = json_object_set(ctx, "messages", unconst(req->messages)) == 0 &&
              json_object_set_new(ctx, "add_generation_prompt", json_boolean(req->add_generation_prompt)) == 0 &&
              json_object_set_new(ctx, "tools", req->tools ? json_incref(unconst(req->tools)) : json_null()) == 0 &&
              json_object_set_new(ctx, "documents", json_null()) == 0 &&
              json_object_update(ctx, ct->special) == 0;
    if (ok && req->extra) ok = json_is_object(req->extra) && json_object_update(ctx, unconst(req->extra)) == 0;
    if (!ok) {
        json_decref(ctx);
        return NULL;
    }
    return ctx;
}

sem_status tok_chat_render_ex(const tok_chat_template *ct, const tok_chat_request *req, char **out,
                              size_t *out_len, sem_err *err)
{
    if (!json_is_array(req->messages)) return sem_errf(err, SEM_EINVAL, "chat: messages must be a JSON array");
    if (req->tools && !json_is_array(req->tools)) return sem_errf(err, SEM_EINVAL, "chat: tools must be a JSON array");
    if (req->extra && !json_is_object(req->extra))
        return sem_errf(err, SEM_EINVAL, "chat: template kwargs must be a JSON object");
    const tpl_template *t;
    sem_status s = choose(ct, req, &t, err);
    if (s != SEM_OK) return s;
    json_t *ctx = build_context(ct, req);
    if (!ctx) return sem_errf(err, SEM_ENOMEM, "chat: out of memory");
    s = tpl_render(t, ctx, req->render, out, out_len, err);
    json_decref(ctx);
    return s;
}

sem_status tok_chat_render(const tok_chat_template *ct, const json_t *messages, const json_t *tools,
                           bool add_generation_prompt, char **out, size_t *out_len, sem_err *err)
{
    tok_chat_request req = {.messages = messages, .tools = tools, .add_generation_prompt = add_generation_prompt};
    return tok_chat_render_ex(ct, &req, out, out_len, err);
}

size_t tok_chat_n_stop_strings(const tok_chat_template *ct) { return ct->n_stops; }
const char *tok_chat_stop_string(const tok_chat_template *ct, size_t i) { return i < ct->n_stops ? ct->stops[i] : NULL; }
const char *tok_chat_bos_token(const tok_chat_template *ct) { return ct->bos; }
const char *tok_chat_eos_token(const tok_chat_template *ct) { return ct->eos; }
size_t tok_chat_n_templates(const tok_chat_template *ct) { return ct->n; }
const char *tok_chat_template_name(const tok_chat_template *ct, size_t i) { return i < ct->n ? ct->names[i] : NULL; }
