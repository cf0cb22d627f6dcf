/* tok_load.c - reading tokenizer.json: the top level, the BPE model
 * (vocab and merges in both the "a b" and ["a", "b"] forms) and the added
 * tokens; then the derived tables (tries, id maps); and the vocabulary
 * accessors of the door.
 *
 * Every malformed input is an error naming the file and the JSON path; the
 * named limits of tokenizer.h bound sizes. Added token ids follow HF: a
 * token whose content is in the model vocab takes the vocab id, otherwise
 * the id written in the file.
 *
 * Thread: load-time only; the finished tokenizer is immutable.
 */
#include "tokenizer/tok_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* BPE model                                                              */
/* ===================================================================== */

static tok_id lookup(const tok_bpe *m, const char *s, size_t n)
{
    int64_t e = tok_strmap_find(&m->vocab, s, n);
    return e < 0 ? -1 : m->vocab.ents[e].val;
}

static sem_status opt_string_dup(json_t *j, const char *key, tok_jpath *jp, char **out, size_t *len)
{
    const char *s;
    size_t n;
    sem_status st = tok_json_str(j, key, jp, &s, &n, false);
    if (st != SEM_OK || !s || n == 0) return st;
    if (!(*out = tok_strndup(s, n))) return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    *len = n;
    return SEM_OK;
}

static sem_status bpe_options(json_t *j, tok_jpath *jp, tok_bpe *m)
{
    json_t *drop = json_object_get(j, "dropout");
    if (drop && !json_is_null(drop) && !(json_is_number(drop) && json_number_value(drop) == 0.0))
        return tok_jerr(jp, SEM_EUNSUPPORTED, "BPE dropout is not supported (it is random)");
    sem_status st;
    if ((st = tok_json_bool(j, "fuse_unk", jp, &m->fuse_unk)) != SEM_OK ||
        (st = tok_json_bool(j, "byte_fallback", jp, &m->byte_fallback)) != SEM_OK ||
        (st = tok_json_bool(j, "ignore_merges", jp, &m->ignore_merges)) != SEM_OK ||
        (st = opt_string_dup(j, "continuing_subword_prefix", jp, &m->prefix, &m->prefix_len)) != SEM_OK)
        return st;
    return opt_string_dup(j, "end_of_word_suffix", jp, &m->suffix, &m->suffix_len);
}

sem_status tok_parse_bpe(json_t *j, tok_jpath *jp, tok_bpe *m, const tok_jsrc *vocab,
                         const tok_jsrc *merges)
{
    memset(m, 0, sizeof *m);
    tok_strmap_init(&m->vocab);
    tok_u64map_init(&m->merges);
    m->unk_id = -1;
    if (!json_is_object(j)) return tok_jerr(jp, SEM_ECORRUPT, "expected an object");
    const char *type;
    sem_status st = tok_json_str(j, "type", jp, &type, NULL, false);
    if (st != SEM_OK) return st;
    if (type && strcmp(type, "BPE") != 0)
        return tok_jerr(jp, SEM_EUNSUPPORTED, "model type '%.40s' is not supported (only BPE)", type);
    if (!type && !json_object_get(j, "merges"))
        return tok_jerr(jp, SEM_EUNSUPPORTED, "model without a type or merges (only BPE)");
    if ((st = bpe_options(j, jp, m)) != SEM_OK || (st = tok_parse_vocab(vocab, jp, m)) != SEM_OK ||
        (st = tok_parse_merges(merges, jp, m)) != SEM_OK)
        return st;
    const char *unk;
    size_t ulen;
    if ((st = tok_json_str(j, "unk_token", jp, &unk, &ulen, false)) != SEM_OK) return st;
    if (unk) m->unk_id = lookup(m, unk, ulen); /* absent from vocab: an error only when needed */
    tok_bpe_prepare(m);
    return SEM_OK;
}

/* ===================================================================== */
/* Added tokens                                                           */
/* ===================================================================== */

static sem_status parse_one_added(json_t *t, tok_jpath *jp, tok_added *a)
{
    memset(a, 0, sizeof *a);
    if (!json_is_object(t)) return tok_jerr(jp, SEM_ECORRUPT, "expected an object");
    const char *c;
    size_t n;
    sem_status st = tok_json_str(t, "content", jp, &c, &n, true);
    if (st != SEM_OK) return st;
    json_t *id = json_object_get(t, "id");
    if (!json_is_integer(id) || json_integer_value(id) < 0 ||
        (uint64_t)json_integer_value(id) >= TOK_MAX_VOCAB)
        return tok_jerr(jp, SEM_ECORRUPT, "id must be an integer in [0, %zu)", TOK_MAX_VOCAB);
    if (n > TOK_MAX_TOKEN_BYTES)
        return tok_jerr(jp, SEM_ELIMIT, "content of %zu bytes exceeds %zu", n, TOK_MAX_TOKEN_BYTES);
    a->id = (tok_id)json_integer_value(id);
    if ((st = tok_json_bool(t, "special", jp, &a->special)) != SEM_OK) return st;
    a->normalized = !a->special; /* HF's default */
    if ((st = tok_json_bool(t, "single_word", jp, &a->single_word)) != SEM_OK ||
        (st = tok_json_bool(t, "lstrip", jp, &a->lstrip)) != SEM_OK ||
        (st = tok_json_bool(t, "rstrip", jp, &a->rstrip)) != SEM_OK ||
        (st = tok_json_bool(t, "normalized", jp, &a->normalized)) != SEM_OK)
        return st;
    if (!(a->content = tok_strndup(c, n))) return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    a->len = n;
    return SEM_OK;
}

static sem_status parse_added(json_t *root, tok_jpath *jp, tok_tokenizer *tok)
{
    json_t *arr = json_object_get(root, "added_tokens");
    if (!arr || json_is_null(arr)) return SEM_OK;
    size_t old = tok_jpath_key(jp, "added_tokens");
    if (!json_is_array(arr)) return tok_jerr(jp, SEM_ECORRUPT, "expected an array");
    size_t n = json_array_size(arr);
    if (n > TOK_MAX_ADDED) return tok_jerr(jp, SEM_ELIMIT, "%zu tokens exceed %zu", n, TOK_MAX_ADDED);
    tok->added = calloc(n ? n : 1, sizeof *tok->added);
    if (!tok->added) return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t o2 = tok_jpath_index(jp, i);
        tok_added a;
        sem_status st = parse_one_added(json_array_get(arr, i), jp, &a);
        if (st != SEM_OK) return st;
        tok_jpath_pop(jp, o2);
        bool dup = a.len == 0 || tok_strmap_find(&tok->added_map, a.content, a.len) >= 0;
        if (dup) { /* HF ignores empty and repeated tokens */
            free(a.content);
            continue;
        }
        tok_id vid = lookup(&tok->bpe, a.content, a.len);
        if (vid >= 0) a.id = vid;
        if (tok_strmap_put(&tok->added_map, a.content, a.len, (int32_t)tok->n_added, NULL) < 0) {
            free(a.content);
            return tok_jerr(jp, SEM_ENOMEM, "out of memory");
        }
        tok->added[tok->n_added++] = a;
    }
    tok_jpath_pop(jp, old);
    return SEM_OK;
}

/* ===================================================================== */
/* The whole file                                                         */
/* ===================================================================== */

typedef sem_status (*component_fn)(json_t *j, tok_jpath *jp, void *out);

/* Parses root[key] into a freshly allocated component (NULL if absent). */
static sem_status optional_component(json_t *root, const char *key, tok_jpath *jp, size_t size,
                                     component_fn parse, void (*fini)(void *), void **out)
{
    json_t *j = json_object_get(root, key);
    *out = NULL;
    if (!j || json_is_null(j)) return SEM_OK;
    void *c = calloc(1, size);
    if (!c) return tok_jerr(jp, SEM_ENOMEM, "out of memory");
    size_t old = tok_jpath_key(jp, key);
    sem_status st = parse(j, jp, c);
    if (st != SEM_OK) {
        fini(c);
        free(c);
        return st;
    }
    tok_jpath_pop(jp, old);
    *out = c;
    return SEM_OK;
}

static sem_status c_norm(json_t *j, tok_jpath *jp, void *o) { return tok_parse_normalizer(j, jp, o); }
static sem_status c_pretok(json_t *j, tok_jpath *jp, void *o) { return tok_parse_pretok(j, jp, o); }
static sem_status c_dec(json_t *j, tok_jpath *jp, void *o) { return tok_parse_decoder(j, jp, o); }
static void f_norm(void *p) { tok_normalizer_fini(p); }
static void f_pretok(void *p) { tok_pretok_fini(p); }
static void f_dec(void *p) { tok_decoder_fini(p); }

static sem_status check_unsupported_top(json_t *root, tok_jpath *jp)
{
    json_t *tr = json_object_get(root, "truncation");
    if (tr && !json_is_null(tr))
        return tok_jerr(jp, SEM_EUNSUPPORTED, "truncation is not supported (set it to null)");
    json_t *pad = json_object_get(root, "padding");
    json_t *strat = json_object_get(pad, "strategy");
    if (pad && !json_is_null(pad) && !(json_is_string(strat) && !strcmp(json_string_value(strat), "BatchLongest")))
        return tok_jerr(jp, SEM_EUNSUPPORTED, "fixed-length padding is not supported");
    return SEM_OK;
}

static sem_status parse_root(json_t *root, tok_jpath *jp, tok_tokenizer *tok, const tok_jsrc *vocab,
                             const tok_jsrc *merges)
{
    if (!json_is_object(root)) return tok_jerr(jp, SEM_ECORRUPT, "expected a JSON object");
    sem_status st = check_unsupported_top(root, jp);
    if (st != SEM_OK) return st;
    json_t *model = json_object_get(root, "model");
    if (!model) return tok_jerr(jp, SEM_ECORRUPT, "missing field 'model'");
    size_t old = tok_jpath_key(jp, "model");
    if ((st = tok_parse_bpe(model, jp, &tok->bpe, vocab, merges)) != SEM_OK) return st;
    tok_jpath_pop(jp, old);
    if ((st = optional_component(root, "normalizer", jp, sizeof(tok_normalizer), c_norm, f_norm,
                                 (void **)&tok->normalizer)) != SEM_OK ||
        (st = optional_component(root, "pre_tokenizer", jp, sizeof(tok_pretok), c_pretok,
                                 f_pretok, (void **)&tok->pretok)) != SEM_OK ||
        (st = optional_component(root, "decoder", jp, sizeof(tok_decoder), c_dec, f_dec,
                                 (void **)&tok->decoder)) != SEM_OK)
        return st;
    json_t *post = json_object_get(root, "post_processor");
    if (post && !json_is_null(post)) {
        old = tok_jpath_key(jp, "post_processor");
        if ((st = tok_parse_post(post, jp, &tok->post)) != SEM_OK) return st;
        tok_jpath_pop(jp, old);
    }
    return parse_added(root, jp, tok);
}

/* Normalized added tokens match the normalized text, so their patterns
 * are normalized too (HF refresh_added_tokens), and HF reports (decodes)
 * such a token by its normalized content; its id came from the raw one. */
static sem_status build_tries(tok_tokenizer *tok, sem_err *err)
{
    buf norm;
    buf_init(&norm);
    sem_status st = SEM_OK;
    for (size_t i = 0; i < tok->n_added && st == SEM_OK; i++) {
        tok_added *a = &tok->added[i];
        bool ok;
        if (!a->normalized) {
            ok = tok_trie_add(&tok->trie_raw, a->content, a->len, (int32_t)i);
            tok->has_trie_raw = true;
        } else {
            const char *p = a->content;
            size_t n = a->len;
            if (tok->normalizer) {
                st = tok_normalize(tok->normalizer, NULL, a->content, a->len, &norm, err);
                char *c = st == SEM_OK ? tok_strndup(norm.data, norm.len) : NULL;
                if (st == SEM_OK && !c) st = sem_errf(err, SEM_ENOMEM, "out of memory");
                if (c) {
                    free(tok->added[i].content);
                    tok->added[i].content = c;
                    tok->added[i].len = norm.len;
                }
                p = tok->added[i].content;
                n = tok->added[i].len;
            }
            ok = st != SEM_OK || tok_trie_add(&tok->trie_norm, p, n, (int32_t)i);
            tok->has_trie_norm = true;
        }
        if (!ok) st = sem_errf(err, SEM_ENOMEM, "out of memory");
    }
    buf_fini(&norm);
    return st;
}

sem_status tok_finish_load(tok_tokenizer *tok, sem_err *err)
{
    size_t vs = tok->bpe.n_ids;
    for (size_t i = 0; i < tok->n_added; i++) {
        const tok_added *a = &tok->added[i];
        if ((size_t)a->id + 1 > vs) vs = (size_t)a->id + 1;
        /* A repeated id keeps the later token, as HF's id map does. */
        if (!tok_u64map_put(&tok->added_by_id, (uint64_t)a->id, i))
            return sem_errf(err, SEM_ENOMEM, "out of memory");
    }
    tok->vocab_size = vs;
    return build_tries(tok, err);
}

static void tok_init(tok_tokenizer *tok)
{
    memset(tok, 0, sizeof *tok);
    tok_strmap_init(&tok->bpe.vocab);
    tok_u64map_init(&tok->added_by_id);
    tok_strmap_init(&tok->added_map);
    tok_trie_init(&tok->trie_raw);
    tok_trie_init(&tok->trie_norm);
    tok->bos_id = -1;
}

/* The JSON text behind the model's vocab and merges, and the DOM of the
 * rest. The fast path blanks the two spans (to a 0 padded with spaces, so
 * jansson's line/column stay right) and parses them with tok_scan.c; the
 * fallback parses everything with jansson and re-dumps the two values. */
typedef struct parsed {
    json_t *root;
    char *copy, *vdump, *mdump; /* owned */
    tok_jsrc vocab, merges;
} parsed;

static void blank(char *copy, const size_t span[2])
{
    if (span[1] <= span[0]) return;
    copy[span[0]] = '0';
    memset(copy + span[0] + 1, ' ', span[1] - span[0] - 1);
}

static void dump_member(json_t *root, const char *key, char **dump, tok_jsrc *src)
{
    json_t *v = json_object_get(json_object_get(root, "model"), key);
    if (!v) return;
    *dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (*dump) *src = (tok_jsrc){*dump, strlen(*dump), NULL, 0};
}

static sem_status parse_json(const char *json, size_t len, const char *name, parsed *p, sem_err *err)
{
    memset(p, 0, sizeof *p);
    size_t vs[2], ms[2];
    json_error_t je;
    if (tok_scan_model_spans(json, len, vs, ms)) {
        if (!(p->copy = malloc(len))) return sem_errf(err, SEM_ENOMEM, "out of memory");
        memcpy(p->copy, json, len);
        blank(p->copy, vs);
        blank(p->copy, ms);
        p->root = json_loadb(p->copy, len, JSON_REJECT_DUPLICATES, &je);
        p->vocab = (tok_jsrc){json + vs[0], vs[1] - vs[0], json, vs[0]};
        if (ms[1] > ms[0]) p->merges = (tok_jsrc){json + ms[0], ms[1] - ms[0], json, ms[0]};
    } else {
        p->root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
        dump_member(p->root, "vocab", &p->vdump, &p->vocab);
        dump_member(p->root, "merges", &p->mdump, &p->merges);
    }
    if (!p->root)
        return sem_errf(err, SEM_ECORRUPT, "%s: invalid JSON at line %d column %d: %s", name,
                        je.line, je.column, je.text);
    return SEM_OK;
}

static void parsed_fini(parsed *p)
{
    json_decref(p->root);
    free(p->copy);
    free(p->vdump);
    free(p->mdump);
}

sem_status tok_load_buffer(const char *json, size_t len, const char *name, tok_tokenizer **out,
                           sem_err *err)
{
    if (!name) name = "tokenizer.json";
    if (len > TOK_MAX_FILE_BYTES)
        return sem_errf(err, SEM_ELIMIT, "%s: %zu bytes exceed %zu", name, len, TOK_MAX_FILE_BYTES);
    parsed p;
    sem_status st = parse_json(json, len, name, &p, err);
    tok_tokenizer *tok = st == SEM_OK ? malloc(sizeof *tok) : NULL;
    if (st == SEM_OK && !tok) st = sem_errf(err, SEM_ENOMEM, "out of memory");
    if (st != SEM_OK) {
        parsed_fini(&p);
        return st;
    }
    tok_init(tok);
    tok_jpath jp = {.file = name, .err = err};
    st = parse_root(p.root, &jp, tok, &p.vocab, &p.merges);
    parsed_fini(&p);
    if (st == SEM_OK && !(tok->name = sem_strdup(name))) st = sem_errf(err, SEM_ENOMEM, "out of memory");
    if (st == SEM_OK) st = tok_finish_load(tok, err);
    if (st != SEM_OK) {
        tok_destroy(tok);
        return st;
    }
    *out = tok;
    return SEM_OK;
}

sem_status tok_load_file(const char *path, tok_tokenizer **out, sem_err *err)
{
    char *data;
    size_t len;
    sem_status st = fs_read_file(path, TOK_MAX_FILE_BYTES, &data, &len, err);
    if (st != SEM_OK) return st;
    st = tok_load_buffer(data, len, path, out, err);
    free(data);
    return st;
}

void tok_destroy(tok_tokenizer *tok)
{
    if (!tok) return;
    free(tok->name);
    tok_bpe_fini(&tok->bpe);
    for (size_t i = 0; i < tok->n_added; i++) free(tok->added[i].content);
    free(tok->added);
    tok_u64map_fini(&tok->added_by_id);
    tok_strmap_fini(&tok->added_map);
    tok_trie_fini(&tok->trie_raw);
    tok_trie_fini(&tok->trie_norm);
    if (tok->normalizer) tok_normalizer_fini(tok->normalizer);
    free(tok->normalizer);
    if (tok->pretok) tok_pretok_fini(tok->pretok);
    free(tok->pretok);
    tok_post_fini(&tok->post);
    if (tok->decoder) tok_decoder_fini(tok->decoder);
    free(tok->decoder);
    for (int k = 0; k < TOK_SPECIAL_COUNT; k++) free(tok->special_text[k]);
    free(tok->eos_ids);
    for (size_t i = 0; i < tok->n_templates; i++) {
        free(tok->templates[i].name);
        free(tok->templates[i].text);
    }
    free(tok->templates);
    free(tok);
}

/* ===================================================================== */
/* Vocabulary accessors                                                   */
/* ===================================================================== */

size_t tok_vocab_size(const tok_tokenizer *tok) { return tok->vocab_size; }

const char *tok_piece_of(const tok_tokenizer *tok, tok_id id, size_t *len)
{
    uint64_t ai;
    if (id < 0) return NULL;
    if (tok_u64map_get(&tok->added_by_id, (uint64_t)id, &ai)) {
        *len = tok->added[ai].len;
        return tok->added[ai].content;
    }
    if ((size_t)id >= tok->bpe.n_ids || !tok->bpe.id_ent[id]) return NULL;
    size_t e = tok->bpe.id_ent[id] - 1;
    *len = tok->bpe.vocab.ents[e].len;
    return tok_strmap_key(&tok->bpe.vocab, e);
}

const char *tok_id_to_piece(const tok_tokenizer *tok, tok_id id, size_t *len)
{
    size_t l = 0;
    const char *p = tok_piece_of(tok, id, &l);
    if (len) *len = l;
    return p;
}

bool tok_piece_to_id(const tok_tokenizer *tok, const char *piece, size_t len, tok_id *out)
{
    int64_t e = tok_strmap_find(&tok->added_map, piece, len);
    if (e >= 0) {
        *out = tok->added[tok->added_map.ents[e].val].id;
        return true;
    }
    tok_id id = lookup(&tok->bpe, piece, len);
    if (id < 0) return false;
    *out = id;
    return true;
}

bool tok_is_special(const tok_tokenizer *tok, tok_id id)
{
    uint64_t ai;
    if (id < 0 || !tok_u64map_get(&tok->added_by_id, (uint64_t)id, &ai)) return false;
    return tok->added[ai].special;
}
