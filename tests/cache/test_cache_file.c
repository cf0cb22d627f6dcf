/* test_cache_file.c - the cache room's file layer, through its door
 * (cache.h): agent caches as safetensors files.
 *
 * Every case uses a real kv_pool with random K/V stored by kn_kv_store and
 * shuffled (non-contiguous) block tables, for every KV dtype:
 *  - round trip: write -> open -> load into other blocks -> every row
 *    byte-identical, rows past a partial load untouched, n_tokens = 0;
 *  - each failure kind gets its exact status: bad CRC, truncation at every
 *    byte, bad headers, wrong geometry (each field), wrong fingerprint,
 *    unknown version, missing / extra / mis-shaped tensors, a table of bad
 *    metadata;
 *  - agent id table, quarantine, bad write arguments, a failed write (file
 *    size limit) and SIGKILLed writers leave no target and keep an old one;
 *  - ring files (version 2, sliding-window layers kept as a ring): written
 *    from a ring pool whose old blocks were trimmed, the sliding layers'
 *    tensors hold only ring_from on, they load back into trimmed blocks,
 *    a layout with another window or other sliding layers (or none) is
 *    rejected as incompatible, and a table of bad ring metadata is corrupt.
 *
 * `test_cache_file --write-samples DIR` writes one deterministic file per
 * dtype for tests/cache/read_cache_file.py (the independent reader).
 */
#include "cache/cache.h"
#include "formats/formats.h" /* to look at a file the way any safetensors reader does */

#include "test_util.h"

#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static char *tmp_dir;

static const kn_kv_dtype ALL_DTYPES[] = {KN_KV_F16, KN_KV_BF16, KN_KV_Q8, KN_KV_Q4, KN_KV_F32};
#define N_DTYPES (sizeof ALL_DTYPES / sizeof ALL_DTYPES[0])
static const char FP[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* ===================================================================== */
/* A pool holding one sequence                                            */
/* ===================================================================== */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static float rng_float(uint64_t *s)
{
    return (float)((double)(rng_next(s) >> 11) / 9007199254740992.0 * 8.0 - 4.0);
}

typedef struct seq {
    kv_pool *pool;
    kv_geometry geo;
    int32_t *all;   /* every block id, shuffled */
    int32_t *a, *b; /* two disjoint block tables (into all) */
    int32_t n_blocks_per;
    int32_t *tokens;
    uint32_t n_tokens;
} seq;

static kv_geometry geo_make(kn_kv_dtype dt, int32_t layers, int32_t heads, int32_t hd, int32_t vd,
                            int32_t bt)
{
    return (kv_geometry){.n_layers = layers,
                         .n_kv_heads = heads,
                         .head_dim = hd,
                         .v_head_dim = vd,
                         .block_tokens = bt,
                         .dtype = dt};
}

static kn_kv_view layer_view(const seq *s, const int32_t *ids, int32_t l)
{
    kn_kv_view v = kv_pool_view(s->pool, ids);
    v.k_offset += (size_t)l * kv_pool_layer_stride(s->pool);
    v.v_offset += (size_t)l * kv_pool_layer_stride(s->pool);
    return v;
}

typedef float (*val_fn)(uint64_t *rng, uint32_t pos, int32_t l, int32_t h, int32_t d, bool is_v);

static float val_random(uint64_t *rng, uint32_t pos, int32_t l, int32_t h, int32_t d, bool is_v)
{
    (void)pos, (void)l, (void)h, (void)d, (void)is_v;
    return rng_float(rng);
}

/* Exact in f16; read_cache_file.py computes the same formula. */
static float val_formula(uint64_t *rng, uint32_t pos, int32_t l, int32_t h, int32_t d, bool is_v)
{
    (void)rng;
    long x = is_v ? ((long)pos * 5 + l * 11 + h * 17 + d * 7 + 100)
                  : ((long)pos * 7 + l * 13 + h * 31 + d * 3);
    return (float)(x % 2048 - 1024) / 256.0f;
}

/* Stores K/V for tokens [0, n) of table ids, every layer. */
static void fill_kv(const seq *s, const int32_t *ids, uint32_t n, val_fn fn, uint64_t *rng)
{
    const kv_geometry *g = &s->geo;
    float *k = malloc(sizeof(float) * (size_t)g->n_kv_heads * (size_t)g->head_dim);
    float *v = malloc(sizeof(float) * (size_t)g->n_kv_heads * (size_t)g->v_head_dim);
    for (int32_t l = 0; l < g->n_layers; l++) {
        kn_kv_view view = layer_view(s, ids, l);
        for (uint32_t p = 0; p < n; p++) {
            for (int32_t h = 0; h < g->n_kv_heads; h++) {
                for (int32_t d = 0; d < g->head_dim; d++)
                    k[h * g->head_dim + d] = fn(rng, p, l, h, d, false);
                for (int32_t d = 0; d < g->v_head_dim; d++)
                    v[h * g->v_head_dim + d] = fn(rng, p, l, h, d, true);
            }
            kn_kv_store(&view, (int32_t)p, k, v);
        }
    }
    free(k);
    free(v);
}

static void seq_make(seq *s, const kv_geometry *g, uint32_t n_tokens, val_fn fn, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->geo = *g;
    s->n_tokens = n_tokens;
    s->n_blocks_per =
        (int32_t)((n_tokens + (uint32_t)g->block_tokens - 1) / (uint32_t)g->block_tokens) + 1;
    sem_err err;
    kv_pool_params pp = {.budget_bytes = kv_block_bytes(g) * (size_t)(2 * s->n_blocks_per + 3)};
    assert_int_equal(kv_pool_create(g, &pp, &s->pool, &err), SEM_OK);
    int32_t nb = kv_pool_n_blocks(s->pool);
    s->all = calloc((size_t)nb, sizeof *s->all);
    for (int32_t i = 0; i < nb; i++)
        assert_int_equal(kv_pool_alloc(s->pool, &s->all[i], &err), SEM_OK);
    uint64_t rng = seed;
    for (int32_t i = nb - 1; i > 0; i--) {
        int32_t j = (int32_t)(rng_next(&rng) % (uint64_t)(i + 1));
        int32_t t = s->all[i];
        s->all[i] = s->all[j];
        s->all[j] = t;
    }
    s->a = s->all;
    s->b = s->all + s->n_blocks_per;
    /* Fill everything with a pattern first so untouched rows are visible. */
    memset(kv_pool_view(s->pool, s->all).base, 0xA5, kv_block_bytes(g) * (size_t)nb);
    s->tokens = calloc(n_tokens + 1, sizeof *s->tokens);
    for (uint32_t i = 0; i < n_tokens; i++)
        s->tokens[i] = fn == val_formula ? (int32_t)((i * 37 + 11) % 50000)
                                         : (int32_t)(rng_next(&rng) % 150000);
    fill_kv(s, s->a, n_tokens, fn, &rng);
}

static void seq_free(seq *s)
{
    for (int32_t i = 0; s->pool && i < kv_pool_n_blocks(s->pool); i++)
        kv_pool_unref(s->pool, s->all[i]);
    kv_pool_destroy(s->pool);
    free(s->all);
    free(s->tokens);
}

static cache_file_meta meta_make(const seq *s, const char *agent)
{
    cache_file_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.agent_id, sizeof m.agent_id, "%s", agent);
    snprintf(m.model_id, sizeof m.model_id, "mlx-community/Test-Model-4bit");
    snprintf(m.fingerprint, sizeof m.fingerprint, "%s", FP);
    m.geo = s->geo;
    m.n_tokens = s->n_tokens;
    return m;
}

static sem_status seq_write(const seq *s, const char *path, cache_file_meta *m, sem_err *err)
{
    kn_kv_view v = kv_pool_view(s->pool, s->a);
    return cache_file_write(path, m, s->tokens, &v, kv_pool_layer_stride(s->pool), err);
}

static const uint8_t *row_ptr(const seq *s, const int32_t *ids, int32_t l, uint32_t pos, int32_t h,
                              bool is_v)
{
    kn_kv_view v = layer_view(s, ids, l);
    return kn_kv_row_ptr(&v, (int32_t)pos, h, is_v);
}

static size_t row_bytes(const seq *s, bool is_v)
{
    return kn_kv_row_bytes(s->geo.dtype, (size_t)(is_v ? s->geo.v_head_dim : s->geo.head_dim));
}

/* Rows [0, n) of table b equal table a; rows [n, n_tokens) of b still hold
 * the 0xA5 fill. */
static void check_loaded(const seq *s, uint32_t n)
{
    for (int32_t l = 0; l < s->geo.n_layers; l++) {
        for (uint32_t p = 0; p < s->n_tokens; p++) {
            for (int32_t h = 0; h < s->geo.n_kv_heads; h++) {
                for (int iv = 0; iv < 2; iv++) {
                    const uint8_t *x = row_ptr(s, s->a, l, p, h, iv),
                                  *y = row_ptr(s, s->b, l, p, h, iv);
                    size_t rb = row_bytes(s, iv);
                    if (p < n) {
                        if (memcmp(x, y, rb) != 0)
                            fail_msg("%s: layer %d pos %u head %d %s differs",
                                     kn_kv_dtype_name(s->geo.dtype), l, p, h, iv ? "V" : "K");
                    } else {
                        for (size_t i = 0; i < rb; i++) assert_int_equal(y[i], 0xA5);
                    }
                }
            }
        }
    }
}

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmp_dir, name);
}

/* ===================================================================== */
/* Round trips                                                            */
/* ===================================================================== */

static void round_trip(const kv_geometry *g, uint32_t n_tokens, uint64_t seed)
{
    seq s;
    seq_make(&s, g, n_tokens, val_random, seed);
    char path[512];
    path_in(path, sizeof path, "rt.safetensors");
    cache_file_meta m = meta_make(&s, "agent-1");
    sem_err err;
    assert_int_equal(seq_write(&s, path, &m, &err), SEM_OK);
    assert_int_equal(m.version, CACHE_FORMAT_VERSION);

    cache_file *f = NULL;
    sem_status st = cache_file_open(path, g, FP, &f, &err);
    if (st != SEM_OK) fail_msg("open: %s", err.msg);
    const cache_file_meta *fm = cache_file_get_meta(f);
    assert_int_equal(fm->n_tokens, n_tokens);
    assert_int_equal(fm->crc32c, m.crc32c);
    assert_int_equal(fm->version, CACHE_FORMAT_VERSION);
    assert_string_equal(fm->agent_id, "agent-1");
    assert_string_equal(fm->model_id, m.model_id);
    assert_string_equal(fm->fingerprint, FP);
    assert_memory_equal(&fm->geo, g, sizeof *g);
    if (n_tokens) assert_memory_equal(cache_file_tokens(f), s.tokens, n_tokens * sizeof(int32_t));

    /* A partial load first: only its rows change. */
    kn_kv_view vb = kv_pool_view(s.pool, s.b);
    uint32_t part = n_tokens / 2 + 1 <= n_tokens ? n_tokens / 2 + 1 : 0;
    cache_file_load(f, part, &vb, kv_pool_layer_stride(s.pool));
    check_loaded(&s, part);
    cache_file_load(f, n_tokens, &vb, kv_pool_layer_stride(s.pool));
    check_loaded(&s, n_tokens);
    cache_file_close(f);

    cache_file_meta rm;
    assert_int_equal(cache_file_read_meta(path, &rm, &err), SEM_OK);
    assert_int_equal(rm.crc32c, m.crc32c);
    assert_int_equal(rm.n_tokens, n_tokens);
    assert_memory_equal(&rm.geo, g, sizeof *g);
    seq_free(&s);
}

static void test_round_trip_every_dtype(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_DTYPES; i++) {
        kv_geometry g = geo_make(ALL_DTYPES[i], 3, 2, 64, 128, 4);
        round_trip(&g, 13, 100 + i);
        g = geo_make(ALL_DTYPES[i], 1, 3, 128, 64, 16);
        round_trip(&g, 16, 200 + i); /* exactly one full block */
    }
}

static void test_round_trip_ragged_float(void **state)
{
    (void)state;
    kn_kv_dtype fl[] = {KN_KV_F16, KN_KV_BF16, KN_KV_F32};
    for (size_t i = 0; i < 3; i++) {
        kv_geometry g = geo_make(fl[i], 2, 3, 24, 40, 5);
        round_trip(&g, 23, 300 + i);
        g = geo_make(fl[i], 1, 1, 1, 3, 1);
        round_trip(&g, 7, 400 + i);
    }
}

static void test_round_trip_empty(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_DTYPES; i++) {
        kv_geometry g = geo_make(ALL_DTYPES[i], 2, 2, 64, 64, 8);
        round_trip(&g, 0, 500 + i);
    }
}

/* A rewrite replaces the old file; no temp files stay behind. */
static int count_entries(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, needle) != NULL;
    closedir(d);
    return n;
}

static void test_rewrite_replaces(void **state)
{
    (void)state;
    kv_geometry g = geo_make(KN_KV_Q4, 2, 2, 64, 64, 4);
    seq s1, s2;
    seq_make(&s1, &g, 9, val_random, 1);
    seq_make(&s2, &g, 14, val_random, 2);
    char path[512];
    path_in(path, sizeof path, "rw.safetensors");
    sem_err err;
    cache_file_meta m1 = meta_make(&s1, "a"), m2 = meta_make(&s2, "a");
    assert_int_equal(seq_write(&s1, path, &m1, &err), SEM_OK);
    assert_int_equal(seq_write(&s2, path, &m2, &err), SEM_OK);
    cache_file_meta rm;
    assert_int_equal(cache_file_read_meta(path, &rm, &err), SEM_OK);
    assert_int_equal(rm.n_tokens, 14);
    assert_int_equal(count_entries(tmp_dir, ".tmp."), 0);
    seq_free(&s1);
    seq_free(&s2);
}

/* ===================================================================== */
/* Raw file helpers                                                       */
/* ===================================================================== */

static void read_all(const char *path, uint8_t **data, size_t *len)
{
    sem_err err;
    char *d;
    assert_int_equal(fs_read_file(path, (size_t)1 << 30, &d, len, &err), SEM_OK);
    *data = (uint8_t *)d;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static size_t header_len(const uint8_t *d)
{
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | d[i];
    return (size_t)n;
}

typedef void (*hdr_edit)(json_t *hdr, const void *arg);

/* Copies src to dst with its JSON header edited by fn and `extra` bytes
 * appended to the data section. */
static void rewrite_header(const char *src, const char *dst, hdr_edit fn, const void *arg,
                           size_t extra)
{
    uint8_t *d;
    size_t len;
    read_all(src, &d, &len);
    size_t hl = header_len(d);
    json_error_t je;
    json_t *h = json_loadb((const char *)d + 8, hl, 0, &je);
    assert_non_null(h);
    fn(h, arg);
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t jl = strlen(js), padded = (jl + 7) & ~(size_t)7;
    size_t data_len = len - 8 - hl, out_len = 8 + padded + data_len + extra;
    uint8_t *out = calloc(out_len, 1);
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memset(out + 8, ' ', padded);
    memcpy(out + 8, js, jl);
    memcpy(out + 8 + padded, d + 8 + hl, data_len);
    write_bytes(dst, out, out_len);
    free(out);
    free(js);
    json_decref(h);
    free(d);
}

static sem_status open_status(const char *path, const kv_geometry *g, const char *fp, sem_err *err)
{
    cache_file *f = NULL;
    sem_status s = cache_file_open(path, g, fp, &f, err);
    if (s == SEM_OK) {
        assert_non_null(f);
        cache_file_close(f);
    } else {
        assert_null(f);
        assert_non_null(strstr(err->msg, path)); /* messages name the file */
    }
    return s;
}

static bool msg_has(const char *msg, const char *needle) { return !needle || strstr(msg, needle); }

#define EXPECT_OPEN(path, g, fp, status, needle)                                                   \
    do {                                                                                           \
        sem_err e_;                                                                                \
        sem_status s_ = open_status(path, g, fp, &e_);                                             \
        if (s_ != (status) || (s_ != SEM_OK && !msg_has(e_.msg, (needle))))                        \
            fail_msg("%s: got %s (%s), expected %s with '%s'", #status, sem_status_name(s_),       \
                     s_ ? e_.msg : "", sem_status_name(status), (needle) ? (needle) : "");         \
    } while (0)

/* A small valid file for the attack tables. */
static void write_base(const char *path, kn_kv_dtype dt, kv_geometry *g_out)
{
    kv_geometry g = dt == KN_KV_F16 ? geo_make(dt, 2, 2, 8, 16, 4) : geo_make(dt, 2, 2, 64, 64, 4);
    seq s;
    seq_make(&s, &g, 6, val_random, 77);
    cache_file_meta m = meta_make(&s, "base");
    sem_err err;
    assert_int_equal(seq_write(&s, path, &m, &err), SEM_OK);
    seq_free(&s);
    *g_out = g;
}

/* ===================================================================== */
/* Damage: CRC, truncation, headers                                       */
/* ===================================================================== */

static void test_bad_crc(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_DTYPES; i++) {
        char path[512], bad[512];
        path_in(path, sizeof path, "crc.safetensors");
        path_in(bad, sizeof bad, "crc-bad.safetensors");
        kv_geometry g;
        write_base(path, ALL_DTYPES[i], &g);
        uint8_t *d;
        size_t len;
        read_all(path, &d, &len);
        size_t start = 8 + header_len(d);
        /* first byte (tokens), somewhere inside, the very last byte */
        size_t at[] = {start, start + (len - start) / 3, len - 1};
        for (size_t k = 0; k < 3; k++) {
            d[at[k]] ^= 0x10;
            write_bytes(bad, d, len);
            d[at[k]] ^= 0x10;
            EXPECT_OPEN(bad, &g, FP, SEM_ECORRUPT, "crc32c");
            cache_file_meta m; /* read_meta skips the data on purpose */
            sem_err err;
            assert_int_equal(cache_file_read_meta(bad, &m, &err), SEM_OK);
        }
        write_bytes(bad, d, len);
        EXPECT_OPEN(bad, &g, FP, SEM_OK, NULL);
        free(d);
    }
}

static void test_truncated_every_byte(void **state)
{
    (void)state;
    char path[512], cut[512];
    path_in(path, sizeof path, "trunc.safetensors");
    path_in(cut, sizeof cut, "trunc-cut.safetensors");
    kv_geometry g = geo_make(KN_KV_F16, 1, 1, 4, 4, 2);
    seq s;
    seq_make(&s, &g, 3, val_random, 5);
    cache_file_meta m = meta_make(&s, "t");
    sem_err err;
    assert_int_equal(seq_write(&s, path, &m, &err), SEM_OK);
    seq_free(&s);
    uint8_t *d;
    size_t len;
    read_all(path, &d, &len);
    for (size_t n = 0; n < len; n++) {
        write_bytes(cut, d, n);
        sem_status st = open_status(cut, &g, FP, &err);
        if (st != SEM_ECORRUPT)
            fail_msg("cut at %zu of %zu: %s (%s)", n, len, sem_status_name(st), err.msg);
        cache_file_meta rm;
        assert_int_equal(cache_file_read_meta(cut, &rm, &err), SEM_ECORRUPT);
    }
    /* One byte too many is damage as well. */
    uint8_t *longer = calloc(len + 1, 1);
    memcpy(longer, d, len);
    write_bytes(cut, longer, len + 1);
    EXPECT_OPEN(cut, &g, FP, SEM_ECORRUPT, "data section");
    free(longer);
    free(d);
}

static void test_bad_headers(void **state)
{
    (void)state;
    char path[512];
    path_in(path, sizeof path, "hdr.safetensors");
    static const struct {
        const char *header;
        uint64_t len_field; /* 0: the header's length */
    } cases[] = {
        {"not json at all", 0},
        {"[1, 2, 3]", 0},
        {"{\"tokens\": 5}", 0},
        {"{\"tokens\": {\"dtype\": \"I32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
         0}, /* no data, no metadata */
        {"{\"tokens\": {\"dtype\": \"Q17\", \"shape\": [0], \"data_offsets\": [0, 0]}}", 0},
        {"{\"a\": 1, \"a\": 2}", 0},
        {"{}", 1u << 30},
        {"{}", UINT64_MAX},
        {"{}", 3},
        {"{\"__metadata__\": {\"format\": \"semantic-kv\"}}", 0},
        {"{\"__metadata__\": [1]}", 0},
        {"{\"__metadata__\": {\"format\": \"semantic-kv\", \"version\": 1}}", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t hl = strlen(cases[i].header);
        uint64_t field = cases[i].len_field ? cases[i].len_field : hl;
        uint8_t *raw = calloc(8 + hl, 1);
        for (int k = 0; k < 8; k++) raw[k] = (uint8_t)(field >> (8 * k));
        memcpy(raw + 8, cases[i].header, hl);
        write_bytes(path, raw, 8 + hl);
        free(raw);
        sem_err err;
        sem_status st = open_status(path, NULL, NULL, &err);
        if (st != SEM_ECORRUPT) fail_msg("case %zu: %s (%s)", i, sem_status_name(st), err.msg);
        cache_file_meta m;
        assert_int_equal(cache_file_read_meta(path, &m, &err), SEM_ECORRUPT);
    }
    char missing[512];
    path_in(missing, sizeof missing, "nope.safetensors");
    EXPECT_OPEN(missing, NULL, NULL, SEM_ENOTFOUND, "nope");
}

/* ===================================================================== */
/* Compatibility                                                          */
/* ===================================================================== */

static void test_wrong_geometry_and_fingerprint(void **state)
{
    (void)state;
    char path[512];
    path_in(path, sizeof path, "geo.safetensors");
    kv_geometry g;
    write_base(path, KN_KV_Q8, &g);
    EXPECT_OPEN(path, &g, FP, SEM_OK, NULL);
    EXPECT_OPEN(path, NULL, NULL, SEM_OK, NULL); /* --cache-compat dims without a geometry */
    EXPECT_OPEN(path, &g, NULL, SEM_OK, NULL);
    static const char *const fields[] = {"n_layers", "n_kv_heads", "head_dim", "v_head_dim",
                                         "block_tokens"};
    for (int i = 0; i < 5; i++) {
        kv_geometry e = g;
        int32_t *f[] = {&e.n_layers, &e.n_kv_heads, &e.head_dim, &e.v_head_dim, &e.block_tokens};
        *f[i] += i < 2 || i == 4 ? 1 : 64;
        EXPECT_OPEN(path, &e, FP, SEM_EUNSUPPORTED, fields[i]);
    }
    for (size_t i = 0; i < N_DTYPES; i++) {
        kv_geometry e = g;
        e.dtype = ALL_DTYPES[i];
        if (e.dtype != g.dtype) EXPECT_OPEN(path, &e, FP, SEM_EUNSUPPORTED, "kv_dtype");
    }
    EXPECT_OPEN(path, &g, "0123456789abcdef", SEM_EUNSUPPORTED, "fingerprint");
    EXPECT_OPEN(path, &g, "", SEM_EUNSUPPORTED, "incompatible");
}

/* ===================================================================== */
/* Header edits: metadata and tensors                                     */
/* ===================================================================== */

typedef struct kv_edit {
    const char *key;
    const char *value; /* NULL: delete the key */
} kv_edit;

static void edit_meta(json_t *h, const void *arg)
{
    const kv_edit *e = arg;
    json_t *m = json_object_get(h, "__metadata__");
    if (e->value) json_object_set_new(m, e->key, json_string(e->value));
    else json_object_del(m, e->key);
}

static void edit_meta_int(json_t *h, const void *arg)
{
    json_object_set_new(json_object_get(h, "__metadata__"), (const char *)arg, json_integer(2));
}

static void test_bad_metadata(void **state)
{
    (void)state;
    char path[512], bad[512];
    path_in(path, sizeof path, "meta.safetensors");
    path_in(bad, sizeof bad, "meta-bad.safetensors");
    kv_geometry g;
    write_base(path, KN_KV_Q4, &g);
    static const char *const keys[] = {"format",      "version",      "agent_id",   "model_id",
                                       "fingerprint", "n_layers",     "n_kv_heads", "head_dim",
                                       "v_head_dim",  "block_tokens", "kv_dtype",   "bits",
                                       "group_size",  "n_tokens",     "crc32c"};
    sem_err err;
    cache_file_meta m;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        kv_edit e = {keys[i], NULL};
        rewrite_header(path, bad, edit_meta, &e, 0);
        EXPECT_OPEN(bad, NULL, NULL, SEM_ECORRUPT, keys[i]);
        assert_int_equal(cache_file_read_meta(bad, &m, &err), SEM_ECORRUPT);
        rewrite_header(path, bad, edit_meta_int, keys[i], 0); /* a number, not a string */
        EXPECT_OPEN(bad, NULL, NULL, SEM_ECORRUPT, keys[i]);
    }
    static const struct {
        kv_edit e;
        sem_status want;
    } cases[] = {
        {{"format", "safetensors"}, SEM_ECORRUPT},
        {{"version", "3"}, SEM_EUNSUPPORTED},
        {{"version", "2"}, SEM_ECORRUPT}, /* a ring file without its ring metadata */
        {{"version", "0"}, SEM_EUNSUPPORTED},
        {{"version", "4294967295"}, SEM_EUNSUPPORTED},
        {{"version", "x"}, SEM_ECORRUPT},
        {{"version", "01"}, SEM_ECORRUPT},
        {{"version", "-1"}, SEM_ECORRUPT},
        {{"version", "99999999999999999999"}, SEM_ECORRUPT},
        {{"n_layers", "two"}, SEM_ECORRUPT},
        {{"n_layers", "0"}, SEM_ECORRUPT},
        {{"n_layers", "1"}, SEM_ECORRUPT}, /* the other layer's tensors are extra */
        {{"n_layers", "3"}, SEM_ECORRUPT}, /* layer 2 is missing */
        {{"n_layers", "1025"}, SEM_ECORRUPT},
        {{"n_layers", "2 "}, SEM_ECORRUPT},
        {{"n_layers", "+2"}, SEM_ECORRUPT},
        {{"n_layers", ""}, SEM_ECORRUPT},
        {{"n_kv_heads", "99999999999"}, SEM_ECORRUPT},
        {{"n_kv_heads", "4"}, SEM_ECORRUPT}, /* shapes disagree */
        {{"head_dim", "65"}, SEM_ECORRUPT},  /* not a multiple of 64 for q4 */
        {{"head_dim", "65537"}, SEM_ECORRUPT},
        {{"v_head_dim", "128"}, SEM_ECORRUPT},
        {{"block_tokens", "0"}, SEM_ECORRUPT},
        {{"block_tokens", "65537"}, SEM_ECORRUPT},
        {{"kv_dtype", "q3"}, SEM_ECORRUPT},
        {{"kv_dtype", "Q4"}, SEM_ECORRUPT},
        {{"kv_dtype", "q8"}, SEM_ECORRUPT}, /* bits say 4 */
        {{"bits", "8"}, SEM_ECORRUPT},
        {{"group_size", "32"}, SEM_ECORRUPT},
        {{"group_size", "0"}, SEM_ECORRUPT},
        {{"n_tokens", "5"}, SEM_ECORRUPT},
        {{"n_tokens", "16777217"}, SEM_ECORRUPT},
        {{"n_tokens", "4294967296"}, SEM_ECORRUPT},
        {{"crc32c", "1234567"}, SEM_ECORRUPT},
        {{"crc32c", "123456789"}, SEM_ECORRUPT},
        {{"crc32c", "ABCDEF01"}, SEM_ECORRUPT},
        {{"crc32c", "0000000g"}, SEM_ECORRUPT},
        {{"crc32c", "00000000"}, SEM_ECORRUPT}, /* well-formed, wrong */
        {{"agent_id", "../etc"}, SEM_ECORRUPT},
        {{"agent_id", ""}, SEM_ECORRUPT},
        {{"model_id", ""}, SEM_ECORRUPT},
        {{"fingerprint", ""}, SEM_ECORRUPT},
        {{"fingerprint", "XYZ"}, SEM_ECORRUPT},
        {{"fingerprint", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"},
         SEM_ECORRUPT},
        {{"extra_key", "is fine"}, SEM_OK},
        {{"model_id", "another/model"}, SEM_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rewrite_header(path, bad, edit_meta, &cases[i].e, 0);
        sem_status st = open_status(bad, NULL, NULL, &err);
        if (st != cases[i].want)
            fail_msg("%s='%s': got %s (%s), expected %s", cases[i].e.key, cases[i].e.value,
                     sem_status_name(st), st ? err.msg : "", sem_status_name(cases[i].want));
        if (st == SEM_EUNSUPPORTED) assert_non_null(strstr(err.msg, "incompatible"));
    }
    /* A huge model id. */
    char *huge = malloc(300);
    memset(huge, 'm', 299);
    huge[299] = '\0';
    kv_edit e = {"model_id", huge};
    rewrite_header(path, bad, edit_meta, &e, 0);
    EXPECT_OPEN(bad, NULL, NULL, SEM_ECORRUPT, "model_id");
    free(huge);
}

typedef struct tensor_edit {
    const char *name;
    const char *dtype; /* NULL: keep */
    int n_dims;        /* 0: keep the shape; -1: delete the tensor */
    uint64_t shape[3];
    bool append; /* add as a new tensor at the end of the data */
} tensor_edit;

static void edit_tensor(json_t *h, const void *arg)
{
    const tensor_edit *e = arg;
    if (e->append) {
        size_t end = 0;
        const char *k;
        json_t *v;
        json_object_foreach(h, k, v)
        {
            json_t *off = json_object_get(v, "data_offsets");
            if (off && (size_t)json_integer_value(json_array_get(off, 1)) > end)
                end = (size_t)json_integer_value(json_array_get(off, 1));
        }
        json_object_set_new(h, e->name,
                            json_pack("{s:s,s:[I],s:[I,I]}", "dtype", "U8", "shape", (json_int_t)4,
                                      "data_offsets", (json_int_t)end, (json_int_t)end + 4));
        return;
    }
    if (e->n_dims < 0) {
        json_object_del(h, e->name);
        return;
    }
    json_t *t = json_object_get(h, e->name);
    assert_non_null(t);
    if (e->dtype) json_object_set_new(t, "dtype", json_string(e->dtype));
    if (e->n_dims > 0) {
        json_t *sh = json_array();
        for (int i = 0; i < e->n_dims; i++)
            json_array_append_new(sh, json_integer((json_int_t)e->shape[i]));
        json_object_set_new(t, "shape", sh);
    }
}

static void test_bad_tensors(void **state)
{
    (void)state;
    char path[512], bad[512];
    path_in(path, sizeof path, "ten.safetensors");
    path_in(bad, sizeof bad, "ten-bad.safetensors");
    kv_geometry g;
    /* q8: 2 layers, 2 heads, 64/64 dims, 6 tokens; f16: 8/16 dims. */
    write_base(path, KN_KV_Q8, &g);
    static const tensor_edit q8[] = {
        {"layers.1.v.biases", NULL, -1, {0}, false},
        {"tokens", NULL, -1, {0}, false},
        {"layers.0.k.weight", NULL, 3, {6, 4, 8}, false}, /* same bytes, other shape */
        {"layers.0.k.weight", NULL, 2, {6, 32}, false},
        {"layers.0.k.weight", "I32", 0, {0}, false}, /* same size, other dtype */
        {"layers.0.k.scales", "BF16", 0, {0}, false},
        {"layers.1.k.biases", NULL, 3, {6, 1, 2}, false},
        {"tokens", "U32", 0, {0}, false},
        {"tokens", NULL, 2, {3, 2}, false},
        {"extra", NULL, 0, {0}, true},
        {"layers.2.k.weight", NULL, 0, {0}, true},
        {"layers.01.k.weight", NULL, 0, {0}, true},
    };
    sem_err err;
    for (size_t i = 0; i < sizeof q8 / sizeof q8[0]; i++) {
        rewrite_header(path, bad, edit_tensor, &q8[i], q8[i].append ? 4 : 0);
        sem_status st = open_status(bad, NULL, NULL, &err);
        if (st != SEM_ECORRUPT)
            fail_msg("q8 case %zu (%s): %s (%s)", i, q8[i].name, sem_status_name(st), err.msg);
        assert_non_null(strstr(err.msg, q8[i].name));
    }
    write_base(path, KN_KV_F16, &g);
    static const tensor_edit f16[] = {
        {"layers.0.k", "BF16", 0, {0}, false},
        {"layers.0.v", NULL, 3, {6, 4, 8}, false},
        {"layers.1.k", NULL, -1, {0}, false},
        {"layers.0.k.weight", NULL, 0, {0}, true},
    };
    for (size_t i = 0; i < sizeof f16 / sizeof f16[0]; i++) {
        rewrite_header(path, bad, edit_tensor, &f16[i], f16[i].append ? 4 : 0);
        sem_status st = open_status(bad, NULL, NULL, &err);
        if (st != SEM_ECORRUPT) fail_msg("f16 case %zu: %s (%s)", i, sem_status_name(st), err.msg);
        assert_non_null(strstr(err.msg, f16[i].name));
    }
}

/* ===================================================================== */
/* Writing: arguments, failures, crashes                                  */
/* ===================================================================== */

static void test_write_rejects_bad_args(void **state)
{
    (void)state;
    kv_geometry g = geo_make(KN_KV_F16, 2, 2, 16, 16, 4);
    seq s;
    seq_make(&s, &g, 5, val_random, 9);
    char path[512];
    path_in(path, sizeof path, "args.safetensors");
    sem_err err;
    cache_file_meta m = meta_make(&s, "../x");
    assert_int_equal(seq_write(&s, path, &m, &err), SEM_EINVAL);
    m = meta_make(&s, "ok");
    m.fingerprint[3] = 'Z';
    assert_int_equal(seq_write(&s, path, &m, &err), SEM_EINVAL);
    m = meta_make(&s, "ok");
    m.model_id[0] = '\0';
    assert_int_equal(seq_write(&s, path, &m, &err), SEM_EINVAL);
    m = meta_make(&s, "ok");
    m.geo.head_dim = 32; /* the view says 16 */
    assert_int_equal(seq_write(&s, path, &m, &err), SEM_EINVAL);
    m = meta_make(&s, "ok");
    m.n_tokens = CACHE_MAX_TOKENS + 1;
    assert_int_equal(seq_write(&s, path, &m, &err), SEM_EINVAL);
    m = meta_make(&s, "ok");
    s.tokens[2] = -5;
    assert_int_equal(seq_write(&s, path, &m, &err), SEM_EINVAL);
    assert_false(fs_exists(path));
    assert_int_equal(count_entries(tmp_dir, ".tmp."), 0);
    /* meta is untouched on failure */
    assert_int_equal(m.crc32c, 0);
    seq_free(&s);
}

static void test_failed_write_leaves_nothing(void **state)
{
    (void)state;
    kv_geometry g = geo_make(KN_KV_F32, 2, 2, 64, 64, 4);
    seq s;
    seq_make(&s, &g, 40, val_random, 11); /* ~80 KB */
    char path[512], nodir[512];
    path_in(path, sizeof path, "fail.safetensors");
    path_in(nodir, sizeof nodir, "no/such/dir/x.safetensors");
    sem_err err;
    cache_file_meta m = meta_make(&s, "f");
    assert_int_equal(seq_write(&s, nodir, &m, &err), SEM_EIO);
    assert_non_null(strstr(err.msg, "x.safetensors"));

    /* An old file, then a write that fails half-way: the file size limit
     * makes write(2) fail with EFBIG after 16 KiB. */
    seq old;
    seq_make(&old, &g, 2, val_random, 12);
    cache_file_meta mo = meta_make(&old, "f");
    assert_int_equal(seq_write(&old, path, &mo, &err), SEM_OK);
    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = saved;
    lim.rlim_cur = 16384;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    sem_status st = seq_write(&s, path, &m, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(st, SEM_EIO);
    assert_int_equal(m.crc32c, 0);
    assert_int_equal(count_entries(tmp_dir, ".tmp."), 0);
    cache_file *f;
    assert_int_equal(cache_file_open(path, &g, FP, &f, &err), SEM_OK); /* the old file */
    assert_int_equal(cache_file_get_meta(f)->n_tokens, 2);
    cache_file_close(f);
    seq_free(&s);
    seq_free(&old);
}

/* Children write the same path over and over and are SIGKILLed at random
 * moments: afterwards the file is absent or fully valid, never damaged. */
static void test_killed_writers(void **state)
{
    (void)state;
    kv_geometry g = geo_make(KN_KV_Q4, 4, 4, 128, 128, 8);
    seq s;
    seq_make(&s, &g, 300, val_random, 13); /* ~600 KB */
    char dir[512], path[600];
    path_in(dir, sizeof dir, "kill");
    sem_err err;
    assert_int_equal(fs_mkdirs(dir, &err), SEM_OK);
    snprintf(path, sizeof path, "%s/agent.safetensors", dir);
    uint64_t rng = 99;
    int valid = 0, absent = 0;
    for (int it = 0; it < 20; it++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            for (;;) {
                cache_file_meta m = meta_make(&s, "k");
                sem_err e;
                if (seq_write(&s, path, &m, &e) != SEM_OK) _exit(3);
            }
        }
        struct timespec ts = {0, (long)(rng_next(&rng) % 30000000)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int wst;
        assert_int_equal(waitpid(pid, &wst, 0), pid);
        assert_true(WIFSIGNALED(wst));
        cache_file *f = NULL;
        sem_status st = cache_file_open(path, &g, FP, &f, &err);
        if (st == SEM_OK) valid++;
        else if (st == SEM_ENOTFOUND) absent++;
        else fail_msg("after kill %d: %s (%s)", it, sem_status_name(st), err.msg);
        cache_file_close(f);
    }
    assert_int_equal(valid + absent, 20);
    print_message("killed writers: %d valid, %d absent, %d orphan temp files\n", valid, absent,
                  count_entries(dir, ".tmp."));
    seq_free(&s);
}

/* ===================================================================== */
/* Agent ids and quarantine                                               */
/* ===================================================================== */

static void test_agent_id_table(void **state)
{
    (void)state;
    char max[CACHE_MAX_AGENT_ID + 2];
    memset(max, 'a', sizeof max);
    max[CACHE_MAX_AGENT_ID] = '\0';
    assert_true(cache_agent_id_valid(max));
    max[CACHE_MAX_AGENT_ID] = 'a';
    max[CACHE_MAX_AGENT_ID + 1] = '\0';
    assert_false(cache_agent_id_valid(max)); /* 129 chars */
    static const char *const good[] = {"a", "planner", "agent-1", "A_b.c-D", "x..y",
                                       "0", "a.",      "-a",      "_"};
    static const char *const bad[] = {"",        ".",   "..",   "../x",        "a/b",
                                      ".hidden", "a b", "a\\b", "caf\xc3\xa9", "\xe2\x80\xae",
                                      "a\nb",    "a:b", "a*",   "tab\t",       "%2e%2e"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!cache_agent_id_valid(good[i])) fail_msg("'%s' should be valid", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (cache_agent_id_valid(bad[i])) fail_msg("'%s' should be invalid", bad[i]);
    assert_false(cache_agent_id_valid(NULL));
    const char nul[] = "ab\0cd"; /* a C string stops at the NUL: "ab" */
    assert_true(cache_agent_id_valid(nul));
}

static void test_quarantine(void **state)
{
    (void)state;
    char cdir[512], tdir[600], path[700], qdir[600];
    path_in(cdir, sizeof cdir, "qcache");
    snprintf(tdir, sizeof tdir, "%s/model-tag", cdir);
    snprintf(path, sizeof path, "%s/agent.safetensors", tdir);
    snprintf(qdir, sizeof qdir, "%s/quarantine", cdir);
    sem_err err;
    assert_int_equal(fs_mkdirs(tdir, &err), SEM_OK);
    for (int round = 0; round < 3; round++) {
        char content[32];
        snprintf(content, sizeof content, "bad file %d", round);
        write_bytes(path, content, strlen(content));
        assert_int_equal(cache_quarantine(cdir, path, &err), SEM_OK);
        assert_false(fs_exists(path));
        assert_true(fs_is_dir(qdir));
        assert_int_equal(count_entries(qdir, "agent.safetensors."), round + 1); /* never replaced */
    }
    assert_int_equal(count_entries(qdir, ".corrupt"), 3);
    assert_int_equal(cache_quarantine(cdir, path, &err), SEM_ENOTFOUND);
    /* The moved file keeps its bytes. */
    DIR *d = opendir(qdir);
    struct dirent *e;
    int seen = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", qdir, e->d_name);
        uint8_t *data;
        size_t len;
        read_all(p, &data, &len);
        assert_true(len >= 10 && !memcmp(data, "bad file ", 9));
        free(data);
        seen++;
    }
    closedir(d);
    assert_int_equal(seen, 3);
}

/* ===================================================================== */
/* Samples for the independent reader                                     */
/* ===================================================================== */

static int write_samples(const char *dir)
{
    for (size_t i = 0; i < N_DTYPES; i++) {
        kv_geometry g = geo_make(ALL_DTYPES[i], 2, 2, 64, 128, 4);
        seq s;
        seq_make(&s, &g, 11, val_formula, 1 + i);
        char path[1024], agent[32];
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, kn_kv_dtype_name(g.dtype));
        snprintf(agent, sizeof agent, "agent-%s", kn_kv_dtype_name(g.dtype));
        cache_file_meta m = meta_make(&s, agent);
        sem_err err;
        if (seq_write(&s, path, &m, &err) != SEM_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        printf("%s crc32c=%08x\n", path, m.crc32c);
        seq_free(&s);
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    tmp_dir = tu_tmpdir();
    return tmp_dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmrf(tmp_dir);
    free(tmp_dir);
    return 0;
}

/* ===================================================================== */
/* Ring files: sliding-window layers hold only the window                 */
/* ===================================================================== */

enum { RING_LAYERS = 3, RING_BT = 4, RING_WINDOW = 6, RING_TOKENS = 23 };

/* Layers 0 and 1 slide, layer 2 is global. */
static kv_ring ring_make(int32_t window)
{
    kv_ring r;
    memset(&r, 0, sizeof r);
    r.window = window;
    r.sliding[0] = r.sliding[1] = true;
    return r;
}

/* Blocks for n tokens from a ring pool, every layer's rows stored, then
 * trimmed as a sequence of n tokens would be. Returns local_from. */
static size_t ring_fill(kv_pool *pool, int32_t *ids, uint32_t n, uint64_t *rng)
{
    const kv_geometry *g = kv_pool_geometry(pool);
    size_t nb = (n + RING_BT - 1) / RING_BT, trimmed = 0;
    sem_err err;
    for (size_t b = 0; b < nb; b++) assert_int_equal(kv_pool_alloc(pool, &ids[b], &err), SEM_OK);
    float k[2 * 64], v[2 * 64];
    kn_kv_view v0 = kv_pool_view(pool, ids);
    for (int32_t l = 0; l < g->n_layers; l++) {
        kn_kv_view lv = kn_kv_view_layer(&v0, kv_pool_layer_stride(pool), l);
        for (uint32_t p = 0; p < n; p++) {
            for (int i = 0; i < 2 * 64; i++) k[i] = rng_float(rng), v[i] = rng_float(rng);
            kn_kv_store(&lv, (int32_t)p, k, v);
        }
    }
    kv_pool_trim_table(pool, ids, &trimmed, n);
    assert_int_equal(trimmed, kv_pool_ring_first(pool, n));
    return kv_pool_table_local_from(pool, ids, nb);
}

/* Rows of layer l at pos agree between tables a and b. */
static void ring_row_equal(kv_pool *pool, const int32_t *a, const int32_t *b, int32_t l, uint32_t pos)
{
    kn_kv_view va = kv_pool_view(pool, a), vb = kv_pool_view(pool, b);
    va = kn_kv_view_layer(&va, 0, l);
    vb = kn_kv_view_layer(&vb, 0, l);
    float x[64], y[64];
    for (int32_t h = 0; h < 2; h++) {
        for (int iv = 0; iv < 2; iv++) {
            kn_kv_load_row(&va, (int32_t)pos, h, iv, x);
            kn_kv_load_row(&vb, (int32_t)pos, h, iv, y);
            if (memcmp(x, y, sizeof x) != 0) fail_msg("layer %d pos %u head %d %s differs", l, pos, h, iv ? "V" : "K");
        }
    }
}

static void ring_round_trip(kn_kv_dtype dt, const char *path)
{
    kv_geometry g = geo_make(dt, RING_LAYERS, 2, 64, 64, RING_BT);
    kv_ring ring = ring_make(RING_WINDOW);
    kv_pool_params pp = {.budget_bytes = kv_block_bytes(&g) * 16, .ring = &ring};
    kv_pool *pool;
    sem_err err;
    assert_int_equal(kv_pool_create(&g, &pp, &pool, &err), SEM_OK);
    int32_t a[8], b[8], tokens[RING_TOKENS];
    uint64_t rng = 99;
    for (int i = 0; i < RING_TOKENS; i++) tokens[i] = i * 3 + 1;
    size_t local_from = ring_fill(pool, a, RING_TOKENS, &rng);
    assert_int_equal(local_from, 16); /* blocks 0..3 are past the window of 23 - 6 */

    cache_file_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.agent_id, sizeof m.agent_id, "ring");
    snprintf(m.model_id, sizeof m.model_id, "google/gemma-3-test");
    snprintf(m.fingerprint, sizeof m.fingerprint, "%s", FP);
    m.geo = g;
    m.ring = ring;
    m.ring_from = (uint32_t)local_from;
    m.n_tokens = RING_TOKENS;
    kn_kv_view va = kv_pool_view(pool, a);
    assert_int_equal(cache_file_write(path, &m, tokens, &va, kv_pool_layer_stride(pool), &err), SEM_OK);
    assert_int_equal(m.version, CACHE_FORMAT_VERSION_RING);

    /* What an independent reader sees: shorter sliding tensors. */
    st_file *st;
    assert_int_equal(st_open(path, &st, &err), SEM_OK);
    bool quant = dt == KN_KV_Q8 || dt == KN_KV_Q4;
    const char *kname = quant ? "layers.0.k.weight" : "layers.0.k";
    const char *gname = quant ? "layers.2.v.scales" : "layers.2.v";
    assert_int_equal(st_file_find(st, kname)->shape[0], RING_TOKENS - 16);
    assert_int_equal(st_file_find(st, gname)->shape[0], RING_TOKENS);
    assert_string_equal(st_file_metadata(st, "sliding_layers"), "110");
    assert_string_equal(st_file_metadata(st, "sliding_window"), "6");
    assert_string_equal(st_file_metadata(st, "ring_from"), "16");
    st_close(st);

    cache_file *f;
    assert_int_equal(cache_file_open_ring(path, &g, &ring, FP, &f, &err), SEM_OK);
    const cache_file_meta *fm = cache_file_get_meta(f);
    assert_int_equal(fm->version, CACHE_FORMAT_VERSION_RING);
    assert_int_equal(fm->ring_from, 16);
    assert_int_equal(fm->ring.window, RING_WINDOW);
    assert_memory_equal(fm->ring.sliding, ring.sliding, RING_LAYERS);
    /* Load into fresh blocks, the ones before ring_from trimmed first. */
    for (int i = 0; i < 6; i++) {
        assert_int_equal(kv_pool_alloc(pool, &b[i], &err), SEM_OK);
        if (i < 4) assert_int_equal(kv_pool_trim(pool, &b[i], &err), SEM_OK);
    }
    kn_kv_view vb = kv_pool_view(pool, b);
    cache_file_load(f, RING_TOKENS, &vb, kv_pool_layer_stride(pool));
    cache_file_close(f);
    for (uint32_t p = 0; p < RING_TOKENS; p++) {
        ring_row_equal(pool, a, b, 2, p);
        if (p >= 16) ring_row_equal(pool, a, b, 0, p), ring_row_equal(pool, a, b, 1, p);
    }
    for (int i = 0; i < 6; i++) kv_pool_unref(pool, a[i]), kv_pool_unref(pool, b[i]);
    assert_int_equal(kv_pool_bytes_used(pool), 0);
    kv_pool_destroy(pool);
}

static void test_ring_round_trip(void **state)
{
    (void)state;
    char path[512];
    path_in(path, sizeof path, "ring.safetensors");
    for (size_t i = 0; i < N_DTYPES; i++) ring_round_trip(ALL_DTYPES[i], path);
}

static sem_status open_ring_status(const char *path, const kv_ring *r, sem_err *err)
{
    kv_geometry g = geo_make(KN_KV_F16, RING_LAYERS, 2, 64, 64, RING_BT);
    cache_file *f = NULL;
    sem_status s = cache_file_open_ring(path, &g, r, FP, &f, err);
    cache_file_close(f);
    return s;
}

static void test_ring_incompatible_and_corrupt(void **state)
{
    (void)state;
    char path[512], bad[512];
    path_in(path, sizeof path, "ring.safetensors");
    path_in(bad, sizeof bad, "ring-bad.safetensors");
    ring_round_trip(KN_KV_F16, path);
    sem_err err;
    kv_ring other = ring_make(RING_WINDOW * 2), swapped = ring_make(RING_WINDOW), none = ring_make(0);
    swapped.sliding[1] = false;
    swapped.sliding[2] = true;
    assert_int_equal(open_ring_status(path, &other, &err), SEM_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "incompatible: sliding window 6, expected 12"));
    assert_int_equal(open_ring_status(path, &swapped, &err), SEM_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "incompatible: layer 1 is sliding"));
    assert_int_equal(open_ring_status(path, &none, &err), SEM_EUNSUPPORTED);
    kv_geometry g = geo_make(KN_KV_F16, RING_LAYERS, 2, 64, 64, RING_BT);
    EXPECT_OPEN(path, &g, FP, SEM_EUNSUPPORTED, "sliding window"); /* a reader expecting no ring */
    EXPECT_OPEN(path, NULL, NULL, SEM_OK, NULL);
    static const struct {
        kv_edit e;
        sem_status want;
    } cases[] = {
        {{"sliding_window", NULL}, SEM_ECORRUPT},
        {{"sliding_window", "0"}, SEM_ECORRUPT},
        {{"sliding_window", "x"}, SEM_ECORRUPT},
        {{"sliding_window", "16777217"}, SEM_ECORRUPT},
        {{"sliding_layers", NULL}, SEM_ECORRUPT},
        {{"sliding_layers", "11"}, SEM_ECORRUPT},   /* not one per layer */
        {{"sliding_layers", "1100"}, SEM_ECORRUPT},
        {{"sliding_layers", "1x0"}, SEM_ECORRUPT},
        {{"sliding_layers", "111"}, SEM_ECORRUPT},  /* no global layer */
        {{"sliding_layers", "000"}, SEM_ECORRUPT},  /* no sliding layer */
        {{"sliding_layers", "011"}, SEM_ECORRUPT},  /* layer 2's tensors then have the wrong shape */
        {{"ring_from", NULL}, SEM_ECORRUPT},
        {{"ring_from", "5"}, SEM_ECORRUPT},         /* not a block boundary */
        {{"ring_from", "24"}, SEM_ECORRUPT},        /* past n_tokens */
        {{"ring_from", "12"}, SEM_ECORRUPT},        /* the tensors hold 16.. */
        {{"ring_from", "-4"}, SEM_ECORRUPT},
        {{"version", "1"}, SEM_ECORRUPT},           /* then every layer must hold every position */
        {{"sliding_window", "7"}, SEM_OK},          /* consistent; a reader with window 6 says incompatible */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rewrite_header(path, bad, edit_meta, &cases[i].e, 0);
        sem_status st = open_status(bad, NULL, NULL, &err);
        if (st != cases[i].want)
            fail_msg("%s='%s': got %s (%s), expected %s", cases[i].e.key, cases[i].e.value ? cases[i].e.value : "(deleted)",
                     sem_status_name(st), st ? err.msg : "", sem_status_name(cases[i].want));
    }
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-samples")) return write_samples(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_dtype),
        cmocka_unit_test(test_round_trip_ragged_float),
        cmocka_unit_test(test_round_trip_empty),
        cmocka_unit_test(test_rewrite_replaces),
        cmocka_unit_test(test_bad_crc),
        cmocka_unit_test(test_truncated_every_byte),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_wrong_geometry_and_fingerprint),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_write_rejects_bad_args),
        cmocka_unit_test(test_failed_write_leaves_nothing),
        cmocka_unit_test(test_killed_writers),
        cmocka_unit_test(test_agent_id_table),
        cmocka_unit_test(test_quarantine),
        cmocka_unit_test(test_ring_round_trip),
        cmocka_unit_test(test_ring_incompatible_and_corrupt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
