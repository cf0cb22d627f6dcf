/* pack.c - repacking MLX Q4 and Q8 weights into the 16-row tiles the
 * AVX-512 kernels stream (layout: x86/matmul_qp_avx512.c's top comment).
 *
 * Why: in the file's row-major layout a decode kernel multiplies one row
 * at a time and must reduce each row's vector to a scalar, convert the
 * row's scales and biases group by group and pay a row setup that, for a
 * 576-column row, costs as much as its arithmetic. With 16 rows
 * interleaved in 4-byte lanes each vector lane is one row, the scales of
 * a group are one 32-byte load, and the weights are read front to back as
 * one stream. The tiles hold exactly the file's bytes (data, scales and
 * biases), reordered; the pack is a byte shuffle, done once per model
 * load on the pool.
 *
 * Thread: the ctx owner; tiles are packed on the pool's workers.
 */
#include "kernels/kn_impl.h"

enum { TILE = 16 };

size_t kn_packed_bytes(const kn_ctx *kc, const kn_weight *w)
{
    if (!kn_mm_packed(kc->ops, w->dtype) || w->rows % TILE != 0 || w->rows == 0 ||
        (w->scale_dtype != KN_F16 && w->scale_dtype != KN_BF16) || w->cols > kc->params.max_cols)
        return 0;
    size_t ng = w->cols / (size_t)w->group_size;
    return w->rows / TILE * ng * kn_packed_group_bytes((size_t)w->group_size, w->bits);
}

typedef struct pack_job {
    const kn_weight *w;
    uint8_t *dst;
    size_t n_tiles;
} pack_job;

static void pack_tiles(void *p, int ith, int nth)
{
    const pack_job *j = p;
    const kn_weight *w = j->w;
    size_t gs = (size_t)w->group_size, ng = w->cols / gs, bits = (size_t)w->bits;
    size_t rb = w->cols * bits / 8, gdata = gs * bits / 8; /* bytes of a row, of its group */
    size_t gbytes = kn_packed_group_bytes(gs, w->bits), lo, hi;
    tp_split(j->n_tiles, 1, ith, nth, &lo, &hi);
    for (size_t t = lo; t < hi; t++) {
        uint8_t *tp = j->dst + t * ng * gbytes;
        for (size_t g = 0; g < ng; g++) {
            uint8_t *gp = tp + g * gbytes;
            for (size_t r = 0; r < TILE; r++) {
                size_t row = t * TILE + r;
                memcpy(gp + 2 * r, (const uint8_t *)w->scales + 2 * (row * ng + g), 2);
                memcpy(gp + 32 + 2 * r, (const uint8_t *)w->biases + 2 * (row * ng + g), 2);
                const uint8_t *src = (const uint8_t *)w->data + row * rb + g * gdata;
                for (size_t c = 0; c < gdata / 4; c++) memcpy(gp + 64 + 64 * c + 4 * r, src + 4 * c, 4);
            }
        }
    }
}

void kn_pack(kn_ctx *kc, const kn_weight *w, void *dst)
{
    SEM_ASSERT(kn_packed_bytes(kc, w) > 0 && ((uintptr_t)dst & 63) == 0);
    pack_job j = {.w = w, .dst = dst, .n_tiles = w->rows / TILE};
    tp_run(kc->pool, pack_tiles, &j);
}
