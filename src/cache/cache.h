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
 * Any safetensors reader can open it.
 */
#ifndef SEM_CACHE_H
#define SEM_CACHE_H

#include "base/base.h"
#include "kernels/kernels.h"
#include "kv/kv.h"

#define CACHE_FORMAT_VERSION 1
#define CACHE_MAX_AGENT_ID 128
#define CACHE_MAX_TOKENS (1u << 24)

/* [A-Za-z0-9_.-]{1,128}, not starting with '.': safe as a file name. */
bool cache_agent_id_valid(const char *id);

typedef struct cache_file_meta {
    uint32_t version;
    char agent_id[CACHE_MAX_AGENT_ID + 1];
    char model_id[256];
    char fingerprint[65];        /* hex model fingerprint */
    kv_geometry geo;             /* n_layers, n_kv_heads, head_dim, v_head_dim, block_tokens, dtype */
    uint32_t n_tokens;
    uint32_t crc32c;             /* of the data section */
} cache_file_meta;

/* Writes tokens[0..meta->n_tokens) and their K/V rows to path atomically
 * (temp file in the same directory, fsync, rename, fsync directory). The
 * rows are read through `kv` (layer 0's view of the blocks; layer l's K/V
 * are at k_offset/v_offset + l * layer_stride), which must not change
 * during the call (the caller pins the blocks). Fills meta->crc32c.
 * Thread: persist. */
sem_status cache_file_write(const char *path, cache_file_meta *meta, const int32_t *tokens,
                            const kn_kv_view *kv, size_t layer_stride, sem_err *err);

typedef struct cache_file cache_file; /* opaque: an open, verified file */

/* Opens and verifies a cache file completely: safetensors header, every
 * tensor's name, dtype and shape, the metadata, the CRC32C of the data,
 * and (when expect is not NULL) the geometry tag; when fingerprint is not
 * NULL it must match too. Any failure is SEM_ECORRUPT (damaged file) or
 * SEM_EUNSUPPORTED (incompatible: other geometry, fingerprint, version),
 * with a message saying which. */
sem_status cache_file_open(const char *path, const kv_geometry *expect, const char *fingerprint,
                           cache_file **out, sem_err *err);
void cache_file_close(cache_file *f); /* NULL ok */
const cache_file_meta *cache_file_get_meta(const cache_file *f);
const int32_t *cache_file_tokens(const cache_file *f); /* [n_tokens]; valid until close */
/* Copies the K/V rows of tokens [0, n) into the blocks of `kv` (same
 * geometry and dtype as the file). Thread: engine. */
void cache_file_load(const cache_file *f, size_t n, const kn_kv_view *kv, size_t layer_stride);

/* Reads only the header and metadata (no data, no CRC): for indexing a
 * cache directory at startup. */
sem_status cache_file_read_meta(const char *path, cache_file_meta *out, sem_err *err);

/* Moves path into <cache_dir>/quarantine/ (created if needed) under a
 * unique name, so a bad file is never loaded again and can be inspected. */
sem_status cache_quarantine(const char *cache_dir, const char *path, sem_err *err);

#endif /* SEM_CACHE_H */
