/* pool.c - the KV block pool: one arena of fixed-size blocks, a free list,
 * and a reference count per block; in ring pools (kv.h), an arena of
 * one-layer units behind block descriptors, so sliding-window layers can
 * give their units back once a sequence is past them.
 *
 * Invariants: a block (descriptor) is on its free list iff its refcount is
 * 0; the free list holds each free block once. Ring pools: a unit is free
 * iff its refcount is 0, and its refcount is the number of live
 * descriptors naming it; a live descriptor names a unit for every global
 * layer, and for every sliding layer or none (trimmed). Misuse (unref of a
 * free block, a bad id) is our own bug, so it asserts.
 *
 * Thread: engine.
 */
#include "kv/kv.h"

#include <stdlib.h>
#include <string.h>

struct kv_pool {
    kv_geometry geo;
    kv_ring ring;          /* window 0: a pool of whole blocks */
    size_t k_row_bytes, v_row_bytes;
    size_t layer_stride;   /* bytes of one layer's K+V inside a block (= a unit) */
    size_t block_bytes;    /* n_layers * layer_stride */
    uint8_t *arena;        /* owned [n_blocks][block_bytes], or [n_units][layer_stride] */
    int32_t n_blocks;      /* block ids (descriptors in ring pools) */
    int32_t *refcount;     /* owned [n_blocks] */
    int32_t *free_ids;     /* owned stack of free block ids */
    int32_t n_free;
    void (*on_free)(void *ctx, int32_t id); /* see kv_pool_set_free_hook */
    void *on_free_ctx;
    /* ring pools only */
    int32_t n_units;
    int32_t *units;        /* owned [n_blocks][n_layers]: each layer's unit, -1 = trimmed */
    int32_t *unit_refs;    /* owned [n_units] */
    int32_t *free_units;   /* owned stack of free unit ids */
    int32_t n_free_units;
};

static bool is_ring(const kv_pool *pool) { return pool->ring.window > 0; }

sem_status kv_geometry_check(const kv_geometry *g, sem_err *err)
{
    if (g->n_layers <= 0 || g->n_kv_heads <= 0 || g->head_dim <= 0 || g->v_head_dim <= 0 || g->block_tokens <= 0)
        return sem_errf(err, SEM_EINVAL, "kv geometry: every dimension must be positive");
    if ((g->dtype == KN_KV_Q8 || g->dtype == KN_KV_Q4) &&
        (g->head_dim % KN_KV_GROUP != 0 || g->v_head_dim % KN_KV_GROUP != 0))
        return sem_errf(err, SEM_EUNSUPPORTED, "kv geometry: %s KV needs head dims that are multiples of %d (got %d/%d)",
                        kn_kv_dtype_name(g->dtype), KN_KV_GROUP, g->head_dim, g->v_head_dim);
    return SEM_OK;
}

static int32_t n_sliding(const kv_geometry *g, const kv_ring *r)
{
    int32_t n = 0;
    for (int32_t l = 0; l < g->n_layers && l < KV_MAX_LAYERS; l++) n += r->sliding[l];
    return n;
}

sem_status kv_ring_check(const kv_geometry *g, const kv_ring *r, sem_err *err)
{
    if (r->window == 0) return SEM_OK;
    if (r->window < 0) return sem_errf(err, SEM_EINVAL, "kv ring: negative window %d", r->window);
    if (g->n_layers > KV_MAX_LAYERS) return sem_errf(err, SEM_EINVAL, "kv ring: more than %d layers", KV_MAX_LAYERS);
    int32_t n = n_sliding(g, r);
    if (n == 0 || n == g->n_layers)
        return sem_errf(err, SEM_EINVAL, "kv ring: needs sliding and global layers (%d of %d slide)", n, g->n_layers);
    return SEM_OK;
}

static size_t layer_bytes(const kv_geometry *g)
{
    size_t rows = (size_t)g->block_tokens * (size_t)g->n_kv_heads;
    return rows * (kn_kv_row_bytes(g->dtype, (size_t)g->head_dim) + kn_kv_row_bytes(g->dtype, (size_t)g->v_head_dim));
}

size_t kv_block_bytes(const kv_geometry *g) { return layer_bytes(g) * (size_t)g->n_layers; }

size_t kv_seq_bytes(const kv_geometry *g, const kv_ring *r, size_t n_tokens, size_t chunk_tokens)
{
    size_t bt = (size_t)g->block_tokens, nb = (n_tokens + bt - 1) / bt;
    if (!r || r->window <= 0) return nb * kv_block_bytes(g);
    /* Sliding layers hold the blocks covering [n - window, n + chunk). */
    size_t span = (size_t)r->window + (chunk_tokens ? chunk_tokens : 1);
    size_t local = (span - 1 + bt - 1) / bt + 1;
    if (local > nb) local = nb;
    size_t n_slide = (size_t)n_sliding(g, r), n_glob = (size_t)g->n_layers - n_slide;
    return (nb * n_glob + local * n_slide) * layer_bytes(g);
}

/* Ring pools: units and descriptors. There are as many descriptors as
 * units: a live descriptor names at least one global unit, and trimmed
 * copies of a shared block share theirs. */
static sem_status create_ring(kv_pool *pool, size_t budget, sem_err *err)
{
    size_t n = budget / pool->layer_stride;
    if (n < (size_t)pool->geo.n_layers)
        return sem_errf(err, SEM_EINVAL, "kv pool: budget of %zu bytes holds no %zu-byte block", budget, pool->block_bytes);
    if (n > INT32_MAX / 2 / (size_t)pool->geo.n_layers) n = INT32_MAX / 2 / (size_t)pool->geo.n_layers;
    pool->n_units = (int32_t)n;
    pool->n_blocks = (int32_t)n;
    pool->arena = sem_alloc_aligned(n * pool->layer_stride);
    pool->units = sem_calloc(n * (size_t)pool->geo.n_layers, sizeof *pool->units);
    pool->unit_refs = sem_calloc(n, sizeof *pool->unit_refs);
    pool->free_units = sem_calloc(n, sizeof *pool->free_units);
    if (!pool->arena || !pool->units || !pool->unit_refs || !pool->free_units)
        return sem_errf(err, SEM_ENOMEM, "kv pool: cannot allocate %zu units of %zu bytes", n, pool->layer_stride);
    for (int32_t i = 0; i < pool->n_units; i++) pool->free_units[i] = pool->n_units - 1 - i;
    pool->n_free_units = pool->n_units;
    return SEM_OK;
}

sem_status kv_pool_create(const kv_geometry *g, const kv_pool_params *p, kv_pool **out, sem_err *err)
{
    sem_status st = kv_geometry_check(g, err);
    if (!st && p->ring) st = kv_ring_check(g, p->ring, err);
    if (st) return st;
    size_t bb = kv_block_bytes(g);
    kv_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return sem_errf(err, SEM_ENOMEM, "kv pool: out of memory");
    pool->geo = *g;
    if (p->ring) pool->ring = *p->ring;
    pool->k_row_bytes = kn_kv_row_bytes(g->dtype, (size_t)g->head_dim);
    pool->v_row_bytes = kn_kv_row_bytes(g->dtype, (size_t)g->v_head_dim);
    pool->layer_stride = layer_bytes(g);
    pool->block_bytes = bb;
    if (is_ring(pool)) {
        st = create_ring(pool, p->budget_bytes, err);
    } else {
        size_t n = p->budget_bytes / bb;
        if (n > INT32_MAX / 2) n = INT32_MAX / 2;
        pool->n_blocks = (int32_t)n;
        if (n == 0) st = sem_errf(err, SEM_EINVAL, "kv pool: budget of %zu bytes holds no %zu-byte block", p->budget_bytes, bb);
        else if (!(pool->arena = sem_alloc_aligned(n * bb)))
            st = sem_errf(err, SEM_ENOMEM, "kv pool: cannot allocate %zu blocks of %zu bytes", n, bb);
    }
    if (!st) {
        pool->refcount = sem_calloc((size_t)pool->n_blocks, sizeof *pool->refcount);
        pool->free_ids = sem_calloc((size_t)pool->n_blocks, sizeof *pool->free_ids);
        if (!pool->refcount || !pool->free_ids) st = sem_errf(err, SEM_ENOMEM, "kv pool: out of memory");
    }
    if (st) {
        kv_pool_destroy(pool);
        return st;
    }
    for (int32_t i = 0; i < pool->n_blocks; i++) pool->free_ids[i] = pool->n_blocks - 1 - i;
    pool->n_free = pool->n_blocks;
    *out = pool;
    return SEM_OK;
}

void kv_pool_destroy(kv_pool *pool)
{
    if (!pool) return;
    sem_free_aligned(pool->arena);
    free(pool->refcount);
    free(pool->free_ids);
    free(pool->units);
    free(pool->unit_refs);
    free(pool->free_units);
    free(pool);
}

const kv_geometry *kv_pool_geometry(const kv_pool *pool) { return &pool->geo; }
const kv_ring *kv_pool_ring(const kv_pool *pool) { return &pool->ring; }

int32_t kv_pool_n_blocks(const kv_pool *pool)
{
    return is_ring(pool) ? pool->n_units / pool->geo.n_layers : pool->n_blocks;
}

int32_t kv_pool_n_free(const kv_pool *pool)
{
    if (!is_ring(pool)) return pool->n_free;
    int32_t n = pool->n_free_units / pool->geo.n_layers;
    return n < pool->n_free ? n : pool->n_free;
}

int32_t kv_pool_n_ids(const kv_pool *pool) { return pool->n_blocks; }

size_t kv_pool_bytes_used(const kv_pool *pool)
{
    if (is_ring(pool)) return (size_t)(pool->n_units - pool->n_free_units) * pool->layer_stride;
    return (size_t)(pool->n_blocks - pool->n_free) * pool->block_bytes;
}

/* ---- units (ring pools) ---------------------------------------------- */

size_t kv_pool_bytes_total(const kv_pool *pool)
{
    return is_ring(pool) ? (size_t)pool->n_units * pool->layer_stride : (size_t)pool->n_blocks * pool->block_bytes;
}

static int32_t *units_of(const kv_pool *pool, int32_t id) { return pool->units + (size_t)id * (size_t)pool->geo.n_layers; }
static uint8_t *unit_data(const kv_pool *pool, int32_t u) { return pool->arena + (size_t)u * pool->layer_stride; }

static int32_t unit_alloc(kv_pool *pool)
{
    SEM_ASSERT(pool->n_free_units > 0);
    int32_t u = pool->free_units[--pool->n_free_units];
    SEM_ASSERT(pool->unit_refs[u] == 0);
    pool->unit_refs[u] = 1;
    return u;
}

static void unit_unref(kv_pool *pool, int32_t u)
{
    SEM_ASSERT(u >= 0 && u < pool->n_units && pool->unit_refs[u] > 0);
    if (--pool->unit_refs[u] == 0) pool->free_units[pool->n_free_units++] = u;
}

static int32_t desc_alloc(kv_pool *pool)
{
    int32_t id = pool->free_ids[--pool->n_free];
    SEM_ASSERT(pool->refcount[id] == 0);
    pool->refcount[id] = 1;
    return id;
}

/* ---- blocks ---------------------------------------------------------- */

sem_status kv_pool_alloc(kv_pool *pool, int32_t *out_id, sem_err *err)
{
    if (pool->n_free == 0 || (is_ring(pool) && pool->n_free_units < pool->geo.n_layers))
        return sem_errf(err, SEM_ELIMIT, "kv pool: all %d blocks are in use", kv_pool_n_blocks(pool));
    int32_t id = desc_alloc(pool);
    if (is_ring(pool)) {
        int32_t *u = units_of(pool, id);
        for (int32_t l = 0; l < pool->geo.n_layers; l++) u[l] = unit_alloc(pool);
    }
    *out_id = id;
    return SEM_OK;
}

sem_status kv_pool_grow(kv_pool *pool, int32_t *blocks, size_t *n_blocks, size_t n_tokens, sem_err *err)
{
    size_t bt = (size_t)pool->geo.block_tokens;
    while (*n_blocks * bt < n_tokens) {
        sem_status st = kv_pool_alloc(pool, &blocks[*n_blocks], err);
        if (st) return st;
        (*n_blocks)++;
    }
    return SEM_OK;
}

void kv_pool_ref(kv_pool *pool, int32_t id)
{
    SEM_ASSERT(id >= 0 && id < pool->n_blocks && pool->refcount[id] > 0);
    pool->refcount[id]++;
}

int32_t kv_pool_unref(kv_pool *pool, int32_t id)
{
    SEM_ASSERT(id >= 0 && id < pool->n_blocks && pool->refcount[id] > 0);
    if (--pool->refcount[id] == 0) {
        if (is_ring(pool)) {
            int32_t *u = units_of(pool, id);
            for (int32_t l = 0; l < pool->geo.n_layers; l++)
                if (u[l] >= 0) unit_unref(pool, u[l]);
        }
        pool->free_ids[pool->n_free++] = id;
        if (pool->on_free) pool->on_free(pool->on_free_ctx, id);
    }
    return pool->refcount[id];
}

void kv_pool_set_free_hook(kv_pool *pool, void (*fn)(void *ctx, int32_t id), void *ctx)
{
    pool->on_free = fn;
    pool->on_free_ctx = ctx;
}

void kv_pool_unshare(kv_pool *pool, int32_t id)
{
    SEM_ASSERT(id >= 0 && id < pool->n_blocks && pool->refcount[id] > 0);
    if (pool->on_free) pool->on_free(pool->on_free_ctx, id);
}

int32_t kv_pool_refcount(const kv_pool *pool, int32_t id)
{
    SEM_ASSERT(id >= 0 && id < pool->n_blocks);
    return pool->refcount[id];
}

/* Ring pools: a descriptor of its own whose units are all its own too
 * (a unit can be shared with a trimmed copy of the block). */
static sem_status make_private_ring(kv_pool *pool, int32_t *id, sem_err *err)
{
    int32_t nl = pool->geo.n_layers, need = 0, *u = units_of(pool, *id);
    bool shared = pool->refcount[*id] > 1;
    for (int32_t l = 0; l < nl; l++) need += u[l] >= 0 && (shared || pool->unit_refs[u[l]] > 1);
    if (!shared && need == 0) return SEM_OK;
    if ((shared && pool->n_free == 0) || pool->n_free_units < need)
        return sem_errf(err, SEM_ELIMIT, "kv pool: all %d blocks are in use", kv_pool_n_blocks(pool));
    int32_t fresh = *id;
    if (shared) {
        fresh = desc_alloc(pool);
        int32_t *fu = units_of(pool, fresh);
        for (int32_t l = 0; l < nl; l++) {
            fu[l] = u[l];
            if (u[l] >= 0) pool->unit_refs[u[l]]++;
        }
        kv_pool_unref(pool, *id);
        u = fu;
    }
    for (int32_t l = 0; l < nl; l++) {
        if (u[l] < 0 || pool->unit_refs[u[l]] == 1) continue;
        int32_t c = unit_alloc(pool);
        memcpy(unit_data(pool, c), unit_data(pool, u[l]), pool->layer_stride);
        unit_unref(pool, u[l]);
        u[l] = c;
    }
    *id = fresh;
    return SEM_OK;
}

sem_status kv_pool_make_private(kv_pool *pool, int32_t *id, sem_err *err)
{
    if (is_ring(pool)) return make_private_ring(pool, id, err);
    if (kv_pool_refcount(pool, *id) == 1) return SEM_OK;
    int32_t fresh;
    sem_status st = kv_pool_alloc(pool, &fresh, err);
    if (st) return st;
    memcpy(pool->arena + (size_t)fresh * pool->block_bytes, pool->arena + (size_t)*id * pool->block_bytes, pool->block_bytes);
    kv_pool_unref(pool, *id);
    *id = fresh;
    return SEM_OK;
}

kn_kv_view kv_pool_view(const kv_pool *pool, const int32_t *block_ids)
{
    const kv_geometry *g = &pool->geo;
    bool ring = is_ring(pool);
    return (kn_kv_view){
        .dtype = g->dtype,
        .base = pool->arena,
        .block_stride = ring ? pool->layer_stride : pool->block_bytes,
        .k_offset = 0,
        .v_offset = (size_t)g->block_tokens * (size_t)g->n_kv_heads * pool->k_row_bytes,
        .k_row_bytes = pool->k_row_bytes,
        .v_row_bytes = pool->v_row_bytes,
        .n_kv_heads = g->n_kv_heads,
        .head_dim = g->head_dim,
        .v_head_dim = g->v_head_dim,
        .block_tokens = g->block_tokens,
        .block_ids = block_ids,
        .unit_ids = ring ? pool->units : NULL,
        .unit_stride = ring ? g->n_layers : 0,
    };
}

size_t kv_pool_layer_stride(const kv_pool *pool) { return is_ring(pool) ? 0 : pool->layer_stride; }

/* ---- rings ----------------------------------------------------------- */

bool kv_pool_block_has_local(const kv_pool *pool, int32_t id)
{
    if (!is_ring(pool)) return true;
    SEM_ASSERT(id >= 0 && id < pool->n_blocks && pool->refcount[id] > 0);
    const int32_t *u = units_of(pool, id);
    for (int32_t l = 0; l < pool->geo.n_layers; l++)
        if (pool->ring.sliding[l]) return u[l] >= 0;
    return true;
}

sem_status kv_pool_trim(kv_pool *pool, int32_t *id, sem_err *err)
{
    if (!kv_pool_block_has_local(pool, *id)) return SEM_OK;
    int32_t nl = pool->geo.n_layers, *u = units_of(pool, *id);
    if (pool->refcount[*id] > 1) { /* copy-on-trim: the others keep theirs */
        if (pool->n_free == 0) return sem_errf(err, SEM_ELIMIT, "kv pool: no free block id to trim into");
        int32_t fresh = desc_alloc(pool), *fu = units_of(pool, fresh);
        for (int32_t l = 0; l < nl; l++) {
            fu[l] = pool->ring.sliding[l] ? -1 : u[l];
            if (fu[l] >= 0) pool->unit_refs[fu[l]]++;
        }
        kv_pool_unref(pool, *id);
        *id = fresh;
        return SEM_OK;
    }
    for (int32_t l = 0; l < nl; l++) {
        if (!pool->ring.sliding[l]) continue;
        unit_unref(pool, u[l]);
        u[l] = -1;
    }
    return SEM_OK;
}

size_t kv_pool_ring_first(const kv_pool *pool, size_t n_tokens)
{
    size_t w = (size_t)pool->ring.window;
    if (!is_ring(pool) || n_tokens <= w) return 0;
    return (n_tokens - w) / (size_t)pool->geo.block_tokens;
}

void kv_pool_trim_table(kv_pool *pool, int32_t *blocks, size_t *n_trimmed, size_t n_tokens)
{
    size_t first = kv_pool_ring_first(pool, n_tokens);
    sem_err err;
    while (*n_trimmed < first && kv_pool_trim(pool, &blocks[*n_trimmed], &err) == SEM_OK) (*n_trimmed)++;
}

size_t kv_pool_table_local_from(const kv_pool *pool, const int32_t *blocks, size_t n_blocks)
{
    for (size_t b = n_blocks; b-- > 0;)
        if (!kv_pool_block_has_local(pool, blocks[b])) return (b + 1) * (size_t)pool->geo.block_tokens;
    return 0;
}

bool kv_ring_covers(const kv_ring *r, size_t local_from, size_t n)
{
    if (!r || r->window <= 0 || local_from == 0 || n == 0) return true;
    return n + 1 >= local_from + (size_t)r->window;
}

uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int32_t block_tokens)
{
    /* FNV-1a over the parent and the tokens, then a final avalanche. */
    uint64_t h = 0xcbf29ce484222325ull ^ parent;
    for (int32_t i = 0; i < block_tokens; i++) {
        uint32_t t = (uint32_t)tokens[i];
        for (int b = 0; b < 4; b++) {
            h ^= (t >> (8 * b)) & 0xff;
            h *= 0x100000001b3ull;
        }
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h ? h : 1;
}
