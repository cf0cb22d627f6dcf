/* scan.c - indexing the namespace directory at startup: orphan temp files
 * (from a crash mid-write) are removed, and every agent file becomes a
 * warm entry from its metadata and token ids alone; the KV is not read
 * (it is verified, CRC included, when an agent actually comes back). A
 * file whose header or metadata is bad is quarantined at once.
 *
 * Thread: engine (during store creation), or any single thread.
 */
#include "cache/cache_int.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

static void quarantine(cache_store *cs, const char *path, const char *why)
{
    sem_err qe;
    if (cache_quarantine(cs->root, path, &qe) != SEM_OK) unlink(path);
    cs->stats.quarantined++;
    sem_log(cs->p.lg, SEM_LOG_WARN, "cache quarantine file=%s reason=\"%s\" action=\"moved to quarantine/, treated as a miss\"", path, why);
}

bool cache_read_index(cache_store *cs, const char *path, cache_file_meta *meta, int32_t **tokens)
{
    sem_err err;
    if (cache_file_read_meta(path, meta, &err) != SEM_OK) {
        quarantine(cs, path, err.msg);
        return false;
    }
    bool same_geo = cache_layout_matches(cs, meta);
    bool same_fp = cs->p.compat == CACHE_COMPAT_DIMS || !strcmp(meta->fingerprint, cs->fingerprint);
    if (!same_geo || !same_fp) {
        quarantine(cs, path, same_geo ? "incompatible: other model fingerprint" : "incompatible: other KV geometry");
        return false;
    }
    st_file *f;
    if (st_open(path, &f, &err) != SEM_OK) {
        quarantine(cs, path, err.msg);
        return false;
    }
    const st_tensor *t = st_file_find(f, "tokens");
    int32_t *tok = NULL;
    if (t && t->dtype == ST_I32 && t->n_elements == meta->n_tokens && (tok = malloc((t->n_bytes ? t->n_bytes : 4))))
        memcpy(tok, t->data, t->n_bytes);
    st_close(f);
    if (!tok) {
        quarantine(cs, path, "no valid tokens tensor");
        return false;
    }
    *tokens = tok;
    return true;
}

static void index_file(cache_store *cs, const char *name)
{
    char path[CACHE_PATH_MAX], agent[CACHE_MAX_AGENT_ID + 1];
    size_t n = strlen(name) - strlen(".safetensors");
    if (!fs_join(path, sizeof path, cs->dir, name) || n > CACHE_MAX_AGENT_ID) return;
    memcpy(agent, name, n);
    agent[n] = '\0';
    cache_file_meta meta;
    int32_t *tokens;
    if (!cache_agent_id_valid(agent) || !cache_read_index(cs, path, &meta, &tokens)) return;
    if (strcmp(meta.agent_id, agent) != 0) {
        free(tokens);
        quarantine(cs, path, "the agent id in the file does not match its name");
        return;
    }
    cache_entry *ce = cache_entry_new(cs, agent, path);
    if (!ce) {
        free(tokens);
        return;
    }
    ce->tier = CACHE_WARM;
    ce->has_file = true;
    ce->local_from = meta.ring_from;
    FILE *fp = fopen(path, "rb");
    if (fp && fseek(fp, 0, SEEK_END) == 0) ce->file_bytes = (uint64_t)ftell(fp);
    if (fp) fclose(fp);
    cache_entry_set_tokens(cs, ce, tokens, meta.n_tokens);
}

sem_status cache_scan_dir(cache_store *cs, sem_err *err)
{
    DIR *d = opendir(cs->dir);
    if (!d) return sem_errf(err, SEM_EIO, "%s: cannot open the cache directory", cs->dir);
    struct dirent *e;
    size_t n_files = 0, n_orphans = 0;
    while ((e = readdir(d))) {
        char path[CACHE_PATH_MAX];
        if (e->d_name[0] == '.' || !fs_join(path, sizeof path, cs->dir, e->d_name)) continue;
        if (strstr(e->d_name, ".tmp.")) {
            unlink(path);
            n_orphans++;
        } else if (has_suffix(e->d_name, ".safetensors")) {
            index_file(cs, e->d_name);
            n_files++;
        }
    }
    closedir(d);
    sem_log(cs->p.lg, SEM_LOG_INFO, "cache index dir=%s files=%zu entries=%zu orphan_temp_removed=%zu", cs->dir, n_files,
            cs->n_entries, n_orphans);
    return SEM_OK;
}

bool cache_find_sibling(cache_store *cs, const char *agent_id, char *path, size_t cap)
{
    if (!cs->p.cache_dir || !cache_agent_id_valid(agent_id)) return false;
    DIR *d = opendir(cs->root);
    if (!d) return false;
    struct dirent *e;
    bool found = false;
    while (!found && (e = readdir(d))) {
        char sub[CACHE_PATH_MAX], file[CACHE_PATH_MAX + 200];
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "quarantine") || !fs_join(sub, sizeof sub, cs->root, e->d_name))
            continue;
        if (!strcmp(sub, cs->dir) || !fs_is_dir(sub)) continue;
        snprintf(file, sizeof file, "%s/%s.safetensors", sub, agent_id);
        cache_file_meta meta;
        sem_err err;
        if (!fs_exists(file) || cache_file_read_meta(file, &meta, &err) != SEM_OK) continue;
        found = cache_layout_matches(cs, &meta);
        if (found) snprintf(path, cap, "%s", file);
    }
    closedir(d);
    return found;
}
