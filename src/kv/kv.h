/* kv.h - the door of the kv room: the block pool that holds every
 * sequence's KV cache in fixed blocks of block_tokens tokens.
 *
 * Block layout (one block holds K and V of all layers for block_tokens
 * consecutive positions of one sequence):
 *   for each layer l:  K rows [n_kv_heads][block_tokens] of k_row_bytes,
 *                      then V rows [n_kv_heads][block_tokens] of v_row_bytes
 * so a layer's region is layer_stride bytes and block b starts at
 * arena + b * block_bytes. Rows are in the pool's KV format (kernels.h).
 *
 * Blocks carry reference counts so sequences with a common prefix can
 * share them; a block returns to the free list when its count drops to 0.
 *
 * Ring pools (kv_pool_params.ring with a window: models whose sliding-window
 * layers attend only to the last `window` positions, Gemma 3). The arena
 * holds units of one layer each (K rows then V rows for block_tokens
 * positions, i.e. layer_stride bytes), and a block id names a descriptor
 * with one unit per layer. A block is allocated with every layer's unit;
 * once a sequence is `window` positions past it, kv_pool_trim gives its
 * sliding layers' units back, so a sequence holds its global layers for
 * every position but its sliding layers only for the last blocks: a ring
 * of at most ceil(window / block_tokens) + 1 blocks (kv_pool_trim_table
 * applies that policy), plus the blocks of the chunk being computed.
 * Units are reference counted too: trimming a block that others share
 * makes a new descriptor that shares its global units (copy-on-trim), so
 * each holder keeps its own ring. Views of a ring pool carry the unit
 * table (kn_kv_view.unit_ids); kn_kv_view_layer selects a layer.
 * One unit size for every layer keeps one free list and one budget (no
 * fragmentation between the two kinds of layer).
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

#define KV_MAX_LAYERS 1024

/* Which layers attend through a sliding window (a ring pool keeps only
 * their window). window 0: none; every layer keeps every position. */
typedef struct kv_ring {
    int32_t window;               /* tokens a sliding layer attends to (its own included) */
    bool sliding[KV_MAX_LAYERS];  /* [n_layers] layer l slides */
} kv_ring;

typedef struct kv_pool_params {
    size_t budget_bytes; /* block memory cap; the pool holds floor(budget / block_bytes) blocks */
    const kv_ring *ring; /* borrowed (copied); NULL or window 0: every layer keeps every
                            position. Rings need both sliding and global layers. */
} kv_pool_params;

typedef struct kv_pool kv_pool; /* opaque; Thread: engine */

/* Bytes of one block for this geometry (0 if the geometry is invalid). */
size_t kv_block_bytes(const kv_geometry *g);
/* Checks the geometry (positive dims, q8/q4 need head dims that are
 * multiples of KN_KV_GROUP). */
sem_status kv_geometry_check(const kv_geometry *g, sem_err *err);

/* Checks a ring against a geometry: window 0, or a positive window with
 * at least one sliding and one global layer among n_layers. */
sem_status kv_ring_check(const kv_geometry *g, const kv_ring *r, sem_err *err);
/* Bytes of pool memory one sequence of n_tokens needs at most while it is
 * computed in chunks of up to chunk_tokens: every block for every layer,
 * or with a ring (r NULL or window 0: none) every block for the global
 * layers and only the window plus a chunk for the sliding ones. */
size_t kv_seq_bytes(const kv_geometry *g, const kv_ring *r, size_t n_tokens, size_t chunk_tokens);

sem_status kv_pool_create(const kv_geometry *g, const kv_pool_params *p, kv_pool **out,
                          sem_err *err);
void kv_pool_destroy(kv_pool *pool); /* NULL ok */
const kv_geometry *kv_pool_geometry(const kv_pool *pool);
const kv_ring *kv_pool_ring(const kv_pool *pool); /* window 0: not a ring pool */
/* Capacity and free space in blocks of every layer (a ring pool counts
 * its free units / n_layers). */
int32_t kv_pool_n_blocks(const kv_pool *pool);
int32_t kv_pool_n_free(const kv_pool *pool);
/* Block ids are 0 .. kv_pool_n_ids - 1 (= n_blocks, except ring pools,
 * whose trimmed blocks cost less than a block of every layer). */
int32_t kv_pool_n_ids(const kv_pool *pool);
/* Bytes of the arena in use (blocks, or units of ring pools), and in all. */
size_t kv_pool_bytes_used(const kv_pool *pool);
size_t kv_pool_bytes_total(const kv_pool *pool);

/* Calls fn(ctx, id) whenever a block returns to the free list (e.g. so a
 * content index can forget it), and for kv_pool_unshare. One hook per
 * pool; NULL clears it. */
void kv_pool_set_free_hook(kv_pool *pool, void (*fn)(void *ctx, int32_t id), void *ctx);
/* Runs the free hook for a live block now, so a content index forgets it
 * while its holders (a running sequence, a pending file write) keep it. */
void kv_pool_unshare(kv_pool *pool, int32_t id);

/* Takes a free block (refcount 1). SEM_ELIMIT when the pool is full. */
sem_status kv_pool_alloc(kv_pool *pool, int32_t *out_id, sem_err *err);
/* Appends blocks to a sequence's table (blocks[0 .. *n_blocks)) until it
 * covers n_tokens positions. On SEM_ELIMIT the table keeps what it got so
 * far (*n_blocks counts it). The caller sizes blocks for n_tokens. */
sem_status kv_pool_grow(kv_pool *pool, int32_t *blocks, size_t *n_blocks, size_t n_tokens, sem_err *err);
void kv_pool_ref(kv_pool *pool, int32_t id);
/* Drops a reference; returns the count left (0: the block is free again). */
int32_t kv_pool_unref(kv_pool *pool, int32_t id);
int32_t kv_pool_refcount(const kv_pool *pool, int32_t id);
/* Copy-on-write: if *id is shared (refcount > 1), copies it into a new
 * block, drops one reference on the old one and stores the new id.
 * SEM_ELIMIT when no block is free (nothing changes). */
sem_status kv_pool_make_private(kv_pool *pool, int32_t *id, sem_err *err);

/* The layer-0 view of a sequence with block table `block_ids` (borrowed:
 * must outlive the view's use), and the stride between layers for
 * kn_kv_view_layer (0 for ring pools, whose views select layers by unit). */
kn_kv_view kv_pool_view(const kv_pool *pool, const int32_t *block_ids);
size_t kv_pool_layer_stride(const kv_pool *pool);

/* ---- rings (no-ops / trivially true on pools without one) ------------- */

/* Whether block id still holds its sliding layers' KV. */
bool kv_pool_block_has_local(const kv_pool *pool, int32_t id);
/* Drops the sliding layers' KV of *id for this holder: in place when the
 * block is not shared, else *id becomes a new block sharing the global
 * layers (one reference on the old one dropped). SEM_ELIMIT when no block
 * id is free (nothing changes; trimming can wait). */
sem_status kv_pool_trim(kv_pool *pool, int32_t *id, sem_err *err);
/* The ring policy for a sequence with n_tokens computed tokens: the first
 * block whose sliding layers must be kept, the one holding position
 * n_tokens - window (so a continuation from n_tokens or n_tokens - 1 finds
 * its whole window). 0 without a ring. */
size_t kv_pool_ring_first(const kv_pool *pool, size_t n_tokens);
/* Trims blocks[*n_trimmed .. ring_first(n_tokens)) and advances
 * *n_trimmed (stopping early, harmlessly, if ids run out). */
void kv_pool_trim_table(kv_pool *pool, int32_t *blocks, size_t *n_trimmed, size_t n_tokens);
/* The first position whose sliding-layer KV blocks[0..n_blocks) hold (all
 * blocks after the last trimmed one hold it): 0 without a ring. */
size_t kv_pool_table_local_from(const kv_pool *pool, const int32_t *blocks, size_t n_blocks);
/* Whether a sequence whose sliding layers hold positions local_from and on
 * can compute position n: the window before n, [n - window + 1, n), is
 * held. Always true without a ring, for n 0 and for local_from 0. */
bool kv_ring_covers(const kv_ring *r, size_t local_from, size_t n);

/* Hash of a full block of tokens following a block whose hash is parent
 * (0 for the first block): equal chains mean equal prefixes (up to
 * collisions, which users must rule out by comparing tokens). Never 0. */
uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int32_t block_tokens);

#endif /* SEM_KV_H */
