/* formats.h - the door of the formats room: the safetensors reader (mmap,
 * strictly validated header -> tensor table), sets of shards under one
 * model directory, and the streaming writer used by tools and cache files.
 *
 * The file format (https://huggingface.co/docs/safetensors):
 *   [u64 little-endian N][N bytes of JSON header][data section]
 *   header: {"__metadata__": {str: str}, name: {"dtype": "F16",
 *            "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
 *   offsets are relative to the start of the data section.
 *
 * Thread: an opened st_file is immutable and may be read from any thread.
 */
#ifndef SEM_FORMATS_H
#define SEM_FORMATS_H

#include "base/base.h"

#define ST_MAX_HEADER_BYTES (100u * 1024u * 1024u) /* reject larger headers */
#define ST_MAX_DIMS 8
#define ST_MAX_TENSORS 1000000
#define ST_MAX_NAME_BYTES 1024

typedef enum st_dtype {
    ST_BOOL = 0,
    ST_U8,
    ST_I8,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_F8_E4M3,
    ST_F8_E5M2,
    ST_DTYPE_COUNT
} st_dtype;

const char *st_dtype_name(st_dtype t);         /* "F16" */
size_t st_dtype_size(st_dtype t);              /* bytes per element */
bool st_dtype_parse(const char *s, st_dtype *out);

typedef struct st_tensor {
    const char *name;              /* owned by the file */
    st_dtype dtype;
    int n_dims;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t n_elements;
    uint64_t offset;               /* absolute byte offset in the file */
    uint64_t n_bytes;
    const void *data;              /* view into the mapping; valid until close */
    const char *file;              /* path of the file holding it (owned by the file) */
} st_tensor;

/* ---- one file --------------------------------------------------------- */

typedef struct st_file st_file; /* opaque */

/* Maps the file read-only and validates the whole header: size limit, JSON,
 * dtypes, shapes, shape x dtype = byte length, offsets inside the file, no
 * overlaps. On failure nothing stays mapped and err names the file and the
 * problem (tensor name, offsets). */
sem_status st_open(const char *path, st_file **out, sem_err *err);
void st_close(st_file *f); /* NULL ok */
size_t st_file_n_tensors(const st_file *f);
const st_tensor *st_file_tensor(const st_file *f, size_t i);
const st_tensor *st_file_find(const st_file *f, const char *name);
/* A __metadata__ value, or NULL. Valid until close. */
const char *st_file_metadata(const st_file *f, const char *key);
const char *st_file_path(const st_file *f);
uint64_t st_file_size(const st_file *f);

/* ---- a model directory's set of shards -------------------------------- */

typedef struct st_set st_set; /* opaque */

/* Opens DIR/model.safetensors.index.json and every shard it names (checking
 * that each tensor is where the index says), or else DIR/model.safetensors,
 * or else every DIR/ *.safetensors. Tensor names must be unique across
 * shards. */
sem_status st_set_open_dir(const char *dir, st_set **out, sem_err *err);
void st_set_close(st_set *s); /* NULL ok */
size_t st_set_n_tensors(const st_set *s);
const st_tensor *st_set_tensor(const st_set *s, size_t i); /* sorted by name */
const st_tensor *st_set_find(const st_set *s, const char *name);
/* Index of `name` in the sorted table (for st_set_tensor), or -1. */
long st_set_index(const st_set *s, const char *name);
size_t st_set_n_files(const st_set *s);
const st_file *st_set_file(const st_set *s, size_t i);
uint64_t st_set_total_bytes(const st_set *s); /* sum of file sizes */

/* ---- the streaming writer --------------------------------------------- */

typedef struct st_writer st_writer; /* opaque; Thread: one at a time */

/* Writes to a temp file beside `path`; st_writer_finish makes it durable
 * and renames it into place. Use: declare every tensor (and metadata), then
 * st_writer_write the tensors' bytes in declaration order, then finish. */
sem_status st_writer_create(const char *path, st_writer **out, sem_err *err);
sem_status st_writer_declare(st_writer *w, const char *name, st_dtype dtype, int n_dims,
                             const uint64_t *shape, sem_err *err);
sem_status st_writer_set_metadata(st_writer *w, const char *key, const char *value,
                                  sem_err *err);
/* Appends data bytes; the first call writes the header. */
sem_status st_writer_write(st_writer *w, const void *data, size_t n, sem_err *err);
/* Checks every declared byte was written, then fsync, rename, fsync dir. */
sem_status st_writer_finish(st_writer *w, sem_err *err);
/* Removes the temp file unless finished. NULL ok. */
void st_writer_destroy(st_writer *w);

#endif /* SEM_FORMATS_H */
