/* fuzz_cache_meta.c - fuzz target for agent cache files (cache/cache.h):
 * arbitrary bytes are written to a temp file, then cache_file_read_meta
 * and cache_file_open verify it; a file that opens is loaded into a pool
 * of its own geometry, and read_meta must agree with open. Any crash,
 * sanitizer report, hang or leak is a bug; errors are fine.
 *
 * Built two ways (fuzz/CMakeLists.txt):
 *  - with -fsanitize=fuzzer (SEM_FUZZ=ON, clang): the libFuzzer entry point;
 *  - with FUZZ_STANDALONE: a plain driver for ctest that replays the files
 *    given on the command line, or else writes real cache files (every KV
 *    dtype, through a kv_pool and cache_file_write) as seeds and mutates
 *    them for SEM_FUZZ_ITERS rounds (default 3000) from a fixed seed: half
 *    the rounds swap a metadata value (3/4) or a tensor field (1/4) for a
 *    hostile one and
 *    re-render the header (the CRC still matches, so the deep checks run),
 *    half flip, insert, delete or truncate bytes.
 *
 * Thread: single-threaded.
 */
#include "cache/cache.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Loads a verified file into a pool of its geometry, when that is small. */
static void load_into_pool(const cache_file *f)
{
    const cache_file_meta *m = cache_file_get_meta(f);
    size_t bb = kv_block_bytes(&m->geo);
    size_t nb =
        ((size_t)m->n_tokens + (size_t)m->geo.block_tokens - 1) / (size_t)m->geo.block_tokens + 1;
    if (bb == 0 || bb > ((size_t)16 << 20) / nb) return;
    kv_pool *pool;
    sem_err err;
    kv_pool_params pp = {.budget_bytes = bb * nb};
    if (kv_pool_create(&m->geo, &pp, &pool, &err) != SEM_OK) return;
    int32_t *ids = calloc(nb, sizeof *ids);
    for (size_t i = 0; i < nb; i++) {
        if (kv_pool_alloc(pool, &ids[nb - 1 - i], &err) != SEM_OK) abort();
    }
    kn_kv_view v = kv_pool_view(pool, ids);
    cache_file_load(f, m->n_tokens, &v, kv_pool_layer_stride(pool));
    for (size_t i = 0; i < nb; i++) kv_pool_unref(pool, ids[i]);
    free(ids);
    kv_pool_destroy(pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/fuzz_cache_meta.%ld.safetensors",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid());
    FILE *fp = fopen(path, "wb");
    if (!fp) abort();
    if (size && fwrite(data, 1, size, fp) != size) abort();
    if (fclose(fp) != 0) abort();
    sem_err err;
    cache_file_meta m;
    sem_status ms = cache_file_read_meta(path, &m, &err);
    cache_file *f = NULL;
    sem_status os = cache_file_open(path, NULL, NULL, &f, &err);
    if (os == SEM_OK) {
        /* open checks a superset of read_meta, and both read the same header */
        if (ms != SEM_OK || memcmp(&m, cache_file_get_meta(f), sizeof m) != 0) abort();
        load_into_pool(f);
        cache_file_close(f);
    } else if (os != SEM_ECORRUPT && os != SEM_EUNSUPPORTED && os != SEM_ENOMEM) {
        abort(); /* a file we could write and read back is never an i/o error */
    }
    unlink(path);
    return 0;
}

#ifdef FUZZ_STANDALONE

/* xorshift64; the state is passed down (no hidden globals) */
static size_t rnd(uint64_t *st, size_t n)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return n ? (size_t)(*st % n) : 0;
}

typedef struct bytes {
    uint8_t *p;
    size_t n;
} bytes;

static bytes read_file(const char *path)
{
    bytes b = {0};
    char *d;
    size_t n;
    sem_err err;
    if (fs_read_file(path, (size_t)1 << 28, &d, &n, &err) != SEM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    b.p = (uint8_t *)d;
    b.n = n;
    return b;
}

/* ---- seeds: real cache files -------------------------------------------- */

static bytes make_seed(const char *dir, kn_kv_dtype dt, int32_t hd, uint32_t n_tokens, uint64_t *st)
{
    kv_geometry g = {.n_layers = 2,
                     .n_kv_heads = 2,
                     .head_dim = hd,
                     .v_head_dim = hd,
                     .block_tokens = 4,
                     .dtype = dt};
    kv_pool *pool;
    sem_err err;
    kv_pool_params pp = {.budget_bytes = kv_block_bytes(&g) * 8};
    if (kv_pool_create(&g, &pp, &pool, &err) != SEM_OK) abort();
    int32_t ids[8], tokens[32];
    for (int i = 0; i < 8; i++) {
        if (kv_pool_alloc(pool, &ids[7 - i], &err) != SEM_OK) abort();
    }
    float k[2 * 128], v[2 * 128];
    for (int32_t l = 0; l < g.n_layers; l++) {
        kn_kv_view view = kv_pool_view(pool, ids);
        view.k_offset += (size_t)l * kv_pool_layer_stride(pool);
        view.v_offset += (size_t)l * kv_pool_layer_stride(pool);
        for (uint32_t p = 0; p < n_tokens; p++) {
            for (int i = 0; i < 2 * hd; i++) {
                k[i] = (float)rnd(st, 2000) / 250.0f - 4.0f;
                v[i] = (float)rnd(st, 2000) / 250.0f - 4.0f;
            }
            kn_kv_store(&view, (int32_t)p, k, v);
        }
    }
    for (uint32_t i = 0; i < n_tokens; i++) tokens[i] = (int32_t)rnd(st, 100000);
    cache_file_meta m = {.geo = g, .n_tokens = n_tokens};
    snprintf(m.agent_id, sizeof m.agent_id, "agent-%s", kn_kv_dtype_name(dt));
    snprintf(m.model_id, sizeof m.model_id, "mlx-community/Fuzz");
    snprintf(m.fingerprint, sizeof m.fingerprint, "00ff00ff");
    char path[600];
    snprintf(path, sizeof path, "%s/seed.safetensors", dir);
    kn_kv_view view = kv_pool_view(pool, ids);
    if (cache_file_write(path, &m, tokens, &view, kv_pool_layer_stride(pool), &err) != SEM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    bytes b = read_file(path);
    unlink(path);
    for (int i = 0; i < 8; i++) kv_pool_unref(pool, ids[i]);
    kv_pool_destroy(pool);
    return b;
}

/* ---- structured mutation: re-render the header with a hostile value ------ */

static const char *const KEYS[] = {"format",      "version",      "agent_id",   "model_id",
                                   "fingerprint", "n_layers",     "n_kv_heads", "head_dim",
                                   "v_head_dim",  "block_tokens", "kv_dtype",   "bits",
                                   "group_size",  "n_tokens",     "crc32c"};
static const char *const VALUES[] = {"",
                                     "0",
                                     "1",
                                     "2",
                                     "4",
                                     "8",
                                     "16",
                                     "32",
                                     "64",
                                     "65",
                                     "128",
                                     "1024",
                                     "1025",
                                     "65536",
                                     "65537",
                                     "16777216",
                                     "16777217",
                                     "4294967295",
                                     "4294967296",
                                     "99999999999999999999",
                                     "-1",
                                     "+1",
                                     "01",
                                     " 1",
                                     "1 ",
                                     "1e3",
                                     "0x10",
                                     "f16",
                                     "bf16",
                                     "q8",
                                     "q4",
                                     "f32",
                                     "q3",
                                     "semantic-kv",
                                     "../x",
                                     ".a",
                                     "x",
                                     "00000000",
                                     "ffffffff",
                                     "FFFFFFFF",
                                     "0123456789abcdef",
                                     "\xc3\xa9"};
static const char *const TENSOR_FIELDS[] = {"dtype", "shape", "data_offsets"};

static json_t *hostile_json(uint64_t *st)
{
    switch (rnd(st, 6)) {
    case 0: return json_integer((json_int_t)rnd(st, 70) - 3);
    case 1: return json_pack("[I]", (json_int_t)rnd(st, 300));
    case 2:
        return json_pack("[I,I,I]", (json_int_t)rnd(st, 20), (json_int_t)rnd(st, 5),
                         (json_int_t)rnd(st, 130));
    case 3: return json_pack("[I,I]", (json_int_t)rnd(st, 5000), (json_int_t)rnd(st, 5000));
    case 4: return json_string(rnd(st, 2) ? "F16" : "U32");
    default: return json_null();
    }
}

static void mutate_header(bytes *b, uint64_t *st)
{
    if (b->n < 8) return;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b->p[i];
    if (hl > b->n - 8) return;
    json_t *h = json_loadb((const char *)b->p + 8, (size_t)hl, 0, NULL);
    if (!json_is_object(h)) {
        json_decref(h);
        return;
    }
    json_t *meta = json_object_get(h, "__metadata__");
    size_t which = rnd(st, 4);
    if (which < 3 && json_is_object(meta)) {
        const char *key = KEYS[rnd(st, sizeof KEYS / sizeof KEYS[0])];
        if (rnd(st, 8) == 0) json_object_del(meta, key);
        else
            json_object_set_new(meta, key,
                                json_string(VALUES[rnd(st, sizeof VALUES / sizeof VALUES[0])]));
    } else {
        size_t n = json_object_size(h), pick = rnd(st, n ? n : 1), i = 0;
        const char *k;
        json_t *v;
        json_object_foreach(h, k, v)
        {
            if (i++ != pick || !json_is_object(v) || !strcmp(k, "__metadata__")) continue;
            json_object_set_new(v, TENSOR_FIELDS[rnd(st, 3)], hostile_json(st));
            break;
        }
    }
    char *js = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    if (!js) return;
    size_t jl = strlen(js), data = b->n - 8 - (size_t)hl, n = 8 + jl + data;
    uint8_t *out = malloc(n);
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)jl >> (8 * i));
    memcpy(out + 8, js, jl);
    memcpy(out + 8 + jl, b->p + 8 + hl, data);
    free(js);
    free(b->p);
    b->p = out;
    b->n = n;
}

/* ---- byte-level mutation --------------------------------------------------- */

static void mutate_bytes(bytes *b, uint64_t *st)
{
    static const char *const TOK[] = {"\"", "0", "9999999999", "q4", "-", "\\u0000",
                                      ",",  "}", "{",          "[",  "]", ":"};
    int rounds = 1 + (int)rnd(st, 3);
    for (int r = 0; r < rounds && b->n > 0; r++) {
        /* bias towards the header, where the parsing happens */
        size_t at = rnd(st, 4) ? rnd(st, b->n < 1024 ? b->n : 1024) : rnd(st, b->n);
        switch (rnd(st, 8)) {
        case 0:
        case 4:
        case 5: b->p[at] ^= (uint8_t)(1u << rnd(st, 8)); break;
        case 1: b->p[rnd(st, 8)] = (uint8_t)rnd(st, 256); break; /* the length field */
        case 2: b->n = at; break;
        case 3: {
            size_t k = rnd(st, b->n - at + 1) % 16;
            memmove(b->p + at, b->p + at + k, b->n - at - k);
            b->n -= k;
            break;
        }
        default: {
            const char *t = TOK[rnd(st, sizeof TOK / sizeof TOK[0])];
            size_t k = strlen(t);
            b->p = realloc(b->p, b->n + k);
            memmove(b->p + at + k, b->p + at, b->n - at);
            memcpy(b->p + at, t, k);
            b->n += k;
        }
        }
    }
}

static int run_file(const char *path)
{
    bytes b = read_file(path);
    LLVMFuzzerTestOneInput(b.p, b.n);
    free(b.p);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        int rc = 0;
        for (int i = 1; i < argc; i++) rc |= run_file(argv[i]);
        return rc;
    }
    const char *iters_env = getenv("SEM_FUZZ_ITERS");
    long iters = iters_env ? strtol(iters_env, NULL, 10) : 3000;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/fuzz_cache_meta.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) abort();
    uint64_t state = 0x9E3779B97F4A7C15ull, *st = &state;
    static const kn_kv_dtype dts[] = {KN_KV_F16, KN_KV_BF16, KN_KV_Q8, KN_KV_Q4, KN_KV_F32};
    bytes seeds[10];
    size_t n_seeds = 0;
    for (size_t i = 0; i < 5; i++) {
        seeds[n_seeds++] = make_seed(dir, dts[i], 64, 6, st);
        seeds[n_seeds++] = make_seed(dir, dts[i], 128, i, st); /* 0..4 tokens */
    }
    for (size_t i = 0; i < n_seeds; i++) LLVMFuzzerTestOneInput(seeds[i].p, seeds[i].n);
    for (long it = 0; it < iters; it++) {
        const bytes *s = &seeds[rnd(st, n_seeds)];
        bytes cur = {malloc(s->n), s->n};
        memcpy(cur.p, s->p, s->n);
        if (rnd(st, 2)) {
            mutate_header(&cur, st);
            if (rnd(st, 4) == 0) mutate_header(&cur, st);
        } else {
            mutate_bytes(&cur, st);
        }
        LLVMFuzzerTestOneInput(cur.p, cur.n);
        free(cur.p);
    }
    fprintf(stderr, "fuzz_cache_meta: %zu seeds, %ld mutated files, no crash\n", n_seeds, iters);
    for (size_t i = 0; i < n_seeds; i++) free(seeds[i].p);
    rmdir(dir);
    return 0;
}

#endif /* FUZZ_STANDALONE */
