/* kv.h - the door of the kv room: the block pool that holds every
 * sequence's KV cache in fixed blocks of block_tokens tokens.
 *
 * Block layout (one block holds K and V of all layers for block_tokens
 * consecutive positions of one sequence):
 *   for each layer l:  K rows [block_tokens][n_kv_heads] of k_row_bytes,
 *                      then V rows [block_tokens][n_kv_heads] of v_row_bytes
 * so a layer's region is layer_stride bytes and block b starts at
 * arena + b * block_bytes. Rows are in the pool's KV format (kernels.h).
 *
 * Blocks carry reference counts so sequences with a common prefix can
 * share them; a block returns to the free list when its count drops to 0.
 *
 * Thread: engine (the pool is owned by the engine thread).
 */
#ifndef SEM_KV_H
#define SEM_KV_H

#include "base/base.h"
#include "kernels/kernels.h"

typedef struct kv_geometry {
    int32_t n_layers, n_kv_heads, head_dim, v_head_dim;
    int32_t block_tokens;
    kn_kv_dtype dtype;
} kv_geometry;

typedef struct kv_pool_params {
    size_t budget_bytes; /* block memory cap; the pool holds floor(budget / block_bytes) blocks */
} kv_pool_params;

typedef struct kv_pool kv_pool; /* opaque; Thread: engine */

/* Bytes of one block for this geometry (0 if the geometry is invalid). */
size_t kv_block_bytes(const kv_geometry *g);
/* Checks the geometry (positive dims, q8/q4 need head dims that are
 * multiples of KN_KV_GROUP). */
sem_status kv_geometry_check(const kv_geometry *g, sem_err *err);

sem_status kv_pool_create(const kv_geometry *g, const kv_pool_params *p, kv_pool **out,
                          sem_err *err);
void kv_pool_destroy(kv_pool *pool); /* NULL ok */
const kv_geometry *kv_pool_geometry(const kv_pool *pool);
int32_t kv_pool_n_blocks(const kv_pool *pool);
int32_t kv_pool_n_free(const kv_pool *pool);

/* Calls fn(ctx, id) whenever a block returns to the free list (e.g. so a
 * content index can forget it). One hook per pool; NULL clears it. */
void kv_pool_set_free_hook(kv_pool *pool, void (*fn)(void *ctx, int32_t id), void *ctx);

/* Takes a free block (refcount 1). SEM_ELIMIT when the pool is full. */
sem_status kv_pool_alloc(kv_pool *pool, int32_t *out_id, sem_err *err);
void kv_pool_ref(kv_pool *pool, int32_t id);
/* Drops a reference; returns the count left (0: the block is free again). */
int32_t kv_pool_unref(kv_pool *pool, int32_t id);
int32_t kv_pool_refcount(const kv_pool *pool, int32_t id);
/* Copy-on-write: if *id is shared (refcount > 1), copies it into a new
 * block, drops one reference on the old one and stores the new id.
 * SEM_ELIMIT when no block is free (nothing changes). */
sem_status kv_pool_make_private(kv_pool *pool, int32_t *id, sem_err *err);

/* The layer-0 view of a sequence with block table `block_ids` (borrowed:
 * must outlive the view's use), and the stride between layers. */
kn_kv_view kv_pool_view(const kv_pool *pool, const int32_t *block_ids);
size_t kv_pool_layer_stride(const kv_pool *pool);

/* Hash of a full block of tokens following a block whose hash is parent
 * (0 for the first block): equal chains mean equal prefixes (up to
 * collisions, which users must rule out by comparing tokens). Never 0. */
uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int32_t block_tokens);

#endif /* SEM_KV_H */
