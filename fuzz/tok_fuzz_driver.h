/* tok_fuzz_driver.h - the plain (non-libFuzzer) driver shared by
 * fuzz_tokenizer.c and fuzz_pretokenizer.c, compiled under FUZZ_STANDALONE:
 * with arguments it replays those files (or every file of a directory);
 * without, it runs the seeds, then seeded mutations of them until
 * SEM_FUZZ_ITERS inputs (default 1,000,000) or SEM_FUZZ_SECONDS seconds
 * (default 10), whichever comes first, so ctest stays bounded. The includer
 * defines LLVMFuzzerTestOneInput and fuzz_seeds(). */
#ifndef SEM_TOK_FUZZ_DRIVER_H
#define SEM_TOK_FUZZ_DRIVER_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz_bytes {
    uint8_t *p;
    size_t n, cap;
} fz_bytes;

static void fz_insert(fz_bytes *b, size_t at, const void *src, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) abort();
        b->p = p;
        b->cap = cap;
    }
    memmove(b->p + at + n, b->p + at, b->n - at);
    memcpy(b->p + at, src, n);
    b->n += n;
}

static uint64_t fz_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t fz_below(uint64_t *s, size_t n) { return n ? (size_t)(fz_rand(s) % n) : 0; }

/* Interesting fragments for insertion mutations. */
static const char *const FZ_DICT[] = {
    "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>", "<bos>", "<|begin_of_text|>",
    "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "<start_of_turn>",
    "\xE2\x96\x81", "\xC4\xA0", " ", "  ", "\t", "\n", "\r\n", "\xC2\xA0", "\xE3\x80\x80", "\xC2\x85",
    "\xE1\xA0\x8E", "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9", "e\xCC\x81", "\xEF\xAC\x81",
    "'s", "'LL", "123456789", "\xD9\xA2", "\xE4\xB8\xAD\xE6\x96\x87", "\xEF\xBF\xBD", "\xFF",
    "\xE2\x82", "\x00", "(?i:", "\\s+(?!\\S)", "\\p{L}", "[^\\s]", "\\w+", "\\b", "*", "+?", ")",
};

static void fz_mutate(fz_bytes *b, uint64_t *s)
{
    int rounds = 1 + (int)fz_below(s, 4);
    for (int r = 0; r < rounds; r++) {
        switch (fz_below(s, 6)) {
        case 0:
            if (b->n) b->p[fz_below(s, b->n)] ^= (uint8_t)(1u << fz_below(s, 8));
            break;
        case 1: {
            uint8_t c = (uint8_t)fz_rand(s);
            fz_insert(b, fz_below(s, b->n + 1), &c, 1);
            break;
        }
        case 2: {
            const char *d = FZ_DICT[fz_below(s, sizeof FZ_DICT / sizeof FZ_DICT[0])];
            fz_insert(b, fz_below(s, b->n + 1), d, d[0] ? strlen(d) : 1);
            break;
        }
        case 3:
            if (b->n) {
                size_t at = fz_below(s, b->n), len = fz_below(s, b->n - at + 1);
                memmove(b->p + at, b->p + at + len, b->n - at - len);
                b->n -= len;
            }
            break;
        case 4:
            if (b->n && b->n < 100000) {
                size_t at = fz_below(s, b->n), len = fz_below(s, b->n - at + 1);
                uint8_t *tmp = malloc(len ? len : 1);
                memcpy(tmp, b->p + at, len);
                fz_insert(b, fz_below(s, b->n + 1), tmp, len);
                free(tmp);
            }
            break;
        default:
            if (b->n) b->p[fz_below(s, b->n)] = (uint8_t)fz_rand(s);
            break;
        }
    }
}

static int fz_run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "fuzz: cannot stat %s\n", path);
        return 1;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        int rc = 0;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rc |= fz_run_path(sub);
        }
        if (d) closedir(d);
        return rc;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    fz_bytes b = {0};
    uint8_t chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) fz_insert(&b, b.n, chunk, k);
    fclose(f);
    LLVMFuzzerTestOneInput(b.p ? b.p : (const uint8_t *)"", b.n);
    free(b.p);
    return 0;
}

/* Seeds from the includer: fills *seeds (malloc'd copies). */
static void fuzz_seeds(fz_bytes **seeds, size_t *n);

static double fz_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fz_main(int argc, char **argv, const char *name)
{
    if (argc > 1) {
        int rc = 0;
        for (int i = 1; i < argc; i++) rc |= fz_run_path(argv[i]);
        return rc;
    }
    const char *it_env = getenv("SEM_FUZZ_ITERS"), *sec_env = getenv("SEM_FUZZ_SECONDS");
    long iters = it_env ? strtol(it_env, NULL, 10) : 1000000;
    double seconds = sec_env ? strtod(sec_env, NULL) : 10.0;
    fz_bytes *seeds = NULL;
    size_t n_seeds = 0;
    fuzz_seeds(&seeds, &n_seeds);
    double t0 = fz_now();
    for (size_t i = 0; i < n_seeds; i++) LLVMFuzzerTestOneInput(seeds[i].p, seeds[i].n);
    fz_bytes cur = {0};
    uint64_t state = 0x2545F4914F6CDD1Dull;
    long done = 0;
    for (; done < iters && fz_now() - t0 < seconds; done++) {
        const fz_bytes *sd = &seeds[fz_below(&state, n_seeds)];
        cur.n = 0;
        fz_insert(&cur, 0, sd->p, sd->n);
        if (fz_below(&state, 4) == 0) {
            const fz_bytes *o = &seeds[fz_below(&state, n_seeds)];
            size_t from = fz_below(&state, o->n + 1), len = fz_below(&state, o->n - from + 1);
            fz_insert(&cur, fz_below(&state, cur.n + 1), o->p + from, len);
        }
        fz_mutate(&cur, &state);
        LLVMFuzzerTestOneInput(cur.p, cur.n);
    }
    fprintf(stderr, "%s: %zu seeds, %ld mutated inputs in %.1f s, no failure\n", name, n_seeds, done,
            fz_now() - t0);
    free(cur.p);
    for (size_t i = 0; i < n_seeds; i++) free(seeds[i].p);
    free(seeds);
    return 0;
}

static void fz_add_seed(fz_bytes **seeds, size_t *n, const void *p, size_t len)
{
    fz_bytes *v = realloc(*seeds, (*n + 1) * sizeof *v);
    if (!v) abort();
    *seeds = v;
    v[*n] = (fz_bytes){0};
    fz_insert(&v[*n], 0, p, len);
    (*n)++;
}

#endif
