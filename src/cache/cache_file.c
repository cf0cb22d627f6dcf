/* cache_file.c - one agent's KV cache as a safetensors file: write it from
 * pool blocks, open and verify it completely, load it into pool blocks.
 *
 * The file (version 1), tensors in this order in the header and the data
 * section, back to back:
 *   "tokens"                      I32 [n_tokens]
 *   for l in 0 .. n_layers-1:
 *     f16/bf16/f32:  "layers.{l}.k"  F16/BF16/F32 [n_tokens, n_kv_heads, head_dim]
 *                    "layers.{l}.v"  same with v_head_dim
 *     q8/q4:         "layers.{l}.k.weight"  U32 [n_tokens, n_kv_heads, head_dim*bits/32]
 *                    "layers.{l}.k.scales"  F16 [n_tokens, n_kv_heads, head_dim/64]
 *                    "layers.{l}.k.biases"  F16 [n_tokens, n_kv_heads, head_dim/64]
 *                    then the same three for v.
 * The q8/q4 tensors are the pool row's three parts (kernels.h: data, F16
 * scales, F16 biases) split apart, which is exactly MLX's affine layout
 * (value = scale * q + bias, element c in bits bits*(c % (32/bits)) of
 * word c / (32/bits)). Everything is little-endian.
 *
 * __metadata__ (all values strings, as safetensors requires):
 *   format "semantic-kv", version "1", agent_id, model_id, fingerprint
 *   (1..64 lowercase hex digits), n_layers, n_kv_heads, head_dim,
 *   v_head_dim, block_tokens, kv_dtype (f16/bf16/q8/q4/f32), bits
 *   (16/16/8/4/32), group_size (64 for q8/q4, 0 otherwise), n_tokens, and
 *   crc32c: 8 lowercase hex digits, the CRC32C of the whole data section.
 * Numbers are canonical decimals (no sign, no leading zero); anything else
 * is rejected.
 *
 * Version 2 (models whose sliding-window layers the pool keeps as a ring,
 * kv/kv.h): the same tensors, except that a sliding layer's K and V hold
 * only positions ring_from .. n_tokens - 1 (first dimension n_tokens -
 * ring_from); the metadata adds sliding_window (tokens), sliding_layers
 * (n_layers characters, '1' for a sliding layer, '0' for a global one;
 * at least one of each) and ring_from (a multiple of block_tokens,
 * <= n_tokens). A file is version 2 exactly when it has a ring, so files
 * of other models stay byte for byte what version 1 wrote.
 *
 * Writing gathers the rows through the kv view into a 1 MiB staging
 * buffer twice: the first pass computes the CRC32C (it goes in the header,
 * which precedes the data), the second writes through st_writer (temp
 * file, fsync, rename, fsync dir). Both passes also take a cheap sum at
 * memory speed, so rows that changed between the passes fail the write
 * instead of producing a file that would be quarantined.
 *
 * Opening checks, in order: the safetensors header (st_open), the
 * metadata, that the tensors are exactly the expected set with the exact
 * dtypes and shapes and tile the data section, compatibility with the
 * caller's geometry and fingerprint (SEM_EUNSUPPORTED, "incompatible: ..."),
 * then the CRC32C. Any damage is SEM_ECORRUPT. A verified file stays
 * mapped until close; its inode is never rewritten (writers rename a new
 * file over it), so the verified bytes are the ones loaded.
 *
 * Thread: write on the persistence thread; open/close on any one thread;
 * load on the engine thread (it writes pool blocks).
 */
#include "cache/cache.h"
#include "formats/formats.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "cache files are little-endian");

#define CF_STAGE_BYTES ((size_t)1 << 20)
#define CF_FORMAT "semantic-kv"
#define CF_NAME_BYTES 48

/* ===================================================================== */
/* The tensor plan: every tensor of a file and where its rows live.       */
/* ===================================================================== */

/* One file tensor. A KV tensor holds, for every token and head, the slice
 * [row_off, row_off + row_bytes) of the pool's K or V row. */
typedef struct cf_tensor {
    char name[CF_NAME_BYTES];
    st_dtype dtype;
    int n_dims;
    uint64_t shape[3];
    uint64_t n_bytes;
    bool is_kv; /* false for "tokens" */
    bool is_v;
    int32_t layer;
    uint32_t pos0;       /* the first position it holds (ring_from for a sliding layer) */
    size_t row_off, row_bytes;
    const uint8_t *data; /* open files: view into the mapping */
} cf_tensor;

typedef struct cf_plan {
    cf_tensor *t; /* owned [n] */
    size_t n;
    uint64_t total_bytes; /* the data section's size */
} cf_plan;

struct cache_file {
    st_file *st; /* owned */
    cache_file_meta meta;
    int32_t *tokens; /* owned copy [n_tokens] (the mapping may be unaligned) */
    cf_plan plan;    /* owned; data pointers into st */
};

static int dtype_bits(kn_kv_dtype t)
{
    switch (t) {
    case KN_KV_F16:
    case KN_KV_BF16: return 16;
    case KN_KV_Q8: return 8;
    case KN_KV_Q4: return 4;
    case KN_KV_F32: return 32;
    }
    return 0;
}

static bool dtype_quantized(kn_kv_dtype t) { return t == KN_KV_Q8 || t == KN_KV_Q4; }
static int dtype_group(kn_kv_dtype t) { return dtype_quantized(t) ? KN_KV_GROUP : 0; }

static st_dtype float_st_dtype(kn_kv_dtype t)
{
    return t == KN_KV_F16 ? ST_F16 : t == KN_KV_BF16 ? ST_BF16 : ST_F32;
}

static bool dtype_parse(const char *s, kn_kv_dtype *out)
{
    static const kn_kv_dtype all[] = {KN_KV_F16, KN_KV_BF16, KN_KV_Q8, KN_KV_Q4, KN_KV_F32};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (!strcmp(s, kn_kv_dtype_name(all[i]))) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

/* Appends the tensors of one layer's K (or V), holding positions pos0 ..
 * n_tokens - 1. */
static void plan_kv(cf_plan *p, const kv_geometry *g, uint32_t pos0, uint32_t n_tokens, int32_t layer,
                    bool is_v)
{
    size_t dim = (size_t)(is_v ? g->v_head_dim : g->head_dim);
    const char *kv = is_v ? "v" : "k";
    uint32_t rows = n_tokens - pos0;
    uint64_t lead = (uint64_t)rows * (uint64_t)g->n_kv_heads;
    if (!dtype_quantized(g->dtype)) {
        cf_tensor *t = &p->t[p->n++];
        *t = (cf_tensor){.dtype = float_st_dtype(g->dtype),
                         .n_dims = 3,
                         .shape = {rows, (uint64_t)g->n_kv_heads, dim},
                         .is_kv = true,
                         .is_v = is_v,
                         .layer = layer,
                         .pos0 = pos0,
                         .row_off = 0,
                         .row_bytes = kn_kv_row_bytes(g->dtype, dim)};
        snprintf(t->name, sizeof t->name, "layers.%d.%s", (int)layer, kv);
        t->n_bytes = lead * t->row_bytes;
        return;
    }
    size_t data_bytes = dim * (size_t)dtype_bits(g->dtype) / 8, groups = dim / KN_KV_GROUP;
    static const char *const part[3] = {"weight", "scales", "biases"};
    for (int i = 0; i < 3; i++) {
        cf_tensor *t = &p->t[p->n++];
        *t = (cf_tensor){
            .dtype = i == 0 ? ST_U32 : ST_F16,
            .n_dims = 3,
            .shape = {rows, (uint64_t)g->n_kv_heads, i == 0 ? data_bytes / 4 : groups},
            .is_kv = true,
            .is_v = is_v,
            .layer = layer,
            .pos0 = pos0,
            .row_off = i == 0 ? 0 : data_bytes + (size_t)(i - 1) * groups * 2,
            .row_bytes = i == 0 ? data_bytes : groups * 2};
        snprintf(t->name, sizeof t->name, "layers.%d.%s.%s", (int)layer, kv, part[i]);
        t->n_bytes = lead * t->row_bytes;
    }
}

/* The geometry must already be within the CACHE_MAX_* limits (and
 * ring_from <= n_tokens): then one tensor is at most 2^24 tokens x 2^16
 * heads x 2^18-byte rows = 2^58 bytes, but the sum over up to 6 x 1024
 * tensors can exceed 2^64, so it is checked (SEM_ELIMIT). */
static sem_status plan_build(const cache_file_meta *m, cf_plan *p, sem_err *err)
{
    const kv_geometry *g = &m->geo;
    uint32_t n_tokens = m->n_tokens;
    size_t per_kv = dtype_quantized(g->dtype) ? 3 : 1;
    size_t n = 1 + (size_t)g->n_layers * 2 * per_kv;
    p->t = sem_calloc(n, sizeof *p->t);
    if (!p->t) return sem_errf(err, SEM_ENOMEM, "cache file: out of memory for %zu tensors", n);
    p->n = 0;
    cf_tensor *tok = &p->t[p->n++];
    *tok = (cf_tensor){
        .dtype = ST_I32, .n_dims = 1, .shape = {n_tokens}, .n_bytes = (uint64_t)n_tokens * 4};
    snprintf(tok->name, sizeof tok->name, "tokens");
    for (int32_t l = 0; l < g->n_layers; l++) {
        uint32_t pos0 = m->ring.window > 0 && m->ring.sliding[l] ? m->ring_from : 0;
        plan_kv(p, g, pos0, n_tokens, l, false);
        plan_kv(p, g, pos0, n_tokens, l, true);
    }
    SEM_ASSERT(p->n == n);
    p->total_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (__builtin_add_overflow(p->total_bytes, p->t[i].n_bytes, &p->total_bytes))
            return sem_errf(err, SEM_ELIMIT, "cache file: data size overflows 64 bits");
    }
    return SEM_OK;
}

static void plan_free(cf_plan *p)
{
    free(p->t);
    p->t = NULL;
    p->n = 0;
}

/* ===================================================================== */
/* Checks shared by write and open                                        */
/* ===================================================================== */

static bool fingerprint_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')) || n >= 64)
            return false;
    }
    return n > 0;
}

/* Geometry within the format's limits. Returns NULL or what is wrong. */
static const char *geometry_problem(const kv_geometry *g)
{
    if (g->n_layers < 1 || g->n_layers > CACHE_MAX_LAYERS) return "n_layers out of range";
    if (g->n_kv_heads < 1 || g->n_kv_heads > CACHE_MAX_DIM) return "n_kv_heads out of range";
    if (g->head_dim < 1 || g->head_dim > CACHE_MAX_DIM) return "head_dim out of range";
    if (g->v_head_dim < 1 || g->v_head_dim > CACHE_MAX_DIM) return "v_head_dim out of range";
    if (g->block_tokens < 1 || g->block_tokens > CACHE_MAX_DIM) return "block_tokens out of range";
    if (dtype_bits(g->dtype) == 0) return "unknown kv dtype";
    if (dtype_quantized(g->dtype) && (g->head_dim % KN_KV_GROUP || g->v_head_dim % KN_KV_GROUP))
        return "q8/q4 head dims must be multiples of 64";
    return NULL;
}

/* The ring fields against the geometry and token count (the geometry
 * already checked). Returns NULL or what is wrong. */
static const char *ring_problem(const cache_file_meta *m)
{
    const kv_ring *r = &m->ring;
    if (r->window == 0) return m->ring_from == 0 ? NULL : "ring_from without a sliding window";
    if (r->window < 0 || (uint32_t)r->window > CACHE_MAX_TOKENS) return "sliding_window out of range";
    int32_t n = 0;
    for (int32_t l = 0; l < m->geo.n_layers; l++) n += r->sliding[l];
    if (n == 0 || n == m->geo.n_layers) return "a ring needs sliding and global layers";
    if (m->ring_from > m->n_tokens || m->ring_from % (uint32_t)m->geo.block_tokens != 0)
        return "ring_from is not a block boundary within the tokens";
    return NULL;
}

/* ===================================================================== */
/* Writing                                                                */
/* ===================================================================== */

/* A cheap change detector (Fletcher-style sums of 64-bit words, at memory
 * speed): the write pass must see the same bytes the CRC pass saw. */
static void quick_sum(uint64_t sum[2], const uint8_t *p, size_t n)
{
    uint64_t a = sum[0], b = sum[1];
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        a += w;
        b += a;
    }
    for (; i < n; i++) {
        a += p[i];
        b += a;
    }
    sum[0] = a;
    sum[1] = b;
}

/* The staging buffer: pieces are copied in, and every full buffer goes to
 * the CRC (checksum pass) or the writer (write pass); both passes feed
 * quick_sum. Errors stick. */
typedef struct cf_stage {
    uint8_t *buf; /* owned [CF_STAGE_BYTES] */
    size_t len;
    uint32_t crc;
    uint64_t sum[2];
    st_writer *w; /* borrowed; NULL in the checksum pass */
    sem_status st;
    sem_err *err;
} cf_stage;

static void stage_flush(cf_stage *s)
{
    if (s->st != SEM_OK || s->len == 0) return;
    quick_sum(s->sum, s->buf, s->len);
    if (s->w) s->st = st_writer_write(s->w, s->buf, s->len, s->err);
    else s->crc = crc32c_update(s->crc, s->buf, s->len);
    s->len = 0;
}

static void stage_put(cf_stage *s, const uint8_t *src, size_t n)
{
    while (n > 0) {
        if (s->len == CF_STAGE_BYTES) stage_flush(s);
        size_t k = CF_STAGE_BYTES - s->len < n ? CF_STAGE_BYTES - s->len : n;
        memcpy(s->buf + s->len, src, k);
        s->len += k;
        src += k;
        n -= k;
    }
}

/* The file stores a tensor position-major ([pos][kv head][piece]); the
 * pool, head-major within a block (kernels.h): both go row by row. The
 * pieces are small (a q4 row of head_dim 64 is 32 + 2 + 2 bytes), so the
 * common sizes get a constant-size memcpy the compiler inlines (a call
 * per piece halved q4 save and load speed). */
static inline void copy_piece(uint8_t *restrict dst, const uint8_t *restrict src, size_t n)
{
    switch (n) {
    case 2: memcpy(dst, src, 2); return;
    case 4: memcpy(dst, src, 4); return;
    case 8: memcpy(dst, src, 8); return;
    case 16: memcpy(dst, src, 16); return;
    case 32: memcpy(dst, src, 32); return;
    case 64: memcpy(dst, src, 64); return;
    case 128: memcpy(dst, src, 128); return;
    case 256: memcpy(dst, src, 256); return;
    default: memcpy(dst, src, n); return;
    }
}

static void gather_tensor(cf_stage *s, const kn_kv_view *kv, size_t layer_stride,
                          const cf_tensor *t, size_t n)
{
    kn_kv_view v = kn_kv_view_layer(kv, layer_stride, t->layer);
    size_t rb = t->row_bytes;
    for (size_t pos = t->pos0; pos < n && s->st == SEM_OK; pos++)
        for (int32_t h = 0; h < v.n_kv_heads; h++) {
            const uint8_t *src = kn_kv_row_ptr(&v, (int32_t)pos, h, t->is_v) + t->row_off;
            if (CF_STAGE_BYTES - s->len < rb) {
                stage_put(s, src, rb);
                continue;
            }
            copy_piece(s->buf + s->len, src, rb);
            s->len += rb;
        }
}

static sem_status stream_data(cf_stage *s, const cf_plan *p, const int32_t *tokens,
                              const kn_kv_view *kv, size_t layer_stride, size_t n_tokens)
{
    s->len = 0;
    s->crc = 0;
    s->sum[0] = s->sum[1] = 0;
    s->st = SEM_OK;
    stage_put(s, (const uint8_t *)tokens, n_tokens * sizeof *tokens);
    for (size_t i = 1; i < p->n && s->st == SEM_OK; i++)
        gather_tensor(s, kv, layer_stride, &p->t[i], n_tokens);
    stage_flush(s);
    return s->st;
}

static sem_status check_write_args(const char *path, const cache_file_meta *m,
                                   const int32_t *tokens, const kn_kv_view *kv, sem_err *err)
{
    const kv_geometry *g = &m->geo;
    const char *bad = geometry_problem(g);
    if (bad) return sem_errf(err, SEM_EINVAL, "%s: cache write: %s", path, bad);
    if (!cache_agent_id_valid(m->agent_id))
        return sem_errf(err, SEM_EINVAL, "%s: cache write: invalid agent id", path);
    if (m->model_id[0] == '\0' || !memchr(m->model_id, '\0', sizeof m->model_id))
        return sem_errf(err, SEM_EINVAL, "%s: cache write: empty or unterminated model id", path);
    if (!fingerprint_valid(m->fingerprint))
        return sem_errf(err, SEM_EINVAL,
                        "%s: cache write: fingerprint must be 1-64 lowercase hex digits", path);
    if (m->n_tokens > CACHE_MAX_TOKENS)
        return sem_errf(err, SEM_EINVAL, "%s: cache write: %" PRIu32 " tokens exceed %u", path,
                        m->n_tokens, CACHE_MAX_TOKENS);
    if (kv->dtype != g->dtype || kv->n_kv_heads != g->n_kv_heads || kv->head_dim != g->head_dim ||
        kv->v_head_dim != g->v_head_dim || kv->block_tokens != g->block_tokens ||
        kv->k_row_bytes != kn_kv_row_bytes(g->dtype, (size_t)g->head_dim) ||
        kv->v_row_bytes != kn_kv_row_bytes(g->dtype, (size_t)g->v_head_dim))
        return sem_errf(err, SEM_EINVAL, "%s: cache write: kv view does not match the geometry",
                        path);
    if ((bad = ring_problem(m))) return sem_errf(err, SEM_EINVAL, "%s: cache write: %s", path, bad);
    for (uint32_t i = 0; i < m->n_tokens; i++) {
        if (tokens[i] < 0)
            return sem_errf(err, SEM_EINVAL, "%s: cache write: token %" PRIu32 " is negative", path,
                            i);
    }
    return SEM_OK;
}

static sem_status set_meta_u(st_writer *w, const char *key, uint64_t v, sem_err *err)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRIu64, v);
    return st_writer_set_metadata(w, key, s, err);
}

static sem_status declare_ring(st_writer *w, const cache_file_meta *m, sem_err *err)
{
    char layers[KV_MAX_LAYERS + 1];
    int32_t n = m->geo.n_layers;
    for (int32_t l = 0; l < n; l++) layers[l] = m->ring.sliding[l] ? '1' : '0';
    layers[n] = '\0';
    sem_status s = set_meta_u(w, "sliding_window", (uint64_t)m->ring.window, err);
    if (s == SEM_OK) s = st_writer_set_metadata(w, "sliding_layers", layers, err);
    if (s == SEM_OK) s = set_meta_u(w, "ring_from", m->ring_from, err);
    return s;
}

static sem_status declare_all(st_writer *w, const cf_plan *p, const cache_file_meta *m,
                              uint32_t crc, sem_err *err)
{
    sem_status s = SEM_OK;
    for (size_t i = 0; i < p->n && s == SEM_OK; i++)
        s = st_writer_declare(w, p->t[i].name, p->t[i].dtype, p->t[i].n_dims, p->t[i].shape, err);
    const kv_geometry *g = &m->geo;
    char crc_hex[12];
    snprintf(crc_hex, sizeof crc_hex, "%08" PRIx32, crc);
    bool ring = m->ring.window > 0;
    if (s == SEM_OK) s = st_writer_set_metadata(w, "format", CF_FORMAT, err);
    if (s == SEM_OK)
        s = set_meta_u(w, "version", ring ? CACHE_FORMAT_VERSION_RING : CACHE_FORMAT_VERSION, err);
    if (s == SEM_OK) s = st_writer_set_metadata(w, "agent_id", m->agent_id, err);
    if (s == SEM_OK) s = st_writer_set_metadata(w, "model_id", m->model_id, err);
    if (s == SEM_OK) s = st_writer_set_metadata(w, "fingerprint", m->fingerprint, err);
    if (s == SEM_OK) s = set_meta_u(w, "n_layers", (uint64_t)g->n_layers, err);
    if (s == SEM_OK) s = set_meta_u(w, "n_kv_heads", (uint64_t)g->n_kv_heads, err);
    if (s == SEM_OK) s = set_meta_u(w, "head_dim", (uint64_t)g->head_dim, err);
    if (s == SEM_OK) s = set_meta_u(w, "v_head_dim", (uint64_t)g->v_head_dim, err);
    if (s == SEM_OK) s = set_meta_u(w, "block_tokens", (uint64_t)g->block_tokens, err);
    if (s == SEM_OK) s = st_writer_set_metadata(w, "kv_dtype", kn_kv_dtype_name(g->dtype), err);
    if (s == SEM_OK) s = set_meta_u(w, "bits", (uint64_t)dtype_bits(g->dtype), err);
    if (s == SEM_OK) s = set_meta_u(w, "group_size", (uint64_t)dtype_group(g->dtype), err);
    if (s == SEM_OK) s = set_meta_u(w, "n_tokens", m->n_tokens, err);
    if (s == SEM_OK) s = st_writer_set_metadata(w, "crc32c", crc_hex, err);
    if (s == SEM_OK && ring) s = declare_ring(w, m, err);
    return s;
}

sem_status cache_file_write(const char *path, cache_file_meta *meta, const int32_t *tokens,
                            const kn_kv_view *kv, size_t layer_stride, sem_err *err)
{
    sem_status s = check_write_args(path, meta, tokens, kv, err);
    if (s != SEM_OK) return s;
    cf_plan plan = {0};
    cf_stage stage = {.buf = malloc(CF_STAGE_BYTES), .err = err};
    st_writer *w = NULL;
    if (!stage.buf) {
        s = sem_errf(err, SEM_ENOMEM, "%s: out of memory for the staging buffer", path);
        goto done;
    }
    s = plan_build(meta, &plan, err);
    if (s != SEM_OK) goto done;
    s = stream_data(&stage, &plan, tokens, kv, layer_stride, meta->n_tokens);
    if (s != SEM_OK) goto done;
    uint32_t crc = stage.crc;
    uint64_t sum[2] = {stage.sum[0], stage.sum[1]};
    s = st_writer_create(path, &w, err);
    if (s == SEM_OK) s = declare_all(w, &plan, meta, crc, err);
    if (s != SEM_OK) goto done;
    stage.w = w;
    s = stream_data(&stage, &plan, tokens, kv, layer_stride, meta->n_tokens);
    if (s == SEM_OK && (stage.sum[0] != sum[0] || stage.sum[1] != sum[1]))
        s = sem_errf(err, SEM_EBUSY,
                     "%s: cache write: the rows changed during the write (blocks not pinned?)",
                     path);
    if (s == SEM_OK) s = st_writer_finish(w, err);
    if (s == SEM_OK) {
        meta->version = meta->ring.window > 0 ? CACHE_FORMAT_VERSION_RING : CACHE_FORMAT_VERSION;
        meta->crc32c = crc;
    }
done:
    st_writer_destroy(w); /* removes the temp file unless finished */
    free(stage.buf);
    plan_free(&plan);
    return s;
}

/* ===================================================================== */
/* Metadata                                                               */
/* ===================================================================== */

static const char *meta_str(const st_file *f, const char *key, sem_err *err)
{
    const char *v = st_file_metadata(f, key);
    if (!v)
        sem_errf(err, SEM_ECORRUPT, "%s: metadata '%s' is missing or not a string", st_file_path(f),
                 key);
    return v;
}

/* A canonical decimal in [lo, hi]. */
static sem_status meta_uint(const st_file *f, const char *key, uint64_t lo, uint64_t hi,
                            uint64_t *out, sem_err *err)
{
    const char *v = meta_str(f, key, err);
    if (!v) return SEM_ECORRUPT;
    size_t n = strlen(v);
    bool ok = n >= 1 && n <= 10 && (v[0] != '0' || n == 1);
    uint64_t x = 0;
    for (size_t i = 0; ok && i < n; i++) {
        ok = v[i] >= '0' && v[i] <= '9';
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (!ok || x < lo || x > hi)
        return sem_errf(err, SEM_ECORRUPT,
                        "%s: metadata '%s' = '%.40s' is not an integer in [%" PRIu64 ", %" PRIu64
                        "]",
                        st_file_path(f), key, v, lo, hi);
    *out = x;
    return SEM_OK;
}

static sem_status meta_i32(const st_file *f, const char *key, uint64_t hi, int32_t *out,
                           sem_err *err)
{
    uint64_t x;
    sem_status s = meta_uint(f, key, 1, hi, &x, err);
    if (s == SEM_OK) *out = (int32_t)x;
    return s;
}

static sem_status meta_crc(const st_file *f, uint32_t *out, sem_err *err)
{
    const char *v = meta_str(f, "crc32c", err);
    if (!v) return SEM_ECORRUPT;
    uint32_t x = 0;
    size_t n = strlen(v);
    for (size_t i = 0; i < n && n == 8; i++) {
        char c = v[i];
        uint32_t d = c >= '0' && c <= '9'   ? (uint32_t)(c - '0')
                     : c >= 'a' && c <= 'f' ? (uint32_t)(c - 'a' + 10)
                                            : 16;
        if (d == 16) n = 0;
        x = x << 4 | (d & 15);
    }
    if (n != 8)
        return sem_errf(err, SEM_ECORRUPT, "%s: metadata 'crc32c' = '%.40s' is not 8 hex digits",
                        st_file_path(f), v);
    *out = x;
    return SEM_OK;
}

static sem_status parse_identity(const st_file *f, cache_file_meta *m, sem_err *err)
{
    const char *path = st_file_path(f);
    const char *v = meta_str(f, "format", err);
    if (!v) return SEM_ECORRUPT;
    if (strcmp(v, CF_FORMAT) != 0)
        return sem_errf(err, SEM_ECORRUPT, "%s: metadata format '%.40s' is not '%s'", path, v,
                        CF_FORMAT);
    uint64_t ver;
    if (meta_uint(f, "version", 0, UINT32_MAX, &ver, err) != SEM_OK) return SEM_ECORRUPT;
    if (ver != CACHE_FORMAT_VERSION && ver != CACHE_FORMAT_VERSION_RING)
        return sem_errf(err, SEM_EUNSUPPORTED,
                        "%s: incompatible: format version %" PRIu64 " (this build reads %d and %d)",
                        path, ver, CACHE_FORMAT_VERSION, CACHE_FORMAT_VERSION_RING);
    m->version = (uint32_t)ver;
    if (!(v = meta_str(f, "agent_id", err))) return SEM_ECORRUPT;
    if (!cache_agent_id_valid(v))
        return sem_errf(err, SEM_ECORRUPT, "%s: metadata agent_id is not a valid agent id", path);
    snprintf(m->agent_id, sizeof m->agent_id, "%s", v);
    if (!(v = meta_str(f, "model_id", err))) return SEM_ECORRUPT;
    if (v[0] == '\0' || strlen(v) >= sizeof m->model_id)
        return sem_errf(err, SEM_ECORRUPT,
                        "%s: metadata model_id is empty or longer than %zu bytes", path,
                        sizeof m->model_id - 1);
    snprintf(m->model_id, sizeof m->model_id, "%s", v);
    if (!(v = meta_str(f, "fingerprint", err))) return SEM_ECORRUPT;
    if (!fingerprint_valid(v))
        return sem_errf(err, SEM_ECORRUPT,
                        "%s: metadata fingerprint is not 1-64 lowercase hex digits", path);
    snprintf(m->fingerprint, sizeof m->fingerprint, "%s", v);
    return SEM_OK;
}

static sem_status parse_geometry(const st_file *f, cache_file_meta *m, sem_err *err)
{
    const char *path = st_file_path(f);
    kv_geometry *g = &m->geo;
    sem_status s = meta_i32(f, "n_layers", CACHE_MAX_LAYERS, &g->n_layers, err);
    if (s == SEM_OK) s = meta_i32(f, "n_kv_heads", CACHE_MAX_DIM, &g->n_kv_heads, err);
    if (s == SEM_OK) s = meta_i32(f, "head_dim", CACHE_MAX_DIM, &g->head_dim, err);
    if (s == SEM_OK) s = meta_i32(f, "v_head_dim", CACHE_MAX_DIM, &g->v_head_dim, err);
    if (s == SEM_OK) s = meta_i32(f, "block_tokens", CACHE_MAX_DIM, &g->block_tokens, err);
    if (s != SEM_OK) return s;
    const char *v = meta_str(f, "kv_dtype", err);
    if (!v) return SEM_ECORRUPT;
    if (!dtype_parse(v, &g->dtype))
        return sem_errf(err, SEM_ECORRUPT, "%s: metadata kv_dtype '%.40s' is unknown", path, v);
    uint64_t bits, group, n;
    if (meta_uint(f, "bits", 0, 64, &bits, err) ||
        meta_uint(f, "group_size", 0, CACHE_MAX_DIM, &group, err) ||
        meta_uint(f, "n_tokens", 0, CACHE_MAX_TOKENS, &n, err) || meta_crc(f, &m->crc32c, err))
        return SEM_ECORRUPT;
    if (bits != (uint64_t)dtype_bits(g->dtype) || group != (uint64_t)dtype_group(g->dtype))
        return sem_errf(err, SEM_ECORRUPT,
                        "%s: metadata bits %" PRIu64 " / group_size %" PRIu64
                        " do not fit kv_dtype %s",
                        path, bits, group, v);
    const char *bad = geometry_problem(g);
    if (bad) return sem_errf(err, SEM_ECORRUPT, "%s: metadata geometry: %s", path, bad);
    m->n_tokens = (uint32_t)n;
    return SEM_OK;
}

/* Version 2: sliding_window, sliding_layers and ring_from. */
static sem_status parse_ring(const st_file *f, cache_file_meta *m, sem_err *err)
{
    const char *path = st_file_path(f);
    uint64_t window, from;
    if (meta_uint(f, "sliding_window", 1, CACHE_MAX_TOKENS, &window, err) ||
        meta_uint(f, "ring_from", 0, CACHE_MAX_TOKENS, &from, err))
        return SEM_ECORRUPT;
    const char *v = meta_str(f, "sliding_layers", err);
    if (!v) return SEM_ECORRUPT;
    if (strlen(v) != (size_t)m->geo.n_layers || strspn(v, "01") != (size_t)m->geo.n_layers)
        return sem_errf(err, SEM_ECORRUPT, "%s: metadata sliding_layers is not %d characters '0' or '1'",
                        path, m->geo.n_layers);
    m->ring.window = (int32_t)window;
    for (int32_t l = 0; l < m->geo.n_layers; l++) m->ring.sliding[l] = v[l] == '1';
    m->ring_from = (uint32_t)from;
    const char *bad = ring_problem(m);
    if (bad) return sem_errf(err, SEM_ECORRUPT, "%s: metadata ring: %s", path, bad);
    return SEM_OK;
}

/* ===================================================================== */
/* Opening and verifying                                                  */
/* ===================================================================== */

static void shape_str(char *out, size_t cap, st_dtype dt, int nd, const uint64_t *shape)
{
    int k = snprintf(out, cap, "%s [", st_dtype_name(dt));
    for (int i = 0; i < nd && k > 0 && (size_t)k < cap; i++)
        k += snprintf(out + k, cap - (size_t)k, "%s%" PRIu64, i ? ", " : "", shape[i]);
    if (k > 0 && (size_t)k < cap) snprintf(out + k, cap - (size_t)k, "]");
}

/* Whether name is one of the plan's tensors for geometry g: parsed, so it
 * costs O(1) per name (a file may hold up to ST_MAX_TENSORS). */
static bool name_expected(const char *name, const kv_geometry *g)
{
    if (!strcmp(name, "tokens")) return true;
    unsigned l;
    char rest[16], canon[CF_NAME_BYTES];
    if (sscanf(name, "layers.%u.%15s", &l, rest) != 2 || l >= (unsigned)g->n_layers) return false;
    snprintf(canon, sizeof canon, "layers.%u.%s", l, rest);
    if (strcmp(canon, name) != 0) return false;
    static const char *const fl[] = {"k", "v"};
    static const char *const q[] = {"k.weight", "k.scales", "k.biases",
                                    "v.weight", "v.scales", "v.biases"};
    const char *const *set = dtype_quantized(g->dtype) ? q : fl;
    size_t n = dtype_quantized(g->dtype) ? 6 : 2;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(rest, set[i])) return true;
    }
    return false;
}

/* The name of a tensor the file should not have, for the message. */
static const char *first_unexpected(const st_file *f, const kv_geometry *g)
{
    for (size_t i = 0; i < st_file_n_tensors(f); i++) {
        const char *name = st_file_tensor(f, i)->name;
        if (!name_expected(name, g)) return name;
    }
    return "?";
}

static sem_status check_tensors(const st_file *f, const kv_geometry *g, cf_plan *p, sem_err *err)
{
    const char *path = st_file_path(f);
    for (size_t i = 0; i < p->n; i++) {
        cf_tensor *t = &p->t[i];
        const st_tensor *ft = st_file_find(f, t->name);
        if (!ft) return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' is missing", path, t->name);
        bool same = ft->dtype == t->dtype && ft->n_dims == t->n_dims;
        for (int d = 0; same && d < t->n_dims; d++) same = ft->shape[d] == t->shape[d];
        if (!same) {
            char want[96], got[96];
            shape_str(want, sizeof want, t->dtype, t->n_dims, t->shape);
            shape_str(got, sizeof got, ft->dtype, ft->n_dims, ft->shape);
            return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' is %s, expected %s", path, t->name,
                            got, want);
        }
        t->data = ft->data;
    }
    if (st_file_n_tensors(f) != p->n)
        return sem_errf(err, SEM_ECORRUPT,
                        "%s: %zu tensors where %zu are expected (unexpected: '%.64s')", path,
                        st_file_n_tensors(f), p->n, first_unexpected(f, g));
    return SEM_OK;
}

/* The data section: tensor data pointers and absolute offsets are both
 * into the one mapping of the whole file, so data - offset is its start,
 * where the header length lives. */
static void data_section(const st_file *f, const st_tensor *any, const uint8_t **data,
                         uint64_t *size)
{
    const uint8_t *base = (const uint8_t *)any->data - any->offset;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | base[i];
    *data = base + 8 + hlen; /* st_open checked 8 + hlen <= file size */
    *size = st_file_size(f) - 8 - hlen;
}

/* Everything but compatibility and the checksum: for open and read_meta. */
static sem_status verify_structure(const char *path, st_file **out_st, cache_file_meta *m,
                                   cf_plan *p, sem_err *err)
{
    st_file *st = NULL;
    sem_status s = st_open(path, &st, err);
    if (s == SEM_EUNSUPPORTED || s == SEM_ELIMIT)
        s = err->code = SEM_ECORRUPT; /* odd header = damage here */
    if (s != SEM_OK) return s;
    memset(m, 0, sizeof *m);
    s = parse_identity(st, m, err);
    if (s == SEM_OK) s = parse_geometry(st, m, err);
    if (s == SEM_OK && m->version == CACHE_FORMAT_VERSION_RING) s = parse_ring(st, m, err);
    if (s == SEM_OK) s = plan_build(m, p, err);
    if (s == SEM_ELIMIT) s = err->code = SEM_ECORRUPT; /* no file that large can exist */
    if (s == SEM_OK) s = check_tensors(st, &m->geo, p, err);
    const uint8_t *data;
    uint64_t size;
    if (s == SEM_OK) {
        data_section(st, st_file_find(st, "tokens"), &data, &size);
        if (size != p->total_bytes)
            s = sem_errf(err, SEM_ECORRUPT,
                         "%s: data section is %" PRIu64 " bytes but the tensors cover %" PRIu64,
                         path, size, p->total_bytes);
    }
    if (s != SEM_OK) {
        plan_free(p);
        st_close(st);
        return s;
    }
    *out_st = st;
    return SEM_OK;
}

/* The file's ring against the expected one (window 0: none). */
static sem_status check_ring_compat(const char *path, const cache_file_meta *m, const kv_ring *e,
                                    sem_err *err)
{
    if (m->ring.window != e->window)
        return sem_errf(err, SEM_EUNSUPPORTED, "%s: incompatible: sliding window %d, expected %d", path,
                        m->ring.window, e->window);
    for (int32_t l = 0; e->window > 0 && l < m->geo.n_layers; l++) {
        if (m->ring.sliding[l] != e->sliding[l])
            return sem_errf(err, SEM_EUNSUPPORTED, "%s: incompatible: layer %d is %s, expected %s", path,
                            l, m->ring.sliding[l] ? "sliding" : "global",
                            e->sliding[l] ? "sliding" : "global");
    }
    return SEM_OK;
}

static sem_status check_compat(const char *path, const cache_file_meta *m, const kv_geometry *e,
                               const kv_ring *e_ring, const char *fingerprint, sem_err *err)
{
    const kv_geometry *g = &m->geo;
    if (e) {
        static const kv_ring no_ring;
        sem_status s = check_ring_compat(path, m, e_ring ? e_ring : &no_ring, err);
        if (s != SEM_OK) return s;
        static const char *const names[5] = {"n_layers", "n_kv_heads", "head_dim", "v_head_dim",
                                             "block_tokens"};
        const int32_t have[5] = {g->n_layers, g->n_kv_heads, g->head_dim, g->v_head_dim,
                                 g->block_tokens};
        const int32_t want[5] = {e->n_layers, e->n_kv_heads, e->head_dim, e->v_head_dim,
                                 e->block_tokens};
        for (int i = 0; i < 5; i++) {
            if (have[i] != want[i])
                return sem_errf(err, SEM_EUNSUPPORTED, "%s: incompatible: %s %d, expected %d", path,
                                names[i], have[i], want[i]);
        }
        if (g->dtype != e->dtype)
            return sem_errf(err, SEM_EUNSUPPORTED, "%s: incompatible: kv_dtype %s, expected %s",
                            path, kn_kv_dtype_name(g->dtype), kn_kv_dtype_name(e->dtype));
    }
    if (fingerprint && strcmp(fingerprint, m->fingerprint) != 0)
        return sem_errf(err, SEM_EUNSUPPORTED,
                        "%s: incompatible: model fingerprint %.16s... is not %.16s...", path,
                        m->fingerprint, fingerprint);
    return SEM_OK;
}

static sem_status verify_data(cache_file *cf, sem_err *err)
{
    const char *path = st_file_path(cf->st);
    const uint8_t *data;
    uint64_t size;
    data_section(cf->st, st_file_find(cf->st, "tokens"), &data, &size);
    uint32_t crc = crc32c_update(0, data, (size_t)size);
    if (crc != cf->meta.crc32c)
        return sem_errf(err, SEM_ECORRUPT,
                        "%s: crc32c of the data is %08" PRIx32 ", the header says %08" PRIx32, path,
                        crc, cf->meta.crc32c);
    size_t n = cf->meta.n_tokens;
    cf->tokens = sem_calloc(n ? n : 1, sizeof *cf->tokens);
    if (!cf->tokens) return sem_errf(err, SEM_ENOMEM, "%s: out of memory for %zu tokens", path, n);
    memcpy(cf->tokens, cf->plan.t[0].data, n * sizeof *cf->tokens);
    for (size_t i = 0; i < n; i++) {
        if (cf->tokens[i] < 0)
            return sem_errf(err, SEM_ECORRUPT, "%s: token %zu is negative (%d)", path, i,
                            (int)cf->tokens[i]);
    }
    return SEM_OK;
}

sem_status cache_file_open(const char *path, const kv_geometry *expect, const char *fingerprint,
                           cache_file **out, sem_err *err)
{
    return cache_file_open_ring(path, expect, NULL, fingerprint, out, err);
}

sem_status cache_file_open_ring(const char *path, const kv_geometry *expect, const kv_ring *expect_ring,
                                const char *fingerprint, cache_file **out, sem_err *err)
{
    cache_file *cf = calloc(1, sizeof *cf);
    if (!cf) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", path);
    sem_status s = verify_structure(path, &cf->st, &cf->meta, &cf->plan, err);
    if (s == SEM_OK) s = check_compat(path, &cf->meta, expect, expect_ring, fingerprint, err);
    if (s == SEM_OK) s = verify_data(cf, err);
    if (s != SEM_OK) {
        cache_file_close(cf);
        return s;
    }
    *out = cf;
    return SEM_OK;
}

void cache_file_close(cache_file *f)
{
    if (!f) return;
    plan_free(&f->plan);
    free(f->tokens);
    st_close(f->st);
    free(f);
}

const cache_file_meta *cache_file_get_meta(const cache_file *f) { return &f->meta; }
const int32_t *cache_file_tokens(const cache_file *f) { return f->tokens; }

sem_status cache_file_read_meta(const char *path, cache_file_meta *out, sem_err *err)
{
    st_file *st = NULL;
    cache_file_meta m;
    cf_plan plan = {0};
    sem_status s = verify_structure(path, &st, &m, &plan, err);
    if (s != SEM_OK) return s;
    plan_free(&plan);
    st_close(st);
    *out = m;
    return SEM_OK;
}

/* ===================================================================== */
/* Loading                                                                */
/* ===================================================================== */

static void scatter_tensor(const cf_tensor *t, const kn_kv_view *kv, size_t layer_stride, size_t n)
{
    kn_kv_view v = kn_kv_view_layer(kv, layer_stride, t->layer);
    const uint8_t *src = t->data;
    for (size_t pos = t->pos0; pos < n; pos++)
        for (int32_t h = 0; h < v.n_kv_heads; h++, src += t->row_bytes)
            copy_piece((uint8_t *)kn_kv_row_ptr(&v, (int32_t)pos, h, t->is_v) + t->row_off, src, t->row_bytes);
}

void cache_file_load(const cache_file *f, size_t n, const kn_kv_view *kv, size_t layer_stride)
{
    const kv_geometry *g = &f->meta.geo;
    SEM_ASSERT(n <= f->meta.n_tokens);
    SEM_ASSERT(kv->dtype == g->dtype && kv->n_kv_heads == g->n_kv_heads &&
               kv->head_dim == g->head_dim && kv->v_head_dim == g->v_head_dim &&
               kv->block_tokens == g->block_tokens);
    SEM_ASSERT(kv->k_row_bytes == kn_kv_row_bytes(g->dtype, (size_t)g->head_dim) &&
               kv->v_row_bytes == kn_kv_row_bytes(g->dtype, (size_t)g->v_head_dim));
    for (size_t i = 1; i < f->plan.n; i++) scatter_tensor(&f->plan.t[i], kv, layer_stride, n);
}
