/* cmd_perplexity.c - `semantic perplexity`: the C engine's perplexity over a
 * token stream, measured with the protocol of the demo model's trainer
 * (tools/demo/llama_torch.py eval_windows / window_nll / perplexity), so
 * its figure compares with PyTorch's and with reference.json:
 *
 *   the stream is cut into consecutive windows of ctx tokens starting at
 *   token 0 (stride ctx; a final shorter window is kept if it has >= 2
 *   tokens); each window runs from an empty cache at positions 0..len-1;
 *   every token but the window's first is scored with -log softmax of the
 *   previous position's logits (in double); ppl = exp(total NLL / count).
 *
 * The stream comes from a text file (the C tokenizer, special tokens on),
 * a corpus .jsonl (each line's "text" encoded with special tokens, then the
 * model's first EOS id appended: how tools/demo/tokenizer.js builds
 * valid.bin), a file of ids, or the `head` windows of the model
 * directory's reference.json. It runs at KV 16/8/4 (32) bits, and with
 * --save-restore each window is cut in the middle: the KV so far is
 * written with the cache room's real file writer, the rows are loaded
 * back from that file into fresh blocks and scoring continues there.
 *
 * Divisions: options; the token stream; a sequence's blocks; scoring a
 * window; a pass per KV format and the summary.
 *
 * The command drives model_forward over its own kv_pool (the runner hides
 * its blocks, and save/restore needs them). Thread: main, acting as the
 * engine thread (it owns the pool and the model scratch).
 */
#include "app/commands.h"
#include "app/runtime.h"
#include "cache/cache.h"
#include "kv/kv.h"
#include "tokenizer/tokenizer.h"

#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PPL_MAX_INPUT_BYTES ((size_t)1 << 30) /* --text / --jsonl / --ids files */
#define PPL_MAX_REFERENCE_BYTES ((size_t)64 << 20)
#define PPL_CTX_CAP 2048                      /* default ctx: min(max_pos, this) */
#define PPL_MAX_CHUNK 512                     /* tokens per forward call */
#define PPL_LOGITS_BUDGET ((size_t)64 << 20)  /* bytes of [chunk][vocab] logits */
#define PPL_MAX_KV 3

/* ===================================================================== */
/* Options                                                                */
/* ===================================================================== */

typedef struct ppl_opts {
    const char *model_dir;
    const char *text, *jsonl, *ids; /* one input, or reference */
    bool reference;
    int kv_bits[PPL_MAX_KV];        /* the passes, in order */
    int n_kv;
    long ctx;                       /* when ctx_given */
    bool ctx_given;
    long windows;                   /* 0 = all */
    long threads;
    long block_tokens;
    bool save_restore;
    bool json;
} ppl_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: semantic perplexity --model DIR (--text FILE | --jsonl FILE | --ids FILE |\n"
            "                           --reference) [options]\n\n"
            "Perplexity of the model over a token stream, with the protocol of the demo\n"
            "model's trainer (tools/demo/llama_torch.py): consecutive windows of --ctx\n"
            "tokens from token 0 (stride = ctx; a last shorter window is kept if it has at\n"
            "least 2 tokens), each from an empty cache; every token but a window's first\n"
            "is scored; ppl = exp(total NLL / tokens scored).\n\n"
            "  --model DIR        model directory (required)\n"
            "  --text FILE        plain text, encoded with the model's tokenizer (BOS etc.)\n"
            "  --jsonl FILE       one JSON object with a \"text\" per line (the demo corpus'\n"
            "                     valid.jsonl): each encoded with special tokens, then the\n"
            "                     model's EOS id appended, all concatenated\n"
            "  --ids FILE         token ids separated by spaces, newlines or commas\n"
            "  --reference        the 'head' windows of DIR/reference.json (no corpus\n"
            "                     needed); also prints the reference's own figures\n"
            "  --ctx N            window length (default: reference.json's window, else\n"
            "                     the model's max_position_embeddings up to %d)\n"
            "  --windows N        score only the first N windows\n"
            "  --kv-bits B        KV cache format: 16 (f16, default), 8, 4, 32 (f32), or\n"
            "                     'all' (16, 8 and 4 with their deltas against 16)\n"
            "  --save-restore     in the middle of each window write the KV to a cache\n"
            "                     file (the agent cache format), load it back into fresh\n"
            "                     blocks and go on; prints ppl with and without\n"
            "  --block-tokens N   KV block size in tokens (default 256, as the engine)\n"
            "  --threads N        compute threads (default: one per core)\n"
            "  --json             print the results as one JSON object\n\n"
            "Progress goes to stderr; the summary (windows, tokens scored, ppl, mean NLL,\n"
            "tok/s) to stdout. Exit status 1 on bad input or failure, 2 on bad usage.\n",
            PPL_CTX_CAP);
}

static bool parse_kv_bits(const char *s, ppl_opts *o)
{
    if (!strcmp(s, "all")) {
        o->kv_bits[0] = 16, o->kv_bits[1] = 8, o->kv_bits[2] = 4;
        o->n_kv = 3;
        return true;
    }
    long v;
    if (!app_parse_long(s, 4, 32, &v) || (v != 4 && v != 8 && v != 16 && v != 32)) return false;
    o->kv_bits[0] = (int)v;
    o->n_kv = 1;
    return true;
}

static int parse_opts(int argc, char **argv, ppl_opts *o)
{
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},   {"text", required_argument, 0, 't'},
        {"jsonl", required_argument, 0, 'J'},   {"ids", required_argument, 0, 'i'},
        {"reference", no_argument, 0, 'r'},     {"ctx", required_argument, 0, 'c'},
        {"windows", required_argument, 0, 'w'}, {"kv-bits", required_argument, 0, 'b'},
        {"save-restore", no_argument, 0, 's'},  {"block-tokens", required_argument, 0, 'B'},
        {"threads", required_argument, 0, 'j'}, {"json", no_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    *o = (ppl_opts){.kv_bits = {16}, .n_kv = 1, .block_tokens = 256};
    int c, idx = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
        bool ok = true;
        switch (c) {
        case 'm': o->model_dir = optarg; break;
        case 't': o->text = optarg; break;
        case 'J': o->jsonl = optarg; break;
        case 'i': o->ids = optarg; break;
        case 'r': o->reference = true; break;
        case 'c': ok = app_parse_long(optarg, LONG_MIN, LONG_MAX, &o->ctx), o->ctx_given = true; break;
        case 'w': ok = app_parse_long(optarg, 1, LONG_MAX, &o->windows); break;
        case 'b': ok = parse_kv_bits(optarg, o); break;
        case 's': o->save_restore = true; break;
        case 'B': ok = app_parse_long(optarg, 1, 1 << 16, &o->block_tokens); break;
        case 'j': ok = app_parse_long(optarg, 1, 256, &o->threads); break;
        case 'o': o->json = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "semantic perplexity: bad value '%s' for --%s\n", optarg, longopts[idx].name);
            return 2;
        }
    }
    int n_inputs = !!o->text + !!o->jsonl + !!o->ids + o->reference;
    if (!o->model_dir || n_inputs != 1 || optind != argc) {
        fprintf(stderr, "semantic perplexity: --model and exactly one of --text, --jsonl, --ids or "
                        "--reference are required (see --help)\n");
        return 2;
    }
    if (o->ctx_given && o->ctx < 2) {
        fprintf(stderr, "semantic perplexity: --ctx %ld: a window needs at least 2 tokens\n", o->ctx);
        return 2;
    }
    return -1;
}

/* ===================================================================== */
/* The token stream                                                       */
/* ===================================================================== */

typedef struct ppl_stream {
    tok_ids ids;          /* owned */
    char what[160];       /* where it came from, for the summary */
    long ref_window;      /* reference.json: its window (else 0) */
    double ref_ppl_torch; /* reference.json head figures (else 0) */
    double ref_ppl_numpy;
    double ref_full_ppl;  /* reference.json perplexity.ppl (the whole validation) */
} ppl_stream;

static sem_status stream_push(ppl_stream *ps, long v, sem_err *err)
{
    if (!tok_ids_push(&ps->ids, (tok_id)v)) return sem_errf(err, SEM_ENOMEM, "out of memory for the stream");
    return SEM_OK;
}

/* A whole input file; errors name the flag. */
static sem_status read_input(const char *flag, const char *path, char **data, size_t *len, sem_err *err)
{
    sem_status st = fs_read_file(path, PPL_MAX_INPUT_BYTES, data, len, err);
    if (st) sem_err_prefix(err, "%s", flag);
    return st;
}

/* Ids separated by whitespace and/or commas. */
static sem_status load_ids(const char *path, ppl_stream *ps, sem_err *err)
{
    char *data;
    size_t len;
    sem_status st = read_input("--ids", path, &data, &len, err);
    if (st) return st;
    const char *p = data;
    while (!st) {
        while (*p == ',' || *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && !strchr(", \n\t\r", *end)))
            st = sem_errf(err, SEM_EINVAL, "%s: bad token id at byte %zu: \"%.16s\" (expected ids like 1 2 3 or 1,2,3)",
                          path, (size_t)(p - data), p);
        else
            st = stream_push(ps, v, err);
        p = end;
    }
    free(data);
    snprintf(ps->what, sizeof ps->what, "ids %s", path);
    return st;
}

static sem_status load_text(const char *path, const tok_tokenizer *tok, ppl_stream *ps, sem_err *err)
{
    char *data;
    size_t len;
    sem_status st = read_input("--text", path, &data, &len, err);
    if (st) return st;
    st = tok_encode(tok, NULL, data, len, true, &ps->ids, err);
    if (st) sem_err_prefix(err, "%s", path);
    free(data);
    snprintf(ps->what, sizeof ps->what, "text %s", path);
    return st;
}

/* One passage line of a .jsonl: encode its "text" and append eos. */
static sem_status jsonl_line(const char *line, size_t n, size_t lineno, const tok_tokenizer *tok, tok_encoder *enc,
                             int32_t eos, ppl_stream *ps, sem_err *err)
{
    json_error_t je;
    json_t *obj = json_loadb(line, n, 0, &je);
    json_t *text = json_is_object(obj) ? json_object_get(obj, "text") : NULL;
    sem_status st = SEM_OK;
    if (!obj)
        st = sem_errf(err, SEM_EINVAL, "line %zu: not JSON: %s", lineno, je.text);
    else if (!json_is_string(text))
        st = sem_errf(err, SEM_EINVAL, "line %zu: expected an object with a string \"text\"", lineno);
    else
        st = tok_encode(tok, enc, json_string_value(text), json_string_length(text), true, &ps->ids, err);
    if (!st) st = stream_push(ps, eos, err);
    json_decref(obj);
    return st;
}

/* Each non-empty line's passage as <special tokens> text <eos>, like
 * tools/demo/tokenizer.js encodeSplit (which appends id 2 = </s>). */
static sem_status load_jsonl(const char *path, const tok_tokenizer *tok, int32_t eos, ppl_stream *ps, sem_err *err)
{
    if (eos < 0) return sem_errf(err, SEM_EINVAL, "--jsonl: the model has no eos_token_id to end passages with");
    char *data;
    size_t len, lineno = 0, n_docs = 0;
    sem_status st = read_input("--jsonl", path, &data, &len, err);
    if (st) return st;
    tok_encoder *enc = NULL;
    st = tok_encoder_create(tok, &enc, err);
    for (const char *p = data; !st && p < data + len;) {
        const char *nl = memchr(p, '\n', (size_t)(data + len - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(data + len - p);
        lineno++;
        if (n) {
            st = jsonl_line(p, n, lineno, tok, enc, eos, ps, err);
            n_docs++;
        }
        p += n + 1;
    }
    if (st) sem_err_prefix(err, "%s", path);
    tok_encoder_destroy(enc);
    free(data);
    snprintf(ps->what, sizeof ps->what, "jsonl %s (%zu passages)", path, n_docs);
    return st;
}

static double js_number(const json_t *root, const char *obj, const char *key)
{
    return json_number_value(json_object_get(json_object_get(root, obj), key));
}

/* reference.json's head: its ids and window, and the figures to compare. */
static sem_status load_reference(const char *dir, ppl_stream *ps, sem_err *err)
{
    char path[4096];
    if (!fs_join(path, sizeof path, dir, "reference.json"))
        return sem_errf(err, SEM_EINVAL, "model path too long");
    json_t *root;
    sem_status st = js_load_file(path, PPL_MAX_REFERENCE_BYTES, &root, err);
    if (st) return st;
    json_t *ids = json_object_get(json_object_get(root, "head"), "ids");
    json_t *win = json_object_get(json_object_get(root, "perplexity"), "window");
    if (!json_is_array(ids) || !json_is_integer(win) || json_integer_value(win) < 2)
        st = sem_errf(err, SEM_EINVAL, "%s: expected head.ids (array) and perplexity.window (integer >= 2)", path);
    for (size_t i = 0; !st && i < json_array_size(ids); i++) {
        json_t *v = json_array_get(ids, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            st = sem_errf(err, SEM_EINVAL, "%s: head.ids[%zu] is not a token id", path, i);
        else
            st = stream_push(ps, (long)json_integer_value(v), err);
    }
    if (!st) {
        ps->ref_window = (long)json_integer_value(win);
        ps->ref_ppl_torch = js_number(root, "head", "ppl_torch_f32");
        ps->ref_ppl_numpy = js_number(root, "head", "ppl_numpy_f64");
        ps->ref_full_ppl = js_number(root, "perplexity", "ppl");
        snprintf(ps->what, sizeof ps->what, "reference.json head (%zu windows)",
                 (size_t)json_integer_value(json_object_get(json_object_get(root, "head"), "windows")));
    }
    json_decref(root);
    return st;
}

static sem_status load_stream(const ppl_opts *o, const model_spec *s, ppl_stream *ps, sem_err *err)
{
    tok_ids_init(&ps->ids);
    sem_status st;
    if (o->reference) {
        st = load_reference(o->model_dir, ps, err);
    } else if (o->ids) {
        st = load_ids(o->ids, ps, err);
    } else {
        tok_tokenizer *tok = NULL;
        st = tok_load_dir(o->model_dir, &tok, err);
        if (!st && o->text) st = load_text(o->text, tok, ps, err);
        if (!st && o->jsonl) st = load_jsonl(o->jsonl, tok, s->n_eos ? s->eos_ids[0] : -1, ps, err);
        tok_destroy(tok);
    }
    for (size_t i = 0; !st && i < ps->ids.len; i++)
        if (ps->ids.data[i] >= s->vocab)
            st = sem_errf(err, SEM_EINVAL, "token id %d at index %zu is outside the vocabulary (%d)",
                          ps->ids.data[i], i, s->vocab);
    if (!st && ps->ids.len < 2)
        st = sem_errf(err, SEM_EINVAL, "the stream has %zu token(s); at least 2 are needed to score one", ps->ids.len);
    return st;
}

/* ===================================================================== */
/* One sequence's blocks                                                  */
/* ===================================================================== */

typedef struct ppl_seq {
    int32_t *blocks; /* owned block table [max_blocks] */
    size_t n_blocks; /* blocks held (one reference each) */
    size_t n_past;   /* tokens whose KV is stored */
} ppl_seq;

/* What every window of one pass shares. */
typedef struct ppl_ctx {
    const model *m;           /* borrowed */
    kn_ctx *kc;               /* borrowed */
    model_run *run;           /* owned by measure() */
    kv_pool *pool;            /* owned by run_pass() */
    float *logits;            /* owned by measure(): [chunk][vocab] */
    size_t vocab, chunk;
    const char *cache_path;   /* save/restore file */
    char fingerprint[17];
    ppl_seq a, b;             /* b: the restored copy of a */
} ppl_ctx;

static sem_status seq_reserve(ppl_ctx *c, ppl_seq *q, size_t n_tokens, sem_err *err)
{
    return kv_pool_grow(c->pool, q->blocks, &q->n_blocks, n_tokens, err);
}

static void seq_drop(ppl_ctx *c, ppl_seq *q)
{
    for (size_t i = 0; i < q->n_blocks; i++) kv_pool_unref(c->pool, q->blocks[i]);
    q->n_blocks = 0;
    q->n_past = 0;
}

/* ===================================================================== */
/* Scoring a window                                                       */
/* ===================================================================== */

/* -log softmax(row)[target], in double. */
static double row_nll(const float *row, size_t vocab, int32_t target)
{
    double mx = row[0];
    for (size_t i = 1; i < vocab; i++)
        if (row[i] > mx) mx = row[i];
    double sum = 0;
    for (size_t i = 0; i < vocab; i++) sum += exp((double)row[i] - mx);
    return log(sum) + mx - (double)row[target];
}

/* Feeds inputs[0..n) to q after its n_past tokens; adds the NLL of
 * targets[i] under the logits of inputs[i] to *nll. */
static sem_status feed_score(ppl_ctx *c, ppl_seq *q, const int32_t *inputs, const int32_t *targets, size_t n,
                             double *nll, sem_err *err)
{
    sem_status st = seq_reserve(c, q, q->n_past + n, err);
    if (st) return st;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < c->chunk ? n - done : c->chunk;
        model_seq seq = {
            .tokens = inputs + done,
            .n_tokens = k,
            .pos0 = (int32_t)q->n_past,
            .kv = kv_pool_view(c->pool, q->blocks),
            .kv_layer_stride = kv_pool_layer_stride(c->pool),
            .all_logits = true,
            .logits = c->logits,
        };
        model_forward(c->m, c->kc, c->run, &seq, 1);
        for (size_t i = 0; i < k; i++) *nll += row_nll(c->logits + i * c->vocab, c->vocab, targets[done + i]);
        q->n_past += k;
        done += k;
    }
    return SEM_OK;
}

/* Writes a's KV for tokens[0..a.n_past) to the cache file with the agent
 * cache writer. */
static sem_status save_a(ppl_ctx *c, const int32_t *tokens, sem_err *err)
{
    size_t n = c->a.n_past;
    cache_file_meta meta = {.geo = *kv_pool_geometry(c->pool), .n_tokens = (uint32_t)n};
    snprintf(meta.agent_id, sizeof meta.agent_id, "perplexity");
    snprintf(meta.model_id, sizeof meta.model_id, "%s", model_dir(c->m));
    memcpy(meta.fingerprint, c->fingerprint, sizeof c->fingerprint);
    kn_kv_view va = kv_pool_view(c->pool, c->a.blocks);
    return cache_file_write(c->cache_path, &meta, tokens, &va, kv_pool_layer_stride(c->pool), err);
}

/* Opens and verifies the file and loads it into b's fresh blocks
 * (allocated while a still holds its own, so they are other blocks), as
 * the engine does with a warm agent cache. */
static sem_status restore_into_b(ppl_ctx *c, size_t n, sem_err *err)
{
    cache_file *f = NULL;
    sem_status st = cache_file_open(c->cache_path, kv_pool_geometry(c->pool), c->fingerprint, &f, err);
    if (!st && cache_file_get_meta(f)->n_tokens != n)
        st = sem_errf(err, SEM_ECORRUPT, "%s: holds %u tokens, %zu were written", c->cache_path,
                      cache_file_get_meta(f)->n_tokens, n);
    if (!st) st = seq_reserve(c, &c->b, n, err);
    if (!st) {
        kn_kv_view vb = kv_pool_view(c->pool, c->b.blocks);
        cache_file_load(f, n, &vb, kv_pool_layer_stride(c->pool));
        c->b.n_past = n;
    }
    cache_file_close(f);
    return st;
}

typedef struct ppl_sums {
    double nll;       /* total NLL, nats */
    double nll_sr;    /* the same with the mid-window save/restore */
    size_t scored;    /* tokens scored */
    size_t fed;       /* tokens run through the model */
    size_t windows;
} ppl_sums;

/* One window w[0..len): inputs w[0..len-1), targets w[1..len). With
 * save/restore, both paths share the first half; the second half runs
 * once on the original blocks and once on the restored ones, from the
 * same position in the same chunks, so at equal KV bits the two agree
 * exactly unless the file round trip changed a row. */
static sem_status score_window(ppl_ctx *c, const int32_t *w, size_t len, bool sr, ppl_sums *sum, sem_err *err)
{
    size_t n_in = len - 1, mid = sr ? n_in / 2 : 0;
    double first = 0, second = 0, second_sr = 0;
    sem_status st = feed_score(c, &c->a, w, w + 1, mid ? mid : n_in, &first, err);
    if (!st && mid) st = save_a(c, w, err);
    if (!st && mid) st = feed_score(c, &c->a, w + mid, w + mid + 1, n_in - mid, &second, err);
    if (!st && mid) st = restore_into_b(c, mid, err);
    seq_drop(c, &c->a); /* the restored copy no longer needs the original */
    if (!st && mid) st = feed_score(c, &c->b, w + mid, w + mid + 1, n_in - mid, &second_sr, err);
    seq_drop(c, &c->b);
    if (st) return st;
    sum->nll += first + second;
    sum->nll_sr += first + (mid ? second_sr : second);
    sum->scored += n_in;
    sum->fed += n_in + (n_in - mid) * !!mid;
    sum->windows++;
    return SEM_OK;
}

/* ===================================================================== */
/* Passes and the summary                                                 */
/* ===================================================================== */

typedef struct ppl_result {
    int bits;
    ppl_sums s;
    double seconds;
} ppl_result;

static kn_kv_dtype kv_dtype_of(int bits)
{
    switch (bits) {
    case 8: return KN_KV_Q8;
    case 4: return KN_KV_Q4;
    case 32: return KN_KV_F32;
    default: return KN_KV_F16;
    }
}

/* The windows of eval_windows over n tokens, up to max_windows (0 = all). */
static size_t n_windows(size_t n, size_t ctx, size_t max_windows)
{
    size_t k = n / ctx + (n % ctx >= 2);
    return max_windows && max_windows < k ? max_windows : k;
}

static sem_status run_windows(ppl_ctx *c, const ppl_stream *ps, size_t ctx, size_t nw, bool sr, int bits,
                              ppl_sums *sum, sem_err *err)
{
    double t0 = clk_now_s(), t_report = t0 + 2;
    for (size_t i = 0; i < nw; i++) {
        size_t start = i * ctx, len = ps->ids.len - start < ctx ? ps->ids.len - start : ctx;
        sem_status st = score_window(c, ps->ids.data + start, len, sr, sum, err);
        if (st) return st;
        double now = clk_now_s();
        if (now >= t_report && i + 1 < nw) {
            fprintf(stderr, "perplexity: kv %d bits: window %zu/%zu, ppl so far %.4f, %.0f tok/s\n", bits, i + 1,
                    nw, exp(sum->nll / (double)sum->scored), (double)sum->fed / (now - t0));
            t_report = now + 5;
        }
    }
    return SEM_OK;
}

static sem_status run_pass(ppl_ctx *c, const ppl_opts *o, const ppl_stream *ps, size_t ctx, int bits,
                           ppl_result *res, sem_err *err)
{
    model_kv_geometry mg = model_spec_kv_geometry(model_get_spec(c->m));
    kv_geometry g = {mg.n_layers, mg.n_kv_heads, mg.head_dim, mg.v_head_dim, (int32_t)o->block_tokens,
                     kv_dtype_of(bits)};
    size_t per_seq = (ctx + (size_t)g.block_tokens - 1) / (size_t)g.block_tokens;
    kv_pool_params pp = {.budget_bytes = 2 * per_seq * kv_block_bytes(&g)};
    sem_status st = kv_geometry_check(&g, err);
    if (!st) st = kv_pool_create(&g, &pp, &c->pool, err);
    if (st) return st;
    *res = (ppl_result){.bits = bits};
    double t0 = clk_now_s();
    st = run_windows(c, ps, ctx, n_windows(ps->ids.len, ctx, (size_t)o->windows), o->save_restore, bits, &res->s,
                     err);
    res->seconds = clk_now_s() - t0;
    kv_pool_destroy(c->pool);
    c->pool = NULL;
    return st;
}

static double rel_pct(double a, double b) { return 100.0 * (a - b) / b; }

/* Six decimals for real models, exponent form for random ones (1e11). */
static const char *fmt_ppl(double ppl, char *out, size_t cap)
{
    snprintf(out, cap, ppl < 1e6 ? "%.6f" : "%.6e", ppl);
    return out;
}

static void print_text(const ppl_opts *o, const ppl_stream *ps, size_t ctx, const ppl_result *r, int n)
{
    printf("model        %s\n", o->model_dir);
    printf("stream       %s: %zu tokens\n", ps->what, ps->ids.len);
    printf("windows      %zu of %zu tokens (stride %zu), %zu tokens scored\n", r[0].s.windows, ctx, ctx,
           r[0].s.scored);
    printf("%-6s %14s %12s %10s %10s\n", "kv", "ppl", "mean NLL", "tok/s", "vs 16 bit");
    const ppl_result *base = NULL;
    for (int i = 0; i < n; i++)
        if (r[i].bits == 16) base = &r[i];
    for (int i = 0; i < n; i++) {
        double ppl = exp(r[i].s.nll / (double)r[i].s.scored);
        char f[32];
        printf("%-6s %14s %12.8f %10.1f", kn_kv_dtype_name(kv_dtype_of(r[i].bits)), fmt_ppl(ppl, f, sizeof f),
               r[i].s.nll / (double)r[i].s.scored, (double)r[i].s.fed / r[i].seconds);
        if (base && base != &r[i]) printf(" %+9.4f%%", rel_pct(ppl, exp(base->s.nll / (double)base->s.scored)));
        printf("\n");
    }
    for (int i = 0; o->save_restore && i < n; i++) {
        double a = exp(r[i].s.nll / (double)r[i].s.scored), b = exp(r[i].s.nll_sr / (double)r[i].s.scored);
        char fa[32], fb[32];
        printf("save/restore %s: ppl %s with, %s without: %+.6f%% (%s)\n", kn_kv_dtype_name(kv_dtype_of(r[i].bits)),
               fmt_ppl(b, fb, sizeof fb), fmt_ppl(a, fa, sizeof fa), rel_pct(b, a),
               r[i].s.nll_sr == r[i].s.nll ? "identical" : "differs");
    }
    if (ps->ref_ppl_torch > 0 && (size_t)ps->ref_window == ctx && !o->windows)
        for (int i = 0; i < n; i++)
            printf("reference    head ppl: PyTorch f32 %.6f, numpy f64 %.6f; C %s %+.4f%% vs PyTorch "
                   "(whole validation: %.6f)\n",
                   ps->ref_ppl_torch, ps->ref_ppl_numpy, kn_kv_dtype_name(kv_dtype_of(r[i].bits)),
                   rel_pct(exp(r[i].s.nll / (double)r[i].s.scored), ps->ref_ppl_torch), ps->ref_full_ppl);
}

static void print_json(const ppl_opts *o, const ppl_stream *ps, size_t ctx, const ppl_result *r, int n)
{
    json_t *runs = json_array();
    for (int i = 0; i < n; i++) {
        double mean = r[i].s.nll / (double)r[i].s.scored, mean_sr = r[i].s.nll_sr / (double)r[i].s.scored;
        json_t *run = json_pack("{s:i,s:s,s:f,s:f,s:f,s:f}", "bits", r[i].bits, "kv",
                                kn_kv_dtype_name(kv_dtype_of(r[i].bits)), "ppl", exp(mean), "mean_nll", mean,
                                "nll", r[i].s.nll, "tok_s", (double)r[i].s.fed / r[i].seconds);
        if (o->save_restore)
            json_object_set_new(run, "save_restore",
                                json_pack("{s:f,s:f,s:b}", "ppl", exp(mean_sr), "mean_nll", mean_sr, "identical",
                                          r[i].s.nll_sr == r[i].s.nll));
        json_array_append_new(runs, run);
    }
    json_t *root = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:o}", "model", o->model_dir, "stream", ps->what,
                             "stream_tokens", (json_int_t)ps->ids.len, "ctx", (json_int_t)ctx, "windows",
                             (json_int_t)r[0].s.windows, "tokens_scored", (json_int_t)r[0].s.scored, "runs", runs);
    if (ps->ref_ppl_torch > 0)
        json_object_set_new(root, "reference",
                            json_pack("{s:I,s:f,s:f,s:f}", "window", (json_int_t)ps->ref_window, "head_ppl_torch_f32",
                                      ps->ref_ppl_torch, "head_ppl_numpy_f64", ps->ref_ppl_numpy, "ppl",
                                      ps->ref_full_ppl));
    char *s = json_dumps(root, JSON_REAL_PRECISION(17));
    if (s) printf("%s\n", s);
    free(s);
    json_decref(root);
}

static sem_status resolve_ctx(const ppl_opts *o, const model_spec *s, const ppl_stream *ps, size_t *ctx,
                              sem_err *err)
{
    long c = o->ctx_given ? o->ctx : ps->ref_window ? ps->ref_window : s->max_pos < PPL_CTX_CAP ? s->max_pos : PPL_CTX_CAP;
    if (c < 2) return sem_errf(err, SEM_EINVAL, "window of %ld tokens: at least 2 are needed", c);
    if (c > s->max_pos)
        return sem_errf(err, SEM_EINVAL, "window of %ld tokens exceeds the model's %d positions", c, s->max_pos);
    *ctx = (size_t)c;
    return SEM_OK;
}

/* Scratch, the cache file's place, then one pass per KV format. */
static sem_status measure(const ppl_opts *o, app_runtime *rt, const ppl_stream *ps, size_t ctx, ppl_result *res,
                          sem_err *err)
{
    const model_spec *s = model_get_spec(rt->m);
    ppl_ctx c = {.m = rt->m, .kc = rt->kc, .vocab = (size_t)s->vocab};
    c.chunk = PPL_LOGITS_BUDGET / (c.vocab * sizeof(float));
    c.chunk = c.chunk < 16 ? 16 : c.chunk > PPL_MAX_CHUNK ? PPL_MAX_CHUNK : c.chunk;
    size_t max_blocks = 2 * ((ctx + (size_t)o->block_tokens - 1) / (size_t)o->block_tokens);
    const char *tmp = getenv("TMPDIR");
    char dir[4096], path[4096 + 32];
    snprintf(dir, sizeof dir, "%s/semantic-ppl-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    bool have_dir = false;
    sem_status st = model_run_create(rt->m, c.chunk, &c.run, err);
    if (!st && (!(c.logits = sem_calloc(c.chunk * c.vocab, sizeof(float))) ||
                !(c.a.blocks = sem_calloc(max_blocks, sizeof(int32_t))) ||
                !(c.b.blocks = sem_calloc(max_blocks, sizeof(int32_t)))))
        st = sem_errf(err, SEM_ENOMEM, "out of memory for %zu x %zu logits", c.chunk, c.vocab);
    if (!st && o->save_restore && !(have_dir = mkdtemp(dir) != NULL))
        st = sem_errf(err, SEM_EIO, "cannot create a temporary directory %s", dir);
    snprintf(path, sizeof path, "%s/perplexity.safetensors", dir);
    c.cache_path = path;
    model_fingerprint(rt->m, 0, c.fingerprint);
    for (int i = 0; !st && i < o->n_kv; i++) st = run_pass(&c, o, ps, ctx, o->kv_bits[i], &res[i], err);
    if (have_dir) {
        unlink(path);
        rmdir(dir);
    }
    model_run_destroy(c.run);
    free(c.logits);
    free(c.a.blocks);
    free(c.b.blocks);
    return st;
}

int app_cmd_perplexity(int argc, char **argv)
{
    ppl_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0) return rc;
    sem_err err;
    app_runtime rt;
    ppl_stream ps = {0};
    ppl_result res[PPL_MAX_KV];
    size_t ctx = 0;
    sem_status st = app_runtime_open(&rt, o.model_dir, (int)o.threads, PPL_MAX_CHUNK, &err);
    if (!st) st = load_stream(&o, model_get_spec(rt.m), &ps, &err);
    if (!st) st = resolve_ctx(&o, model_get_spec(rt.m), &ps, &ctx, &err);
    if (!st) st = measure(&o, &rt, &ps, ctx, res, &err);
    if (!st && o.json) print_json(&o, &ps, ctx, res, o.n_kv);
    if (!st && !o.json) print_text(&o, &ps, ctx, res, o.n_kv);
    if (st) fprintf(stderr, "semantic perplexity: %s\n", err.msg);
    tok_ids_fini(&ps.ids);
    app_runtime_close(&rt);
    return st ? 1 : 0;
}
