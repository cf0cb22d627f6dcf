/* sampler.c - token sampling: greedy, temperature, top-k, top-p and min-p,
 * with a per-request seeded RNG so a request's choices are reproducible
 * whatever else is in the batch.
 *
 * Thread: the owner of the sampler (engine).
 */
#include "engine/engine.h"

#include <math.h>
#include <stdlib.h>

typedef struct cand {
    float p;    /* logit, then unnormalized probability */
    int32_t id;
} cand;

struct eng_sampler {
    size_t vocab;
    cand *c;    /* owned [vocab] candidates */
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void eng_rng_seed(eng_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t eng_rng_next(eng_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double eng_rng_uniform(eng_rng *r) { return (double)(eng_rng_next(r) >> 11) * 0x1.0p-53; }

eng_sampling eng_sampling_greedy(void) { return (eng_sampling){.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0}; }

sem_status eng_sampler_create(size_t vocab, eng_sampler **out, sem_err *err)
{
    eng_sampler *s = calloc(1, sizeof *s);
    if (s) {
        s->vocab = vocab;
        s->c = sem_calloc(vocab, sizeof *s->c);
    }
    if (!s || !s->c) {
        eng_sampler_destroy(s);
        return sem_errf(err, SEM_ENOMEM, "sampler: out of memory for vocab %zu", vocab);
    }
    *out = s;
    return SEM_OK;
}

void eng_sampler_destroy(eng_sampler *s)
{
    if (!s) return;
    free(s->c);
    free(s);
}

/* The largest value in eight independent running maxima (the compiler
 * vectorizes them), then the first index holding it: 4-9 us for a 49152
 * vocabulary where one compare chain took 35-70 (greedy decode runs this
 * on the engine thread between steps). NaNs never win, as a comparison
 * skips them; a NaN at 0 wins, as the scan from 0 never left it. */
int32_t eng_argmax(const float *logits, size_t n)
{
    if (n == 0 || isnan(logits[0])) return 0;
    float m8[8];
    for (size_t k = 0; k < 8; k++) m8[k] = logits[0];
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++) m8[k] = logits[i + k] > m8[k] ? logits[i + k] : m8[k];
    for (; i < n; i++) m8[0] = logits[i] > m8[0] ? logits[i] : m8[0];
    float m = m8[0];
    for (size_t k = 1; k < 8; k++) m = m8[k] > m ? m8[k] : m;
    for (i = 0; i < n; i++)
        if (logits[i] == m) break;
    return (int32_t)i;
}

/* Descending by p; ties go to the lower id, so results never depend on
 * the sort's stability. */
static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static bool cand_less(const cand *a, const cand *b) { return cand_cmp(a, b) > 0; }

static void heap_sift_down(cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && cand_less(&h[l], &h[m])) m = l;
        if (l + 1 < n && cand_less(&h[l + 1], &h[m])) m = l + 1;
        if (m == i) return;
        cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Keeps the k best logits in s->c[0..k) with a min-heap: O(vocab log k). */
static size_t keep_top_k(eng_sampler *s, const float *logits, size_t k)
{
    cand *h = s->c;
    for (size_t i = 0; i < k; i++) h[i] = (cand){logits[i], (int32_t)i};
    for (size_t i = k / 2; i-- > 0;) heap_sift_down(h, k, i);
    for (size_t i = k; i < s->vocab; i++) {
        cand c = {logits[i], (int32_t)i};
        if (cand_less(&h[0], &c)) {
            h[0] = c;
            heap_sift_down(h, k, 0);
        }
    }
    return k;
}

int32_t eng_sample(eng_sampler *s, const float *logits, const eng_sampling *p, eng_rng *rng)
{
    if (p->temperature <= 0.0f) return eng_argmax(logits, s->vocab);
    size_t n = s->vocab;
    if (p->top_k > 0 && (size_t)p->top_k < s->vocab) {
        n = keep_top_k(s, logits, (size_t)p->top_k);
    } else {
        for (size_t i = 0; i < n; i++) s->c[i] = (cand){logits[i], (int32_t)i};
    }
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++) mx = fmaxf(mx, s->c[i].p);
    double sum = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        float pr = expf((s->c[i].p - mx) / p->temperature);
        /* min-p: drop candidates below min_p times the best (which is 1). */
        if (pr < p->min_p) continue;
        s->c[w++] = (cand){pr, s->c[i].id};
        sum += pr;
    }
    n = w;
    if (p->top_p < 1.0f) {
        qsort(s->c, n, sizeof *s->c, cand_cmp);
        double acc = 0;
        size_t keep = 0;
        while (keep < n && acc < p->top_p * sum) acc += s->c[keep++].p;
        n = keep ? keep : 1;
        sum = acc > 0 ? acc : s->c[0].p;
    }
    double u = eng_rng_uniform(rng) * sum, c = 0;
    for (size_t i = 0; i < n; i++) {
        c += s->c[i].p;
        if (u < c) return s->c[i].id;
    }
    return s->c[n - 1].id;
}
