/* st_set.c - a model directory's safetensors files as one tensor table.
 *
 * Sharded checkpoints carry model.safetensors.index.json, whose
 * "weight_map" maps every tensor name to its shard. We open each shard
 * once, check that every indexed tensor really is in its shard, and that no
 * name appears in two shards. Without an index we take model.safetensors,
 * or else every *.safetensors file in the directory (sorted, so the result
 * does not depend on readdir order).
 *
 * Thread: any; an opened set is immutable.
 */
#include "formats/formats.h"

#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_SHARDS 4096
#define ST_MAX_INDEX_BYTES (64u * 1024u * 1024u)

struct st_set {
    st_file **files;        /* owned */
    size_t n_files;
    const st_tensor **all;  /* sorted by name; views into files */
    size_t n_all;
    uint64_t total_bytes;
};

static int cmp_tensor_ptr(const void *a, const void *b)
{
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Opens DIR/name unless already open; *out (may be NULL) gets the file. */
static sem_status add_file(st_set *s, const char *dir, const char *name, const st_file **out,
                           sem_err *err)
{
    char path[4096];
    if (strchr(name, '/') || !strcmp(name, "..") || !fs_join(path, sizeof path, dir, name))
        return sem_errf(err, SEM_ECORRUPT, "%s: bad shard file name '%.64s'", dir, name);
    for (size_t i = 0; i < s->n_files; i++) {
        if (!strcmp(st_file_path(s->files[i]), path)) {
            if (out) *out = s->files[i];
            return SEM_OK;
        }
    }
    if (s->n_files >= ST_MAX_SHARDS) return sem_errf(err, SEM_ELIMIT, "%s: too many shards", dir);
    st_file **nf = realloc(s->files, (s->n_files + 1) * sizeof *nf);
    if (!nf) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", dir);
    s->files = nf;
    sem_status st = st_open(path, &s->files[s->n_files], err);
    if (st != SEM_OK) return st;
    s->total_bytes += st_file_size(s->files[s->n_files]);
    if (out) *out = s->files[s->n_files];
    s->n_files++;
    return SEM_OK;
}

static sem_status build_table(st_set *s, const char *dir, sem_err *err)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_files; i++) n += st_file_n_tensors(s->files[i]);
    s->all = sem_calloc(n ? n : 1, sizeof *s->all);
    if (!s->all) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", dir);
    for (size_t i = 0; i < s->n_files; i++)
        for (size_t j = 0; j < st_file_n_tensors(s->files[i]); j++)
            s->all[s->n_all++] = st_file_tensor(s->files[i], j);
    qsort(s->all, s->n_all, sizeof *s->all, cmp_tensor_ptr);
    for (size_t i = 1; i < s->n_all; i++)
        if (!strcmp(s->all[i - 1]->name, s->all[i]->name))
            return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' appears in both %s and %s", dir, s->all[i]->name, s->all[i - 1]->file, s->all[i]->file);
    return SEM_OK;
}

static sem_status open_indexed(st_set *s, const char *dir, const char *index_path, sem_err *err)
{
    json_t *root;
    sem_status st = js_load_file(index_path, ST_MAX_INDEX_BYTES, &root, err);
    if (st != SEM_OK) return st;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        json_decref(root);
        return sem_errf(err, SEM_ECORRUPT, "%s: missing \"weight_map\" object", index_path);
    }
    const char *name;
    json_t *file;
    json_object_foreach(wm, name, file) {
        if (!json_is_string(file)) {
            st = sem_errf(err, SEM_ECORRUPT, "%s: weight_map[\"%s\"] is not a file name", index_path, name);
            break;
        }
        const st_file *f;
        st = add_file(s, dir, json_string_value(file), &f, err);
        if (st != SEM_OK) break;
        if (!st_file_find(f, name)) {
            st = sem_errf(err, SEM_ECORRUPT, "%s: index says tensor '%s' is in %s, but it is not", index_path, name, json_string_value(file));
            break;
        }
    }
    json_decref(root);
    return st;
}

static sem_status open_all_in_dir(st_set *s, const char *dir, sem_err *err)
{
    DIR *d = opendir(dir);
    if (!d) return sem_errf(err, SEM_ENOTFOUND, "%s: cannot open model directory", dir);
    char **names = NULL;
    size_t n = 0;
    sem_status st = SEM_OK;
    struct dirent *e;
    while ((e = readdir(d)) && st == SEM_OK) {
        size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors") || e->d_name[0] == '.') continue;
        char **nn = realloc(names, (n + 1) * sizeof *nn);
        if (!nn || !(nn[n] = sem_strdup(e->d_name))) st = sem_errf(err, SEM_ENOMEM, "%s: out of memory", dir);
        if (nn) names = nn;
        if (st == SEM_OK) n++;
    }
    closedir(d);
    if (st == SEM_OK && n == 0) st = sem_errf(err, SEM_ENOTFOUND, "%s: no *.safetensors files", dir);
    if (names) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && st == SEM_OK; i++) st = add_file(s, dir, names[i], NULL, err);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

sem_status st_set_open_dir(const char *dir, st_set **out, sem_err *err)
{
    st_set *s = calloc(1, sizeof *s);
    if (!s) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", dir);
    char path[4096];
    sem_status st;
    if (fs_join(path, sizeof path, dir, "model.safetensors.index.json") && fs_exists(path))
        st = open_indexed(s, dir, path, err);
    else if (fs_join(path, sizeof path, dir, "model.safetensors") && fs_exists(path))
        st = add_file(s, dir, "model.safetensors", NULL, err);
    else
        st = open_all_in_dir(s, dir, err);
    if (st == SEM_OK) st = build_table(s, dir, err);
    if (st != SEM_OK) {
        st_set_close(s);
        return st;
    }
    *out = s;
    return SEM_OK;
}

void st_set_close(st_set *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) st_close(s->files[i]);
    free(s->files);
    free(s->all);
    free(s);
}

size_t st_set_n_tensors(const st_set *s) { return s->n_all; }
const st_tensor *st_set_tensor(const st_set *s, size_t i) { return i < s->n_all ? s->all[i] : NULL; }
size_t st_set_n_files(const st_set *s) { return s->n_files; }
const st_file *st_set_file(const st_set *s, size_t i) { return i < s->n_files ? s->files[i] : NULL; }
uint64_t st_set_total_bytes(const st_set *s) { return s->total_bytes; }

long st_set_index(const st_set *s, const char *name)
{
    size_t lo = 0, hi = s->n_all;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->all[mid]->name, name);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

const st_tensor *st_set_find(const st_set *s, const char *name)
{
    long i = st_set_index(s, name);
    return i < 0 ? NULL : s->all[i];
}
