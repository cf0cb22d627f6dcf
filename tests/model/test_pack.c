/* test_pack.c - model_pack_for on a real-shape q4 model (SmolLM2-135M's
 * width, 2 layers, zero weights from tools/gen_model.py): every Q4 matrix
 * the forward multiplies is packed, the packed copy is as large as their
 * bytes, and the file pages read while packing leave this process's RSS
 * (RssFile in /proc/self/status), so the weights are not resident twice.
 * Skipped where the kernels do not pack (no AVX-512 VNNI).
 */
#include "model/model.h"

#include "test_util.h"

static long rss_file_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssFile: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

static void test_pack_releases_file_pages(void **state)
{
    (void)state;
    char path[512], *out = NULL;
    snprintf(path, sizeof path, "%s/models/pack-smollm2-l2", tu_build_dir());
    int rc = tu_run(&out, "/usr/bin/python3 %s/tools/gen_model.py --shape smollm2-135m --layers 2 --dtype q4 "
                          "--zero-weights --seed 1 --if-missing --quiet --out %s",
                    tu_source_dir(), path);
    if (rc) fprintf(stderr, "%s\n", out);
    free(out);
    assert_int_equal(rc, 0);
    model *m;
    tp_pool *pool;
    kn_ctx *kc;
    sem_err err;
    if (model_load(path, &m, &err)) fail_msg("%s", err.msg);
    assert_int_equal(tp_create(2, &pool, &err), SEM_OK);
    kn_ctx_params kp = kn_ctx_default_params();
    kp.pool = pool;
    kp.max_cols = model_max_matmul_cols(m);
    assert_int_equal(kn_ctx_create(&kp, &kc, &err), SEM_OK);
    long before = rss_file_kib();
    assert_int_equal(model_pack_for(m, kc, &err), SEM_OK);
    long after = rss_file_kib();
    size_t packed = model_packed_bytes(m);
    print_message("packed %.1f MiB; RssFile %ld -> %ld KiB\n", (double)packed / 1048576.0, before, after);
    if (packed) {
        /* the tied embedding (the lm_head) and the 2 layers: all of the weights */
        assert_true(packed >= model_weight_bytes(m) * 95 / 100 && packed <= model_weight_bytes(m));
        /* packing read every packed byte of the file (19 MiB here); what
         * it leaves mapped is partial pages at tensor edges and code */
        assert_true(before >= 0 && after >= 0 && (after - before) * 1024L < (long)(packed / 8));
    }
    kn_ctx_destroy(kc);
    tp_destroy(pool);
    model_destroy(m);
    if (!packed) skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_releases_file_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
