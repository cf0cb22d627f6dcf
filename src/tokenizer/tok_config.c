/* tok_config.c - the model directory's tokenizer facts beyond
 * tokenizer.json: tokenizer_config.json (bos/eos/pad/unk token text as a
 * string or an AddedToken object, add_bos_token/add_eos_token, the raw
 * chat_template string or list of {name, template}) and
 * generation_config.json (bos_token_id, eos_token_id as int or list).
 * Both files are optional. Also tok_load_dir and the door's accessors for
 * these facts.
 *
 * add_bos_token/add_eos_token only take effect when tokenizer.json's
 * post-processor has no template (Llama-2/Mistral/DeepSeek style files),
 * matching what transformers' Llama-family fast tokenizers do; an existing
 * TemplateProcessing is kept as is.
 *
 * Thread: load-time only; accessors are read-only (Thread: any).
 */
#include "tokenizer/tok_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Loads dir/name; *out = NULL when the file does not exist. Integers are
 * read as reals: real configs hold values like model_max_length = 1e30
 * written as a 31-digit integer, which jansson's integers cannot hold. */
static sem_status load_optional(const char *dir, const char *name, char *path, size_t cap,
                                json_t **out, sem_err *err)
{
    *out = NULL;
    if (!fs_join(path, cap, dir, name)) return sem_errf(err, SEM_EINVAL, "%s: path too long", dir);
    if (!fs_exists(path)) return SEM_OK;
    char *data;
    size_t len;
    sem_status st = fs_read_file(path, TOK_MAX_CONFIG_BYTES, &data, &len, err);
    if (st != SEM_OK) return st;
    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
    free(data);
    if (!root)
        return sem_errf(err, SEM_ECORRUPT, "%s: invalid JSON at line %d column %d: %s", path,
                        je.line, je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return sem_errf(err, SEM_ECORRUPT, "%s: expected a JSON object", path);
    }
    *out = root;
    return SEM_OK;
}

/* "bos_token": "<s>" or {"content": "<s>", ...} or null. */
static sem_status special_text(json_t *cfg, const char *key, tok_jpath *jp, char **out)
{
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) return SEM_OK;
    size_t old = tok_jpath_key(jp, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return tok_jerr(jp, SEM_ECORRUPT, "expected a string or an object with a string content");
    if (!(*out = tok_strndup(json_string_value(v), json_string_length(v))))
        return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    tok_jpath_pop(jp, old);
    return SEM_OK;
}

static sem_status add_template(tok_tokenizer *tok, const char *name, const char *text, size_t len,
                               tok_jpath *jp)
{
    if (tok->n_templates >= TOK_MAX_CHAT_TEMPLATES)
        return tok_jerr(jp, SEM_ELIMIT, "more than %d chat templates", TOK_MAX_CHAT_TEMPLATES);
    tok_template_raw *t = realloc(tok->templates, (tok->n_templates + 1) * sizeof *t);
    if (!t) return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    tok->templates = t;
    t[tok->n_templates].name = sem_strdup(name);
    t[tok->n_templates].text = tok_strndup(text, len);
    tok->n_templates++;
    if (!t[tok->n_templates - 1].name || !t[tok->n_templates - 1].text)
        return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    return SEM_OK;
}

static sem_status chat_templates(json_t *cfg, tok_jpath *jp, tok_tokenizer *tok)
{
    json_t *ct = json_object_get(cfg, "chat_template");
    if (!ct || json_is_null(ct)) return SEM_OK;
    size_t old = tok_jpath_key(jp, "chat_template");
    if (json_is_string(ct)) {
        sem_status st = add_template(tok, "default", json_string_value(ct), json_string_length(ct), jp);
        if (st == SEM_OK) tok_jpath_pop(jp, old);
        return st;
    }
    if (!json_is_array(ct))
        return tok_jerr(jp, SEM_ECORRUPT, "expected a string or a list of {name, template}");
    for (size_t i = 0; i < json_array_size(ct); i++) {
        size_t o2 = tok_jpath_index(jp, i);
        json_t *e = json_array_get(ct, i);
        const char *name, *text;
        size_t tl;
        sem_status st = json_is_object(e) ? SEM_OK : tok_jerr(jp, SEM_ECORRUPT, "expected an object");
        if (st == SEM_OK) st = tok_json_str(e, "name", jp, &name, NULL, true);
        if (st == SEM_OK) st = tok_json_str(e, "template", jp, &text, &tl, true);
        if (st == SEM_OK) st = add_template(tok, name, text, tl, jp);
        if (st != SEM_OK) return st;
        tok_jpath_pop(jp, o2);
    }
    tok_jpath_pop(jp, old);
    return SEM_OK;
}

static sem_status parse_tokenizer_config(json_t *cfg, tok_jpath *jp, tok_tokenizer *tok,
                                         bool *add_bos, bool *add_eos)
{
    static const char *keys[TOK_SPECIAL_COUNT] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    sem_status st;
    for (int k = 0; k < TOK_SPECIAL_COUNT; k++)
        if ((st = special_text(cfg, keys[k], jp, &tok->special_text[k])) != SEM_OK) return st;
    if ((st = tok_json_bool(cfg, "add_bos_token", jp, add_bos)) != SEM_OK ||
        (st = tok_json_bool(cfg, "add_eos_token", jp, add_eos)) != SEM_OK)
        return st;
    return chat_templates(cfg, jp, tok);
}

static sem_status push_eos(tok_tokenizer *tok, tok_id id)
{
    for (size_t i = 0; i < tok->n_eos; i++)
        if (tok->eos_ids[i] == id) return SEM_OK;
    tok_id *v = realloc(tok->eos_ids, (tok->n_eos + 1) * sizeof *v);
    if (!v) return SEM_ENOMEM;
    tok->eos_ids = v;
    v[tok->n_eos++] = id;
    return SEM_OK;
}

static sem_status id_value(json_t *v, tok_jpath *jp, tok_id *out)
{
    double d = json_is_number(v) ? json_number_value(v) : -1.0;
    if (!(d >= 0.0 && d < (double)TOK_MAX_VOCAB && d == (double)(int64_t)d))
        return tok_jerr(jp, SEM_ECORRUPT, "expected a token id in [0, %zu)", TOK_MAX_VOCAB);
    *out = (tok_id)d;
    return SEM_OK;
}

static sem_status parse_generation_config(json_t *gen, tok_jpath *jp, tok_tokenizer *tok)
{
    json_t *bos = json_object_get(gen, "bos_token_id");
    json_t *eos = json_object_get(gen, "eos_token_id");
    sem_status st = SEM_OK;
    if (bos && !json_is_null(bos)) {
        size_t old = tok_jpath_key(jp, "bos_token_id");
        if (json_is_array(bos)) bos = json_array_get(bos, 0);
        if ((st = id_value(bos, jp, &tok->bos_id)) != SEM_OK) return st;
        tok_jpath_pop(jp, old);
    }
    if (!eos || json_is_null(eos)) return SEM_OK;
    size_t old = tok_jpath_key(jp, "eos_token_id");
    size_t n = json_is_array(eos) ? json_array_size(eos) : 1;
    if (n > 256) return tok_jerr(jp, SEM_ELIMIT, "more than 256 eos ids");
    for (size_t i = 0; i < n; i++) {
        tok_id id;
        if ((st = id_value(json_is_array(eos) ? json_array_get(eos, i) : eos, jp, &id)) != SEM_OK)
            return st;
        if (push_eos(tok, id) != SEM_OK) return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    }
    tok_jpath_pop(jp, old);
    return SEM_OK;
}

static bool tpl_push(tok_tpl_item *items, size_t *n, int seq, const tok_id *id)
{
    tok_tpl_item *it = &items[*n];
    it->seq = seq;
    if (id) {
        if (!(it->ids = malloc(sizeof *it->ids))) return false;
        it->ids[0] = *id;
        it->n_ids = 1;
    }
    (*n)++;
    return true;
}

/* [bos] $A [eos], and for pairs [bos] $A [eos] [bos] $B [eos]. */
static bool tpl_seq(tok_tpl_item *items, size_t *n, int seq, const tok_id *bos, const tok_id *eos)
{
    return (!bos || tpl_push(items, n, -1, bos)) && tpl_push(items, n, seq, NULL) &&
           (!eos || tpl_push(items, n, -1, eos));
}

/* transformers-style BOS/EOS when tokenizer.json has no template. */
static sem_status apply_add_flags(tok_tokenizer *tok, bool add_bos, bool add_eos, tok_jpath *jp)
{
    if (tok->post.has_template || (!add_bos && !add_eos)) return SEM_OK;
    tok_id ids[2];
    const tok_special_kind kinds[2] = {TOK_SPECIAL_BOS, TOK_SPECIAL_EOS};
    const bool want[2] = {add_bos, add_eos};
    for (int k = 0; k < 2; k++) {
        const char *t = tok->special_text[kinds[k]];
        if (want[k] && (!t || !tok_piece_to_id(tok, t, strlen(t), &ids[k])))
            return tok_jerr(jp, SEM_ECORRUPT, "add_%s_token is set but %s_token is %s",
                            k ? "eos" : "bos", k ? "eos" : "bos", t ? "not in the vocab" : "unset");
    }
    const tok_id *bos = add_bos ? &ids[0] : NULL, *eos = add_eos ? &ids[1] : NULL;
    tok_post p = {.has_template = true};
    p.single = calloc(3, sizeof *p.single);
    p.pair = calloc(6, sizeof *p.pair);
    bool ok = p.single && p.pair && tpl_seq(p.single, &p.n_single, 0, bos, eos) &&
              tpl_seq(p.pair, &p.n_pair, 0, bos, eos) && tpl_seq(p.pair, &p.n_pair, 1, bos, eos);
    if (!ok) {
        tok_post_fini(&p);
        return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    }
    tok_post_fini(&tok->post);
    tok->post = p;
    return SEM_OK;
}

static void derive_ids(tok_tokenizer *tok)
{
    const char *b = tok->special_text[TOK_SPECIAL_BOS];
    tok_id id;
    if (tok->bos_id < 0 && b && tok_piece_to_id(tok, b, strlen(b), &id)) tok->bos_id = id;
    const char *e = tok->special_text[TOK_SPECIAL_EOS];
    if (e && tok_piece_to_id(tok, e, strlen(e), &id)) (void)push_eos(tok, id);
}

sem_status tok_config_load(tok_tokenizer *tok, const char *dir, sem_err *err)
{
    char path[4096];
    json_t *cfg, *gen = NULL;
    bool add_bos = false, add_eos = false;
    sem_status st = load_optional(dir, "tokenizer_config.json", path, sizeof path, &cfg, err);
    if (st != SEM_OK) return st;
    if (cfg) {
        tok_jpath jp = {.file = path, .err = err};
        st = parse_tokenizer_config(cfg, &jp, tok, &add_bos, &add_eos);
        if (st == SEM_OK) st = apply_add_flags(tok, add_bos, add_eos, &jp);
        json_decref(cfg);
        if (st != SEM_OK) return st;
    }
    if ((st = load_optional(dir, "generation_config.json", path, sizeof path, &gen, err)) != SEM_OK)
        return st;
    if (gen) {
        tok_jpath jp = {.file = path, .err = err};
        st = parse_generation_config(gen, &jp, tok);
        json_decref(gen);
        if (st != SEM_OK) return st;
    }
    derive_ids(tok);
    return SEM_OK;
}

sem_status tok_load_dir(const char *dir, tok_tokenizer **out, sem_err *err)
{
    char path[4096];
    if (!fs_join(path, sizeof path, dir, "tokenizer.json"))
        return sem_errf(err, SEM_EINVAL, "%s: path too long", dir);
    tok_tokenizer *tok;
    sem_status st = tok_load_file(path, &tok, err);
    if (st != SEM_OK) return st;
    if ((st = tok_config_load(tok, dir, err)) != SEM_OK) {
        tok_destroy(tok);
        return st;
    }
    *out = tok;
    return SEM_OK;
}

/* ---- accessors -------------------------------------------------------------- */

const char *tok_special_text(const tok_tokenizer *tok, tok_special_kind kind)
{
    return (unsigned)kind < TOK_SPECIAL_COUNT ? tok->special_text[kind] : NULL;
}

tok_id tok_bos_id(const tok_tokenizer *tok) { return tok->bos_id; }

size_t tok_eos_ids(const tok_tokenizer *tok, const tok_id **ids)
{
    *ids = tok->eos_ids;
    return tok->n_eos;
}

bool tok_is_eos(const tok_tokenizer *tok, tok_id id)
{
    for (size_t i = 0; i < tok->n_eos; i++)
        if (tok->eos_ids[i] == id) return true;
    return false;
}

size_t tok_config_template_count(const tok_tokenizer *tok) { return tok->n_templates; }

const char *tok_config_template(const tok_tokenizer *tok, size_t i, const char **name)
{
    if (i >= tok->n_templates) return NULL;
    if (name) *name = tok->templates[i].name;
    return tok->templates[i].text;
}

const char *tok_config_template_find(const tok_tokenizer *tok, const char *name)
{
    if (!name && tok->n_templates == 1) return tok->templates[0].text;
    if (!name) name = "default";
    for (size_t i = 0; i < tok->n_templates; i++)
        if (!strcmp(tok->templates[i].name, name)) return tok->templates[i].text;
    return NULL;
}
