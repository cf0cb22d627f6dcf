/* model.c - loading a Hugging Face / MLX model directory: parse the spec,
 * map the safetensors shards, bind every tensor to a slot with its
 * expected dtype and shape, and reject missing, mis-shaped or extra
 * tensors with an error naming the file and the tensor.
 *
 * After model_load returns, every weight view is known to be in bounds and
 * of the shape the forward pass assumes, so the forward pass only asserts.
 *
 * Thread: any; a loaded model is immutable.
 */
#include "model/model_int.h"

#include <sys/mman.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Tensors real checkpoints carry that the forward pass does not use: rope
 * buffers, and the vision tower of a Gemma 3 image-text checkpoint (we
 * serve its text model). */
static bool is_ignorable(const model *m, const char *name)
{
    size_t n = strlen(name);
    if (n >= 22 && !strcmp(name + n - 22, "rotary_emb.inv_freq")) return true;
    if (strcmp(m->spec.arch_name, "Gemma3ForConditionalGeneration") != 0) return false;
    return has_prefix(name, "vision_tower.") || has_prefix(name, "multi_modal_projector.") ||
           has_prefix(name, "model.vision_tower.") || has_prefix(name, "model.multi_modal_projector.");
}

static sem_status find_tensor(model *m, const char *name, const st_tensor **out, sem_err *err)
{
    long i = st_set_index(m->tensors, name);
    if (i < 0) return sem_errf(err, SEM_ECORRUPT, "%s: missing tensor '%s'", m->dir, name);
    m->bound[i] = true;
    *out = st_set_tensor(m->tensors, (size_t)i);
    return SEM_OK;
}

static void shape_text(const st_tensor *t, char *got, size_t cap)
{
    size_t o = 0;
    got[0] = '\0';
    for (int i = 0; i < t->n_dims && o < cap - 24; i++)
        o += (size_t)snprintf(got + o, cap - o, "%s%" PRIu64, i ? ", " : "", t->shape[i]);
}

static sem_status expect_shape(const st_tensor *t, uint64_t d0, uint64_t d1, sem_err *err)
{
    int want_dims = d1 ? 2 : 1;
    if (t->n_dims == want_dims && t->shape[0] == d0 && (!d1 || t->shape[1] == d1)) return SEM_OK;
    char got[96];
    shape_text(t, got, sizeof got);
    if (d1)
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' has shape [%s], expected [%" PRIu64 ", %" PRIu64 "]", t->file, t->name, got, d0, d1);
    return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' has shape [%s], expected [%" PRIu64 "]", t->file, t->name, got, d0);
}

/* A stacked [d0][d1][d2] tensor (MLX switch_mlp experts). */
static sem_status expect_shape3(const st_tensor *t, uint64_t d0, uint64_t d1, uint64_t d2, sem_err *err)
{
    if (t->n_dims == 3 && t->shape[0] == d0 && t->shape[1] == d1 && t->shape[2] == d2) return SEM_OK;
    char got[96];
    shape_text(t, got, sizeof got);
    return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' has shape [%s], expected [%" PRIu64 ", %" PRIu64 ", %" PRIu64 "]",
                    t->file, t->name, got, d0, d1, d2);
}

static bool float_dtype(st_dtype d, kn_dtype *out)
{
    switch (d) {
    case ST_F32: *out = KN_F32; return true;
    case ST_F16: *out = KN_F16; return true;
    case ST_BF16: *out = KN_BF16; return true;
    default: return false;
    }
}

static sem_status bind_quantized(model *m, const char *name, size_t rows, size_t cols, int bits,
                                 int gs, kn_weight *out, sem_err *err)
{
    char key[512];
    const st_tensor *w, *s, *b;
    sem_status st;
    snprintf(key, sizeof key, "%s.weight", name);
    if ((st = find_tensor(m, key, &w, err))) return st;
    if (w->dtype != ST_U32)
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' is %s but config.json's quantization block says %d-bit MLX (U32-packed); the quantization block disagrees with the tensors", w->file, key, st_dtype_name(w->dtype), bits);
    if (cols % (size_t)gs != 0)
        return sem_errf(err, SEM_ECORRUPT, "%s: module '%s' has %zu input features, not a multiple of group_size %d", m->dir, name, cols, gs);
    if (w->n_dims == 2 && w->shape[0] == rows && w->shape[1] != cols * (size_t)bits / 32)
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' packs %" PRIu64 " words per row, but %d-bit quantization of %zu features needs %zu; the quantization block disagrees with the tensors", w->file, key, w->shape[1], bits, cols, cols * (size_t)bits / 32);
    if ((st = expect_shape(w, rows, cols * (size_t)bits / 32, err))) return st;
    snprintf(key, sizeof key, "%s.scales", name);
    if ((st = find_tensor(m, key, &s, err))) return st;
    if (s->n_dims == 2 && s->shape[0] == rows && s->shape[1] != cols / (size_t)gs)
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' has %" PRIu64 " groups per row, but group_size %d over %zu features needs %zu; the quantization block disagrees with the tensors", s->file, key, s->shape[1], gs, cols, cols / (size_t)gs);
    if ((st = expect_shape(s, rows, cols / (size_t)gs, err))) return st;
    snprintf(key, sizeof key, "%s.biases", name);
    if ((st = find_tensor(m, key, &b, err)) || (st = expect_shape(b, rows, cols / (size_t)gs, err))) return st;
    kn_dtype sd;
    if (!float_dtype(s->dtype, &sd) || b->dtype != s->dtype)
        return sem_errf(err, SEM_ECORRUPT, "%s: scales/biases of '%s' must share one float dtype (got %s and %s)", s->file, name, st_dtype_name(s->dtype), st_dtype_name(b->dtype));
    *out = (kn_weight){.dtype = bits == 4 ? KN_Q4 : KN_Q8, .rows = rows, .cols = cols, .data = w->data,
                       .scales = s->data, .biases = b->data, .scale_dtype = sd, .group_size = gs, .bits = bits};
    m->weight_bytes += w->n_bytes + s->n_bytes + b->n_bytes;
    return SEM_OK;
}

sem_status model_bind_matrix(model *m, const char *name, size_t rows, size_t cols, kn_weight *out,
                             sem_err *err)
{
    int bits, gs;
    model_spec_module_quant(&m->spec, name, &bits, &gs);
    m->n_params += (uint64_t)rows * cols;
    if (cols > m->max_cols) m->max_cols = cols;
    uint64_t before = m->weight_bytes;
    sem_status st;
    char scales[512];
    snprintf(scales, sizeof scales, "%s.scales", name);
    /* mlx-lm leaves some modules float without listing them in the
     * quantization block; like its loader, a module without scales is
     * float. (A block on an all-float model is still rejected at the end.) */
    if (bits && st_set_index(m->tensors, scales) < 0) bits = 0;
    if (bits) {
        m->n_quantized++;
        st = bind_quantized(m, name, rows, cols, bits, gs, out, err);
    } else {
        char key[512];
        const st_tensor *t;
        snprintf(key, sizeof key, "%s.weight", name);
        if ((st = find_tensor(m, key, &t, err))) return st;
        kn_dtype d;
        if (!float_dtype(t->dtype, &d))
            return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' is %s, but config.json has no quantization block for it (expected F32, F16 or BF16)", t->file, key, st_dtype_name(t->dtype));
        if ((st = expect_shape(t, rows, cols, err))) return st;
        *out = (kn_weight){.dtype = d, .rows = rows, .cols = cols, .data = t->data};
        m->weight_bytes += t->n_bytes;
    }
    if (st == SEM_OK) m->matrix_bytes += m->weight_bytes - before;
    return st;
}

sem_status model_bind_vector(model *m, const char *name, size_t n, float **out, sem_err *err)
{
    const st_tensor *t;
    kn_dtype d;
    sem_status st;
    if ((st = find_tensor(m, name, &t, err))) return st;
    if (!float_dtype(t->dtype, &d))
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' is %s, expected F32, F16 or BF16", t->file, name, st_dtype_name(t->dtype));
    if ((st = expect_shape(t, n, 0, err))) return st;
    float *v = sem_calloc(n, sizeof *v);
    if (!v) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", m->dir);
    kn_to_f32(d, t->data, v, n);
    *out = v;
    m->n_params += n;
    m->weight_bytes += t->n_bytes;
    return SEM_OK;
}

bool model_has_tensor(const model *m, const char *name) { return st_set_index(m->tensors, name) >= 0; }

/* ---- experts ----------------------------------------------------------- */

static size_t dtype_bytes(kn_dtype d) { return d == KN_F32 ? 4 : 2; }

kn_weight model_weight_rows(const kn_weight *all, size_t r0, size_t n)
{
    SEM_ASSERT(r0 <= all->rows && n <= all->rows - r0);
    kn_weight w = *all;
    const uint8_t *d = all->data;
    w.rows = n;
    if (all->bits) { /* every part of the MLX layout advances by whole rows */
        size_t groups = all->cols / (size_t)all->group_size, sb = dtype_bytes(all->scale_dtype);
        w.data = d + r0 * (all->cols * (size_t)all->bits / 32) * 4;
        w.scales = (const uint8_t *)all->scales + r0 * groups * sb;
        w.biases = (const uint8_t *)all->biases + r0 * groups * sb;
    } else {
        w.data = d + r0 * all->cols * dtype_bytes(all->dtype);
    }
    return w;
}

/* Expert e's [rows][cols] slice of a stacked weight. */
static kn_weight expert_view(const kn_weight *all, size_t e, size_t rows)
{
    return model_weight_rows(all, e * rows, rows);
}

static sem_status bind_stacked_quantized(model *m, const char *name, size_t E, size_t rows, size_t cols, int bits,
                                         int gs, kn_weight *out, sem_err *err)
{
    char key[512];
    const st_tensor *w, *s, *b;
    sem_status st;
    snprintf(key, sizeof key, "%s.weight", name);
    if ((st = find_tensor(m, key, &w, err))) return st;
    if (w->dtype != ST_U32)
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' is %s but config.json's quantization block says %d-bit MLX (U32-packed); the quantization block disagrees with the tensors", w->file, key, st_dtype_name(w->dtype), bits);
    if (cols % (size_t)gs != 0)
        return sem_errf(err, SEM_ECORRUPT, "%s: module '%s' has %zu input features, not a multiple of group_size %d", m->dir, name, cols, gs);
    if ((st = expect_shape3(w, E, rows, cols * (size_t)bits / 32, err))) return st;
    snprintf(key, sizeof key, "%s.scales", name);
    if ((st = find_tensor(m, key, &s, err)) || (st = expect_shape3(s, E, rows, cols / (size_t)gs, err))) return st;
    snprintf(key, sizeof key, "%s.biases", name);
    if ((st = find_tensor(m, key, &b, err)) || (st = expect_shape3(b, E, rows, cols / (size_t)gs, err))) return st;
    kn_dtype sd;
    if (!float_dtype(s->dtype, &sd) || b->dtype != s->dtype)
        return sem_errf(err, SEM_ECORRUPT, "%s: scales/biases of '%s' must share one float dtype (got %s and %s)", s->file, name, st_dtype_name(s->dtype), st_dtype_name(b->dtype));
    *out = (kn_weight){.dtype = bits == 4 ? KN_Q4 : KN_Q8, .rows = E * rows, .cols = cols, .data = w->data,
                       .scales = s->data, .biases = b->data, .scale_dtype = sd, .group_size = gs, .bits = bits};
    m->weight_bytes += w->n_bytes + s->n_bytes + b->n_bytes;
    m->n_quantized++;
    return SEM_OK;
}

static sem_status bind_stacked(model *m, const char *name, size_t E, size_t rows, size_t cols, kn_weight *out,
                               sem_err *err)
{
    int bits, gs;
    char key[512];
    model_spec_module_quant(&m->spec, name, &bits, &gs);
    snprintf(key, sizeof key, "%s.scales", name);
    if (bits && st_set_index(m->tensors, key) < 0) bits = 0; /* a float module (see model_bind_matrix) */
    if (bits) return bind_stacked_quantized(m, name, E, rows, cols, bits, gs, out, err);
    const st_tensor *t;
    kn_dtype d;
    sem_status st;
    snprintf(key, sizeof key, "%s.weight", name);
    if ((st = find_tensor(m, key, &t, err))) return st;
    if (!float_dtype(t->dtype, &d))
        return sem_errf(err, SEM_ECORRUPT, "%s: tensor '%s' is %s, but config.json has no quantization block for it (expected F32, F16 or BF16)", t->file, key, st_dtype_name(t->dtype));
    if ((st = expect_shape3(t, E, rows, cols, err))) return st;
    *out = (kn_weight){.dtype = d, .rows = E * rows, .cols = cols, .data = t->data};
    m->weight_bytes += t->n_bytes;
    return SEM_OK;
}

sem_status model_bind_experts(model *m, const char *mlp, const char *proj, size_t n_experts, size_t rows,
                              size_t cols, kn_weight *out, sem_err *err)
{
    char name[384];
    uint64_t before = m->weight_bytes;
    sem_status st = SEM_OK;
    snprintf(name, sizeof name, "%s.switch_mlp.%s.weight", mlp, proj);
    if (st_set_index(m->tensors, name) >= 0) {
        kn_weight all = {0};
        snprintf(name, sizeof name, "%s.switch_mlp.%s", mlp, proj);
        if ((st = bind_stacked(m, name, n_experts, rows, cols, &all, err))) return st;
        for (size_t e = 0; e < n_experts; e++) out[e] = expert_view(&all, e, rows);
        m->n_params += (uint64_t)n_experts * rows * cols;
        if (cols > m->max_cols) m->max_cols = cols;
        m->matrix_bytes += m->weight_bytes - before;
    } else {
        for (size_t e = 0; e < n_experts && !st; e++) {
            snprintf(name, sizeof name, "%s.experts.%zu.%s", mlp, e, proj);
            st = model_bind_matrix(m, name, rows, cols, &out[e], err);
        }
        if (st) return st;
    }
    m->expert_bytes += m->weight_bytes - before;
    return SEM_OK;
}

static sem_status check_all_bound(model *m, sem_err *err)
{
    for (size_t i = 0; i < st_set_n_tensors(m->tensors); i++) {
        const st_tensor *t = st_set_tensor(m->tensors, i);
        if (!m->bound[i] && !is_ignorable(m, t->name))
            return sem_errf(err, SEM_ECORRUPT, "%s: unexpected tensor '%s' (not part of %s as configured)", t->file, t->name, m->spec.arch_name);
    }
    return SEM_OK;
}

sem_status model_load(const char *dir, model **out, sem_err *err)
{
    model *m = calloc(1, sizeof *m);
    if (!m || !(m->dir = sem_strdup(dir))) {
        free(m);
        return sem_errf(err, SEM_ENOMEM, "%s: out of memory", dir);
    }
    sem_status st = model_spec_load(dir, &m->spec, err);
    if (st) goto fail;
    m->ops = model_arch_ops_find(m->spec.arch);
    if ((st = st_set_open_dir(dir, &m->tensors, err))) goto fail;
    m->bound = sem_calloc(st_set_n_tensors(m->tensors) + 1, sizeof *m->bound);
    m->rope_inv_freq = sem_calloc((size_t)m->spec.rope_dim / 2, sizeof *m->rope_inv_freq);
    m->rope_inv_freq_local = sem_calloc((size_t)m->spec.rope_dim / 2, sizeof *m->rope_inv_freq_local);
    if (!m->bound || !m->rope_inv_freq || !m->rope_inv_freq_local) {
        st = sem_errf(err, SEM_ENOMEM, "%s: out of memory", dir);
        goto fail;
    }
    model_spec_rope_inv_freq(&m->spec, false, m->rope_inv_freq);
    if (m->spec.sliding_window > 0) model_spec_rope_inv_freq(&m->spec, true, m->rope_inv_freq_local);
    snprintf(m->prefix, sizeof m->prefix, "model.");
    if ((st = m->ops->bind(m, err)) || (st = check_all_bound(m, err))) goto fail;
    if (m->spec.quant_bits && m->n_quantized == 0) {
        st = sem_errf(err, SEM_ECORRUPT, "%s: config.json's quantization block says %d-bit, but no tensor has scales and biases; the quantization block disagrees with the tensors", dir, m->spec.quant_bits);
        goto fail;
    }
    *out = m;
    return SEM_OK;
fail:
    model_destroy(m);
    return st;
}

void model_destroy(model *m)
{
    if (!m) return;
    if (m->layers) {
        for (int32_t l = 0; l < m->spec.n_layers; l++) {
            model_layer *L = &m->layers[l];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->bq);
            free(L->bk);
            free(L->bv);
            free(L->q_norm);
            free(L->k_norm);
            free(L->attn_post_norm);
            free(L->ffn_post_norm);
            free(L->q_a_norm);
            free(L->kv_a_norm);
            free(L->exp_gate);
            free(L->exp_up);
            free(L->exp_down);
            free(L->uk_t);
            free(L->w_uk_t);
            free(L->w_uv);
        }
    }
    free(m->layers);
    free(m->final_norm);
    free(m->rope_inv_freq);
    free(m->rope_inv_freq_local);
    free(m->bound);
    if (m->packed) munmap(m->packed, m->packed_bytes);
    st_set_close(m->tensors);
    model_spec_fini(&m->spec);
    free(m->dir);
    free(m);
}

/* ---- packing for the kernels -------------------------------------------- */

/* Calls fn on every matrix the forward passes to kn_matmul that could be
 * packed (the embedding is read by rows and stays unpacked; a tied
 * lm_head is packed on its own). */
static void each_matrix(model *m, void (*fn)(kn_weight *w, void *ctx), void *ctx)
{
    if (m->lm_head.bits) fn(&m->lm_head, ctx);
    for (int32_t l = 0; l < m->spec.n_layers; l++) {
        model_layer *L = &m->layers[l];
        kn_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down,
                           &L->wq_a, &L->wkv_a, &L->wkv_b, &L->sh_gate, &L->sh_up, &L->sh_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (ws[i]->bits) fn(ws[i], ctx);
        for (int32_t e = 0; L->exp_gate && e < m->spec.n_experts; e++) {
            fn(&L->exp_gate[e], ctx);
            fn(&L->exp_up[e], ctx);
            fn(&L->exp_down[e], ctx);
        }
    }
}

typedef struct pack_walk {
    kn_ctx *kc;
    uint8_t *base; /* NULL: only sum the sizes */
    size_t used;
} pack_walk;

/* Drops the whole pages of [p, p + n) of the read-only file mapping from
 * this process (they stay in the page cache; a later read faults them back
 * in from it). */
static void release_pages(const void *p, size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + pg - 1) & ~(uintptr_t)(pg - 1), b = ((uintptr_t)p + n) & ~(uintptr_t)(pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED); /* advice: a failure only keeps them */
}

static void pack_one(kn_weight *w, void *ctx)
{
    pack_walk *pw = ctx;
    size_t n = kn_packed_bytes(pw->kc, w);
    if (!n) return;
    if (pw->base) {
        kn_pack(pw->kc, w, pw->base + pw->used);
        w->packed = pw->base + pw->used;
        /* the kernels read only the copy now: without this the file's
         * pages read while packing stayed resident, twice the weights' RSS
         * (a tied embedding's rows fault back in one by one as tokens
         * are looked up) */
        size_t ss = w->cols / (size_t)w->group_size * 2 * w->rows;
        release_pages(w->data, w->rows * w->cols * (size_t)w->bits / 8);
        release_pages(w->scales, ss);
        release_pages(w->biases, ss);
    }
    pw->used += (n + 63) & ~(size_t)63;
}

sem_status model_pack_for(model *m, kn_ctx *kc, sem_err *err)
{
    if (m->packed) return SEM_OK;
    pack_walk pw = {.kc = kc};
    each_matrix(m, pack_one, &pw);
    if (!pw.used) return SEM_OK;
    size_t bytes = pw.used;
    /* a mapping of its own, not the heap: it goes back to the system
     * whole at model_destroy (a swap's RSS returns to its baseline) */
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return sem_errf(err, SEM_ENOMEM, "%s: cannot map %zu bytes for the packed Q4/Q8 weights", m->dir, bytes);
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE); /* fewer TLB misses while streaming; advice only */
#endif
    pw = (pack_walk){.kc = kc, .base = p};
    each_matrix(m, pack_one, &pw);
    m->packed = p;
    m->packed_bytes = bytes;
    return SEM_OK;
}

size_t model_packed_bytes(const model *m) { return m->packed ? m->packed_bytes : 0; }

const model_spec *model_get_spec(const model *m) { return &m->spec; }
const char *model_dir(const model *m) { return m->dir; }
uint64_t model_n_params(const model *m) { return m->n_params; }
uint64_t model_weight_bytes(const model *m) { return m->weight_bytes; }
uint64_t model_file_bytes(const model *m) { return st_set_total_bytes(m->tensors); }
size_t model_max_matmul_cols(const model *m) { return m->max_cols; }

uint64_t model_decode_bytes_per_token(const model *m)
{
    /* Every matrix is read once. A tied embedding is read whole as the
     * lm_head; an untied one only one row per token (negligible). */
    uint64_t b = m->spec.tied_embeddings ? m->matrix_bytes : m->matrix_bytes - m->embed_bytes;
    /* A token reads only its n_experts_used of each MoE layer's experts. */
    if (m->spec.n_experts > 0)
        b -= m->expert_bytes - m->expert_bytes / (uint64_t)m->spec.n_experts * (uint64_t)m->spec.n_experts_used;
    return b;
}

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

void model_fingerprint(const model *m, uint64_t extra_hash, char out[17])
{
    const model_spec *s = &m->spec;
    uint64_t h = fnv(0xcbf29ce484222325ull, s->arch_name, strlen(s->arch_name));
    int32_t dims[] = {s->n_layers, s->hidden, s->n_heads, s->n_kv_heads, s->head_dim, s->v_head_dim, s->intermediate, s->vocab};
    h = fnv(h, dims, sizeof dims);
    /* A KV layout other than per-head K/V (the MLA latent) is part of what
     * a cache file holds, so it names the namespace too (Llama-family
     * fingerprints are unchanged). */
    model_kv_geometry g = model_spec_kv_geometry(s);
    if (g.n_kv_heads != s->n_kv_heads || g.head_dim != s->head_dim || g.v_head_dim != s->v_head_dim) {
        int32_t kv[4] = {g.n_layers, g.n_kv_heads, g.head_dim, g.v_head_dim};
        h = fnv(h, "kv-latent", 9);
        h = fnv(h, kv, sizeof kv);
    }
    /* Sliding layers kept as a ring (only their window is in a cache
     * file): the window and which layers slide name the namespace too. */
    if (g.window > 0) {
        h = fnv(h, "kv-ring", 7);
        h = fnv(h, &g.window, sizeof g.window);
        h = fnv(h, g.layer_sliding, (size_t)g.n_layers * sizeof *g.layer_sliding);
    }
    for (size_t i = 0; i < st_set_n_tensors(m->tensors); i++) {
        const st_tensor *t = st_set_tensor(m->tensors, i);
        h = fnv(h, t->name, strlen(t->name) + 1);
        h = fnv(h, &t->dtype, sizeof t->dtype);
        h = fnv(h, t->shape, (size_t)t->n_dims * sizeof t->shape[0]);
        /* a sample of the values, so two fine-tunes of one base differ */
        h = fnv(h, t->data, t->n_bytes < 32 ? (size_t)t->n_bytes : 32);
    }
    h = fnv(h, &extra_hash, sizeof extra_hash);
    snprintf(out, 17, "%016" PRIx64, h);
}

static const char *weight_format(const kn_weight *w, char *out, size_t cap)
{
    if (w->bits) snprintf(out, cap, "mlx-q%d g%d (scales %s)", w->bits, w->group_size, kn_dtype_name(w->scale_dtype));
    else snprintf(out, cap, "%s", kn_dtype_name(w->dtype));
    return out;
}

static void describe_family(const model *m, FILE *f)
{
    const model_spec *s = &m->spec;
    if (s->kv_lora_rank > 0)
        fprintf(f, "mla:            q_lora_rank %d, kv_lora_rank %d, qk_nope %d + qk_rope %d (interleaved), v_head_dim %d, softmax scale %g, rope attn factor %g; cache: the latent (K = c + k_pe, V = c), absorbed attention\n",
                s->q_lora_rank, s->kv_lora_rank, s->qk_nope_dim, s->qk_rope_dim, s->v_head_dim, (double)s->attn_scale, (double)s->rope_attn_factor);
    if (s->n_experts > 0)
        fprintf(f, "moe:            %d routed experts, %d per token (%s%s, scaling %g), %d shared, intermediate %d, first %d layer(s) dense, every %d\n",
                s->n_experts, s->n_experts_used, s->n_expert_groups > 1 ? "group-limited greedy" : "greedy",
                s->norm_topk_prob ? ", renormalized" : "", (double)s->routed_scaling, s->n_shared_experts, s->moe_intermediate,
                s->first_dense, s->moe_layer_freq);
    if (s->sliding_window > 0) {
        int n = 0;
        for (int32_t l = 0; l < s->n_layers; l++) n += s->layer_sliding[l];
        fprintf(f, "attention:      %d sliding-window layers (window %d, rope base %g), %d global; scale %g, softcap attn %g final %g\n",
                n, s->sliding_window, (double)s->rope_local_theta, s->n_layers - n, (double)s->attn_scale,
                (double)s->attn_softcap, (double)s->final_softcap);
        fprintf(f, "gemma:          (1 + w) RMSNorm, q/k norms, sandwich norms, gelu-tanh MLP, embeddings x %g\n", (double)s->embed_scale);
    }
}

void model_describe(const model *m, FILE *f)
{
    const model_spec *s = &m->spec;
    char b1[64], b2[64], b3[64];
    static const char *const rope_names[] = {"none", "linear", "llama3", "yarn"};
    fprintf(f, "model:          %s\n", m->dir);
    fprintf(f, "architecture:   %s (model_type %s)\n", s->arch_name, s->model_type);
    fprintf(f, "layers:         %d\n", s->n_layers);
    fprintf(f, "hidden:         %d   intermediate: %d\n", s->hidden, s->intermediate);
    fprintf(f, "heads:          %d query / %d kv, head_dim %d\n", s->n_heads, s->n_kv_heads, s->head_dim);
    fprintf(f, "vocab:          %d   max positions: %d\n", s->vocab, s->max_pos);
    fprintf(f, "rope:           theta %g, scaling %s", (double)s->rope_theta, rope_names[s->rope_scaling]);
    if (s->rope_scaling != MODEL_ROPE_NONE) fprintf(f, " (factor %g)", (double)s->rope_factor);
    fprintf(f, "\nnorm:           rms, eps %g\n", (double)s->rms_eps);
    fprintf(f, "embeddings:     %s\n", s->tied_embeddings ? "tied (lm_head = embed_tokens)" : "separate lm_head");
    fprintf(f, "q/k/v bias:     %s\n", s->qkv_bias ? "yes" : "no");
    describe_family(m, f);
    if (s->quant_bits) fprintf(f, "quantization:   MLX affine %d-bit, group %d, %zu module overrides\n", s->quant_bits, s->quant_group_size, s->n_quant_overrides);
    else fprintf(f, "quantization:   none\n");
    fprintf(f, "formats:        embed %s, attention %s, mlp %s\n", weight_format(&m->embed, b1, sizeof b1),
            weight_format(&m->layers[0].wq, b2, sizeof b2), weight_format(&m->layers[0].w_down, b3, sizeof b3));
    fprintf(f, "parameters:     %" PRIu64 " (%.1f M)\n", m->n_params, (double)m->n_params / 1e6);
    fprintf(f, "weight bytes:   %" PRIu64 " (%.1f MiB), files %" PRIu64 " bytes in %zu file(s)\n", m->weight_bytes,
            (double)m->weight_bytes / 1048576.0, model_file_bytes(m), st_set_n_files(m->tensors));
    fprintf(f, "decode reads:   %.1f MiB per token\n", (double)model_decode_bytes_per_token(m) / 1048576.0);
    model_kv_geometry g = model_spec_kv_geometry(s);
    fprintf(f, "kv geometry:    n_layers %d, n_kv_heads %d, head_dim %d, v_head_dim %d", g.n_layers, g.n_kv_heads, g.head_dim, g.v_head_dim);
    if (g.window > 0) fprintf(f, "; sliding layers keep a ring of the last %d positions", g.window);
    fprintf(f, "\n");
}
