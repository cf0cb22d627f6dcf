/* tok_post.c - the post-processor: HF TemplateProcessing (and Bert /
 * Roberta processing, which the loader turns into templates). With
 * add_special it lays out [special ids, $A, special ids, $B, ...]; without
 * it, or with a ByteLevel processor (a no-op for ids), the sequences are
 * simply concatenated.
 *
 * Thread: read-only after load.
 */
#include "tokenizer/tok_int.h"

#include <stdlib.h>
#include <string.h>

void tok_post_fini(tok_post *p)
{
    for (size_t i = 0; i < p->n_single; i++) free(p->single[i].ids);
    for (size_t i = 0; i < p->n_pair; i++) free(p->pair[i].ids);
    free(p->single);
    free(p->pair);
    memset(p, 0, sizeof *p);
}

bool tok_post_apply(const tok_post *p, bool add_special, const tok_ids *a, const tok_ids *b,
                    tok_ids *out)
{
    if (!add_special || !p->has_template) {
        if (!tok_ids_append(out, a->data, a->len)) return false;
        return !b || tok_ids_append(out, b->data, b->len);
    }
    const tok_tpl_item *items = b ? p->pair : p->single;
    size_t n = b ? p->n_pair : p->n_single;
    for (size_t i = 0; i < n; i++) {
        const tok_tpl_item *it = &items[i];
        bool ok = true;
        if (it->seq < 0) ok = tok_ids_append(out, it->ids, it->n_ids);
        else if (it->seq == 0) ok = tok_ids_append(out, a->data, a->len);
        else if (b) ok = tok_ids_append(out, b->data, b->len);
        if (!ok) return false;
    }
    return true;
}

/* ---- tok_ids ----------------------------------------------------------------- */

void tok_ids_init(tok_ids *v) { memset(v, 0, sizeof *v); }

void tok_ids_fini(tok_ids *v)
{
    free(v->data);
    tok_ids_init(v);
}

static bool ids_reserve(tok_ids *v, size_t extra)
{
    size_t need;
    if (!sem_add_size(v->len, extra, &need)) return false;
    if (need <= v->cap) return true;
    size_t cap = v->cap ? v->cap : 16;
    while (cap < need)
        if (!sem_mul_size(cap, 2, &cap)) return false;
    size_t bytes;
    if (!sem_mul_size(cap, sizeof(tok_id), &bytes)) return false;
    tok_id *d = realloc(v->data, bytes);
    if (!d) return false;
    v->data = d;
    v->cap = cap;
    return true;
}

bool tok_ids_push(tok_ids *v, tok_id id)
{
    if (v->len == v->cap && !ids_reserve(v, 1)) return false;
    v->data[v->len++] = id;
    return true;
}

bool tok_ids_append(tok_ids *v, const tok_id *ids, size_t n)
{
    if (n == 0) return true;
    if (!ids_reserve(v, n)) return false;
    memcpy(v->data + v->len, ids, n * sizeof *ids);
    v->len += n;
    return true;
}
