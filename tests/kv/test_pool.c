/* test_pool.c - the kv room's block pool, through its door (kv.h), with
 * the ring pools that keep only the window of sliding-window layers:
 *  - a pool without a ring is what it always was (whole blocks, no unit
 *    table, ring calls are no-ops);
 *  - the memory bound: a sequence growing to 1,000 tokens, in prefill
 *    chunks and then one token at a time, holds exactly its global layers
 *    for every block and its sliding layers for at most
 *    ceil(window / block_tokens) + 1 blocks (+ the chunk in flight), so
 *    the sliding layers' memory stops growing while a pool without a ring
 *    grows with every layer;
 *  - sharing: trimming a shared block leaves the other holder's window
 *    intact (copy-on-trim), units are freed exactly when their last
 *    holder goes, and copy-on-write copies a unit a trimmed copy shares;
 *  - which continuations a held window allows (kv_ring_covers), and bad
 *    rings rejected at create.
 */
#include "kv/kv.h"

#include "test_util.h"

enum { LAYERS = 6, BT = 16, WINDOW = 32, RING_BLOCKS = (WINDOW + BT - 1) / BT + 1 };

/* Gemma-like: layers 0-4 slide, layer 5 is global. */
static kv_geometry geo(void)
{
    return (kv_geometry){.n_layers = LAYERS, .n_kv_heads = 2, .head_dim = 64, .v_head_dim = 64,
                         .block_tokens = BT, .dtype = KN_KV_F16};
}

static kv_ring ring_of(int32_t window, int32_t n_sliding)
{
    kv_ring r;
    memset(&r, 0, sizeof r);
    r.window = window;
    for (int32_t l = 0; l < n_sliding; l++) r.sliding[l] = true;
    return r;
}

static size_t unit_bytes(void)
{
    kv_geometry g = geo();
    return kv_block_bytes(&g) / LAYERS;
}

static kv_pool *make_pool(const kv_ring *r, size_t n_blocks)
{
    kv_geometry g = geo();
    kv_pool_params pp = {.budget_bytes = n_blocks * kv_block_bytes(&g), .ring = r};
    kv_pool *pool;
    sem_err err;
    assert_int_equal(kv_pool_create(&g, &pp, &pool, &err), SEM_OK);
    return pool;
}

static void test_plain_pool_unchanged(void **state)
{
    (void)state;
    kv_pool *pool = make_pool(NULL, 10);
    kv_geometry g = geo();
    assert_int_equal(kv_pool_n_blocks(pool), 10);
    assert_int_equal(kv_pool_n_ids(pool), 10);
    assert_int_equal(kv_pool_layer_stride(pool), unit_bytes());
    assert_int_equal(kv_pool_ring(pool)->window, 0);
    int32_t id;
    sem_err err;
    assert_int_equal(kv_pool_alloc(pool, &id, &err), SEM_OK);
    kn_kv_view v = kv_pool_view(pool, &id);
    assert_null(v.unit_ids);
    assert_int_equal(v.block_stride, kv_block_bytes(&g));
    kn_kv_view l3 = kn_kv_view_layer(&v, kv_pool_layer_stride(pool), 3);
    assert_int_equal(l3.k_offset, 3 * unit_bytes());
    int32_t before = id;
    assert_int_equal(kv_pool_trim(pool, &id, &err), SEM_OK); /* no ring: nothing to drop */
    assert_int_equal(id, before);
    assert_true(kv_pool_block_has_local(pool, id));
    assert_int_equal(kv_pool_ring_first(pool, 5000), 0);
    assert_int_equal(kv_pool_table_local_from(pool, &id, 1), 0);
    assert_int_equal(kv_pool_bytes_used(pool), kv_block_bytes(&g));
    assert_int_equal(kv_seq_bytes(&g, NULL, 1000, 24), 63 * kv_block_bytes(&g));
    kv_pool_unref(pool, id);
    assert_int_equal(kv_pool_bytes_used(pool), 0);
    kv_pool_destroy(pool);
}

/* A sequence computed in steps of `step` tokens up to n_max, the way the
 * engine does it: blocks for the step, the forward pass, then the trim.
 * After every step the pool holds exactly what the ring design says. */
static void grow(kv_pool *pool, int32_t *blocks, size_t *nb, size_t *n, size_t *trimmed, size_t step,
                 size_t n_max, size_t *peak_local)
{
    sem_err err;
    const size_t ub = unit_bytes();
    while (*n < n_max) {
        size_t c = n_max - *n < step ? n_max - *n : step;
        while (*nb * BT < *n + c) assert_int_equal(kv_pool_alloc(pool, &blocks[(*nb)++], &err), SEM_OK);
        size_t local_now = *nb - *trimmed; /* during the step */
        if (local_now > *peak_local) *peak_local = local_now;
        *n += c;
        kv_pool_trim_table(pool, blocks, trimmed, *n);
        size_t first = kv_pool_ring_first(pool, *n);
        assert_int_equal(*trimmed, first);
        size_t local = *nb - first;
        assert_true(local <= RING_BLOCKS);
        /* global layer: every block; sliding layers: the ring only */
        assert_int_equal(kv_pool_bytes_used(pool), (*nb * 1 + local * (LAYERS - 1)) * ub);
        /* the held window covers a continuation from n and from n - 1 */
        size_t from = kv_pool_table_local_from(pool, blocks, *nb);
        assert_true(kv_ring_covers(kv_pool_ring(pool), from, *n));
        assert_true(kv_ring_covers(kv_pool_ring(pool), from, *n - 1));
    }
}

static void test_ring_memory_bound(void **state)
{
    (void)state;
    kv_ring r = ring_of(WINDOW, LAYERS - 1);
    kv_pool *pool = make_pool(&r, 200);
    kv_geometry g = geo();
    int32_t blocks[128];
    size_t nb = 0, n = 0, trimmed = 0, peak = 0;
    grow(pool, blocks, &nb, &n, &trimmed, 24, 600, &peak); /* prefill in chunks of 24 */
    size_t at600 = kv_pool_bytes_used(pool);
    grow(pool, blocks, &nb, &n, &trimmed, 1, 1000, &peak); /* then decode */
    assert_int_equal(nb, 63);
    /* 1,000 tokens: 63 blocks of the global layer + 3 ring blocks of the 5
     * sliding ones = 78 units, against 63 x 6 = 378 without a ring. */
    size_t ring_bytes = kv_pool_bytes_used(pool), full = nb * kv_block_bytes(&g);
    assert_int_equal(ring_bytes, 78 * unit_bytes());
    assert_int_equal(full, 378 * unit_bytes());
    /* 400 more tokens cost only the global layer's 25 blocks (at600: 38
     * blocks of which 3 in the ring). */
    assert_int_equal(at600, (38 + 3 * 5) * unit_bytes());
    assert_int_equal(ring_bytes - at600, 25 * unit_bytes());
    /* kv_seq_bytes bounds the peak (the window plus a chunk of 24). */
    assert_true(peak <= (WINDOW + 24 - 1 + BT - 1) / BT + 1);
    assert_true(kv_seq_bytes(&g, &r, 1000, 24) >= (nb + peak * (LAYERS - 1)) * unit_bytes());
    assert_true(kv_seq_bytes(&g, &r, 1000, 24) < full / 4);
    for (size_t i = 0; i < nb; i++) kv_pool_unref(pool, blocks[i]);
    assert_int_equal(kv_pool_bytes_used(pool), 0);
    assert_int_equal(kv_pool_n_free(pool), kv_pool_n_blocks(pool));
    kv_pool_destroy(pool);
}

/* Stores a value derived from (layer, tag) in every row of block id. */
static void fill_block(kv_pool *pool, int32_t id, float tag)
{
    kn_kv_view v = kv_pool_view(pool, &id);
    float k[2 * 64], val[2 * 64];
    for (int32_t l = 0; l < LAYERS; l++) {
        kn_kv_view lv = kn_kv_view_layer(&v, kv_pool_layer_stride(pool), l);
        for (int i = 0; i < 2 * 64; i++) k[i] = tag + (float)l, val[i] = -tag - (float)l;
        for (int32_t p = 0; p < BT; p++) kn_kv_store(&lv, p, k, val);
    }
}

static float read_k(kv_pool *pool, int32_t id, int32_t l, int32_t pos)
{
    kn_kv_view v = kv_pool_view(pool, &id);
    kn_kv_view lv = kn_kv_view_layer(&v, kv_pool_layer_stride(pool), l);
    float out[64];
    kn_kv_load_row(&lv, pos, 1, false, out);
    return out[63];
}

static void test_ring_sharing(void **state)
{
    (void)state;
    kv_ring r = ring_of(WINDOW, LAYERS - 1);
    kv_pool *pool = make_pool(&r, 4);
    const size_t ub = unit_bytes();
    sem_err err;
    int32_t x, mine;
    assert_int_equal(kv_pool_alloc(pool, &x, &err), SEM_OK);
    fill_block(pool, x, 10.0f);
    mine = x;
    kv_pool_ref(pool, x); /* a second holder (an agent cache, say) */
    assert_int_equal(kv_pool_trim(pool, &mine, &err), SEM_OK);
    assert_int_not_equal(mine, x); /* copy-on-trim */
    assert_false(kv_pool_block_has_local(pool, mine));
    assert_true(kv_pool_block_has_local(pool, x));
    assert_int_equal(read_k(pool, x, 0, 3), 10.0f);  /* the other holder's window is intact */
    assert_int_equal(read_k(pool, mine, 5, 3), 15.0f); /* the global layer is shared */
    assert_int_equal(kv_pool_bytes_used(pool), LAYERS * ub);
    kv_pool_unref(pool, x);
    assert_int_equal(kv_pool_bytes_used(pool), 1 * ub); /* only the shared global unit is left */
    assert_int_equal(kv_pool_trim(pool, &mine, &err), SEM_OK); /* already trimmed: no-op */

    /* copy-on-write of a block whose global unit a trimmed copy shares */
    int32_t y, y_trimmed;
    assert_int_equal(kv_pool_alloc(pool, &y, &err), SEM_OK);
    fill_block(pool, y, 20.0f);
    y_trimmed = y;
    kv_pool_ref(pool, y);
    assert_int_equal(kv_pool_trim(pool, &y_trimmed, &err), SEM_OK);
    int32_t y_before = y;
    assert_int_equal(kv_pool_make_private(pool, &y, &err), SEM_OK);
    assert_int_equal(y, y_before); /* the descriptor was private; its global unit is copied */
    fill_block(pool, y, 30.0f);
    assert_int_equal(read_k(pool, y_trimmed, 5, 0), 25.0f);
    assert_int_equal(read_k(pool, y, 5, 0), 35.0f);
    kv_pool_unref(pool, y);
    kv_pool_unref(pool, y_trimmed);
    kv_pool_unref(pool, mine);
    assert_int_equal(kv_pool_bytes_used(pool), 0);

    /* a full pool: alloc and copy-on-write fail cleanly, trim in place works */
    int32_t all[4];
    for (int i = 0; i < 4; i++) assert_int_equal(kv_pool_alloc(pool, &all[i], &err), SEM_OK);
    int32_t extra;
    assert_int_equal(kv_pool_alloc(pool, &extra, &err), SEM_ELIMIT);
    kv_pool_ref(pool, all[0]);
    int32_t cow = all[0];
    assert_int_equal(kv_pool_make_private(pool, &cow, &err), SEM_ELIMIT);
    assert_int_equal(cow, all[0]);
    kv_pool_unref(pool, all[0]);
    assert_int_equal(kv_pool_trim(pool, &all[1], &err), SEM_OK);
    assert_int_equal(kv_pool_bytes_used(pool), (4 * LAYERS - (LAYERS - 1)) * ub);
    for (int i = 0; i < 4; i++) kv_pool_unref(pool, all[i]);
    kv_pool_destroy(pool);
}

static void test_ring_covers(void **state)
{
    (void)state;
    kv_ring r = ring_of(WINDOW, 1), none = ring_of(0, 0);
    static const struct {
        size_t local_from, n;
        bool ok;
    } cases[] = {
        {0, 5000, true},  /* everything held */
        {64, 0, true},    /* nothing to continue from */
        {64, 95, true},   /* the window of 95 is 64..94 */
        {64, 94, false},  /* needs 63 */
        {64, 64, false},
        {64, 10, false},  /* an early branch needs block 0 */
        {16, 47, true},
        {16, 46, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (kv_ring_covers(&r, cases[i].local_from, cases[i].n) != cases[i].ok)
            fail_msg("local_from %zu, n %zu: expected %d", cases[i].local_from, cases[i].n, cases[i].ok);
        assert_true(kv_ring_covers(&none, cases[i].local_from, cases[i].n));
    }
    assert_true(kv_ring_covers(NULL, 64, 10));
}

static void test_bad_rings(void **state)
{
    (void)state;
    kv_geometry g = geo();
    kv_ring all = ring_of(WINDOW, LAYERS), nothing = ring_of(WINDOW, 0), neg = ring_of(-1, 2);
    const kv_ring *bad[] = {&all, &nothing, &neg};
    for (size_t i = 0; i < 3; i++) {
        kv_pool_params pp = {.budget_bytes = 4 * kv_block_bytes(&g), .ring = bad[i]};
        kv_pool *pool = NULL;
        sem_err err;
        assert_int_equal(kv_pool_create(&g, &pp, &pool, &err), SEM_EINVAL);
        assert_null(pool);
        assert_non_null(strstr(err.msg, "kv ring"));
    }
    kv_ring ok = ring_of(WINDOW, 2);
    kv_pool_params pp = {.budget_bytes = kv_block_bytes(&g) - 1, .ring = &ok}; /* not one block */
    kv_pool *pool = NULL;
    sem_err err;
    assert_int_equal(kv_pool_create(&g, &pp, &pool, &err), SEM_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_pool_unchanged),
        cmocka_unit_test(test_ring_memory_bound),
        cmocka_unit_test(test_ring_sharing),
        cmocka_unit_test(test_ring_covers),
        cmocka_unit_test(test_bad_rings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
