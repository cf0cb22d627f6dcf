/* cmd_tokenize.c - the `semantic tokenize` command: print the token ids of
 * a text (or decode ids back to text) with a model directory's tokenizer or
 * a bare tokenizer.json; --batch encodes JSON-string lines (test driver),
 * --bench times encoding of a file (tools/tok/bench.sh compares it with the
 * HF binding).
 *
 * Thread: main.
 */
#include "app/commands.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tok_cli {
    const char *model_dir, *json_path, *file, *batch, *bench, *text;
    bool no_special, pieces, decode, skip_special;
    int repeat;
} tok_cli;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: semantic tokenize (--model DIR | --tokenizer FILE.json) [options] [TEXT]\n"
            "\n"
            "Prints the token ids of TEXT, identical to Hugging Face tokenizers.\n"
            "\n"
            "  --model DIR        model directory: tokenizer.json, tokenizer_config.json,\n"
            "                     generation_config.json\n"
            "  --tokenizer FILE   a tokenizer.json alone (HF Tokenizer.from_file)\n"
            "  --file PATH        read the text from PATH ('-' = stdin) instead of TEXT\n"
            "  --no-special       do not add special tokens (BOS/EOS templates)\n"
            "  --pieces           print one 'id<TAB>piece' line per token\n"
            "  --decode           TEXT is ids (\"1 2 3\" or \"1,2,3\"); print the text\n"
            "  --skip-special     with --decode: drop special tokens\n"
            "  --batch FILE       one JSON string per line in; one JSON id array per line out\n"
            "  --bench FILE       time encoding FILE as one text and line by line\n"
            "  --repeat N         with --bench: best of N runs (default 3)\n"
            "  --help             this text\n");
}

static int parse_args(int argc, char **argv, tok_cli *c)
{
    memset(c, 0, sizeof *c);
    c->repeat = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        else if (!strcmp(a, "--model") && has_val) c->model_dir = argv[++i];
        else if (!strcmp(a, "--tokenizer") && has_val) c->json_path = argv[++i];
        else if (!strcmp(a, "--file") && has_val) c->file = argv[++i];
        else if (!strcmp(a, "--batch") && has_val) c->batch = argv[++i];
        else if (!strcmp(a, "--bench") && has_val) c->bench = argv[++i];
        else if (!strcmp(a, "--repeat") && has_val) c->repeat = atoi(argv[++i]);
        else if (!strcmp(a, "--no-special")) c->no_special = true;
        else if (!strcmp(a, "--pieces")) c->pieces = true;
        else if (!strcmp(a, "--decode")) c->decode = true;
        else if (!strcmp(a, "--skip-special")) c->skip_special = true;
        else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "semantic tokenize: unknown or incomplete option '%s'\n", a);
            return 2;
        } else if (!c->text) c->text = a;
        else {
            fprintf(stderr, "semantic tokenize: more than one TEXT argument\n");
            return 2;
        }
    }
    if (!c->model_dir == !c->json_path) {
        fprintf(stderr, "semantic tokenize: give exactly one of --model DIR or --tokenizer FILE\n");
        return 2;
    }
    if (c->repeat < 1) c->repeat = 1;
    return 0;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return NULL;
    buf b;
    buf_init(&b);
    char chunk[65536];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(chunk, 1, sizeof chunk, f)) > 0) ok = buf_append(&b, chunk, n);
    if (f != stdin) fclose(f);
    if (!ok || !buf_reserve(&b, 0)) {
        buf_fini(&b);
        return NULL;
    }
    *len = b.len;
    return buf_take(&b);
}

static void print_ids(const tok_tokenizer *tok, const tok_ids *ids, bool pieces)
{
    for (size_t i = 0; i < ids->len; i++) {
        if (pieces) {
            size_t pl = 0;
            const char *p = tok_id_to_piece(tok, ids->data[i], &pl);
            printf("%d\t%.*s\n", ids->data[i], (int)pl, p ? p : "");
        } else {
            printf(i ? " %d" : "%d", ids->data[i]);
        }
    }
    if (!pieces) printf("\n");
}

static int run_decode(const tok_tokenizer *tok, const tok_cli *c, const char *text)
{
    tok_ids ids;
    tok_ids_init(&ids);
    for (const char *p = text; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) {
            p++;
            continue;
        }
        tok_ids_push(&ids, (tok_id)v);
        p = end;
    }
    buf out;
    buf_init(&out);
    sem_err err;
    sem_status st = tok_decode(tok, ids.data, ids.len, c->skip_special, &out, &err);
    if (st == SEM_OK) printf("%s\n", out.data ? out.data : "");
    else fprintf(stderr, "semantic tokenize: %s\n", err.msg);
    buf_fini(&out);
    tok_ids_fini(&ids);
    return st == SEM_OK ? 0 : 1;
}

static int run_batch(const tok_tokenizer *tok, const tok_cli *c)
{
    FILE *f = strcmp(c->batch, "-") ? fopen(c->batch, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "semantic tokenize: cannot open %s\n", c->batch);
        return 1;
    }
    tok_encoder *enc = NULL;
    sem_err err;
    int rc = tok_encoder_create(tok, &enc, &err) == SEM_OK ? 0 : 1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    tok_ids ids;
    tok_ids_init(&ids);
    for (size_t lineno = 1; rc == 0 && (n = getline(&line, &cap, f)) > 0; lineno++) {
        json_error_t je;
        json_t *s = json_loadb(line, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!json_is_string(s)) {
            fprintf(stderr, "semantic tokenize: %s:%zu: expected a JSON string\n", c->batch, lineno);
            rc = 1;
        } else {
            ids.len = 0;
            if (tok_encode(tok, enc, json_string_value(s), json_string_length(s), !c->no_special,
                           &ids, &err) != SEM_OK) {
                printf("{\"error\":\"%s\"}\n", sem_status_name(err.code));
            } else {
                putchar('[');
                for (size_t i = 0; i < ids.len; i++) printf(i ? ",%d" : "%d", ids.data[i]);
                printf("]\n");
            }
        }
        json_decref(s);
    }
    free(line);
    tok_ids_fini(&ids);
    tok_encoder_destroy(enc);
    if (f != stdin) fclose(f);
    return rc;
}

/* Best-of-N time of encoding text as one string, and line by line. */
static int run_bench(const tok_tokenizer *tok, const tok_cli *c)
{
    size_t len;
    char *text = read_all(c->bench, &len);
    if (!text) {
        fprintf(stderr, "semantic tokenize: cannot read %s\n", c->bench);
        return 1;
    }
    tok_encoder *enc;
    sem_err err;
    if (tok_encoder_create(tok, &enc, &err) != SEM_OK) {
        free(text);
        return 1;
    }
    tok_ids ids;
    tok_ids_init(&ids);
    double best_whole = 1e30, best_lines = 1e30;
    size_t n_whole = 0, n_lines = 0;
    int rc = 0;
    for (int r = 0; r < c->repeat && rc == 0; r++) {
        double t0 = clk_now_s();
        ids.len = 0;
        if (tok_encode(tok, enc, text, len, false, &ids, &err) != SEM_OK) rc = 1;
        double t1 = clk_now_s();
        n_whole = ids.len;
        size_t total = 0;
        for (size_t a = 0; a < len && rc == 0;) {
            const char *nl = memchr(text + a, '\n', len - a);
            size_t b = nl ? (size_t)(nl - text) + 1 : len;
            ids.len = 0;
            if (tok_encode(tok, enc, text + a, b - a, false, &ids, &err) != SEM_OK) rc = 1;
            total += ids.len;
            a = b;
        }
        double t2 = clk_now_s();
        n_lines = total;
        if (t1 - t0 < best_whole) best_whole = t1 - t0;
        if (t2 - t1 < best_lines) best_lines = t2 - t1;
    }
    if (rc) fprintf(stderr, "semantic tokenize: %s\n", err.msg);
    else
        printf("{\"bytes\":%zu,\"whole_ms\":%.2f,\"whole_tokens\":%zu,\"lines_ms\":%.2f,"
               "\"lines_tokens\":%zu}\n",
               len, best_whole * 1e3, n_whole, best_lines * 1e3, n_lines);
    tok_ids_fini(&ids);
    tok_encoder_destroy(enc);
    free(text);
    return rc;
}

static int run_encode(const tok_tokenizer *tok, const tok_cli *c)
{
    size_t len = 0;
    char *owned = NULL;
    const char *text = c->text ? c->text : "";
    if (c->file) {
        if (!(owned = read_all(c->file, &len))) {
            fprintf(stderr, "semantic tokenize: cannot read %s\n", c->file);
            return 1;
        }
        text = owned;
    } else {
        len = strlen(text);
    }
    if (c->decode) {
        int rc = run_decode(tok, c, text);
        free(owned);
        return rc;
    }
    tok_ids ids;
    tok_ids_init(&ids);
    sem_err err;
    sem_status st = tok_encode(tok, NULL, text, len, !c->no_special, &ids, &err);
    if (st == SEM_OK) print_ids(tok, &ids, c->pieces);
    else fprintf(stderr, "semantic tokenize: %s\n", err.msg);
    tok_ids_fini(&ids);
    free(owned);
    return st == SEM_OK ? 0 : 1;
}

int app_cmd_tokenize(int argc, char **argv)
{
    tok_cli c;
    int pr = parse_args(argc, argv, &c);
    if (pr == 1) {
        usage(stdout);
        return 0;
    }
    if (pr) {
        usage(stderr);
        return 2;
    }
    tok_tokenizer *tok;
    sem_err err;
    sem_status st = c.model_dir ? tok_load_dir(c.model_dir, &tok, &err)
                                : tok_load_file(c.json_path, &tok, &err);
    if (st != SEM_OK) {
        fprintf(stderr, "semantic tokenize: %s\n", err.msg);
        return 1;
    }
    int rc = c.batch ? run_batch(tok, &c) : c.bench ? run_bench(tok, &c) : run_encode(tok, &c);
    tok_destroy(tok);
    return rc;
}
