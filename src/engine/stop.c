/* stop.c - the stop matcher: generated tokens -> released text.
 *
 * Text is decoded by the streaming detokenizer (complete UTF-8 only) into
 * `pending`. A stop string may span tokens, so any tail of `pending` that
 * is a prefix of some stop string is held back until the next token
 * resolves it; everything before that is released. Once a stop string is
 * found, the text before it is released and nothing after it ever is.
 *
 * Thread: engine.
 */
#include "engine/engine_int.h"

#include <string.h>

sem_status eng_stopper_init(eng_stopper *st, const tok_tokenizer *tok, const tok_id *prefix,
                            size_t n_prefix, char **stops, size_t n_stops, sem_err *err)
{
    memset(st, 0, sizeof *st);
    buf_init(&st->pending);
    st->stops = stops;
    st->n_stops = n_stops;
    if (!tok) return SEM_OK;
    if (n_prefix > TOK_STREAM_MAX_PREFIX) {
        prefix += n_prefix - TOK_STREAM_MAX_PREFIX;
        n_prefix = TOK_STREAM_MAX_PREFIX;
    }
    return tok_stream_create(tok, prefix, n_prefix, true, &st->detok, err);
}

void eng_stopper_fini(eng_stopper *st)
{
    tok_stream_destroy(st->detok);
    buf_fini(&st->pending);
    st->detok = NULL;
}

/* Earliest occurrence of any stop string in s[0..n): its index, or -1. */
static int find_stop(const eng_stopper *st, const char *s, size_t n, size_t *at)
{
    int best = -1;
    for (size_t i = 0; i < st->n_stops; i++) {
        size_t k = strlen(st->stops[i]);
        if (k == 0 || k > n) continue;
        const char *hit = memmem(s, n, st->stops[i], k);
        if (hit && (best < 0 || (size_t)(hit - s) < *at)) {
            best = (int)i;
            *at = (size_t)(hit - s);
        }
    }
    return best;
}

/* Length of the longest tail of s[0..n) that is a proper prefix of a stop. */
static size_t held_tail(const eng_stopper *st, const char *s, size_t n)
{
    size_t hold = 0;
    for (size_t i = 0; i < st->n_stops; i++) {
        size_t k = strlen(st->stops[i]);
        for (size_t t = (k - 1 < n ? k - 1 : n); t > hold; t--) {
            if (!memcmp(s + n - t, st->stops[i], t)) {
                hold = t;
                break;
            }
        }
    }
    return hold;
}

int eng_stopper_push(eng_stopper *st, tok_id id, buf *out, sem_err *err)
{
    if (!st->detok) return -1;
    if (tok_stream_push(st->detok, id, &st->pending, err) != SEM_OK) return -1;
    const char *s = st->pending.data ? st->pending.data : "";
    size_t n = st->pending.len, at = 0;
    int hit = find_stop(st, s, n, &at);
    if (hit >= 0) {
        buf_append(out, s, at);
        buf_clear(&st->pending);
        return hit;
    }
    size_t keep = held_tail(st, s, n);
    buf_append(out, s, n - keep);
    if (keep) memmove(st->pending.data, s + n - keep, keep); /* pending is empty (maybe NULL) otherwise */
    st->pending.len = keep;
    if (st->pending.data) st->pending.data[keep] = '\0';
    return -1;
}

void eng_stopper_flush(eng_stopper *st, buf *out)
{
    if (st->detok) {
        sem_err err;
        tok_stream_finish(st->detok, &st->pending, &err);
    }
    if (st->pending.len) buf_append(out, st->pending.data, st->pending.len);
    buf_clear(&st->pending);
}
