/* tok_map.c - the two hash maps the tokenizer is built on: string -> int32
 * (vocabulary, word cache) and uint64 -> uint64 (BPE merges, trie edges,
 * id -> added token). Open addressing with linear probing, power-of-two
 * tables kept at most half full; sizes are checked before they grow.
 *
 * Thread: a map is owned by one thread while it is written; read-only maps
 * (those inside a loaded tokenizer) may be read from any thread.
 */
#include "tokenizer/tok_int.h"

#include <stdlib.h>
#include <string.h>

uint64_t tok_hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return x;
}

/* ---- string map ---------------------------------------------------------- */

void tok_strmap_init(tok_strmap *m)
{
    memset(m, 0, sizeof *m);
    buf_init(&m->keys);
}

void tok_strmap_fini(tok_strmap *m)
{
    free(m->slots);
    free(m->ents);
    buf_fini(&m->keys);
    tok_strmap_init(m);
}

void tok_strmap_clear(tok_strmap *m)
{
    if (m->slots) memset(m->slots, 0, (m->mask + 1) * sizeof *m->slots);
    m->n = 0;
    buf_clear(&m->keys);
}

int64_t tok_strmap_find(const tok_strmap *m, const char *key, size_t len)
{
    if (!m->slots) return -1;
    uint32_t h = (uint32_t)tok_hash_bytes(key, len);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        uint32_t s = m->slots[i];
        if (s == 0) return -1;
        const tok_strent *e = &m->ents[s - 1];
        if (e->hash == h && e->len == len && memcmp(m->keys.data + e->off, key, len) == 0)
            return (int64_t)(s - 1);
    }
}

static bool strmap_grow(tok_strmap *m)
{
    size_t nslots = m->slots ? (m->mask + 1) * 2 : 64;
    if (nslots > ((size_t)1 << 31)) return false;
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots) return false;
    size_t mask = nslots - 1;
    for (size_t e = 0; e < m->n; e++) {
        size_t i = m->ents[e].hash & mask;
        while (slots[i]) i = (i + 1) & mask;
        slots[i] = (uint32_t)(e + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->mask = mask;
    return true;
}

int64_t tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val, bool *existed)
{
    if (len > UINT32_MAX) return -1;
    int64_t f = tok_strmap_find(m, key, len);
    if (existed) *existed = f >= 0;
    if (f >= 0) {
        m->ents[f].val = val;
        return f;
    }
    if (!m->slots || (m->n + 1) * 2 > m->mask + 1) {
        if (!strmap_grow(m)) return -1;
    }
    if (m->n == m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        tok_strent *ne = realloc(m->ents, ncap * sizeof *ne);
        if (!ne) return -1;
        m->ents = ne;
        m->cap = ncap;
    }
    size_t off = m->keys.len;
    /* Keys are NUL-separated so each key can also be read as a C string. */
    if (!buf_append(&m->keys, key, len) || !buf_append(&m->keys, "", 1)) return -1;
    uint32_t h = (uint32_t)tok_hash_bytes(key, len);
    tok_strent *e = &m->ents[m->n];
    e->off = off;
    e->len = (uint32_t)len;
    e->val = val;
    e->hash = h;
    size_t i = h & m->mask;
    while (m->slots[i]) i = (i + 1) & m->mask;
    m->slots[i] = (uint32_t)(m->n + 1);
    return (int64_t)m->n++;
}

/* ---- uint64 map ---------------------------------------------------------- */

void tok_u64map_init(tok_u64map *m) { memset(m, 0, sizeof *m); }

void tok_u64map_fini(tok_u64map *m)
{
    free(m->keys);
    free(m->vals);
    tok_u64map_init(m);
}

static bool u64map_rehash(tok_u64map *m, size_t nslots)
{
    uint64_t *keys = calloc(nslots, sizeof *keys);
    uint64_t *vals = malloc(nslots * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return false;
    }
    size_t mask = nslots - 1;
    size_t old = m->keys ? m->mask + 1 : 0;
    for (size_t j = 0; j < old; j++) {
        if (!m->keys[j]) continue;
        size_t i = mix64(m->keys[j] - 1) & mask;
        while (keys[i]) i = (i + 1) & mask;
        keys[i] = m->keys[j];
        vals[i] = m->vals[j];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->mask = mask;
    return true;
}

bool tok_u64map_reserve(tok_u64map *m, size_t n)
{
    size_t want = 64;
    while (want < n * 2) {
        if (want > ((size_t)1 << 40)) return false;
        want *= 2;
    }
    if (m->keys && m->mask + 1 >= want) return true;
    return u64map_rehash(m, want);
}

bool tok_u64map_put(tok_u64map *m, uint64_t key, uint64_t val)
{
    if (key == UINT64_MAX) return false;
    if (!m->keys || (m->n + 1) * 2 > m->mask + 1) {
        if (!tok_u64map_reserve(m, m->n + 1 > 32 ? (m->n + 1) * 2 : 32)) return false;
    }
    uint64_t k = key + 1;
    size_t i = mix64(key) & m->mask;
    while (m->keys[i] && m->keys[i] != k) i = (i + 1) & m->mask;
    if (!m->keys[i]) m->n++;
    m->keys[i] = k;
    m->vals[i] = val;
    return true;
}

bool tok_u64map_get(const tok_u64map *m, uint64_t key, uint64_t *val)
{
    if (!m->keys) return false;
    uint64_t k = key + 1;
    for (size_t i = mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == k) {
            *val = m->vals[i];
            return true;
        }
        if (!m->keys[i]) return false;
    }
}
