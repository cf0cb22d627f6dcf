/* registry.c - which models can be loaded: a model id resolves to a
 * directory with a config.json under --models-dir, or in the Hugging Face
 * hub cache (models--org--name/snapshots/<rev>), so `huggingface-cli
 * download` works as a pre-download step.
 *
 * Ids come from HTTP requests, so they are checked before they touch the
 * filesystem: no "..", no NUL, no leading '/' (unless the id is an
 * existing path given on the command line).
 *
 * Thread: any.
 */
#include "swap/swap.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool has_config(const char *dir)
{
    char p[4200];
    return fs_join(p, sizeof p, dir, "config.json") && fs_exists(p);
}

static bool id_safe(const char *id)
{
    if (!id[0] || id[0] == '/' || id[0] == '.' || strstr(id, "..") || strlen(id) >= SWAP_MAX_MODEL_ID) return false;
    for (const char *p = id; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                  c == '-' || c == '/';
        if (!ok) return false;
    }
    return true;
}

static const char *default_hf_cache(char *buf_out, size_t cap)
{
    const char *hf = getenv("HF_HUB_CACHE");
    if (hf && *hf) return hf;
    const char *home = getenv("HF_HOME");
    if (home && *home) {
        snprintf(buf_out, cap, "%s/hub", home);
        return buf_out;
    }
    home = getenv("HOME");
    snprintf(buf_out, cap, "%s/.cache/huggingface/hub", home ? home : "/root");
    return buf_out;
}

/* hf_cache/models--org--name/snapshots/<most recent rev> */
static bool resolve_hf(const char *hf_cache, const char *id, char *out, size_t cap)
{
    char repo[SWAP_MAX_MODEL_ID * 2 + 16] = "models--", snaps[4600];
    size_t n = strlen(repo);
    for (const char *p = id; *p && n + 3 < sizeof repo; p++) {
        if (*p == '/') {
            repo[n++] = '-';
            repo[n++] = '-';
        } else {
            repo[n++] = *p;
        }
    }
    repo[n] = '\0';
    snprintf(snaps, sizeof snaps, "%s/%s/snapshots", hf_cache, repo);
    DIR *d = opendir(snaps);
    if (!d) return false;
    struct dirent *e;
    time_t best = 0;
    bool found = false;
    while ((e = readdir(d))) {
        char cand[4900];
        struct stat st;
        if (e->d_name[0] == '.') continue;
        snprintf(cand, sizeof cand, "%s/%s", snaps, e->d_name);
        if (stat(cand, &st) != 0 || !S_ISDIR(st.st_mode) || !has_config(cand)) continue;
        if (!found || st.st_mtime > best) {
            best = st.st_mtime;
            snprintf(out, cap, "%s", cand);
            found = true;
        }
    }
    closedir(d);
    return found;
}

sem_status swap_resolve_model(const char *models_dir, const char *hf_cache, const char *id,
                              char *dir_out, size_t cap, sem_err *err)
{
    if (!id || !*id) return sem_errf(err, SEM_EINVAL, "empty model id");
    if (fs_is_dir(id) && has_config(id)) {
        snprintf(dir_out, cap, "%s", id);
        return SEM_OK;
    }
    if (!id_safe(id))
        return sem_errf(err, SEM_EINVAL, "model id '%.64s' is not a valid id (letters, digits, '._-/', no '..')", id);
    char cand[4200], hfbuf[4096];
    if (models_dir && fs_join(cand, sizeof cand, models_dir, id) && fs_is_dir(cand) && has_config(cand)) {
        snprintf(dir_out, cap, "%s", cand);
        return SEM_OK;
    }
    if (!hf_cache) hf_cache = default_hf_cache(hfbuf, sizeof hfbuf);
    if (resolve_hf(hf_cache, id, dir_out, cap)) return SEM_OK;
    return sem_errf(err, SEM_ENOTFOUND, "model '%s' not found in %s or the Hugging Face cache %s", id,
                    models_dir ? models_dir : "(no --models-dir)", hf_cache);
}

static uint64_t dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    uint64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[4400];
        struct stat st;
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

static bool add_model(swap_model_info **v, size_t *n, size_t *cap, const char *id, const char *dir)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        swap_model_info *nv = realloc(*v, c * sizeof *nv);
        if (!nv) return false;
        *v = nv;
        *cap = c;
    }
    swap_model_info *mi = &(*v)[(*n)++];
    memset(mi, 0, sizeof *mi);
    snprintf(mi->id, sizeof mi->id, "%s", id);
    snprintf(mi->dir, sizeof mi->dir, "%s", dir);
    mi->bytes_on_disk = dir_bytes(dir);
    model_spec s;
    sem_err err;
    if (model_spec_load(dir, &s, &err) == SEM_OK) {
        mi->valid = true;
        snprintf(mi->arch, sizeof mi->arch, "%s", s.arch_name);
        mi->quant_bits = s.quant_bits;
        mi->quant_group_size = s.quant_group_size;
        mi->geo = model_spec_kv_geometry(&s);
        model_spec_fini(&s);
    }
    return true;
}

/* models_dir/<name> with config.json, or models_dir/<org>/<name>. */
static void scan_models_dir(const char *root, swap_model_info **v, size_t *n, size_t *cap)
{
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[4400];
        if (e->d_name[0] == '.' || !fs_join(p, sizeof p, root, e->d_name) || !fs_is_dir(p)) continue;
        if (has_config(p)) {
            add_model(v, n, cap, e->d_name, p);
            continue;
        }
        DIR *sub = opendir(p);
        struct dirent *f;
        while (sub && (f = readdir(sub))) {
            char q[4700], id[SWAP_MAX_MODEL_ID * 2];
            if (f->d_name[0] == '.') continue;
            snprintf(q, sizeof q, "%s/%s", p, f->d_name);
            snprintf(id, sizeof id, "%s/%s", e->d_name, f->d_name);
            if (fs_is_dir(q) && has_config(q) && strlen(id) < SWAP_MAX_MODEL_ID) add_model(v, n, cap, id, q);
        }
        if (sub) closedir(sub);
    }
    closedir(d);
}

static void scan_hf_cache(const char *hf, swap_model_info **v, size_t *n, size_t *cap)
{
    DIR *d = opendir(hf);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "models--", 8) != 0) continue;
        char id[SWAP_MAX_MODEL_ID], dir[4096];
        const char *s = e->d_name + 8, *sep = strstr(s, "--");
        if (!sep) snprintf(id, sizeof id, "%s", s);
        else snprintf(id, sizeof id, "%.*s/%s", (int)(sep - s), s, sep + 2);
        if (resolve_hf(hf, id, dir, sizeof dir)) add_model(v, n, cap, id, dir);
    }
    closedir(d);
}

sem_status swap_list_models(const char *models_dir, const char *hf_cache, swap_model_info **out,
                            size_t *n, sem_err *err)
{
    swap_model_info *v = NULL;
    size_t cnt = 0, cap = 0;
    char hfbuf[4096];
    if (models_dir) scan_models_dir(models_dir, &v, &cnt, &cap);
    scan_hf_cache(hf_cache ? hf_cache : default_hf_cache(hfbuf, sizeof hfbuf), &v, &cnt, &cap);
    if (!v && !(v = calloc(1, sizeof *v))) return sem_errf(err, SEM_ENOMEM, "out of memory");
    *out = v;
    *n = cnt;
    return SEM_OK;
}
