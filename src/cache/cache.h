/* cache.h - the door of the cache room: agents' KV caches as safetensors
 * files (this file's first part), and the agent cache store with its tiers,
 * LRU budgets, prefix index and write-behind persistence (second part).
 *
 * Cache file format (see cache_file.c for the full description):
 *   one safetensors file per agent per model namespace,
 *   <cache_dir>/<model-tag>/<agent_id>.safetensors, holding
 *   - "tokens": I32 [n_tokens], the token ids the KV covers;
 *   - per layer l, K and V in the pool's KV format:
 *       f16/bf16/f32: "layers.{l}.k" [n_tokens, n_kv_heads, head_dim]
 *                     (dtype F16/BF16/F32), "layers.{l}.v" likewise with
 *                     v_head_dim;
 *       q8/q4:        "layers.{l}.k.weight" U32 [n_tokens, n_kv_heads,
 *                     head_dim * bits / 32], "layers.{l}.k.scales" and
 *                     "layers.{l}.k.biases" F16 [n_tokens, n_kv_heads,
 *                     head_dim / 64] (MLX affine layout, group 64), and the
 *                     same for v;
 *   - __metadata__: format version, agent id, model id, model
 *     fingerprint, n_layers, n_kv_heads, head_dim, v_head_dim,
 *     block_tokens, kv dtype, bits, group size, token count, and the
 *     CRC32C of the whole data section.
 * Models with sliding-window layers kept as a ring (kv/kv.h) write
 * version 2: the metadata adds sliding_window, sliding_layers (one '0' or
 * '1' per layer) and ring_from, and a sliding layer's tensors hold only
 * positions ring_from .. n_tokens - 1 (first dimension n_tokens -
 * ring_from). Files of other models are version 1, unchanged.
 * Any safetensors reader can open it.
 */
#ifndef SEM_CACHE_H
#define SEM_CACHE_H

#include "base/base.h"
#include "kernels/kernels.h"
#include "kv/kv.h"

#define CACHE_FORMAT_VERSION 1      /* every layer holds every position */
#define CACHE_FORMAT_VERSION_RING 2 /* sliding layers hold ring_from .. n_tokens - 1 */
#define CACHE_MAX_AGENT_ID 128
#define CACHE_MAX_TOKENS (1u << 24)
#define CACHE_MAX_LAYERS 1024 /* files claiming more are rejected */
#define CACHE_MAX_DIM 65536   /* n_kv_heads, head_dim, v_head_dim, block_tokens */

/* [A-Za-z0-9_.-]{1,128}, not starting with '.': safe as a file name. */
bool cache_agent_id_valid(const char *id);

typedef struct cache_file_meta {
    uint32_t version;
    char agent_id[CACHE_MAX_AGENT_ID + 1];
    char model_id[256];
    char fingerprint[65];        /* model fingerprint: 1-64 lowercase hex digits */
    kv_geometry geo;             /* n_layers, n_kv_heads, head_dim, v_head_dim, block_tokens, dtype */
    kv_ring ring;                /* window 0: version 1, every layer holds every position */
    uint32_t ring_from;          /* ring: the first position the sliding layers hold (a
                                    multiple of block_tokens); 0 otherwise */
    uint32_t n_tokens;
    uint32_t crc32c;             /* of the data section */
} cache_file_meta;

/* Writes tokens[0..meta->n_tokens) and their K/V rows to path atomically
 * (temp file "<path>.tmp.XXXXXX" in the same directory, fsync, rename,
 * fsync directory; on failure the temp file is removed and an existing
 * file at path is untouched). The rows are read through `kv` (layer 0's
 * view of the blocks; layer l's K/V are at k_offset/v_offset + l *
 * layer_stride), which must not change during the call (the caller pins
 * the blocks; rows that change anyway fail the write with SEM_EBUSY).
 * The caller fills agent_id, model_id, fingerprint, geo, n_tokens, and
 * for a ring ring and ring_from (the view's sliding layers need to hold
 * only ring_from on); bad ones, a view that does not match geo, or a
 * negative token are SEM_EINVAL. On success sets meta->version and
 * meta->crc32c.
 * Thread: persist. */
sem_status cache_file_write(const char *path, cache_file_meta *meta, const int32_t *tokens,
                            const kn_kv_view *kv, size_t layer_stride, sem_err *err);

typedef struct cache_file cache_file; /* opaque: an open, verified file */

/* Opens and verifies a cache file completely: safetensors header, every
 * tensor's name, dtype and shape, the metadata, the CRC32C of the data,
 * and (when expect is not NULL) the geometry tag; when fingerprint is not
 * NULL it must match too. Any failure is SEM_ECORRUPT (damaged file) or
 * SEM_EUNSUPPORTED (incompatible: other geometry, fingerprint, version),
 * with a message saying which. A file with a ring (version 2) is
 * incompatible here: cache_file_open_ring expects one. */
sem_status cache_file_open(const char *path, const kv_geometry *expect, const char *fingerprint,
                           cache_file **out, sem_err *err);
/* The same, where the expected layout has a ring (expect_ring, not NULL):
 * the file's window and sliding layers must equal it (window 0: none). */
sem_status cache_file_open_ring(const char *path, const kv_geometry *expect, const kv_ring *expect_ring,
                                const char *fingerprint, cache_file **out, sem_err *err);
void cache_file_close(cache_file *f); /* NULL ok */
const cache_file_meta *cache_file_get_meta(const cache_file *f);
const int32_t *cache_file_tokens(const cache_file *f); /* [n_tokens]; valid until close */
/* Copies the K/V rows of tokens [0, n) into the blocks of `kv` (same
 * geometry and dtype as the file, asserted; n <= n_tokens, asserted; the
 * block table must cover n tokens; for a ring, sliding layers only from
 * ring_from on, so blocks before it may be trimmed). Cannot fail: open
 * verified it all. Thread: engine. */
void cache_file_load(const cache_file *f, size_t n, const kn_kv_view *kv, size_t layer_stride);

/* Reads only the header and metadata (no data, no CRC): for indexing a
 * cache directory at startup. Checks everything cache_file_open checks
 * except compatibility and the CRC (same statuses). */
sem_status cache_file_read_meta(const char *path, cache_file_meta *out, sem_err *err);

/* Moves path into <cache_dir>/quarantine/ (created if needed) as
 * <basename>.<wall ms>[-n].corrupt, never replacing a file there, and
 * fsyncs both directories, so a bad file is never loaded again and can be
 * inspected. SEM_ENOTFOUND if path is gone. Thread: persist. */
sem_status cache_quarantine(const char *cache_dir, const char *path, sem_err *err);

/* ===================================================================== */
/* The agent cache store                                                  */
/* ===================================================================== */

/* Entries map an agent id to the token ids its KV covers and where that KV
 * lives:
 *   hot   the blocks are in the pool (the entry holds a reference on each);
 *   warm  a verified-at-startup file in <cache_dir>/<model-tag>/;
 *   cold  nothing is held (an entry is dropped when it turns cold).
 * Hot entries are evicted least-recently-used when the pool needs blocks:
 * a dirty entry is written first (by the persistence thread), then its
 * blocks are released. Entries used by a running request are pinned.
 * Files are written behind the request path by one persistence thread:
 * temp file, fsync, rename, fsync dir. A file that fails verification is
 * moved to <cache_dir>/quarantine/ and treated as a miss.
 *
 * Thread: engine, except where a function says otherwise.
 */

typedef enum cache_tier { CACHE_COLD = 0, CACHE_WARM, CACHE_HOT } cache_tier;
const char *cache_tier_name(cache_tier t);

typedef enum cache_compat {
    CACHE_COMPAT_MODEL = 0, /* the model fingerprint must match (default) */
    CACHE_COMPAT_DIMS,      /* the geometry is enough: reuse across same-shaped weights */
} cache_compat;

typedef struct cache_store_params {
    const char *cache_dir;       /* NULL: RAM only, nothing persists */
    const char *model_id;        /* e.g. "mlx-community/Llama-3.2-1B-Instruct-4bit" */
    const char *fingerprint;     /* hex; model weights + tokenizer */
    uint64_t disk_budget_bytes;  /* 0 = unlimited */
    cache_compat compat;
    sem_logger *lg;              /* borrowed; may be NULL */
} cache_store_params;

typedef struct cache_store cache_store; /* opaque; Thread: engine */
typedef struct cache_entry cache_entry; /* opaque; owned by the store */

/* The namespace directory name of a model: a safe rendering of its id plus
 * a short fingerprint, so different weights never share files. */
void cache_model_tag(const char *model_id, const char *fingerprint, char *out, size_t cap);

/* Borrows pool (must outlive the store). Creates the namespace directory,
 * removes orphan temp files, indexes the files there (metadata and tokens;
 * bad files are quarantined) and starts the persistence thread. */
sem_status cache_store_create(const cache_store_params *p, kv_pool *pool, cache_store **out,
                              sem_err *err);
/* Writes every dirty entry, waits for the persistence thread, releases all
 * blocks and frees the store. NULL ok. */
void cache_store_destroy(cache_store *cs);
/* Writes every dirty hot entry and waits until the files are durable. */
sem_status cache_store_flush(cache_store *cs, sem_err *err);

/* Finishes persistence jobs that completed (releasing the blocks they
 * held, finishing evictions). Call once per engine step. */
void cache_store_poll(cache_store *cs);

/* The entry of agent_id, or NULL (cold). */
cache_entry *cache_store_find(cache_store *cs, const char *agent_id);
/* The entry (of any agent, anonymous included) with the longest common
 * token prefix with tokens[0..n), counting only full blocks, or NULL. */
cache_entry *cache_store_match_prefix(cache_store *cs, const int32_t *tokens, size_t n);

/* What a request can reuse from an entry: the length of the common prefix
 * with tokens[0..n), capped at n - 1 so at least one token is computed;
 * 0 when the entry's sliding layers (a ring pool) no longer hold the
 * window before that point (an earlier branch of a long conversation). */
size_t cache_entry_common_prefix(const cache_store *cs, const cache_entry *ce, const int32_t *tokens,
                                 size_t n);
bool cache_entry_busy(const cache_entry *ce); /* a running request uses it */
cache_tier cache_entry_tier(const cache_entry *ce);
const char *cache_entry_agent(const cache_entry *ce);

/* Makes the first n_common tokens of ce available in pool blocks: for a hot
 * entry, adds a reference to each block covering them (the last may be
 * partial: the caller copies it before writing into it); for a warm entry,
 * allocates blocks (a ring pool's blocks before the file's ring_from
 * without their sliding layers) and loads the file (quarantining it on failure, which
 * returns SEM_ECORRUPT or SEM_EUNSUPPORTED and turns the entry cold).
 * blocks gets blocks_for(n_common) ids the caller now owns one reference
 * of. SEM_ELIMIT when the pool lacks free blocks. */
sem_status cache_entry_acquire(cache_store *cs, cache_entry *ce, size_t n_common, int32_t *blocks,
                               sem_err *err);
void cache_entry_pin(cache_entry *ce);
void cache_entry_unpin(cache_entry *ce);

/* Records a finished request: agent_id's entry (created if needed; NULL
 * agent_id makes or updates an anonymous entry) now covers tokens[0..n)
 * whose KV is in blocks[0..blocks_for(n)) — the entry takes its own
 * reference on each — and is marked dirty for write-behind. */
sem_status cache_store_update(cache_store *cs, const char *agent_id, const int32_t *tokens,
                              size_t n, const int32_t *blocks, sem_err *err);

/* Frees at least n_blocks pool blocks by evicting least-recently-used
 * unpinned hot entries (writing dirty ones first). Returns how many blocks
 * were freed now; evictions waiting on a write free theirs later. */
int32_t cache_store_evict(cache_store *cs, int32_t n_blocks);

/* Drops agent_id's entry: its blocks, and its file unless evict_only.
 * SEM_ENOTFOUND if unknown, SEM_EBUSY while a request uses it. */
sem_status cache_store_delete(cache_store *cs, const char *agent_id, bool evict_only, sem_err *err);
/* Drops every unpinned entry and file. Returns how many were dropped. */
size_t cache_store_clear(cache_store *cs);

typedef struct cache_entry_info {
    char agent_id[CACHE_MAX_AGENT_ID + 1];
    cache_tier tier;
    bool anonymous, dirty, pinned;
    uint32_t n_tokens;
    uint64_t bytes;              /* KV bytes in RAM (hot) or on disk (warm) */
    uint64_t last_use_ms;        /* wall clock */
    uint64_t hits;
} cache_entry_info;

/* A snapshot of every entry (malloc'd array; caller frees). */
sem_status cache_store_list(const cache_store *cs, cache_entry_info **out, size_t *n, sem_err *err);

typedef struct cache_stats {
    uint64_t hits_hot, hits_warm, misses;
    uint64_t bytes_written, bytes_read;
    uint64_t files_written, quarantined, evictions;
    uint32_t entries_hot, entries_warm;
    uint64_t disk_bytes;
} cache_stats;

cache_stats cache_store_stats(const cache_store *cs);
/* Counts a lookup outcome (the engine decides what a hit is). */
void cache_store_count(cache_store *cs, cache_tier tier_hit);

#endif /* SEM_CACHE_H */
