/* test_families_spec.c - config.json -> model_spec for DeepSeek-V2 and
 * Gemma 3, and real-shape load checks:
 *   - DeepSeek-Coder-V2-Lite's config: MLA (query/key heads 192, value
 *     heads 128; the cache holds the 576/512 latent, 4.7x less than full
 *     K/V), YaRN factors (softmax mscale^2, cos/sin factor 1 when mscale ==
 *     mscale_all_dim), MoE layout;
 *   - Gemma 3: a bare Gemma3ForCausalLM config takes Gemma3TextConfig's
 *     defaults; a Gemma3ForConditionalGeneration config (gemma-3-4b-it's
 *     text_config subset) parses, with the bf16-rounded embedding scale and
 *     linear rope scaling; sliding layers from the pattern and layer_types;
 *   - a table of malformed configs, each with its specific status;
 *   - real shapes load (all-zero sparse weights, instant): Qwen2.5-0.5B
 *     (24 layers, and one forward token), Qwen2.5-14B (2 of 48 layers),
 *     DeepSeek-V2-Lite (2 of 27 layers: stacked q4 experts at full size) and
 *     Gemma-3-1B (2 of 26 layers), with their spec, geometry and counts;
 *   - model directories whose config disagrees with the tensors (expert
 *     widths, stacked and per-expert; router size; q_lora; latent dims;
 *     Gemma layers; an image-text checkpoint labelled text-only) fail with
 *     an error naming the tensor.
 */
#include "model/model.h"

#include "test_util.h"

#include <jansson.h>
#include <math.h>

static const char *LITE =
    "{\"architectures\": [\"DeepseekV2ForCausalLM\"], \"attention_bias\": false, \"bos_token_id\": 100000,"
    " \"eos_token_id\": 100001, \"first_k_dense_replace\": 1, \"hidden_act\": \"silu\", \"hidden_size\": 2048,"
    " \"intermediate_size\": 10944, \"kv_lora_rank\": 512, \"max_position_embeddings\": 163840,"
    " \"model_type\": \"deepseek_v2\", \"moe_intermediate_size\": 1408, \"moe_layer_freq\": 1, \"n_group\": 1,"
    " \"n_routed_experts\": 64, \"n_shared_experts\": 2, \"norm_topk_prob\": false, \"num_attention_heads\": 16,"
    " \"num_experts_per_tok\": 6, \"num_hidden_layers\": 27, \"num_key_value_heads\": 16, \"q_lora_rank\": null,"
    " \"qk_nope_head_dim\": 128, \"qk_rope_head_dim\": 64, \"rms_norm_eps\": 1e-06,"
    " \"rope_scaling\": {\"beta_fast\": 32, \"beta_slow\": 1, \"factor\": 40, \"mscale\": 0.707,"
    " \"mscale_all_dim\": 0.707, \"original_max_position_embeddings\": 4096, \"type\": \"yarn\"},"
    " \"rope_theta\": 10000, \"routed_scaling_factor\": 1.0, \"scoring_func\": \"softmax\","
    " \"tie_word_embeddings\": false, \"topk_group\": 1, \"topk_method\": \"greedy\", \"v_head_dim\": 128,"
    " \"vocab_size\": 102400}";

static const char *GEMMA_4B =
    "{\"architectures\": [\"Gemma3ForConditionalGeneration\"], \"boi_token_index\": 255999,"
    " \"eos_token_id\": [1, 106], \"model_type\": \"gemma3\", \"torch_dtype\": \"bfloat16\","
    " \"quantization\": {\"group_size\": 64, \"bits\": 4},"
    " \"text_config\": {\"hidden_size\": 2560, \"intermediate_size\": 10240, \"model_type\": \"gemma3_text\","
    " \"num_hidden_layers\": 34, \"rope_scaling\": {\"factor\": 8.0, \"rope_type\": \"linear\"},"
    " \"sliding_window\": 1024}, \"vision_config\": {\"hidden_size\": 1152}}";

static sem_status parse(const char *text, model_spec *s, sem_err *err)
{
    json_error_t je;
    json_t *cfg = json_loads(text, 0, &je);
    assert_non_null(cfg);
    sem_status st = model_spec_parse(cfg, "config.json", s, err);
    json_decref(cfg);
    return st;
}

/* base with `patch` (a JSON object) merged into its text config. */
static sem_status parse_patched(const char *base, const char *patch, sem_err *err)
{
    json_error_t je;
    json_t *cfg = json_loads(base, 0, &je), *p = json_loads(patch, 0, &je);
    assert_non_null(cfg);
    assert_non_null(p);
    json_t *obj = json_object_get(cfg, "text_config") ? json_object_get(cfg, "text_config") : cfg;
    json_object_update(obj, p);
    model_spec s;
    sem_status st = model_spec_parse(cfg, "config.json", &s, err);
    if (st == SEM_OK) model_spec_fini(&s);
    json_decref(p);
    json_decref(cfg);
    return st;
}

static double mscale(double f, double m) { return 0.1 * m * log(f) + 1.0; }

static void test_deepseek_lite_spec(void **state)
{
    (void)state;
    model_spec s;
    sem_err err;
    assert_int_equal(parse(LITE, &s, &err), SEM_OK);
    assert_int_equal(s.arch, MODEL_ARCH_DEEPSEEK2);
    assert_int_equal(s.head_dim, 192);
    assert_int_equal(s.v_head_dim, 128);
    assert_int_equal(s.n_kv_heads, 1);
    assert_int_equal(s.rope_dim, 64);
    assert_true(s.rope_interleaved);
    assert_int_equal(s.q_lora_rank, 0);
    assert_int_equal(s.rope_scaling, MODEL_ROPE_YARN);
    double want = 1.0 / sqrt(192.0) * mscale(40, 0.707) * mscale(40, 0.707);
    assert_true(fabs(s.attn_scale - want) < 1e-6 * want);
    assert_true(fabs(s.rope_attn_factor - 1.0f) < 1e-6f);
    assert_false(model_spec_layer_is_moe(&s, 0));
    assert_true(model_spec_layer_is_moe(&s, 1) && model_spec_layer_is_moe(&s, 26));
    assert_int_equal(s.n_experts, 64);
    assert_int_equal(s.n_experts_used, 6);
    assert_int_equal(s.n_shared_experts, 2);
    assert_false(s.tied_embeddings);
    /* the cache holds the latent: [c 512 | k_pe 64] as K, c as V */
    model_kv_geometry g = model_spec_kv_geometry(&s);
    assert_int_equal(g.n_layers, 27);
    assert_int_equal(g.n_kv_heads, 1);
    assert_int_equal(g.head_dim, 576);
    assert_int_equal(g.v_head_dim, 512);
    /* 4.7x smaller than full per-head K and V (16 x (192 + 128)) */
    size_t latent = (size_t)g.n_kv_heads * (size_t)(g.head_dim + g.v_head_dim);
    size_t full = (size_t)s.n_heads * (size_t)(s.head_dim + s.v_head_dim);
    assert_true(latent * 47 <= full * 10);
    /* YaRN frequencies: the fastest dim is kept, the slowest divided by 40 */
    float inv[32];
    model_spec_rope_inv_freq(&s, false, inv);
    assert_true(fabsf(inv[0] - 1.0f) < 1e-6f);
    double slow = 1.0 / pow(10000.0, 62.0 / 64.0) / 40.0;
    assert_true(fabs(inv[31] - slow) < 1e-6 * slow);
    model_spec_fini(&s);
}

static void test_gemma3_specs(void **state)
{
    (void)state;
    model_spec s;
    sem_err err;
    /* a bare config: Gemma3TextConfig's defaults */
    assert_int_equal(parse("{\"architectures\": [\"Gemma3ForCausalLM\"]}", &s, &err), SEM_OK);
    assert_int_equal(s.arch, MODEL_ARCH_GEMMA3);
    assert_int_equal(s.n_layers, 26);
    assert_int_equal(s.hidden, 2304);
    assert_int_equal(s.head_dim, 256);
    assert_int_equal(s.n_kv_heads, 4);
    assert_int_equal(s.vocab, 262208);
    assert_int_equal(s.sliding_window, 4096);
    assert_true(s.tied_embeddings);
    assert_int_equal(s.act, MODEL_ACT_GELU_TANH);
    assert_true(s.norm_offset == 1.0f && s.qk_norm && s.sandwich_norms);
    assert_true(fabsf(s.attn_scale - 1.0f / 16.0f) < 1e-7f);
    for (int l = 0; l < 26; l++) assert_int_equal(s.layer_sliding[l], (l + 1) % 6 != 0);
    assert_true(fabsf(s.rope_theta - 1e6f) < 1.0f && fabsf(s.rope_local_theta - 1e4f) < 1e-3f);
    model_spec_fini(&s);
    /* gemma-3-4b-it: text_config holds only what differs */
    assert_int_equal(parse(GEMMA_4B, &s, &err), SEM_OK);
    assert_int_equal(s.n_layers, 34);
    assert_int_equal(s.hidden, 2560);
    assert_int_equal(s.n_heads, 8);
    assert_int_equal(s.sliding_window, 1024);
    assert_int_equal(s.rope_scaling, MODEL_ROPE_LINEAR);
    assert_true(s.embed_scale == 50.5f); /* sqrt(2560) = 50.596 in bf16 */
    assert_int_equal(s.n_eos, 2);
    assert_int_equal(s.eos_ids[1], 106);
    assert_int_equal(s.quant_bits, 4);
    float global[128], local[128];
    model_spec_rope_inv_freq(&s, false, global);
    model_spec_rope_inv_freq(&s, true, local);
    assert_true(fabsf(global[0] - 1.0f / 8.0f) < 1e-7f); /* linear scaling on global layers only */
    assert_true(fabsf(local[0] - 1.0f) < 1e-7f);
    assert_true(fabsf(local[1] - powf(10000.0f, -2.0f / 256.0f)) < 1e-6f);
    model_spec_fini(&s);
    /* layer_types wins over the pattern */
    const char *lt = "{\"architectures\": [\"Gemma3ForCausalLM\"], \"num_hidden_layers\": 3,"
                     " \"layer_types\": [\"full_attention\", \"sliding_attention\", \"full_attention\"]}";
    assert_int_equal(parse(lt, &s, &err), SEM_OK);
    assert_true(!s.layer_sliding[0] && s.layer_sliding[1] && !s.layer_sliding[2]);
    model_spec_fini(&s);
}

typedef struct bad_case {
    const char *base;   /* LITE, GEMMA_4B or an inline config */
    const char *patch;  /* merged into the text config */
    sem_status want;
    const char *needle; /* in the message */
} bad_case;

static void test_malformed(void **state)
{
    (void)state;
    static const char *GEMMA = "{\"architectures\": [\"Gemma3ForCausalLM\"], \"num_hidden_layers\": 4}";
    static const char *LLAMA = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_attention_heads\": 2,"
                               " \"num_hidden_layers\": 1, \"intermediate_size\": 128, \"vocab_size\": 10}";
#define GROUPED "\"topk_method\": \"group_limited_greedy\", "
    const bad_case cases[] = {
        {LITE, "{\"kv_lora_rank\": null}", SEM_ECORRUPT, "kv_lora_rank"},
        {LITE, "{\"qk_rope_head_dim\": 63}", SEM_ECORRUPT, "even"},
        {LITE, "{\"qk_nope_head_dim\": 1000}", SEM_ECORRUPT, "exceeds"},
        {LITE, "{\"num_experts_per_tok\": 65}", SEM_ECORRUPT, "outside"},
        {LITE, "{\"n_routed_experts\": 4}", SEM_ECORRUPT, "exceeds"},
        {LITE, "{\"n_routed_experts\": 4}", SEM_ECORRUPT, "exceeds"},
        {LITE, "{\"n_routed_experts\": 5000}", SEM_ECORRUPT, "n_routed_experts"},
        {LITE, "{\"moe_intermediate_size\": 0}", SEM_ECORRUPT, "moe_intermediate_size"},
        {LITE, "{\"scoring_func\": \"sigmoid\"}", SEM_EUNSUPPORTED, "scoring_func"},
        {LITE, "{\"topk_method\": \"noaux_tc\"}", SEM_EUNSUPPORTED, "topk_method"},
        {LITE, "{\"hidden_act\": \"gelu\"}", SEM_EUNSUPPORTED, "hidden_act"},
        {LITE, "{\"attention_bias\": true}", SEM_EUNSUPPORTED, "attention_bias"},
        {LITE, "{" GROUPED "\"n_group\": 3, \"topk_group\": 2}", SEM_ECORRUPT, "n_group 3"},
        {LITE, "{" GROUPED "\"n_group\": 16, \"topk_group\": 1}", SEM_ECORRUPT, "topk_group 1"},
        {LITE, "{" GROUPED "\"n_group\": 8, \"topk_group\": 9}", SEM_ECORRUPT, "topk_group 9"},
        {LITE, "{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, \"beta_fast\": 1, \"beta_slow\": 32}}",
         SEM_ECORRUPT, "beta_fast"},
        {LITE, "{\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2}}", SEM_EUNSUPPORTED, "dynamic"},
        {GEMMA, "{\"layer_types\": [\"sliding_attention\"]}", SEM_ECORRUPT, "layer_types"},
        {GEMMA, "{\"layer_types\": [\"a\", \"b\", \"c\", \"d\"]}", SEM_ECORRUPT, "layer_types[0]"},
        {GEMMA, "{\"hidden_activation\": \"relu\"}", SEM_EUNSUPPORTED, "hidden_activation"},
        {GEMMA, "{\"use_bidirectional_attention\": true}", SEM_EUNSUPPORTED, "bidirectional"},
        {GEMMA, "{\"sliding_window\": 0}", SEM_ECORRUPT, "sliding_window"},
        {GEMMA, "{\"sliding_window_pattern\": 0}", SEM_ECORRUPT, "sliding_window_pattern"},
        {GEMMA, "{\"query_pre_attn_scalar\": -1}", SEM_ECORRUPT, "query_pre_attn_scalar"},
        {GEMMA, "{\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 8}}", SEM_EUNSUPPORTED, "yarn"},
        {GEMMA_4B, "{\"num_hidden_layers\": \"34\"}", SEM_ECORRUPT, "integer"},
        {"{\"architectures\": [\"Gemma3ForConditionalGeneration\"]}", "{}", SEM_ECORRUPT, "text_config"},
        {"{\"architectures\": [\"Gemma3ForConditionalGeneration\"], \"text_config\": 5}", "{}", SEM_ECORRUPT, "text_config"},
        {LLAMA, "{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}}", SEM_EUNSUPPORTED, "yarn"},
    };
#undef GROUPED
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        sem_err err = {0};
        sem_status st = parse_patched(c->base, c->patch, &err);
        if (st != c->want || !strstr(err.msg, c->needle))
            fail_msg("case %zu (%s): got %s \"%s\", want %s with \"%s\"", i, c->patch, sem_status_name(st), err.msg,
                     sem_status_name(c->want), c->needle);
    }
    /* valid grouped routing parses */
    sem_err err;
    assert_int_equal(parse_patched(LITE, "{\"topk_method\": \"group_limited_greedy\", \"n_group\": 8, \"topk_group\": 3}", &err), SEM_OK);
}

/* ---- real shapes -------------------------------------------------------- */

static model *load_zero(const char *name, const char *args)
{
    char path[512], *out = NULL;
    snprintf(path, sizeof path, "%s/models/%s", tu_build_dir(), name);
    int rc = tu_run(&out, "/usr/bin/python3 %s/tools/gen_model.py --zero-weights --seed 1 --if-missing --quiet %s --out %s",
                    tu_source_dir(), args, path);
    if (rc) fprintf(stderr, "%s\n", out);
    free(out);
    assert_int_equal(rc, 0);
    model *m;
    sem_err err;
    if (model_load(path, &m, &err)) fail_msg("%s", err.msg);
    return m;
}

static void test_qwen25_real_shapes(void **state)
{
    (void)state;
    model *m = load_zero("shape-qwen2.5-0.5b", "--shape qwen2.5-0.5b");
    const model_spec *s = model_get_spec(m);
    assert_int_equal(s->arch, MODEL_ARCH_QWEN2);
    assert_int_equal(s->n_layers, 24);
    assert_int_equal(s->hidden, 896);
    assert_int_equal(s->head_dim, 64);
    assert_int_equal(s->n_kv_heads, 2);
    assert_true(s->qkv_bias && s->tied_embeddings);
    assert_true(model_n_params(m) > 490000000ull && model_n_params(m) < 500000000ull); /* 494M */
    /* one token through the real-shape forward pass (zero weights: zero logits) */
    tp_pool *pool;
    kn_ctx *kc;
    model_run *run;
    sem_err err;
    assert_int_equal(tp_create(2, &pool, &err), SEM_OK);
    kn_ctx_params kp = kn_ctx_default_params();
    kp.pool = pool;
    kp.max_cols = model_max_matmul_cols(m);
    assert_int_equal(kn_ctx_create(&kp, &kc, &err), SEM_OK);
    assert_int_equal(model_run_create(m, 4, &run, &err), SEM_OK);
    uint8_t *kvbuf = calloc(1, 24 * 2 * 16 * 2 * 64 * 4);
    int32_t blocks[1] = {0}, tok = 151643;
    kn_kv_view kv = {.dtype = KN_KV_F32, .base = kvbuf, .block_stride = 24 * 2 * 16 * 2 * 64 * 4,
                     .k_offset = 0, .v_offset = 16 * 2 * 64 * 4, .k_row_bytes = 64 * 4, .v_row_bytes = 64 * 4,
                     .n_kv_heads = 2, .head_dim = 64, .v_head_dim = 64, .block_tokens = 16, .block_ids = blocks};
    float *logits = calloc((size_t)s->vocab, sizeof(float));
    logits[7] = 1.0f;
    model_seq seq = {.tokens = &tok, .n_tokens = 1, .pos0 = 0, .kv = kv, .kv_layer_stride = 2 * 16 * 2 * 64 * 4,
                     .logits = logits};
    model_forward(m, kc, run, &seq, 1);
    for (int32_t v = 0; v < s->vocab; v++) assert_true(logits[v] == 0.0f);
    free(logits);
    free(kvbuf);
    model_run_destroy(run);
    kn_ctx_destroy(kc);
    tp_destroy(pool);
    model_destroy(m);

    m = load_zero("shape-qwen2.5-14b-l2", "--shape qwen2.5-14b --layers 2");
    s = model_get_spec(m);
    assert_int_equal(s->hidden, 5120);
    assert_int_equal(s->n_heads, 40);
    assert_int_equal(s->n_kv_heads, 8);
    assert_int_equal(s->head_dim, 128);
    assert_int_equal(s->intermediate, 13824);
    assert_int_equal(s->vocab, 152064);
    assert_false(s->tied_embeddings);
    model_kv_geometry g = model_spec_kv_geometry(s);
    assert_int_equal(g.n_layers, 2);
    assert_int_equal(g.head_dim, 128);
    /* per layer 5120*(5120+2*1024+5120) + 3*5120*13824, plus 2 * 152064*5120 */
    uint64_t want = 2ull * (5120ull * (5120 + 2048 + 5120) + 3ull * 5120 * 13824) + 2ull * 152064 * 5120;
    assert_true(model_n_params(m) >= want && model_n_params(m) < want + 100000);
    model_destroy(m);
}

static void test_deepseek_and_gemma_real_shapes(void **state)
{
    (void)state;
    model *m = load_zero("shape-deepseek-v2-lite-l2", "--shape deepseek-v2-lite --layers 2");
    const model_spec *s = model_get_spec(m);
    assert_int_equal(s->n_experts, 64);
    assert_int_equal(s->moe_intermediate, 1408);
    assert_int_equal(model_spec_kv_geometry(s).head_dim, 576);
    /* decode reads 6 of 64 routed experts (plus everything else) */
    uint64_t all = model_weight_bytes(m), per_tok = model_decode_bytes_per_token(m);
    assert_true(per_tok < all / 2);
    model_destroy(m);
    m = load_zero("shape-gemma3-1b-l2", "--shape gemma3-1b --layers 2");
    s = model_get_spec(m);
    assert_int_equal(s->hidden, 1152);
    assert_int_equal(s->n_kv_heads, 1);
    assert_int_equal(s->head_dim, 256);
    assert_int_equal(s->sliding_window, 512);
    assert_true(s->layer_sliding[0] && s->layer_sliding[1]);
    model_destroy(m);
}

/* A generated tiny model whose config.json is then edited (sed script):
 * load must fail with `want` and a message naming `needle`. */
static void expect_bad_dir(const char *gen_args, const char *sed, sem_status want, const char *needle)
{
    char dir[512], *out = NULL;
    snprintf(dir, sizeof dir, "%s/models/bad-family", tu_build_dir());
    int rc = tu_run(&out, "rm -rf %s && /usr/bin/python3 %s/tools/gen_model.py --shape tiny --quiet %s --out %s && sed -i '%s' %s/config.json",
                    dir, tu_source_dir(), gen_args, dir, sed, dir);
    if (rc) fprintf(stderr, "%s\n", out);
    free(out);
    assert_int_equal(rc, 0);
    model *m = NULL;
    sem_err err = {0};
    sem_status st = model_load(dir, &m, &err);
    if (st != want || !strstr(err.msg, needle))
        fail_msg("%s | %s: got %s \"%s\", want %s with \"%s\"", gen_args, sed, sem_status_name(st), err.msg,
                 sem_status_name(want), needle);
    model_destroy(m);
    tu_run(NULL, "rm -rf %s", dir);
}

static void test_malformed_dirs(void **state)
{
    (void)state;
    /* experts narrower than the files: stacked (MLX) and per-expert (HF) */
    expect_bad_dir("--arch deepseek2 --dtype q4 --layers 2", "s/\"moe_intermediate_size\": 128/\"moe_intermediate_size\": 64/",
                   SEM_ECORRUPT, "switch_mlp.gate_proj.weight' has shape [8, 128, 32], expected [8, 64, 32]");
    expect_bad_dir("--arch deepseek2 --layers 2", "s/\"moe_intermediate_size\": 128/\"moe_intermediate_size\": 64/",
                   SEM_ECORRUPT, "experts.0.gate_proj.weight' has shape [128, 256], expected [64, 256]");
    /* a router for more experts than the files hold */
    expect_bad_dir("--arch deepseek2 --layers 2", "s/\"n_routed_experts\": 8/\"n_routed_experts\": 9/", SEM_ECORRUPT,
                   "mlp.gate.weight' has shape [8, 256], expected [9, 256]");
    /* a q_lora checkpoint read as q_lora_rank null: q_proj is missing */
    expect_bad_dir("--arch deepseek2 --layers 2 --q-lora-rank 64", "s/\"q_lora_rank\": 64/\"q_lora_rank\": null/",
                   SEM_ECORRUPT, "missing tensor 'model.layers.0.self_attn.q_proj.weight'");
    /* the MLA latent dims disagree with kv_a_proj_with_mqa */
    expect_bad_dir("--arch deepseek2 --layers 2", "s/\"kv_lora_rank\": 128/\"kv_lora_rank\": 64/", SEM_ECORRUPT,
                   "kv_a_proj_with_mqa.weight' has shape [192, 256], expected [128, 256]");
    /* Gemma: one layer more than the files hold; an image-text checkpoint
     * relabelled as text-only (its tensors are not under model.) */
    expect_bad_dir("--arch gemma3 --layers 3", "s/\"num_hidden_layers\": 3/\"num_hidden_layers\": 4/", SEM_ECORRUPT,
                   "missing tensor 'model.layers.3.");
    expect_bad_dir("--arch gemma3 --layers 3 --multimodal", "s/Gemma3ForConditionalGeneration/Gemma3ForCausalLM/", SEM_ECORRUPT,
                   "missing tensor 'model.embed_tokens.weight'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deepseek_lite_spec),
        cmocka_unit_test(test_gemma3_specs),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_qwen25_real_shapes),
        cmocka_unit_test(test_deepseek_and_gemma_real_shapes),
        cmocka_unit_test(test_malformed_dirs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
