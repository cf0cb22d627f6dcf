/* bench_kernels.c - throwaway benchmark of the matvec (decode) path: GB/s
 * of weight bytes streamed by kn_matmul for Q4 g64 (and other formats),
 * reference vs SIMD, 1 and 2 threads, against a plain multithreaded read
 * of the same bytes (STREAM-like sum). "cold" rotates over enough copies of
 * the matrix (>= 256 MiB) that every call streams from DRAM, as decoding a
 * whole model does; "hot" repeats one matrix (cache-resident if small).
 *
 * Not a test (no test_ prefix, no asserts on time); built only by hand:
 *   cc -O2 -std=c17 -D_GNU_SOURCE -Isrc -Itests -Itests/kernels \
 *      tests/kernels/bench_kernels.c \
 *      build/<dir>/libsemantic_core.a -lcmocka -ljansson -lpthread -lm
 * One-thread figures use the thread's CPU time (robust to preemption on a
 * shared host); two-thread figures are wall time.
 * Usage: bench_kernels [seconds_per_case]
 *        bench_kernels secs q4|q8|f16 rows cols [threads [n_tokens]]
 *          (BENCH_OPS=<isa> picks the table, e.g. avx512: packed Q4 tiles)
 *        bench_kernels secs model
 *        bench_kernels secs attn [n_ctx [layers [threads]]]
 */
#include "kn_test.h"

#include <immintrin.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Clock of a measurement: thread CPU time for one thread (robust to
 * preemption on a shared host), wall time otherwise. */
static double (*g_now)(void) = clk_now_s;

typedef struct rd_job {
    const uint8_t *p;
    size_t n;
    uint64_t out[16];
} rd_job;

__attribute__((target("avx2"))) static void read_part(void *ctx, int ith, int nth)
{
    rd_job *j = ctx;
    size_t lo, hi;
    tp_split(j->n / 128, 1, ith, nth, &lo, &hi);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = lo; i < hi; i++) {
        const __m256i *v = (const __m256i *)(j->p + i * 128);
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(v));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + 3));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    j->out[ith] = (uint64_t)_mm256_extract_epi64(s, 0) + (uint64_t)_mm256_extract_epi64(s, 3);
}

static bool has_avx512(void)
{
    kn_cpu_features f = kn_cpu_detect();
    return f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni;
}

/* The x86 table whose isa is name (BENCH_OPS); avx2 when unset or unknown. */
static const kn_ops *ops_named(const char *name)
{
    const kn_ops *all[] = {kn_ops_avx2(), kn_ops_avx2_exact(), kn_ops_avx2_int8(),
                           kn_ops_avx512(), kn_ops_avx512_exact(), kn_ops_avx512_int8()};
    for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
        if (all[i] && !strcmp(all[i]->isa, name)) return all[i];
    return kn_ops_avx2();
}

/* GB/s of a plain read of `bytes` per call, rotating over `copies`. */
static double bench_read(tp_pool *pool, uint8_t *arena, size_t bytes, size_t copies, double secs)
{
    size_t stride = (bytes + 4095) & ~(size_t)4095;
    double t0 = g_now(), t;
    size_t calls = 0;
    rd_job j = {0};
    do {
        j.p = arena + (calls % copies) * stride;
        j.n = bytes & ~(size_t)127;
        tp_run(pool, read_part, &j);
        calls++;
    } while ((t = g_now() - t0) < secs);
    return (double)calls * (double)bytes / t / 1e9;
}

typedef struct mat {
    kn_weight w[1024];
    size_t copies, bytes;
    uint8_t *arena;
} mat;

/* copies of one random Q4/Q8/F16 weight laid out back to back */
static void make_mat(mat *m, kn_dtype dt, size_t rows, size_t cols, size_t copies)
{
    kt_rng r = {5};
    kt_weight k = kt_make_weight(&r, dt, rows, cols, KN_F16, 64, 0);
    size_t dbytes = dt == KN_Q4 ? rows * cols / 2 : dt == KN_Q8 ? rows * cols : rows * cols * 2;
    size_t sbytes = dt == KN_F16 ? 0 : rows * (cols / 64) * 2;
    size_t one = (dbytes + 2 * sbytes + 4095) & ~(size_t)4095;
    m->copies = copies;
    m->bytes = dbytes + 2 * sbytes;
    m->arena = sem_alloc_aligned(one * copies);
    for (size_t i = 0; i < copies; i++) {
        uint8_t *b = m->arena + i * one;
        memcpy(b, k.w.data, dbytes);
        if (sbytes) {
            memcpy(b + dbytes, k.w.scales, sbytes);
            memcpy(b + dbytes + sbytes, k.w.biases, sbytes);
        }
        m->w[i] = k.w;
        m->w[i].data = b;
        m->w[i].scales = sbytes ? b + dbytes : NULL;
        m->w[i].biases = sbytes ? b + dbytes + sbytes : NULL;
    }
    kt_free_weight(&k);
}

/* GB/s of weight bytes for n_tokens == 1; for more tokens, GMAC/s. */
static double bench_mm_n(kn_ctx *kc, mat *m, size_t copies, double secs, size_t n_tokens)
{
    size_t cols = m->w[0].cols, rows = m->w[0].rows;
    float *x = calloc(cols * n_tokens, 4), *y = calloc(rows * n_tokens, 4);
    kt_rng r = {3};
    kt_fill(&r, x, cols * n_tokens, 1.0f);
    double t0 = g_now(), t;
    size_t calls = 0;
    do {
        kn_matmul(kc, &m->w[calls % copies], x, cols, y, rows, n_tokens);
        calls++;
    } while ((t = g_now() - t0) < secs);
    free(x);
    free(y);
    if (n_tokens > 1) return (double)calls * (double)(rows * cols * n_tokens) / t / 1e9;
    return (double)calls * (double)m->bytes / t / 1e9;
}

/* Best of 5 short runs: the host is shared, and the best run is the one
 * least disturbed by other work. */
static double bench_mm(kn_ctx *kc, mat *m, size_t copies, double secs)
{
    double best = 0;
    for (int i = 0; i < 5; i++) {
        double v = bench_mm_n(kc, m, copies, secs / 5, 1);
        best = v > best ? v : best;
    }
    return best;
}

static double best_read(tp_pool *pool, uint8_t *arena, size_t bytes, size_t copies, double secs)
{
    double best = 0;
    for (int i = 0; i < 5; i++) {
        double v = bench_read(pool, arena, bytes, copies, secs / 5);
        best = v > best ? v : best;
    }
    return best;
}


/* SmolLM2-135M-shaped decode: 30 layers of q, k, v, o, gate, up, down
 * plus the tied lm_head, all Q4 g64 in distinct memory, one token at a
 * time; compared with a plain read of the same bytes. Best of `reps`. */
static void bench_model(tp_pool *pool, const kn_ops *ops, double secs, bool pack)
{
    static const size_t shp[8][2] = {{576, 576}, {192, 576}, {192, 576}, {576, 576},
                                     {1536, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
    enum { LAYERS = 30 };
    size_t n_w = LAYERS * 7 + 1, total = 0;
    kn_weight *ws = calloc(n_w, sizeof *ws);
    size_t *off = calloc(n_w, sizeof *off);
    for (size_t i = 0; i < n_w; i++) {
        const size_t *sh = shp[i == n_w - 1 ? 7 : i % 7];
        off[i] = total;
        total += (sh[0] * sh[1] / 2 + sh[0] * (sh[1] / 64) * 4 + 63) & ~(size_t)63;
    }
    uint8_t *arena = sem_alloc_aligned(total);
    kt_rng r = {11};
    for (size_t i = 0; i < total / 8; i++) ((uint64_t *)arena)[i] = kt_next(&r) & 0x3bff3bff3bff3bffull;
    for (size_t i = 0; i < n_w; i++) {
        const size_t *sh = shp[i == n_w - 1 ? 7 : i % 7];
        uint8_t *b = arena + off[i];
        size_t db = sh[0] * sh[1] / 2, sb = sh[0] * (sh[1] / 64) * 2;
        ws[i] = (kn_weight){.dtype = KN_Q4, .rows = sh[0], .cols = sh[1], .data = b,
                            .scales = b + db, .biases = b + db + sb, .scale_dtype = KN_F16,
                            .group_size = 64, .bits = 4};
    }
    kn_ctx *kc = kt_ctx(ops, pool, 1, 1536);
    uint8_t *packed = pack ? sem_alloc_aligned(total) : NULL;
    for (size_t i = 0, o = 0; pack && i < n_w; i++) {
        size_t pb = kn_packed_bytes(kc, &ws[i]);
        kn_pack(kc, &ws[i], packed + o);
        ws[i].packed = packed + o;
        o += (pb + 63) & ~(size_t)63;
    }
    float *x = calloc(1536, 4), *y = calloc(49152, 4);
    kt_fill(&r, x, 1536, 1.0f);
    double best_tok = 1e9, best_rd = 1e9, best_ops = 1e9;
    /* one thread: CPU time of this thread (robust to preemption on a
     * shared host); more: wall time */
    bool cpu = tp_n_threads(pool) == 1;
    double (*now)(void) = cpu ? thread_cpu_s : clk_now_s;
    double start = clk_now_s();
    for (int rep = 0; rep < 200; rep++) {
        double t0 = now();
        for (size_t i = 0; i < n_w; i++) kn_matmul(kc, &ws[i], x, 1536, y, 49152, 1);
        double t1 = now();
        rd_job j = {.p = arena, .n = total & ~(size_t)127};
        tp_run(pool, read_part, &j);
        double t2 = now();
        for (size_t i = 0; i < n_w; i++) { /* the same bytes, one pool pass per matrix */
            rd_job ji = {.p = arena + off[i], .n = (i + 1 < n_w ? off[i + 1] - off[i] : total - off[i]) & ~(size_t)127};
            tp_run(pool, read_part, &ji);
        }
        double t3 = now();
        best_tok = t1 - t0 < best_tok ? t1 - t0 : best_tok;
        best_rd = t2 - t1 < best_rd ? t2 - t1 : best_rd;
        best_ops = t3 - t2 < best_ops ? t3 - t2 : best_ops;
        if (clk_now_s() - start > secs) break;
    }
    printf("model q4 g64 SmolLM2-135M shape, %s%s, %d thr (%s): %.1f MB/token, matmuls %.2f ms/token "
           "(%.2f GB/s, %.0f tok/s), plain read %.2f ms (%.2f GB/s; per matrix %.2f ms): %.0f%% of roofline\n",
           ops->isa, pack ? " packed" : "", tp_n_threads(pool), cpu ? "thread cpu time" : "wall", (double)total / 1e6, best_tok * 1e3, (double)total / best_tok / 1e9,
           1.0 / best_tok, best_rd * 1e3, (double)total / best_rd / 1e9, best_ops * 1e3, 100 * best_rd / best_tok);
    kn_ctx_destroy(kc);
    free(x);
    free(y);
    free(ws);
    free(off);
    sem_free_aligned(arena);
    sem_free_aligned(packed);
}

/* Decode attention of one token over n_ctx positions, SmolLM2 heads
 * (9 query heads, 3 KV heads, head_dim 64), per KV format: microseconds
 * per layer and GB/s of KV bytes read. layers > 1 rotates over that many
 * separate KV caches (pool-shaped blocks of 256 tokens), so a call reads
 * its KV from DRAM as a decode step of a whole model does. */
static void bench_attn(tp_pool *pool, size_t n_ctx, size_t layers, double secs)
{
    kn_kv_dtype dts[] = {KN_KV_F16, KN_KV_BF16, KN_KV_Q8, KN_KV_Q4, KN_KV_F32};
    size_t bt = layers > 1 ? 256 : 16;
    const char *only = getenv("BENCH_KV"); /* one format by name */
    for (int di = 0; di < 5; di++) {
        if (only && strcmp(only, kn_kv_dtype_name(dts[di]))) continue;
        kn_kv_view v = {.dtype = dts[di], .n_kv_heads = 3, .head_dim = 64, .v_head_dim = 64,
                        .block_tokens = (int32_t)bt};
        v.k_row_bytes = v.v_row_bytes = kn_kv_row_bytes(v.dtype, 64);
        size_t nb = n_ctx / bt + 1;
        v.block_stride = bt * 3 * 2 * v.k_row_bytes;
        v.k_offset = 0;
        v.v_offset = bt * 3 * v.k_row_bytes;
        size_t abytes = layers * nb * v.block_stride;
        uint8_t *arena = sem_alloc_aligned(abytes);
        if (getenv("BENCH_THP")) {
            uintptr_t a0 = ((uintptr_t)arena + (2u << 20) - 1) & ~(uintptr_t)((2u << 20) - 1);
            uintptr_t a1 = ((uintptr_t)arena + abytes) & ~(uintptr_t)((2u << 20) - 1);
            if (a1 > a0) madvise((void *)a0, a1 - a0, MADV_HUGEPAGE);
        }
        int32_t *ids = calloc(layers * nb, sizeof *ids);
        for (size_t i = 0; i < layers * nb; i++) ids[i] = (int32_t)((i * 7) % (layers * nb));
        v.base = arena;
        kt_rng r = {1};
        float k[192], vv[192], q[576], out[576];
        for (size_t l = 0; l < layers; l++) {
            v.block_ids = ids + l * nb;
            for (size_t p = 0; p < n_ctx; p++) {
                kt_fill(&r, k, 192, 1.0f);
                kt_fill(&r, vv, 192, 1.0f);
                kn_kv_store(&v, (int32_t)p, k, vv);
            }
        }
        kt_fill(&r, q, 576, 1.0f);
        if (getenv("BENCH_THP")) {
            FILE *f = fopen("/proc/self/smaps_rollup", "r");
            char l[256];
            while (f && fgets(l, sizeof l, f))
                if (strstr(l, "AnonHuge")) fputs(l, stdout);
            if (f) fclose(f);
        }
        int32_t pos = (int32_t)n_ctx - 1;
        const kn_ops *tabs[3] = {kn_ops_ref(), kn_ops_avx2(), kn_ops_avx512()};
        int n_tabs = has_avx512() ? 3 : 2;
        for (int ti = layers > 1; ti < n_tabs; ti++) {
            kn_ctx *kc = kt_ctx(tabs[ti], pool, 1, 64);
            double t0 = g_now(), t;
            size_t calls = 0;
            do {
                v.block_ids = ids + (calls % layers) * nb;
                kn_attention(kc, &v, q, &pos, 1, 9, 0.125f, 0, 0, out);
                calls++;
            } while ((t = g_now() - t0) < secs);
            double per = t / (double)calls;
            printf("attention decode kv=%-4s ctx=%zu layers=%zu thr=%d %-4s: %8.1f us/layer (%.2f GB/s of KV)\n",
                   kn_kv_dtype_name(dts[di]), n_ctx, layers, tp_n_threads(pool), tabs[ti]->isa,
                   per * 1e6, (double)(n_ctx * 2 * 3 * v.k_row_bytes) / per / 1e9);
            kn_ctx_destroy(kc);
        }
        sem_free_aligned(arena);
        free(ids);
    }
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.5;
    sem_err err;
    tp_pool *pools[3] = {NULL, NULL, NULL};
    tp_create(1, &pools[1], &err);
    tp_create(2, &pools[2], &err);
    if (argc > 2 && !strcmp(argv[2], "attn")) {
        size_t layers = argc > 4 ? (size_t)atol(argv[4]) : 1;
        int nt = argc > 5 && atoi(argv[5]) == 2 ? 2 : 1;
        if (nt == 1) g_now = thread_cpu_s;
        bench_attn(pools[nt], argc > 3 ? (size_t)atol(argv[3]) : 4096, layers, secs);
        return 0;
    }
    if (argc > 2 && !strcmp(argv[2], "model")) {
        bool has512 = has_avx512();
        const kn_ops *tabs[4] = {kn_ops_avx2_exact(), kn_ops_avx2(), kn_ops_avx2_int8(), kn_ops_avx512_int8()};
        for (int nt = 1; nt <= 2; nt++) {
            for (int i = 0; i < (has512 ? 4 : 3); i++) bench_model(pools[nt], tabs[i], secs, false);
            if (has512) bench_model(pools[nt], kn_ops_avx512(), secs, true);
            if (has512) bench_model(pools[nt], kn_ops_avx512_int8(), secs, true);
        }
        return 0;
    }
    if (argc > 4) { /* one case: secs dtype(q4|q8|f16) rows cols [threads] */
        kn_dtype dt = argv[2][0] == 'f' ? KN_F16 : argv[2][1] == '8' ? KN_Q8 : KN_Q4;
        size_t rows = (size_t)atol(argv[3]), cols = (size_t)atol(argv[4]);
        int nt = argc > 5 ? atoi(argv[5]) : 1;
        size_t ntok = argc > 6 ? (size_t)atol(argv[6]) : 1;
        mat *m = calloc(1, sizeof *m);
        make_mat(m, dt, rows, cols, 1);
        const char *on = getenv("BENCH_OPS");
        const kn_ops *one = ops_named(on);
        kn_ctx *kc = kt_ctx(one, pools[nt], ntok, cols);
        size_t pb = kn_packed_bytes(kc, &m->w[0]);
        if (pb) { /* BENCH_OPS=avx512: the packed tiles */
            void *pk = sem_alloc_aligned(pb);
            kn_pack(kc, &m->w[0], pk);
            m->w[0].packed = pk;
        }
        if (ntok > 1 && on) {
            printf("%s %zux%zu thr=%d tokens=%zu %s%s: %.2f GMAC/s\n", kn_dtype_name(dt), rows, cols, nt, ntok,
                   one->isa, pb ? " packed" : "", bench_mm_n(kc, m, 1, secs, ntok));
            return 0;
        }
        if (ntok > 1) {
            const kn_ops *tabs[2] = {kn_ops_ref(), kn_ops_avx2()};
            for (int i = 0; i < 2; i++) {
                kn_ctx *k2 = kt_ctx(tabs[i], pools[nt], ntok, cols);
                printf("%s %zux%zu thr=%d tokens=%zu %s: %.2f GMAC/s\n", kn_dtype_name(dt), rows,
                       cols, nt, ntok, tabs[i]->isa, bench_mm_n(k2, m, 1, secs, ntok));
                kn_ctx_destroy(k2);
            }
            return 0;
        }
        struct timespec c0, c1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
        double t0 = clk_now_s();
        double gbs = bench_mm(kc, m, 1, secs);
        double wall = clk_now_s() - t0;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) * 1e-9;
        printf("%s %zux%zu thr=%d hot %.2f GB/s wall, %.2f GB/s per caller-thread cpu second\n",
               kn_dtype_name(dt), rows, cols, nt, gbs, gbs * wall / cpu);
        return 0;
    }
    struct { size_t rows, cols; } shapes[] = {{1536, 576}, {576, 1536}, {2048, 8192}, {8192, 2048}};
    kn_dtype dts[] = {KN_Q4, KN_Q8, KN_F16};
    const kn_ops *tables[] = {kn_ops_ref(), kn_ops_avx2_exact(), kn_ops_avx2(), kn_ops_avx2_int8()};
    for (size_t d = 0; d < 3; d++) {
        for (size_t s = 0; s < 4; s++) {
            if (dts[d] == KN_F16 && s != 2) continue;
            mat *m = calloc(1, sizeof *m);
            size_t rows = shapes[s].rows, cols = shapes[s].cols;
            size_t one = dts[d] == KN_Q4 ? rows * cols / 2 : dts[d] == KN_Q8 ? rows * cols : rows * cols * 2;
            size_t copies = (256u << 20) / one + 1;
            copies = copies > 1024 ? 1024 : copies;
            make_mat(m, dts[d], rows, cols, copies);
            size_t stride = (m->bytes + 4095) & ~(size_t)4095;
            for (int nt = 1; nt <= 2; nt++) {
                g_now = nt == 1 ? thread_cpu_s : clk_now_s;
                double rd_hot = best_read(pools[nt], m->arena, m->bytes, 1, secs);
                double rd_cold = best_read(pools[nt], m->arena, m->bytes, copies, secs);
                (void)stride;
                for (size_t ti = 0; ti < 4; ti++) {
                    if (!tables[ti]) continue;
                    if (ti == 0 && (rows * cols > 4000000 || dts[d] != KN_Q4)) continue; /* ref is slow */
                    kn_ctx *kc = kt_ctx(tables[ti], pools[nt], 1, cols);
                    double hot = bench_mm(kc, m, 1, secs);
                    double cold = bench_mm(kc, m, copies, secs);
                    printf("%-4s %5zux%-5zu %-9s thr=%d %s hot %6.2f GB/s (read %6.2f, %4.0f%%)  "
                           "cold %6.2f GB/s (read %6.2f, %4.0f%%)\n",
                           kn_dtype_name(dts[d]), rows, cols, tables[ti]->isa, nt,
                           nt == 1 ? "cpu " : "wall", hot, rd_hot,
                           100 * hot / rd_hot, cold, rd_cold, 100 * cold / rd_cold);
                    fflush(stdout);
                    kn_ctx_destroy(kc);
                }
            }
            sem_free_aligned(m->arena);
            free(m);
        }
    }
    tp_destroy(pools[1]);
    tp_destroy(pools[2]);
    return 0;
}
