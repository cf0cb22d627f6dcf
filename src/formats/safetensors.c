/* safetensors.c - the safetensors reader: mmap a file read-only and turn
 * its header into a validated tensor table.
 *
 * Format: [u64 LE header length N][N bytes JSON][data]. The header maps
 * tensor names to {"dtype", "shape", "data_offsets": [begin, end]} with
 * offsets relative to the data section, plus an optional "__metadata__"
 * object of string values.
 *
 * Validation is strict and happens once, here, so nothing past the door
 * ever sees a bad offset: N <= ST_MAX_HEADER_BYTES and N <= file size - 8;
 * the header is a JSON object without duplicate keys; each dtype is known;
 * each dim is a non-negative integer; prod(shape) * dtype size == end -
 * begin (checked for overflow); begin <= end <= data size; and no two
 * tensors overlap. Every error names the file and the tensor.
 *
 * Thread: st_open on any thread; an opened file is immutable.
 */
#include "formats/formats.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct st_file {
    char *path;          /* owned */
    const uint8_t *map;  /* PROT_READ mapping of the whole file */
    uint64_t size;       /* file size in bytes */
    st_tensor *tensors;  /* owned; sorted by name */
    size_t n_tensors;
    json_t *header;      /* owned; tensor names and metadata point into it */
};

static const struct {
    const char *name;
    size_t size;
} dtype_info[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},     [ST_I8] = {"I8", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4},   [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},   [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},   [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype t)
{
    return (unsigned)t < ST_DTYPE_COUNT ? dtype_info[t].name : "?";
}

size_t st_dtype_size(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? dtype_info[t].size : 0; }

bool st_dtype_parse(const char *s, st_dtype *out)
{
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        if (!strcmp(s, dtype_info[i].name)) {
            *out = (st_dtype)i;
            return true;
        }
    }
    return false;
}

/* ---- header parsing --------------------------------------------------- */

static sem_status parse_shape(const char *path, const char *name, json_t *js, st_tensor *t,
                              sem_err *err)
{
    if (!json_is_array(js)) return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s': shape is not an array", path, name);
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS)
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s': %zu dims exceeds the limit of %d", path, name, nd, ST_MAX_DIMS);
    uint64_t n = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s': dim %zu is not a non-negative integer", path, name, i);
        t->shape[i] = (uint64_t)json_integer_value(d);
        if (!sem_mul_u64(n, t->shape[i], &n))
            return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s': shape overflows", path, name);
    }
    t->n_dims = (int)nd;
    t->n_elements = n;
    return SEM_OK;
}

static sem_status parse_offsets(const char *path, const char *name, json_t *js, uint64_t data_size,
                                uint64_t *begin, uint64_t *end, sem_err *err)
{
    json_t *b = json_array_get(js, 0), *e = json_array_get(js, 1);
    if (!json_is_array(js) || json_array_size(js) != 2 || !json_is_integer(b) || !json_is_integer(e) ||
        json_integer_value(b) < 0 || json_integer_value(e) < 0)
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s': data_offsets must be [begin, end] non-negative integers", path, name);
    *begin = (uint64_t)json_integer_value(b);
    *end = (uint64_t)json_integer_value(e);
    if (*begin > *end)
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s': data_offsets begin %" PRIu64 " > end %" PRIu64, path, name, *begin, *end);
    if (*end > data_size)
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s': data end %" PRIu64 " is past the data section (%" PRIu64 " bytes); the file is truncated or the header lies", path, name, *end, data_size);
    return SEM_OK;
}

static sem_status parse_tensor(st_file *f, const char *name, json_t *js, uint64_t data_start,
                               st_tensor *t, sem_err *err)
{
    const char *path = f->path;
    if (strlen(name) == 0 || strlen(name) > ST_MAX_NAME_BYTES)
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor name of %zu bytes is empty or too long", path, strlen(name));
    if (!json_is_object(js)) return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s': entry is not an object", path, name);
    const char *dt = json_string_value(json_object_get(js, "dtype"));
    if (!dt) return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s': missing dtype", path, name);
    if (!st_dtype_parse(dt, &t->dtype)) return sem_errf(err, SEM_EUNSUPPORTED, "%s: tensor '%s': unknown dtype '%.32s'", path, name, dt);
    sem_status s = parse_shape(path, name, json_object_get(js, "shape"), t, err);
    if (s != SEM_OK) return s;
    uint64_t begin = 0, end = 0, want = 0;
    s = parse_offsets(path, name, json_object_get(js, "data_offsets"), f->size - data_start, &begin, &end, err);
    if (s != SEM_OK) return s;
    if (!sem_mul_u64(t->n_elements, st_dtype_size(t->dtype), &want) || want != end - begin)
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s': shape x %s needs %" PRIu64 " bytes but data_offsets span %" PRIu64, path, name, dt, want, end - begin);
    t->name = name;
    t->offset = data_start + begin;
    t->n_bytes = end - begin;
    t->data = f->map + t->offset;
    t->file = f->path;
    return SEM_OK;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const st_tensor *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static sem_status check_overlaps(st_file *f, sem_err *err)
{
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_by_offset);
    for (size_t i = 1; i < f->n_tensors; i++) {
        const st_tensor *a = &f->tensors[i - 1], *b = &f->tensors[i];
        if (a->n_bytes && b->n_bytes && b->offset < a->offset + a->n_bytes)
            return sem_errf(err, SEM_ECORRUPT, "%s: tensors '%s' and '%s' overlap in the data section", f->path, a->name, b->name);
    }
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_by_name);
    return SEM_OK;
}

static sem_status parse_header(st_file *f, uint64_t header_len, sem_err *err)
{
    json_error_t je;
    f->header = json_loadb((const char *)f->map + 8, (size_t)header_len,
                           JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK, &je);
    if (!f->header) return sem_errf(err, SEM_ECORRUPT, "%s: header is not valid JSON (byte %d): %s", f->path, je.position, je.text);
    if (!json_is_object(f->header)) return sem_errf(err, SEM_ECORRUPT, "%s: header is not a JSON object", f->path);
    size_t n = json_object_size(f->header);
    if (n > ST_MAX_TENSORS) return sem_errf(err, SEM_ELIMIT, "%s: %zu header entries exceed the limit", f->path, n);
    f->tensors = sem_calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) return sem_errf(err, SEM_ENOMEM, "%s: out of memory for %zu tensors", f->path, n);
    const char *key;
    json_t *val;
    json_object_foreach(f->header, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) return sem_errf(err, SEM_ECORRUPT, "%s: __metadata__ is not an object", f->path);
            continue;
        }
        sem_status s = parse_tensor(f, key, val, 8 + header_len, &f->tensors[f->n_tensors], err);
        if (s != SEM_OK) return s;
        f->n_tensors++;
    }
    return check_overlaps(f, err);
}

/* ---- open / close ----------------------------------------------------- */

static sem_status map_file(st_file *f, sem_err *err)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sem_errf(err, errno == ENOENT ? SEM_ENOTFOUND : SEM_EIO, "%s: open: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sem_errf(err, SEM_EIO, "%s: not a regular file", f->path);
    }
    f->size = (uint64_t)st.st_size;
    if (f->size < 8) {
        close(fd);
        return sem_errf(err, SEM_ECORRUPT, "%s: %" PRIu64 " bytes is too short for a safetensors file (truncated?)", f->path, f->size);
    }
    void *m = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return sem_errf(err, SEM_EIO, "%s: mmap: %s", f->path, strerror(errno));
    f->map = m;
    return SEM_OK;
}

sem_status st_open(const char *path, st_file **out, sem_err *err)
{
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = sem_strdup(path))) {
        free(f);
        return sem_errf(err, SEM_ENOMEM, "%s: out of memory", path);
    }
    sem_status s = map_file(f, err);
    if (s != SEM_OK) goto fail;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->map[i];
    if (hlen > ST_MAX_HEADER_BYTES) {
        s = sem_errf(err, SEM_ECORRUPT, "%s: header length %" PRIu64 " exceeds the limit of %u bytes", path, hlen, ST_MAX_HEADER_BYTES);
        goto fail;
    }
    if (hlen > f->size - 8) {
        s = sem_errf(err, SEM_ECORRUPT, "%s: header length %" PRIu64 " is past the end of the %" PRIu64 "-byte file (truncated?)", path, hlen, f->size);
        goto fail;
    }
    s = parse_header(f, hlen, err);
    if (s != SEM_OK) goto fail;
    *out = f;
    return SEM_OK;
fail:
    st_close(f);
    return s;
}

void st_close(st_file *f)
{
    if (!f) return;
    if (f->map) munmap((void *)f->map, (size_t)f->size);
    json_decref(f->header);
    free(f->tensors);
    free(f->path);
    free(f);
}

size_t st_file_n_tensors(const st_file *f) { return f->n_tensors; }
const st_tensor *st_file_tensor(const st_file *f, size_t i) { return i < f->n_tensors ? &f->tensors[i] : NULL; }
const char *st_file_path(const st_file *f) { return f->path; }
uint64_t st_file_size(const st_file *f) { return f->size; }

const st_tensor *st_file_find(const st_file *f, const char *name)
{
    st_tensor key = {.name = name};
    return bsearch(&key, f->tensors, f->n_tensors, sizeof key, cmp_by_name);
}

const char *st_file_metadata(const st_file *f, const char *key)
{
    return json_string_value(json_object_get(json_object_get(f->header, "__metadata__"), key));
}
