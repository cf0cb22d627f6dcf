/* st_writer.c - the streaming safetensors writer.
 *
 * The caller declares every tensor (name, dtype, shape) and the metadata,
 * then streams the data bytes in declaration order. The first write emits
 * the header; tensors are laid out back to back in declaration order, and
 * the header is padded with spaces to a multiple of 8 bytes so the data
 * section starts aligned, as the reference implementation does.
 *
 * Durability: everything goes to a unique temp file beside the target;
 * finish checks that every declared byte arrived, then fsync -> close ->
 * rename -> fsync(dir). A writer destroyed before finish removes its temp
 * file, so a crash or an error never leaves a half-written target.
 *
 * Thread: one thread at a time per writer.
 */
#include "formats/formats.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct st_writer {
    char *path;           /* owned: final path */
    char *tmp;            /* owned: temp path */
    int fd;               /* -1 once closed */
    json_t *header;       /* owned: tensors in declaration order + __metadata__ */
    json_t *meta;         /* owned: __metadata__ (joins header when written) */
    uint64_t n_declared;  /* total declared data bytes */
    uint64_t n_written;   /* data bytes written so far */
    bool header_done;
    bool finished;
};

sem_status st_writer_create(const char *path, st_writer **out, sem_err *err)
{
    st_writer *w = calloc(1, sizeof *w);
    if (!w) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", path);
    w->fd = -1;
    size_t n = strlen(path) + 16;
    w->path = sem_strdup(path);
    w->tmp = malloc(n);
    w->header = json_object();
    w->meta = json_object();
    if (!w->path || !w->tmp || !w->header || !w->meta) {
        st_writer_destroy(w);
        return sem_errf(err, SEM_ENOMEM, "%s: out of memory", path);
    }
    snprintf(w->tmp, n, "%s.tmp.XXXXXX", path);
    w->fd = mkstemp(w->tmp);
    if (w->fd < 0) {
        int e = errno;
        free(w->tmp);
        w->tmp = NULL;
        st_writer_destroy(w);
        return sem_errf(err, SEM_EIO, "%s: create temp file: %s", path, strerror(e));
    }
    *out = w;
    return SEM_OK;
}

sem_status st_writer_declare(st_writer *w, const char *name, st_dtype dtype, int n_dims,
                             const uint64_t *shape, sem_err *err)
{
    if (w->header_done) return sem_errf(err, SEM_EINVAL, "%s: declare '%s' after data started", w->path, name);
    if (n_dims < 0 || n_dims > ST_MAX_DIMS || (unsigned)dtype >= ST_DTYPE_COUNT || !strcmp(name, "__metadata__") ||
        json_object_get(w->header, name))
        return sem_errf(err, SEM_EINVAL, "%s: bad or duplicate tensor declaration '%s'", w->path, name);
    uint64_t bytes = st_dtype_size(dtype);
    json_t *sh = json_array();
    for (int i = 0; i < n_dims; i++) {
        if (!sem_mul_u64(bytes, shape[i], &bytes)) {
            json_decref(sh);
            return sem_errf(err, SEM_EINVAL, "%s: tensor '%s' size overflows", w->path, name);
        }
        json_array_append_new(sh, json_integer((json_int_t)shape[i]));
    }
    json_t *off = json_pack("[I,I]", (json_int_t)w->n_declared, (json_int_t)(w->n_declared + bytes));
    json_t *t = json_pack("{s:s,s:o,s:o}", "dtype", st_dtype_name(dtype), "shape", sh, "data_offsets", off);
    if (!t || json_object_set_new(w->header, name, t) != 0) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", w->path);
    w->n_declared += bytes;
    return SEM_OK;
}

sem_status st_writer_set_metadata(st_writer *w, const char *key, const char *value, sem_err *err)
{
    if (w->header_done) return sem_errf(err, SEM_EINVAL, "%s: metadata after data started", w->path);
    if (json_object_set_new(w->meta, key, json_string(value)) != 0)
        return sem_errf(err, SEM_EINVAL, "%s: bad metadata '%s' (not UTF-8?)", w->path, key);
    return SEM_OK;
}

static sem_status write_all(st_writer *w, const void *data, size_t n, sem_err *err)
{
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t r = write(w->fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return sem_errf(err, SEM_EIO, "%s: write: %s", w->tmp, r < 0 ? strerror(errno) : "short write");
        p += r;
        n -= (size_t)r;
    }
    return SEM_OK;
}

static sem_status write_header(st_writer *w, sem_err *err)
{
    if (json_object_size(w->meta) > 0) json_object_set(w->header, "__metadata__", w->meta);
    char *js = json_dumps(w->header, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!js) return sem_errf(err, SEM_ENOMEM, "%s: cannot serialize header", w->path);
    size_t len = strlen(js), padded = (len + 7) & ~(size_t)7;
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    sem_status s = write_all(w, lenbuf, 8, err);
    if (s == SEM_OK) s = write_all(w, js, len, err);
    if (s == SEM_OK) s = write_all(w, "        ", padded - len, err);
    free(js);
    w->header_done = true;
    return s;
}

sem_status st_writer_write(st_writer *w, const void *data, size_t n, sem_err *err)
{
    if (w->fd < 0 || w->finished) return sem_errf(err, SEM_EINVAL, "%s: writer is closed", w->path);
    if (!w->header_done) {
        sem_status s = write_header(w, err);
        if (s != SEM_OK) return s;
    }
    if (n > w->n_declared - w->n_written)
        return sem_errf(err, SEM_EINVAL, "%s: %zu bytes written past the %" PRIu64 " declared", w->path, n, w->n_declared);
    w->n_written += n;
    return write_all(w, data, n, err);
}

sem_status st_writer_finish(st_writer *w, sem_err *err)
{
    if (!w->header_done) {
        sem_status s = write_header(w, err);
        if (s != SEM_OK) return s;
    }
    if (w->n_written != w->n_declared)
        return sem_errf(err, SEM_EINVAL, "%s: %" PRIu64 " of %" PRIu64 " declared data bytes written", w->path, w->n_written, w->n_declared);
    const char *step = NULL;
    if (fsync(w->fd) != 0) step = "fsync";
    int e = errno;
    if (close(w->fd) != 0 && !step) {
        step = "close";
        e = errno;
    }
    w->fd = -1;
    if (!step && rename(w->tmp, w->path) != 0) {
        step = "rename";
        e = errno;
    }
    if (step) return sem_errf(err, SEM_EIO, "%s: %s failed: %s", w->path, step, strerror(e));
    w->finished = true;
    return fs_fsync_parent_dir(w->path, err);
}

void st_writer_destroy(st_writer *w)
{
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (!w->finished && w->tmp) unlink(w->tmp);
    json_decref(w->header);
    json_decref(w->meta);
    free(w->tmp);
    free(w->path);
    free(w);
}
