/* tok_added.c - added tokens: a byte trie with leftmost-longest matching
 * (what HF's AddedVocabulary gets from Aho-Corasick with
 * MatchKind::LeftmostLongest) and HF's find_matches rules:
 *   - single_word: the match is dropped unless the text before it does not
 *     end with a word character and the text after it does not start with
 *     one (Rust regex \w);
 *   - lstrip / rstrip: the match absorbs whitespace on its left / right;
 *   - a dropped match is skipped whole: scanning resumes after it.
 * Non-normalized tokens are matched in the original text, normalized ones
 * in each normalized segment (two tries; see tok_encode.c).
 *
 * Thread: tries are read-only after load.
 */
#include "tokenizer/tok_int.h"

#include <stdlib.h>
#include <string.h>

#define OOM(err) sem_errf(err, SEM_ENOMEM, "out of memory")

void tok_trie_init(tok_trie *t)
{
    memset(t, 0, sizeof *t);
    tok_u64map_init(&t->edges);
}

void tok_trie_fini(tok_trie *t)
{
    tok_u64map_fini(&t->edges);
    free(t->term);
    tok_trie_init(t);
}

static bool new_node(tok_trie *t, uint32_t *id)
{
    if (t->n_nodes == t->cap_nodes) {
        size_t cap = t->cap_nodes ? t->cap_nodes * 2 : 256;
        if (cap > UINT32_MAX / 256) return false;
        int32_t *nt = realloc(t->term, cap * sizeof *nt);
        if (!nt) return false;
        t->term = nt;
        t->cap_nodes = cap;
    }
    t->term[t->n_nodes] = -1;
    *id = (uint32_t)t->n_nodes++;
    return true;
}

bool tok_trie_add(tok_trie *t, const char *s, size_t n, int32_t value)
{
    if (n == 0) return true; /* HF ignores empty tokens */
    uint32_t node;
    if (t->n_nodes == 0 && !new_node(t, &node)) return false;
    node = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = ((uint64_t)node << 8) | (unsigned char)s[i], v;
        if (tok_u64map_get(&t->edges, key, &v)) {
            node = (uint32_t)v;
            continue;
        }
        uint32_t child;
        if (!new_node(t, &child) || !tok_u64map_put(&t->edges, key, child)) return false;
        node = child;
    }
    if (t->term[node] < 0) t->term[node] = value; /* the first pattern wins a tie */
    t->first[(unsigned char)s[0]] = true;
    return true;
}

/* Longest pattern starting at s[i]; returns its value or -1. */
static int32_t longest_at(const tok_trie *t, const char *s, size_t n, size_t i, size_t *end)
{
    uint32_t node = 0;
    int32_t best = -1;
    for (size_t j = i; j < n; j++) {
        uint64_t v;
        if (!tok_u64map_get(&t->edges, ((uint64_t)node << 8) | (unsigned char)s[j], &v)) break;
        node = (uint32_t)v;
        if (t->term[node] >= 0) {
            best = t->term[node];
            *end = j + 1;
        }
    }
    return best;
}

static uint32_t last_cp(const char *s, size_t n)
{
    size_t k = n - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    uint32_t cp;
    tok_utf8_next(s + k, n - k, &cp);
    return cp;
}

static size_t trailing_space_start(const char *s, size_t n)
{
    while (n > 0) {
        size_t k = n - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        uint32_t cp;
        tok_utf8_next(s + k, n - k, &cp);
        if (!tok_cp_is_whitespace(cp)) break;
        n = k;
    }
    return n;
}

static size_t leading_space_len(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t w = tok_utf8_next(s + i, n - i, &cp);
        if (!tok_cp_is_whitespace(cp)) break;
        i += w;
    }
    return i;
}

static bool push_span(tok_spans *out, tok_ids *idx, size_t a, size_t b, int32_t which)
{
    return tok_spans_push(out, a, b, which >= 0) && tok_ids_push(idx, which);
}

sem_status tok_added_split(const struct tok_tokenizer *tok, const tok_trie *trie, const char *s,
                           size_t n, tok_spans *out, tok_ids *idx, sem_err *err)
{
    out->n = 0;
    idx->len = 0;
    size_t start_offset = 0, i = 0;
    while (i < n && trie->n_nodes) {
        if (!trie->first[(unsigned char)s[i]]) {
            i++;
            continue;
        }
        size_t end = 0;
        int32_t which = longest_at(trie, s, n, i, &end);
        if (which < 0) {
            i++;
            continue;
        }
        const tok_added *a = &tok->added[which];
        size_t start = i, stop = end;
        i = end; /* like find_iter: resume after the raw match */
        if (a->single_word) {
            bool start_space = start == 0 || !tok_cp_is_word(last_cp(s, start));
            uint32_t cp = 0;
            if (stop < n) tok_utf8_next(s + stop, n - stop, &cp);
            bool stop_space = stop == n || !tok_cp_is_word(cp);
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = trailing_space_start(s, start);
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) stop += leading_space_len(s + stop, n - stop);
        if (start < start_offset) start = start_offset; /* never overlap (HF would) */
        if (start_offset < start && !push_span(out, idx, start_offset, start, -1)) return OOM(err);
        if (!push_span(out, idx, start, stop, which)) return OOM(err);
        start_offset = stop;
        if (i < stop) i = stop;
    }
    if (start_offset < n && !push_span(out, idx, start_offset, n, -1)) return OOM(err);
    return SEM_OK;
}
