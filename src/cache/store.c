/* store.c - the agent cache store: entries (agent id -> tokens and where
 * their KV lives), reuse of a common prefix, LRU eviction under the pool
 * budget, deletion, listing, and the prefix index used to match requests
 * that name no agent.
 *
 * Invariants:
 *  - a HOT entry holds one pool reference on each of its n_blocks blocks,
 *    which cover exactly tokens[0..n_tokens);
 *  - a WARM entry holds no blocks and has_file is true;
 *  - an entry with pins > 0 is never evicted or deleted;
 *  - every full block of every entry's tokens is in the prefix index
 *    (under its chained hash), pointing at some entry that holds it.
 *
 * Thread: engine.
 */
#include "cache/cache_int.h"

#include <stdlib.h>
#include <string.h>

static const char *const tier_names[] = {"cold", "warm", "hot"};

const char *cache_tier_name(cache_tier t) { return (unsigned)t < 3 ? tier_names[t] : "?"; }

void cache_model_tag(const char *model_id, const char *fingerprint, char *out, size_t cap)
{
    /* "mlx-community/Llama-3.2-1B" -> "mlx-community--Llama-3.2-1B-<fp12>" */
    char name[160];
    size_t n = 0;
    const char *base = model_id;
    for (const char *p = base; *p && n + 2 < sizeof name; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        if (c == '/') {
            name[n++] = '-';
            name[n++] = '-';
        } else {
            name[n++] = ok ? c : '_';
        }
    }
    name[n] = '\0';
    while (name[0] == '.' || name[0] == '-') memmove(name, name + 1, strlen(name));
    snprintf(out, cap, "%s-%.12s", name[0] ? name : "model", fingerprint);
}

size_t cache_blocks_for(const cache_store *cs, size_t n_tokens)
{
    size_t bt = (size_t)cs->geo.block_tokens;
    return (n_tokens + bt - 1) / bt;
}

uint64_t cache_kv_bytes(const cache_store *cs, size_t n_tokens, size_t local_from)
{
    const kv_geometry *g = &cs->geo;
    uint64_t per_layer = (uint64_t)g->n_kv_heads *
                         (kn_kv_row_bytes(g->dtype, (size_t)g->head_dim) + kn_kv_row_bytes(g->dtype, (size_t)g->v_head_dim));
    uint64_t rows = 0, local = local_from < n_tokens ? n_tokens - local_from : 0;
    for (int32_t l = 0; l < g->n_layers; l++) rows += cs->ring.window > 0 && cs->ring.sliding[l] ? local : n_tokens;
    return rows * per_layer;
}

bool cache_layout_matches(const cache_store *cs, const cache_file_meta *m)
{
    const kv_geometry *g = &m->geo, *w = &cs->geo;
    bool same = g->n_layers == w->n_layers && g->n_kv_heads == w->n_kv_heads && g->head_dim == w->head_dim &&
                g->v_head_dim == w->v_head_dim && g->block_tokens == w->block_tokens && g->dtype == w->dtype &&
                m->ring.window == cs->ring.window;
    for (int32_t l = 0; same && cs->ring.window > 0 && l < g->n_layers; l++) same = m->ring.sliding[l] == cs->ring.sliding[l];
    return same;
}

/* ===================================================================== */
/* Prefix index: chained block hash -> entry                              */
/* ===================================================================== */

#define IX_TOMB ((cache_entry *)1)

static bool ix_grow(cache_store *cs)
{
    size_t n = cs->ix_slots ? cs->ix_slots * 2 : 1024;
    uint64_t *h = calloc(n, sizeof *h);
    cache_entry **e = calloc(n, sizeof *e);
    if (!h || !e) {
        free(h);
        free(e);
        return false;
    }
    size_t used = 0;
    for (size_t i = 0; i < cs->ix_slots; i++) {
        if (!cs->ix_entry[i] || cs->ix_entry[i] == IX_TOMB) continue;
        size_t j = cs->ix_hash[i] & (n - 1);
        while (e[j]) j = (j + 1) & (n - 1);
        h[j] = cs->ix_hash[i];
        e[j] = cs->ix_entry[i];
        used++;
    }
    free(cs->ix_hash);
    free(cs->ix_entry);
    cs->ix_hash = h;
    cs->ix_entry = e;
    cs->ix_slots = n;
    cs->ix_used = used;
    return true;
}

static cache_entry *ix_get(const cache_store *cs, uint64_t hash)
{
    if (!cs->ix_slots) return NULL;
    size_t mask = cs->ix_slots - 1;
    for (size_t i = hash & mask, k = 0; k < cs->ix_slots && cs->ix_entry[i]; i = (i + 1) & mask, k++)
        if (cs->ix_entry[i] != IX_TOMB && cs->ix_hash[i] == hash) return cs->ix_entry[i];
    return NULL;
}

/* Points hash at ce (replacing an older holder). Best effort on OOM. */
static void ix_put(cache_store *cs, uint64_t hash, cache_entry *ce)
{
    if ((cs->ix_used + 1) * 2 > cs->ix_slots && !ix_grow(cs)) return;
    size_t mask = cs->ix_slots - 1, i = hash & mask, tomb = SIZE_MAX;
    for (; cs->ix_entry[i]; i = (i + 1) & mask) {
        if (cs->ix_entry[i] == IX_TOMB) {
            if (tomb == SIZE_MAX) tomb = i;
        } else if (cs->ix_hash[i] == hash) {
            cs->ix_entry[i] = ce;
            return;
        }
    }
    if (tomb != SIZE_MAX) i = tomb;
    else cs->ix_used++;
    cs->ix_hash[i] = hash;
    cs->ix_entry[i] = ce;
}

/* Removes hash if it points at ce. */
static void ix_del(cache_store *cs, uint64_t hash, const cache_entry *ce)
{
    if (!cs->ix_slots) return;
    size_t mask = cs->ix_slots - 1;
    for (size_t i = hash & mask, k = 0; k < cs->ix_slots && cs->ix_entry[i]; i = (i + 1) & mask, k++) {
        if (cs->ix_entry[i] != IX_TOMB && cs->ix_hash[i] == hash) {
            if (cs->ix_entry[i] == ce) cs->ix_entry[i] = IX_TOMB;
            return;
        }
    }
}

static void ix_remove_entry(cache_store *cs, cache_entry *ce)
{
    for (size_t b = 0; ce->hashes && b < ce->n_tokens / (size_t)cs->geo.block_tokens; b++) ix_del(cs, ce->hashes[b], ce);
}

/* ===================================================================== */
/* Entries                                                                */
/* ===================================================================== */

cache_entry *cache_entry_new(cache_store *cs, const char *agent_id, const char *path)
{
    if (cs->n_entries == cs->cap_entries) {
        size_t cap = cs->cap_entries ? 2 * cs->cap_entries : 64;
        cache_entry **e = realloc(cs->entries, cap * sizeof *e);
        if (!e) return NULL;
        cs->entries = e;
        cs->cap_entries = cap;
    }
    cache_entry *ce = calloc(1, sizeof *ce);
    if (!ce) return NULL;
    snprintf(ce->agent_id, sizeof ce->agent_id, "%s", agent_id);
    ce->anonymous = !strncmp(agent_id, "anon-", 5);
    char file[CACHE_MAX_AGENT_ID + 16];
    snprintf(file, sizeof file, "%s.safetensors", agent_id);
    if (path) snprintf(ce->path, sizeof ce->path, "%s", path);
    else if (cs->p.cache_dir && !fs_join(ce->path, sizeof ce->path, cs->dir, file)) ce->path[0] = '\0';
    ce->last_use_ns = clk_now_ns();
    ce->last_use_ms = clk_wall_ms();
    cs->entries[cs->n_entries++] = ce;
    return ce;
}

void cache_entry_free(cache_entry *ce)
{
    if (!ce) return;
    free(ce->tokens);
    free(ce->hashes);
    free(ce->blocks);
    free(ce);
}

/* Replaces ce's tokens (taking ownership) and re-indexes its blocks. */
void cache_entry_set_tokens(cache_store *cs, cache_entry *ce, int32_t *tokens, size_t n)
{
    ix_remove_entry(cs, ce);
    free(ce->tokens);
    free(ce->hashes);
    ce->tokens = tokens;
    ce->n_tokens = n;
    size_t bt = (size_t)cs->geo.block_tokens, nb = n / bt;
    ce->hashes = calloc(nb ? nb : 1, sizeof *ce->hashes);
    for (size_t b = 0; ce->hashes && b < nb; b++) {
        ce->hashes[b] = kv_block_hash(b ? ce->hashes[b - 1] : 0, tokens + b * bt, (int32_t)bt);
        ix_put(cs, ce->hashes[b], ce);
    }
}

void cache_entry_release_blocks(cache_store *cs, cache_entry *ce)
{
    for (size_t i = 0; i < ce->n_blocks; i++) kv_pool_unref(cs->pool, ce->blocks[i]);
    free(ce->blocks);
    ce->blocks = NULL;
    ce->n_blocks = 0;
    if (ce->tier == CACHE_HOT) ce->tier = ce->has_file ? CACHE_WARM : CACHE_COLD;
}

static size_t entry_index(const cache_store *cs, const cache_entry *ce)
{
    for (size_t i = 0; i < cs->n_entries; i++)
        if (cs->entries[i] == ce) return i;
    return SIZE_MAX;
}

/* Unlinks ce from the store; frees it now or once its writes finish. */
static void entry_drop(cache_store *cs, cache_entry *ce)
{
    size_t i = entry_index(cs, ce);
    SEM_ASSERT(i != SIZE_MAX && ce->pins == 0);
    cs->entries[i] = cs->entries[--cs->n_entries];
    ix_remove_entry(cs, ce);
    cache_entry_release_blocks(cs, ce);
    if (ce->writes == 0) {
        cache_entry_free(ce);
        return;
    }
    ce->dead = true;
    cache_entry **d = realloc(cs->dead, (cs->n_dead + 1) * sizeof *d);
    SEM_ASSERT(d); /* tiny; an OOM here would leak a pending entry */
    cs->dead = d;
    cs->dead[cs->n_dead++] = ce;
}

/* Drops ce for good (delete, clear): its blocks stop being shared at once,
 * even those a pending file write still holds, so nothing reuses them. */
static void entry_forget(cache_store *cs, cache_entry *ce)
{
    for (size_t i = 0; i < ce->n_blocks; i++) kv_pool_unshare(cs->pool, ce->blocks[i]);
    if (ce->has_file || ce->writes > 0) cache_persist_delete(cs, ce->path);
    entry_drop(cs, ce);
}

cache_entry *cache_store_find(cache_store *cs, const char *agent_id)
{
    for (size_t i = 0; i < cs->n_entries; i++)
        if (!strcmp(cs->entries[i]->agent_id, agent_id)) return cs->entries[i];
    char path[CACHE_PATH_MAX];
    if (cs->p.compat != CACHE_COMPAT_DIMS || !cache_find_sibling(cs, agent_id, path, sizeof path)) return NULL;
    cache_file_meta meta;
    int32_t *tokens;
    if (!cache_read_index(cs, path, &meta, &tokens)) return NULL;
    cache_entry *ce = cache_entry_new(cs, agent_id, path);
    if (!ce) {
        free(tokens);
        return NULL;
    }
    ce->tier = CACHE_WARM;
    ce->has_file = true;
    ce->local_from = meta.ring_from;
    cache_entry_set_tokens(cs, ce, tokens, meta.n_tokens);
    return ce;
}

cache_entry *cache_store_match_prefix(cache_store *cs, const int32_t *tokens, size_t n)
{
    size_t bt = (size_t)cs->geo.block_tokens;
    uint64_t h = 0;
    cache_entry *best = NULL;
    for (size_t b = 0; (b + 1) * bt <= n; b++) {
        h = kv_block_hash(h, tokens + b * bt, (int32_t)bt);
        cache_entry *ce = ix_get(cs, h);
        /* hashes can collide: the entry must really hold these tokens */
        if (!ce || ce->n_tokens < (b + 1) * bt || memcmp(ce->tokens, tokens, (b + 1) * bt * sizeof *tokens)) break;
        best = ce;
    }
    return best;
}

size_t cache_entry_common_prefix(const cache_store *cs, const cache_entry *ce, const int32_t *tokens,
                                 size_t n)
{
    size_t k = 0, lim = ce->n_tokens < n ? ce->n_tokens : n;
    while (k < lim && ce->tokens[k] == tokens[k]) k++;
    if (k == n) k = n - 1;
    /* Ring: a branch before the held window would need sliding-layer KV
     * that is gone (any earlier branch too), so nothing is reused. */
    return kv_ring_covers(&cs->ring, ce->local_from, k) ? k : 0;
}

bool cache_entry_busy(const cache_entry *ce) { return ce->pins > 0; }
cache_tier cache_entry_tier(const cache_entry *ce) { return ce->tier; }
const char *cache_entry_agent(const cache_entry *ce) { return ce->agent_id; }

void cache_entry_pin(cache_entry *ce)
{
    ce->pins++;
    ce->last_use_ns = clk_now_ns();
    ce->last_use_ms = clk_wall_ms();
    ce->hits++;
}

void cache_entry_unpin(cache_entry *ce)
{
    SEM_ASSERT(ce->pins > 0);
    ce->pins--;
}

static sem_status load_warm(cache_store *cs, cache_entry *ce, size_t n, int32_t *blocks, sem_err *err)
{
    cache_file *f;
    const char *fp = cs->p.compat == CACHE_COMPAT_DIMS ? NULL : cs->fingerprint;
    sem_status st = cache_file_open_ring(ce->path, &cs->geo, &cs->ring, fp, &f, err);
    if (st) {
        sem_err qe;
        if (cs->p.cache_dir) cache_quarantine(cs->root, ce->path, &qe);
        cs->stats.quarantined++;
        sem_log(cs->p.lg, SEM_LOG_WARN, "cache quarantine agent=%s file=%s reason=\"%s\" action=\"treated as a miss\"",
                ce->agent_id, ce->path, err->msg);
        ce->has_file = false;
        if (ce->pins == 0) entry_drop(cs, ce);
        else ce->tier = CACHE_COLD;
        return st;
    }
    /* Blocks before the file's ring hold only the global layers: each is
     * trimmed as soon as it is taken (not shared, so in place). */
    size_t nb = cache_blocks_for(cs, n), got = 0, ring_first = cache_file_get_meta(f)->ring_from / (size_t)cs->geo.block_tokens;
    for (; got < nb; got++) {
        if ((st = kv_pool_alloc(cs->pool, &blocks[got], err))) break;
        if (got < ring_first) kv_pool_trim(cs->pool, &blocks[got], err);
    }
    if (!st) {
        kn_kv_view v = kv_pool_view(cs->pool, blocks);
        cache_file_load(f, n, &v, kv_pool_layer_stride(cs->pool));
        cs->stats.bytes_read += cache_kv_bytes(cs, n, cache_file_get_meta(f)->ring_from);
    } else {
        while (got > 0) kv_pool_unref(cs->pool, blocks[--got]);
    }
    cache_file_close(f);
    return st;
}

sem_status cache_entry_acquire(cache_store *cs, cache_entry *ce, size_t n_common, int32_t *blocks,
                               sem_err *err)
{
    size_t nb = cache_blocks_for(cs, n_common);
    if (ce->tier == CACHE_HOT) {
        SEM_ASSERT(nb <= ce->n_blocks && n_common <= ce->n_tokens);
        for (size_t i = 0; i < nb; i++) {
            kv_pool_ref(cs->pool, ce->blocks[i]);
            blocks[i] = ce->blocks[i];
        }
        return SEM_OK;
    }
    if (ce->tier == CACHE_WARM) return load_warm(cs, ce, n_common, blocks, err);
    return sem_errf(err, SEM_ENOTFOUND, "agent %s has no cache", ce->agent_id);
}

void cache_store_count(cache_store *cs, cache_tier t)
{
    if (t == CACHE_HOT) cs->stats.hits_hot++;
    else if (t == CACHE_WARM) cs->stats.hits_warm++;
    else cs->stats.misses++;
}

static void anon_id(const int32_t *tokens, size_t n, char *out, size_t cap)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint32_t)tokens[i]) * 0x100000001b3ull;
    snprintf(out, cap, "anon-%016" PRIx64, h);
}

sem_status cache_store_update(cache_store *cs, const char *agent_id, const int32_t *tokens,
                              size_t n, const int32_t *blocks, sem_err *err)
{
    char anon[32];
    if (!agent_id) {
        anon_id(tokens, n, anon, sizeof anon);
        agent_id = anon;
    }
    cache_entry *ce = NULL;
    for (size_t i = 0; i < cs->n_entries && !ce; i++)
        if (!strcmp(cs->entries[i]->agent_id, agent_id)) ce = cs->entries[i];
    if (!ce && !(ce = cache_entry_new(cs, agent_id, NULL))) return sem_errf(err, SEM_ENOMEM, "cache: out of memory");
    size_t nb = cache_blocks_for(cs, n);
    int32_t *tok = malloc((n ? n : 1) * sizeof *tok), *blk = malloc((nb ? nb : 1) * sizeof *blk);
    if (!tok || !blk) {
        free(tok);
        free(blk);
        return sem_errf(err, SEM_ENOMEM, "cache: out of memory");
    }
    memcpy(tok, tokens, n * sizeof *tok);
    for (size_t i = 0; i < nb; i++) {
        kv_pool_ref(cs->pool, blocks[i]);
        blk[i] = blocks[i];
    }
    cache_entry_release_blocks(cs, ce);
    ce->blocks = blk;
    ce->n_blocks = nb;
    ce->local_from = kv_pool_table_local_from(cs->pool, blk, nb);
    ce->tier = CACHE_HOT;
    ce->dirty = true;
    ce->last_use_ns = clk_now_ns();
    ce->last_use_ms = clk_wall_ms();
    cache_entry_set_tokens(cs, ce, tok, n);
    if (cs->p.cache_dir) cache_persist_write(cs, ce);
    return SEM_OK;
}

static int cmp_lru(const void *a, const void *b)
{
    const cache_entry *x = *(cache_entry *const *)a, *y = *(cache_entry *const *)b;
    return x->last_use_ns < y->last_use_ns ? -1 : x->last_use_ns > y->last_use_ns;
}

int32_t cache_store_evict(cache_store *cs, int32_t n_blocks)
{
    int32_t before = kv_pool_n_free(cs->pool);
    if (cs->n_entries > 1) qsort(cs->entries, cs->n_entries, sizeof *cs->entries, cmp_lru);
    for (size_t i = 0; i < cs->n_entries && kv_pool_n_free(cs->pool) - before < n_blocks; i++) {
        cache_entry *ce = cs->entries[i];
        if (ce->tier != CACHE_HOT || ce->pins > 0 || ce->evict_when_written) continue;
        cs->stats.evictions++;
        if (ce->writes > 0 || (ce->dirty && cs->p.cache_dir)) {
            ce->evict_when_written = true; /* blocks go once the file is durable */
            continue;
        }
        cache_entry_release_blocks(cs, ce);
        if (ce->tier == CACHE_COLD) {
            entry_drop(cs, ce);
            i--;
        }
    }
    return kv_pool_n_free(cs->pool) - before;
}

sem_status cache_store_delete(cache_store *cs, const char *agent_id, bool evict_only, sem_err *err)
{
    cache_entry *ce = NULL;
    for (size_t i = 0; i < cs->n_entries && !ce; i++)
        if (!strcmp(cs->entries[i]->agent_id, agent_id)) ce = cs->entries[i];
    if (!ce) return sem_errf(err, SEM_ENOTFOUND, "no cache for agent '%s'", agent_id);
    if (ce->pins > 0) return sem_errf(err, SEM_EBUSY, "agent '%s' has a request running", agent_id);
    if (evict_only) {
        if (ce->tier == CACHE_HOT && (ce->writes > 0 || (ce->dirty && cs->p.cache_dir))) ce->evict_when_written = true;
        else cache_entry_release_blocks(cs, ce);
        if (ce->tier == CACHE_COLD && !ce->evict_when_written) entry_drop(cs, ce);
        return SEM_OK;
    }
    entry_forget(cs, ce);
    return SEM_OK;
}

size_t cache_store_clear(cache_store *cs)
{
    size_t n = 0;
    for (size_t i = cs->n_entries; i-- > 0;) {
        cache_entry *ce = cs->entries[i];
        if (ce->pins > 0) continue;
        entry_forget(cs, ce);
        n++;
    }
    return n;
}

sem_status cache_store_list(const cache_store *cs, cache_entry_info **out, size_t *n, sem_err *err)
{
    cache_entry_info *v = calloc(cs->n_entries ? cs->n_entries : 1, sizeof *v);
    if (!v) return sem_errf(err, SEM_ENOMEM, "cache: out of memory");
    for (size_t i = 0; i < cs->n_entries; i++) {
        const cache_entry *ce = cs->entries[i];
        cache_entry_info *e = &v[i];
        snprintf(e->agent_id, sizeof e->agent_id, "%s", ce->agent_id);
        e->tier = ce->tier;
        e->anonymous = ce->anonymous;
        e->dirty = ce->dirty;
        e->pinned = ce->pins > 0;
        e->n_tokens = (uint32_t)ce->n_tokens;
        e->bytes = ce->tier == CACHE_HOT ? cache_kv_bytes(cs, ce->n_tokens, ce->local_from) : ce->file_bytes;
        e->last_use_ms = ce->last_use_ms;
        e->hits = ce->hits;
    }
    *out = v;
    *n = cs->n_entries;
    return SEM_OK;
}

cache_stats cache_store_stats(const cache_store *cs)
{
    cache_stats s = cs->stats;
    s.entries_hot = s.entries_warm = 0;
    s.disk_bytes = 0;
    for (size_t i = 0; i < cs->n_entries; i++) {
        s.entries_hot += cs->entries[i]->tier == CACHE_HOT;
        s.entries_warm += cs->entries[i]->tier == CACHE_WARM;
        if (cs->entries[i]->has_file) s.disk_bytes += cs->entries[i]->file_bytes;
    }
    return s;
}

/* ===================================================================== */
/* Lifecycle                                                              */
/* ===================================================================== */

sem_status cache_store_create(const cache_store_params *p, kv_pool *pool, cache_store **out,
                              sem_err *err)
{
    cache_store *cs = calloc(1, sizeof *cs);
    if (!cs) return sem_errf(err, SEM_ENOMEM, "cache: out of memory");
    cs->p = *p;
    cs->pool = pool;
    cs->geo = *kv_pool_geometry(pool);
    cs->ring = *kv_pool_ring(pool);
    cs->model_id = sem_strdup(p->model_id ? p->model_id : "model");
    cs->fingerprint = sem_strdup(p->fingerprint ? p->fingerprint : "0");
    cs->p.model_id = cs->model_id;
    cs->p.fingerprint = cs->fingerprint;
    sem_status st = SEM_OK;
    if (!cs->model_id || !cs->fingerprint) st = sem_errf(err, SEM_ENOMEM, "cache: out of memory");
    if (!st && p->cache_dir) {
        char tag[256];
        cache_model_tag(cs->model_id, cs->fingerprint, tag, sizeof tag);
        snprintf(cs->root, sizeof cs->root, "%s", p->cache_dir);
        if (!fs_join(cs->dir, sizeof cs->dir, p->cache_dir, tag)) st = sem_errf(err, SEM_EINVAL, "cache: path too long");
        if (!st) st = fs_mkdirs(cs->dir, err);
        if (!st) st = cache_scan_dir(cs, err);
    }
    if (!st) st = cache_persist_start(cs, err);
    if (st) {
        cache_store_destroy(cs);
        return st;
    }
    *out = cs;
    return SEM_OK;
}

sem_status cache_store_flush(cache_store *cs, sem_err *err)
{
    (void)err;
    if (!cs->p.cache_dir) return SEM_OK;
    for (size_t i = 0; i < cs->n_entries; i++) {
        cache_entry *ce = cs->entries[i];
        if (ce->tier == CACHE_HOT && ce->dirty && ce->writes == 0) cache_persist_write(cs, ce);
    }
    cache_persist_drain(cs);
    return SEM_OK;
}

void cache_store_destroy(cache_store *cs)
{
    if (!cs) return;
    sem_err err;
    if (cs->thread_started) cache_store_flush(cs, &err);
    cache_persist_stop(cs);
    for (size_t i = 0; i < cs->n_entries; i++) {
        cache_entry_release_blocks(cs, cs->entries[i]);
        cache_entry_free(cs->entries[i]);
    }
    for (size_t i = 0; i < cs->n_dead; i++) cache_entry_free(cs->dead[i]);
    free(cs->entries);
    free(cs->dead);
    free(cs->ix_hash);
    free(cs->ix_entry);
    free(cs->model_id);
    free(cs->fingerprint);
    free(cs);
}
