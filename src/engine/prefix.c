/* prefix.c - the prefix index: which live pool block holds which full
 * block of tokens, so sequences with a common prompt prefix share blocks
 * instead of recomputing them (automatic prefix caching).
 *
 * A block is keyed by a hash chained over every token before it, so equal
 * keys mean equal prefixes. Hashes can collide, so an entry also keeps the
 * parent hash and the block's tokens, and a lookup compares them. Only
 * full blocks are registered, and a full block is never written again, so
 * sharing needs no copy.
 *
 * Open addressing with linear probing and tombstones; the table has twice
 * as many slots as the pool has blocks, and each block appears at most
 * once, so it never fills.
 *
 * Thread: engine.
 */
#include "engine/engine_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    uint64_t hash;
    uint64_t parent;
    int32_t block;   /* -1 empty, -2 tombstone */
} slot;

struct eng_prefix_index {
    slot *slots;         /* owned [n_slots] */
    size_t n_slots;      /* power of two */
    int32_t block_tokens;
    tok_id *tokens;      /* owned [n_blocks][block_tokens]: each block's tokens */
    size_t *slot_of;     /* owned [n_blocks]: slot index + 1, 0 if absent */
    int32_t n_blocks;
};

sem_status eng_prefix_index_create(int32_t n_blocks, int32_t block_tokens, eng_prefix_index **out,
                                   sem_err *err)
{
    eng_prefix_index *ix = calloc(1, sizeof *ix);
    if (!ix) return sem_errf(err, SEM_ENOMEM, "prefix index: out of memory");
    ix->n_slots = 16;
    while (ix->n_slots < 2 * (size_t)n_blocks) ix->n_slots *= 2;
    ix->block_tokens = block_tokens;
    ix->n_blocks = n_blocks;
    ix->slots = sem_calloc(ix->n_slots, sizeof *ix->slots);
    ix->tokens = sem_calloc((size_t)n_blocks * (size_t)block_tokens, sizeof *ix->tokens);
    ix->slot_of = sem_calloc((size_t)n_blocks, sizeof *ix->slot_of);
    if (!ix->slots || !ix->tokens || !ix->slot_of) {
        eng_prefix_index_destroy(ix);
        return sem_errf(err, SEM_ENOMEM, "prefix index: out of memory for %d blocks", n_blocks);
    }
    for (size_t i = 0; i < ix->n_slots; i++) ix->slots[i].block = -1;
    *out = ix;
    return SEM_OK;
}

void eng_prefix_index_destroy(eng_prefix_index *ix)
{
    if (!ix) return;
    free(ix->slots);
    free(ix->tokens);
    free(ix->slot_of);
    free(ix);
}

static bool matches(const eng_prefix_index *ix, const slot *s, uint64_t hash, uint64_t parent,
                    const tok_id *tokens)
{
    return s->block >= 0 && s->hash == hash && s->parent == parent &&
           !memcmp(ix->tokens + (size_t)s->block * (size_t)ix->block_tokens, tokens,
                   (size_t)ix->block_tokens * sizeof *tokens);
}

int32_t eng_prefix_lookup(const eng_prefix_index *ix, uint64_t hash, uint64_t parent,
                          const tok_id *tokens)
{
    size_t mask = ix->n_slots - 1;
    for (size_t i = hash & mask, n = 0; n < ix->n_slots; i = (i + 1) & mask, n++) {
        const slot *s = &ix->slots[i];
        if (s->block == -1) return -1;
        if (matches(ix, s, hash, parent, tokens)) return s->block;
    }
    return -1;
}

void eng_prefix_insert(eng_prefix_index *ix, uint64_t hash, uint64_t parent, const tok_id *tokens,
                       int32_t block)
{
    SEM_ASSERT(block >= 0 && block < ix->n_blocks);
    if (ix->slot_of[block] || eng_prefix_lookup(ix, hash, parent, tokens) >= 0) return;
    size_t mask = ix->n_slots - 1, i = hash & mask;
    while (ix->slots[i].block >= 0) i = (i + 1) & mask;
    ix->slots[i] = (slot){hash, parent, block};
    memcpy(ix->tokens + (size_t)block * (size_t)ix->block_tokens, tokens,
           (size_t)ix->block_tokens * sizeof *tokens);
    ix->slot_of[block] = i + 1;
}

void eng_prefix_remove(eng_prefix_index *ix, int32_t block)
{
    SEM_ASSERT(block >= 0 && block < ix->n_blocks);
    if (!ix->slot_of[block]) return;
    ix->slots[ix->slot_of[block] - 1].block = -2;
    ix->slot_of[block] = 0;
}
