/* cpu.c - CPU feature detection, the kernel context and the choice of the
 * dispatch table (and of the f32 -> f16 row conversion, which has no
 * context: kn_f32_to_f16_row).
 *
 * Detection reads CPUID leaves 1 and 7 and, because an instruction set is
 * usable only when the OS saves its registers, XCR0 through XGETBV: YMM
 * state (bits 1-2) for AVX/AVX2/FMA/F16C, and opmask/ZMM state (bits 5-7)
 * for AVX-512. The table is chosen once at kn_ctx_create; the context also
 * owns every scratch buffer the kernels need, so nothing allocates later.
 *
 * Thread: kn_cpu_detect is pure; a context has one owner (the engine).
 */
#include "kernels/kn_impl.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

kn_cpu_features kn_cpu_detect(void)
{
    kn_cpu_features f = {0};
    unsigned a, b, c, d;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 1 || !__get_cpuid(1, &a, &b, &c, &d)) return f;
    bool osxsave = c & (1u << 27), avx = c & (1u << 28);
    if (!osxsave || !avx) return f;
    uint64_t xcr0 = read_xcr0();
    bool ymm_os = (xcr0 & 0x6) == 0x6;
    bool zmm_os = ymm_os && (xcr0 & 0xe0) == 0xe0;
    if (!ymm_os) return f;
    f.fma = c & (1u << 12);
    f.f16c = c & (1u << 29);
    if (max_leaf < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    unsigned max_sub7 = a;
    f.avx2 = b & (1u << 5);
    if (zmm_os) {
        f.avx512f = b & (1u << 16);
        f.avx512bw = b & (1u << 30);
        f.avx512vl = b & (1u << 31);
        f.avx512_vnni = c & (1u << 11);
        if (max_sub7 >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            f.avx512_bf16 = a & (1u << 5);
        }
    }
    return f;
}
#else
kn_cpu_features kn_cpu_detect(void)
{
    kn_cpu_features f = {0};
    return f;
}
#endif

kn_ctx_params kn_ctx_default_params(void)
{
    kn_ctx_params p = {
        .pool = NULL,
        .force_ref = false,
        .q_exact = false,
        .q_int8_act = false,
        .max_tokens = 256,
        .max_cols = 16384,
    };
    return p;
}

/* The best table this CPU can run. */
static const kn_ops *pick_ops(const kn_cpu_features *f, const kn_ctx_params *p)
{
    if (p->force_ref) return kn_ops_ref();
    bool avx2 = f->avx2 && f->fma && f->f16c;
    bool avx512 = avx2 && f->avx512f && f->avx512bw && f->avx512vl && f->avx512_vnni;
    const kn_ops *t = NULL;
    if (avx512)
        t = p->q_int8_act ? kn_ops_avx512_int8() : p->q_exact ? kn_ops_avx512_exact() : kn_ops_avx512();
    if (!t && avx2)
        t = p->q_int8_act ? kn_ops_avx2_int8() : p->q_exact ? kn_ops_avx2_exact() : kn_ops_avx2();
    return t ? t : kn_ops_ref();
}

/* Carves q (or q16), d and gsum for max_tokens x max_cols out of one
 * block. */
static sem_status alloc_qx(kn_ctx *kc, sem_err *err)
{
    size_t toks = kc->params.max_tokens, cols = kc->params.max_cols;
    size_t elems, blocks, q_bytes, d_bytes, s_bytes, total;
    size_t esz = kc->ops->act_bits == 8 ? 1 : 2;
    if (!sem_mul_size(toks, cols, &elems) || !sem_mul_size(elems, esz, &q_bytes) ||
        !sem_mul_size(toks, cols / 32, &blocks) || !sem_mul_size(blocks, 16, &d_bytes) ||
        !sem_mul_size(blocks, 4, &s_bytes))
        return sem_errf(err, SEM_ELIMIT, "kernels: scratch for %zu x %zu overflows", toks, cols);
    q_bytes = (q_bytes + 63) & ~(size_t)63;
    d_bytes = (d_bytes + 63) & ~(size_t)63;
    s_bytes = (s_bytes + 63) & ~(size_t)63;
    if (!sem_add_size(q_bytes, d_bytes, &total) || !sem_add_size(total, s_bytes, &total))
        return sem_errf(err, SEM_ELIMIT, "kernels: scratch for %zu x %zu overflows", toks, cols);
    uint8_t *m = sem_alloc_aligned(total);
    if (!m) return sem_errf(err, SEM_ENOMEM, "kernels: cannot allocate %zu bytes of scratch", total);
    kc->qx_mem = m;
    if (esz == 1) kc->qx.q = (int8_t *)m;
    else kc->qx.q16 = (int16_t *)m;
    kc->qx.d = (float *)(m + q_bytes);
    kc->qx.gsum = (float *)(m + q_bytes + d_bytes);
    return SEM_OK;
}

sem_status kn_ctx_create_with_ops(const kn_ctx_params *p, const kn_ops *ops, kn_ctx **out,
                                  sem_err *err)
{
    if (p->max_tokens == 0 || p->max_cols == 0)
        return sem_errf(err, SEM_EINVAL, "kernels: max_tokens and max_cols must be > 0");
    kn_ctx *kc = calloc(1, sizeof *kc);
    if (!kc) return sem_errf(err, SEM_ENOMEM, "kernels: out of memory");
    kc->params = *p;
    /* round up so the last 32-block of the widest row has its scratch */
    kc->params.max_cols = (p->max_cols + 31) & ~(size_t)31;
    kc->feat = kn_cpu_detect();
    kc->ops = ops;
    kc->pool = p->pool;
    if (ops->uses_qx) {
        sem_status st = alloc_qx(kc, err);
        if (st != SEM_OK) {
            free(kc);
            return st;
        }
    }
    *out = kc;
    return SEM_OK;
}

sem_status kn_ctx_create(const kn_ctx_params *p, kn_ctx **out, sem_err *err)
{
    kn_cpu_features f = kn_cpu_detect();
    return kn_ctx_create_with_ops(p, pick_ops(&f, p), out, err);
}

void kn_ctx_destroy(kn_ctx *kc)
{
    if (!kc) return;
    sem_free_aligned(kc->qx_mem);
    free(kc);
}

const char *kn_ctx_isa(const kn_ctx *kc) { return kc->ops->isa; }
kn_cpu_features kn_ctx_features(const kn_ctx *kc) { return kc->feat; }
tp_pool *kn_ctx_pool(const kn_ctx *kc) { return kc->pool; }

/* The KV stores' f16 rows: F16C when the CPU has it (bit for bit the
 * scalar conversion, which cost a decode step about 2% on the calling
 * thread), decided on the first call. */
void kn_f32_to_f16_row(const float *x, void *out, size_t n)
{
    static atomic_int f16c = -1; /* unknown, 0, 1 */
    int have = atomic_load_explicit(&f16c, memory_order_relaxed);
    if (have < 0) {
        have = kn_cpu_detect().f16c;
        atomic_store_explicit(&f16c, have, memory_order_relaxed);
    }
    size_t i = 0;
#if defined(__x86_64__)
    if (have) i = kn_avx2_f32_to_f16_8s(x, out, n);
#endif
    for (; i < n; i++) {
        uint16_t h = kn_f32_to_f16(x[i]);
        memcpy((uint8_t *)out + 2 * i, &h, 2);
    }
}
