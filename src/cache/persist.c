/* persist.c - write-behind persistence: one thread that writes agents'
 * cache files (and deletes them), so no disk write happens on the engine
 * or HTTP threads.
 *
 * A write job carries a copy of the entry's tokens and block table and one
 * pool reference per block, so the blocks cannot be reused while the
 * thread reads them; a sequence that wants to append into a shared partial
 * block copies it first (copy-on-write in the engine). Finished jobs come
 * back through `done` and are handled on the engine thread, which drops
 * the references and updates the entry. Jobs run in FIFO order, so a
 * delete queued after a write of the same file wins.
 *
 * Thread: the persistence thread runs persist_main; everything else here
 * runs on the engine thread.
 */
#include "cache/cache_int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void run_job(persist_job *job)
{
    sem_err err;
    sem_err_clear(&err);
    if (job->kind == PERSIST_WRITE) {
        job->result = cache_file_write(job->path, &job->meta, job->tokens, &job->view, job->layer_stride, &err);
        if (!job->result) {
            FILE *f = fopen(job->path, "rb");
            if (f && fseek(f, 0, SEEK_END) == 0) job->bytes = (uint64_t)ftell(f);
            if (f) fclose(f);
        }
    } else if (job->kind == PERSIST_DELETE) {
        job->result = unlink(job->path) == 0 || !fs_exists(job->path) ? SEM_OK : SEM_EIO;
        if (!job->result) job->result = fs_fsync_parent_dir(job->path, &err);
    }
    snprintf(job->msg, sizeof job->msg, "%s", err.msg);
}

static void *persist_main(void *arg)
{
    cache_store *cs = arg;
    void *item;
    while (chan_pop(cs->jobs, -1, &item) == SEM_OK) {
        run_job(item);
        chan_push(cs->done, item);
    }
    return NULL;
}

sem_status cache_persist_start(cache_store *cs, sem_err *err)
{
    cs->jobs = chan_create();
    cs->done = chan_create();
    if (!cs->jobs || !cs->done) return sem_errf(err, SEM_ENOMEM, "cache: out of memory");
    if (pthread_create(&cs->thread, NULL, persist_main, cs) != 0)
        return sem_errf(err, SEM_ENOMEM, "cache: cannot start the persistence thread");
    cs->thread_started = true;
    return SEM_OK;
}

void cache_persist_stop(cache_store *cs)
{
    if (cs->thread_started) {
        cache_persist_drain(cs);
        chan_close(cs->jobs);
        pthread_join(cs->thread, NULL);
        cs->thread_started = false;
    }
    chan_destroy(cs->jobs);
    chan_destroy(cs->done);
    cs->jobs = cs->done = NULL;
}

static void job_free(persist_job *job)
{
    free(job->tokens);
    free(job->blocks);
    free(job);
}

static void submit(cache_store *cs, persist_job *job)
{
    cs->jobs_in_flight++;
    if (!chan_push(cs->jobs, job)) {
        job->result = SEM_EIO;
        snprintf(job->msg, sizeof job->msg, "persistence thread is stopped");
        cache_persist_finish(cs, job);
    }
}

void cache_persist_write(cache_store *cs, cache_entry *ce)
{
    persist_job *job = calloc(1, sizeof *job);
    size_t nb = ce->n_blocks;
    if (job) {
        job->tokens = malloc((ce->n_tokens ? ce->n_tokens : 1) * sizeof *job->tokens);
        job->blocks = malloc((nb ? nb : 1) * sizeof *job->blocks);
    }
    if (!job || !job->tokens || !job->blocks) {
        sem_log(cs->p.lg, SEM_LOG_WARN, "cache write skipped agent=%s reason=\"out of memory\"", ce->agent_id);
        if (job) job_free(job);
        return;
    }
    job->kind = PERSIST_WRITE;
    job->entry = ce;
    snprintf(job->path, sizeof job->path, "%s", ce->path);
    memcpy(job->tokens, ce->tokens, ce->n_tokens * sizeof *job->tokens);
    for (size_t i = 0; i < nb; i++) {
        job->blocks[i] = ce->blocks[i];
        kv_pool_ref(cs->pool, ce->blocks[i]);
    }
    job->n_blocks = nb;
    job->view = kv_pool_view(cs->pool, job->blocks);
    job->layer_stride = kv_pool_layer_stride(cs->pool);
    cache_file_meta *m = &job->meta;
    m->version = CACHE_FORMAT_VERSION;
    snprintf(m->agent_id, sizeof m->agent_id, "%s", ce->agent_id);
    snprintf(m->model_id, sizeof m->model_id, "%s", cs->model_id);
    snprintf(m->fingerprint, sizeof m->fingerprint, "%s", cs->fingerprint);
    m->geo = cs->geo;
    m->ring = cs->ring;
    m->ring_from = (uint32_t)ce->local_from;
    m->n_tokens = (uint32_t)ce->n_tokens;
    ce->writes++;
    ce->dirty = false;
    submit(cs, job);
}

void cache_persist_delete(cache_store *cs, const char *path)
{
    persist_job *job = calloc(1, sizeof *job);
    if (!job) return;
    job->kind = PERSIST_DELETE;
    snprintf(job->path, sizeof job->path, "%s", path);
    submit(cs, job);
}

static void finish_dead(cache_store *cs)
{
    for (size_t i = cs->n_dead; i-- > 0;) {
        if (cs->dead[i]->writes > 0) continue;
        cache_entry_free(cs->dead[i]);
        cs->dead[i] = cs->dead[--cs->n_dead];
    }
}

void cache_persist_finish(cache_store *cs, persist_job *job)
{
    cs->jobs_in_flight--;
    for (size_t i = 0; i < job->n_blocks; i++) kv_pool_unref(cs->pool, job->blocks[i]);
    cache_entry *ce = job->entry;
    if (job->kind == PERSIST_WRITE && ce) {
        ce->writes--;
        if (job->result == SEM_OK) {
            ce->has_file = !ce->dead;
            ce->file_bytes = job->bytes;
            cs->stats.bytes_written += job->bytes;
            cs->stats.files_written++;
        } else {
            ce->dirty = true; /* try again at the next update or flush */
            sem_log(cs->p.lg, SEM_LOG_WARN, "cache write failed agent=%s reason=\"%s\" action=\"kept in RAM\"", ce->agent_id, job->msg);
        }
        if (!ce->dead && ce->evict_when_written && ce->writes == 0 && !ce->dirty && ce->pins == 0) {
            ce->evict_when_written = false;
            cache_entry_release_blocks(cs, ce);
        }
    } else if (job->kind == PERSIST_DELETE && job->result) {
        sem_log(cs->p.lg, SEM_LOG_WARN, "cache delete failed file=%s", job->path);
    }
    job_free(job);
    finish_dead(cs);
}

void cache_store_poll(cache_store *cs)
{
    void *item;
    while (cs->done && chan_try_pop(cs->done, &item)) cache_persist_finish(cs, item);
}

void cache_persist_drain(cache_store *cs)
{
    void *item;
    while (cs->jobs_in_flight > 0 && chan_pop(cs->done, -1, &item) == SEM_OK) cache_persist_finish(cs, item);
}
