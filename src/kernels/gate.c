/* gate.c - kn_swiglu: the MLP's SiLU gate, out = silu(gate) * up, through
 * the context's table (the SIMD gate on x86) and, for prefill-sized inputs,
 * split over the compute pool in 8-aligned ranges. A decode step's gate
 * (one token: a few thousand values) runs on the calling thread, faster
 * than a fork-join. Each element's value does not depend on the split.
 *
 * Thread: the ctx owner; ranges run on the pool's workers.
 */
#include "kernels/kn_impl.h"

enum { SERIAL_ELEMS = 32768 };

typedef struct gate_job {
    kn_gate_fn fn;
    float *out;
    const float *gate, *up;
    size_t n;
} gate_job;

static void gate_part(void *p, int ith, int nth)
{
    gate_job *j = p;
    size_t lo, hi;
    tp_split(j->n, 8, ith, nth, &lo, &hi);
    if (lo < hi) j->fn(j->out + lo, j->gate + lo, j->up + lo, hi - lo);
}

void kn_swiglu(kn_ctx *kc, float *out, const float *gate, const float *up, size_t n)
{
    gate_job j = {.fn = kc->ops->silu_mul, .out = out, .gate = gate, .up = up, .n = n};
    if (n < SERIAL_ELEMS) gate_part(&j, 0, 1);
    else tp_run(kc->pool, gate_part, &j);
}
