/* pool.c - the KV block pool: one arena of n_blocks fixed-size blocks, a
 * free list, and a reference count per block.
 *
 * Invariants: a block is on the free list iff its refcount is 0; the free
 * list holds each free block once. Misuse (unref of a free block, a bad
 * id) is our own bug, so it asserts.
 *
 * Thread: engine.
 */
#include "kv/kv.h"

#include <stdlib.h>
#include <string.h>

struct kv_pool {
    kv_geometry geo;
    size_t k_row_bytes, v_row_bytes;
    size_t layer_stride;   /* bytes of one layer's K+V inside a block */
    size_t block_bytes;    /* n_layers * layer_stride */
    uint8_t *arena;        /* owned [n_blocks][block_bytes] */
    int32_t n_blocks;
    int32_t *refcount;     /* owned [n_blocks] */
    int32_t *free_ids;     /* owned stack of free block ids */
    int32_t n_free;
    void (*on_free)(void *ctx, int32_t id); /* see kv_pool_set_free_hook */
    void *on_free_ctx;
};

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

static size_t layer_bytes(const kv_geometry *g)
{
    size_t rows = (size_t)g->block_tokens * (size_t)g->n_kv_heads;
    return rows * (kn_kv_row_bytes(g->dtype, (size_t)g->head_dim) + kn_kv_row_bytes(g->dtype, (size_t)g->v_head_dim));
}

size_t kv_block_bytes(const kv_geometry *g) { return layer_bytes(g) * (size_t)g->n_layers; }

sem_status kv_pool_create(const kv_geometry *g, const kv_pool_params *p, kv_pool **out, sem_err *err)
{
    sem_status st = kv_geometry_check(g, err);
    if (st) return st;
    size_t bb = kv_block_bytes(g);
    size_t n = p->budget_bytes / bb;
    if (n == 0) return sem_errf(err, SEM_EINVAL, "kv pool: budget of %zu bytes holds no %zu-byte block", p->budget_bytes, bb);
    if (n > INT32_MAX / 2) n = INT32_MAX / 2;
    kv_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return sem_errf(err, SEM_ENOMEM, "kv pool: out of memory");
    pool->geo = *g;
    pool->k_row_bytes = kn_kv_row_bytes(g->dtype, (size_t)g->head_dim);
    pool->v_row_bytes = kn_kv_row_bytes(g->dtype, (size_t)g->v_head_dim);
    pool->layer_stride = layer_bytes(g);
    pool->block_bytes = bb;
    pool->n_blocks = (int32_t)n;
    pool->arena = sem_alloc_aligned(n * bb);
    pool->refcount = sem_calloc(n, sizeof *pool->refcount);
    pool->free_ids = sem_calloc(n, sizeof *pool->free_ids);
    if (!pool->arena || !pool->refcount || !pool->free_ids) {
        kv_pool_destroy(pool);
        return sem_errf(err, SEM_ENOMEM, "kv pool: cannot allocate %zu blocks of %zu bytes", n, bb);
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
    free(pool);
}

const kv_geometry *kv_pool_geometry(const kv_pool *pool) { return &pool->geo; }
int32_t kv_pool_n_blocks(const kv_pool *pool) { return pool->n_blocks; }
int32_t kv_pool_n_free(const kv_pool *pool) { return pool->n_free; }

sem_status kv_pool_alloc(kv_pool *pool, int32_t *out_id, sem_err *err)
{
    if (pool->n_free == 0) return sem_errf(err, SEM_ELIMIT, "kv pool: all %d blocks are in use", pool->n_blocks);
    int32_t id = pool->free_ids[--pool->n_free];
    SEM_ASSERT(pool->refcount[id] == 0);
    pool->refcount[id] = 1;
    *out_id = id;
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

int32_t kv_pool_refcount(const kv_pool *pool, int32_t id)
{
    SEM_ASSERT(id >= 0 && id < pool->n_blocks);
    return pool->refcount[id];
}

sem_status kv_pool_make_private(kv_pool *pool, int32_t *id, sem_err *err)
{
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
    return (kn_kv_view){
        .dtype = g->dtype,
        .base = pool->arena,
        .block_stride = pool->block_bytes,
        .k_offset = 0,
        .v_offset = (size_t)g->block_tokens * (size_t)g->n_kv_heads * pool->k_row_bytes,
        .k_row_bytes = pool->k_row_bytes,
        .v_row_bytes = pool->v_row_bytes,
        .n_kv_heads = g->n_kv_heads,
        .head_dim = g->head_dim,
        .v_head_dim = g->v_head_dim,
        .block_tokens = g->block_tokens,
        .block_ids = block_ids,
    };
}

size_t kv_pool_layer_stride(const kv_pool *pool) { return pool->layer_stride; }

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
