/* cache_int.h - inside the cache room: the entry and store structs, the
 * persistence thread's jobs, and the prefix index over block hashes.
 *
 * Thread: the store and its entries belong to the engine thread; a job is
 * handed to the persistence thread and comes back through `done`.
 */
#ifndef SEM_CACHE_INT_H
#define SEM_CACHE_INT_H

#include "cache/cache.h"
#include "formats/formats.h"

#include <limits.h>
#include <pthread.h>

#define CACHE_PATH_MAX 4096

struct cache_entry {
    char agent_id[CACHE_MAX_AGENT_ID + 1];
    char path[CACHE_PATH_MAX];   /* its file (may be in another namespace: dims compat) */
    bool anonymous;
    cache_tier tier;             /* HOT: blocks valid; WARM: file valid */
    int32_t *tokens;             /* owned [n_tokens] */
    size_t n_tokens;
    size_t local_from;           /* ring pools: the first position whose sliding-layer KV
                                    it holds (blocks or file); 0 otherwise */
    uint64_t *hashes;            /* owned [n_tokens / block_tokens] chained block hashes */
    int32_t *blocks;             /* owned [n_blocks] pool refs (HOT) */
    size_t n_blocks;
    bool dirty;                  /* RAM is newer than the file */
    bool has_file;
    int pins;                    /* running requests using it */
    int writes;                  /* persistence jobs in flight */
    bool evict_when_written;     /* release the blocks once the write lands */
    bool dead;                   /* deleted; freed when writes reach 0 */
    uint64_t file_bytes;
    uint64_t last_use_ns, last_use_ms, hits;
};

typedef enum persist_kind { PERSIST_WRITE = 0, PERSIST_DELETE, PERSIST_SYNC } persist_kind;

typedef struct persist_job {
    persist_kind kind;
    cache_entry *entry;          /* engine-side owner (NULL for SYNC) */
    char path[CACHE_PATH_MAX];
    cache_file_meta meta;
    int32_t *tokens;             /* owned copy */
    int32_t *blocks;             /* owned copy; the job holds one pool ref each */
    size_t n_blocks;
    kn_kv_view view;
    size_t layer_stride;
    sem_status result;
    char msg[SEM_ERR_MSG_BYTES];
    uint64_t bytes;
} persist_job;

struct cache_store {
    cache_store_params p;        /* strings below replace p's */
    char *model_id, *fingerprint;
    char root[CACHE_PATH_MAX];   /* cache_dir */
    char dir[CACHE_PATH_MAX];    /* cache_dir/<model-tag> */
    kv_pool *pool;               /* borrowed */
    kv_geometry geo;
    kv_ring ring;                /* the pool's (window 0: none) */
    cache_entry **entries;       /* owned */
    size_t n_entries, cap_entries;
    cache_entry **dead;          /* deleted entries waiting for their writes */
    size_t n_dead, cap_dead;
    /* prefix index: chained block hash -> entry holding that prefix */
    uint64_t *ix_hash;
    cache_entry **ix_entry;      /* NULL empty, (void*)1 tombstone */
    size_t ix_slots, ix_used;
    /* persistence */
    pthread_t thread;
    bool thread_started;
    chan *jobs;                  /* persist_job* to the persistence thread */
    chan *done;                  /* persist_job* back to the engine thread */
    int jobs_in_flight;
    cache_stats stats;
};

/* persist.c */
sem_status cache_persist_start(cache_store *cs, sem_err *err);
void cache_persist_stop(cache_store *cs);
/* Queues a write of ce's current state (takes refs on its blocks). */
void cache_persist_write(cache_store *cs, cache_entry *ce);
void cache_persist_delete(cache_store *cs, const char *path);
/* Handles one finished job on the engine thread. */
void cache_persist_finish(cache_store *cs, persist_job *job);
/* Blocks until every queued job has finished and been handled. */
void cache_persist_drain(cache_store *cs);

/* scan.c: index the namespace directory at startup. */
sem_status cache_scan_dir(cache_store *cs, sem_err *err);
/* dims compat: a file for agent_id in a sibling namespace with our geometry. */
bool cache_find_sibling(cache_store *cs, const char *agent_id, char *path, size_t cap);
/* Reads meta + tokens of a file without the KV; false if unusable (the
 * file was quarantined and logged). */
bool cache_read_index(cache_store *cs, const char *path, cache_file_meta *meta, int32_t **tokens);

/* store.c helpers shared with scan/persist */
cache_entry *cache_entry_new(cache_store *cs, const char *agent_id, const char *path);
void cache_entry_set_tokens(cache_store *cs, cache_entry *ce, int32_t *tokens, size_t n);
void cache_entry_release_blocks(cache_store *cs, cache_entry *ce);
void cache_entry_free(cache_entry *ce);
size_t cache_blocks_for(const cache_store *cs, size_t n_tokens);
/* KV bytes of n_tokens whose sliding layers (ring pools) hold local_from on. */
uint64_t cache_kv_bytes(const cache_store *cs, size_t n_tokens, size_t local_from);
/* Whether a file's geometry and ring are the store's (so its KV fits the pool). */
bool cache_layout_matches(const cache_store *cs, const cache_file_meta *m);

#endif /* SEM_CACHE_INT_H */
