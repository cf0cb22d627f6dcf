/* tok_bpe.c - the BPE model: a word (one pre-tokenized piece) becomes
 * symbols, one per character (byte_fallback / unk as HF), then adjacent
 * pairs are merged lowest rank first, leftmost first on equal rank, with a
 * min-heap over (rank, position) and a linked list of symbols (HF's
 * Word::merge_all). A per-encoder word cache remembers short words.
 *
 * Byte-level pieces arrive as raw bytes (TOK_PIECE_BYTEMAP); each byte's
 * symbol is bl_ids[byte], so the mapped string is only built when needed
 * (ignore_merges lookups, unknown characters, prefixes/suffixes).
 *
 * Thread: the model is read-only; scratch and cache are the encoder's.
 */
#include "tokenizer/tok_int.h"

#include <stdlib.h>
#include <string.h>

#define OOM(err) sem_errf(err, SEM_ENOMEM, "out of memory")

void tok_bpe_fini(tok_bpe *m)
{
    tok_strmap_fini(&m->vocab);
    free(m->id_ent);
    tok_u64map_fini(&m->merges);
    free(m->prefix);
    free(m->suffix);
    memset(m, 0, sizeof *m);
}

static tok_id vocab_id(const tok_bpe *m, const char *s, size_t n)
{
    int64_t e = tok_strmap_find(&m->vocab, s, n);
    return e < 0 ? -1 : m->vocab.ents[e].val;
}

void tok_bpe_prepare(tok_bpe *m)
{
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_ids[b] = vocab_id(m, name, 6);
        char u[4];
        size_t k = tok_utf8_encode(tok_byte_to_cp((uint8_t)b), u);
        m->bl_ids[b] = vocab_id(m, u, k);
    }
}

/* ---- symbols and the merge heap ----------------------------------------- */

static bool syms_reserve(tok_encoder *enc, size_t n)
{
    if (n <= enc->syms_cap) return true;
    size_t cap = enc->syms_cap ? enc->syms_cap : 64;
    while (cap < n) cap *= 2;
    tok_sym *s = realloc(enc->syms, cap * sizeof *s);
    if (!s) return false;
    enc->syms = s;
    enc->syms_cap = cap;
    return true;
}

static bool heap_less(const tok_heap_ent *a, const tok_heap_ent *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static bool heap_push(tok_encoder *enc, size_t *n, tok_heap_ent e)
{
    if (*n == enc->heap_cap) {
        size_t cap = enc->heap_cap ? enc->heap_cap * 2 : 64;
        tok_heap_ent *h = realloc(enc->heap, cap * sizeof *h);
        if (!h) return false;
        enc->heap = h;
        enc->heap_cap = cap;
    }
    tok_heap_ent *h = enc->heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
    return true;
}

static tok_heap_ent heap_pop(tok_encoder *enc, size_t *n)
{
    tok_heap_ent *h = enc->heap;
    tok_heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0, cnt = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= cnt) break;
        if (c + 1 < cnt && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (cnt) h[i] = last;
    return top;
}

static bool merge_of(const tok_bpe *m, tok_id a, tok_id b, uint32_t *rank, tok_id *new_id)
{
    uint64_t v;
    if (!tok_u64map_get(&m->merges, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b, &v)) return false;
    *rank = (uint32_t)(v >> 32);
    *new_id = (tok_id)(uint32_t)v;
    return true;
}

static bool push_pair(const tok_bpe *m, tok_encoder *enc, size_t *hn, int32_t pos)
{
    tok_sym *s = enc->syms;
    int32_t nx = s[pos].next;
    if (nx < 0) return true;
    uint32_t rank;
    tok_id nid;
    if (!merge_of(m, s[pos].id, s[nx].id, &rank, &nid)) return true;
    return heap_push(enc, hn, (tok_heap_ent){rank, pos, nid});
}

static sem_status merge_all(const tok_bpe *m, tok_encoder *enc, size_t n_sym, sem_err *err)
{
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n_sym; i++)
        if (!push_pair(m, enc, &hn, (int32_t)i)) return OOM(err);
    tok_sym *s = enc->syms;
    while (hn > 0) {
        tok_heap_ent top = heap_pop(enc, &hn);
        int32_t pos = top.pos;
        if (s[pos].len == 0 || s[pos].next < 0) continue;
        int32_t nx = s[pos].next;
        uint32_t rank;
        tok_id nid;
        if (!merge_of(m, s[pos].id, s[nx].id, &rank, &nid) || nid != top.new_id) continue;
        s[pos].id = nid;
        s[pos].len += s[nx].len;
        s[pos].next = s[nx].next;
        s[nx].len = 0;
        if (s[pos].next >= 0) s[s[pos].next].prev = pos;
        if (s[pos].prev >= 0 && !push_pair(m, enc, &hn, s[pos].prev)) return OOM(err);
        if (!push_pair(m, enc, &hn, pos)) return OOM(err);
    }
    return SEM_OK;
}

/* ---- building the symbols of a word -------------------------------------- */

static void sym_add(tok_encoder *enc, size_t *n, tok_id id, size_t len)
{
    tok_sym *s = &enc->syms[*n];
    s->id = id;
    s->len = (uint32_t)len;
    s->prev = (int32_t)*n - 1;
    s->next = (int32_t)*n + 1;
    (*n)++;
}

/* HF's merge_word symbol construction for one character piece c. */
typedef struct unk_state {
    bool pending;
    tok_id id;
    size_t len;
} unk_state;

static sem_status add_char(const tok_bpe *m, tok_encoder *enc, size_t *n, const char *c, size_t cl,
                           size_t byte_len, unk_state *unk, sem_err *err)
{
    tok_id id = vocab_id(m, c, cl);
    if (id >= 0) {
        if (unk->pending) {
            sym_add(enc, n, unk->id, unk->len);
            unk->pending = false;
        }
        sym_add(enc, n, id, byte_len);
        return SEM_OK;
    }
    if (m->byte_fallback) {
        bool all = true;
        for (size_t i = 0; i < cl && all; i++) all = m->byte_ids[(unsigned char)c[i]] >= 0;
        if (all) {
            if (!syms_reserve(enc, *n + cl + 2)) return OOM(err);
            for (size_t i = 0; i < cl; i++) sym_add(enc, n, m->byte_ids[(unsigned char)c[i]], 1);
            return SEM_OK;
        }
    }
    if (m->unk_id < 0)
        return sem_errf(err, SEM_EINVAL,
                        "character not in the vocabulary and the model has no unk_token");
    if (unk->pending && m->fuse_unk) {
        unk->len += byte_len;
    } else {
        if (unk->pending) sym_add(enc, n, unk->id, unk->len);
        unk->pending = true;
        unk->id = m->unk_id;
        unk->len = byte_len;
    }
    return SEM_OK;
}

static sem_status word_symbols(const tok_bpe *m, tok_encoder *enc, const char *w, size_t n,
                               size_t *n_sym, sem_err *err)
{
    /* Worst case: every byte falls back to a byte token, plus the unk. */
    size_t extra = m->prefix_len + m->suffix_len;
    if (!syms_reserve(enc, n + 2 + (extra ? n * extra : 0))) return OOM(err);
    unk_state unk = {0};
    buf tmp;
    buf_init(&tmp);
    size_t cnt = 0;
    sem_status s = SEM_OK;
    for (size_t i = 0; i < n && s == SEM_OK;) {
        size_t cl = tok_utf8_len((unsigned char)w[i]);
        if (cl > n - i) cl = n - i;
        bool first = i == 0, last = i + cl == n;
        if (!extra) {
            s = add_char(m, enc, &cnt, w + i, cl, cl, &unk, err);
        } else {
            buf_clear(&tmp);
            bool ok = (first || !m->prefix || buf_append(&tmp, m->prefix, m->prefix_len)) &&
                      buf_append(&tmp, w + i, cl) &&
                      (!last || !m->suffix || buf_append(&tmp, m->suffix, m->suffix_len));
            s = ok ? add_char(m, enc, &cnt, tmp.data, tmp.len, cl, &unk, err) : OOM(err);
        }
        i += cl;
    }
    buf_fini(&tmp);
    if (s != SEM_OK) return s;
    if (unk.pending) sym_add(enc, &cnt, unk.id, unk.len);
    if (cnt) enc->syms[cnt - 1].next = -1;
    *n_sym = cnt;
    return SEM_OK;
}

/* The fast path for byte-level words: one known symbol per byte. */
static bool bytelevel_symbols(const tok_bpe *m, tok_encoder *enc, const char *s, size_t n,
                              size_t *n_sym)
{
    if (m->prefix || m->suffix) return false;
    for (size_t i = 0; i < n; i++)
        if (m->bl_ids[(unsigned char)s[i]] < 0) return false;
    if (!syms_reserve(enc, n + 1)) return false;
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) sym_add(enc, &cnt, m->bl_ids[(unsigned char)s[i]], 1);
    enc->syms[cnt - 1].next = -1;
    *n_sym = cnt;
    return true;
}

static sem_status map_word(tok_encoder *enc, const char *s, size_t n, sem_err *err)
{
    buf_clear(&enc->word);
    if (!buf_reserve(&enc->word, n * 2)) return OOM(err);
    for (size_t i = 0; i < n; i++) {
        char u[4];
        size_t k = tok_utf8_encode(tok_byte_to_cp((uint8_t)s[i]), u);
        buf_append(&enc->word, u, k);
    }
    return SEM_OK;
}

/* ---- the word cache ------------------------------------------------------- */

static bool cache_get(tok_encoder *enc, const char *s, size_t n, tok_ids *out, bool *ok)
{
    *ok = true;
    if (n > TOK_CACHE_MAX_WORD_BYTES) return false;
    int64_t e = tok_strmap_find(&enc->cache, s, n);
    if (e < 0) return false;
    size_t off = (size_t)enc->cache.ents[e].val;
    const tok_id *p = enc->cache_pool.data + off;
    *ok = tok_ids_append(out, p + 1, (size_t)p[0]);
    return true;
}

static void cache_put(tok_encoder *enc, const char *s, size_t n, const tok_id *ids, size_t cnt)
{
    if (n > TOK_CACHE_MAX_WORD_BYTES) return;
    if (enc->cache.n >= TOK_CACHE_MAX_ENTRIES || enc->cache_pool.len + cnt + 1 > TOK_CACHE_MAX_POOL) {
        tok_strmap_clear(&enc->cache);
        enc->cache_pool.len = 0;
    }
    size_t off = enc->cache_pool.len;
    if (!tok_ids_push(&enc->cache_pool, (tok_id)cnt) || !tok_ids_append(&enc->cache_pool, ids, cnt)) {
        enc->cache_pool.len = off;
        return; /* the cache is an optimization: OOM just skips it */
    }
    if (tok_strmap_put(&enc->cache, s, n, (int32_t)off, NULL) < 0) enc->cache_pool.len = off;
}

/* ---- entry point ------------------------------------------------------------ */

static sem_status tokenize_word(const tok_bpe *m, tok_encoder *enc, const char *s, size_t n,
                                bool bytemap, tok_ids *out, sem_err *err)
{
    const char *w = s;
    size_t wn = n;
    bool mapped = false;
    if (m->ignore_merges) { /* a word that is a token is taken whole */
        if (bytemap) {
            sem_status st = map_word(enc, s, n, err);
            if (st != SEM_OK) return st;
            w = enc->word.data;
            wn = enc->word.len;
            mapped = true;
        }
        tok_id id = vocab_id(m, w, wn);
        if (id >= 0) return tok_ids_push(out, id) ? SEM_OK : OOM(err);
    }
    size_t n_sym = 0;
    if (!(bytemap && bytelevel_symbols(m, enc, s, n, &n_sym))) {
        if (bytemap && !mapped) {
            sem_status st = map_word(enc, s, n, err);
            if (st != SEM_OK) return st;
            w = enc->word.data;
            wn = enc->word.len;
        }
        sem_status st = word_symbols(m, enc, w, wn, &n_sym, err);
        if (st != SEM_OK) return st;
    }
    sem_status st = merge_all(m, enc, n_sym, err);
    if (st != SEM_OK) return st;
    for (int32_t i = n_sym ? 0 : -1; i >= 0; i = enc->syms[i].next)
        if (!tok_ids_push(out, enc->syms[i].id)) return OOM(err);
    return SEM_OK;
}

sem_status tok_bpe_encode(const tok_bpe *m, tok_encoder *enc, const char *s, size_t n,
                          bool bytemap, tok_ids *out, sem_err *err)
{
    if (n == 0) return SEM_OK;
    bool ok;
    if (cache_get(enc, s, n, out, &ok)) return ok ? SEM_OK : OOM(err);
    size_t before = out->len;
    sem_status st = tokenize_word(m, enc, s, n, bytemap, out, err);
    if (st != SEM_OK) return st;
    cache_put(enc, s, n, out->data + before, out->len - before);
    return SEM_OK;
}
