/* tok_stream.c - the streaming detokenizer.
 *
 * Decoders are not context free at the start of a text (Metaspace drops the
 * first token's leading ▁, Strip removes a leading space), and byte-level or
 * byte-fallback pieces may split one character across tokens. So we decode
 * a small window of ids relative to a prefix, as HF's DecodeStream does:
 *
 *   window = [prefix ids][new ids];   prefix_text = decode(prefix ids)
 *   on push: text = decode(window); the new text starts where text stops
 *   agreeing with prefix_text; emit it when it is non-empty and text does
 *   not end in U+FFFD (an incomplete character); the new ids then become
 *   the next prefix.
 *
 * The concatenated output therefore equals decode(prefix + all) after its
 * common prefix with decode(prefix) (just "minus decode(prefix)" unless the
 * prompt ends inside a character). With no prefix the first token is the
 * start of a text (what decode(all) gives: "Hello" for ▁Hello); with the
 * last prompt ids as prefix a continuation keeps its space (" Hello").
 *
 * Two exceptions, both only in byte garbage: a window that keeps ending in
 * U+FFFD is flushed after TOK_STREAM_MAX_HELD ids (bounded cost), and a
 * byte-fallback run that turns invalid later (HF then replaces the whole
 * run, including characters we already emitted, with U+FFFD) cannot be
 * taken back.
 *
 * Thread: one owner.
 */
#include "tokenizer/tok_int.h"

#include <stdlib.h>
#include <string.h>

#define TOK_STREAM_MAX_HELD 64

struct tok_stream {
    const tok_tokenizer *tok; /* borrowed */
    bool skip_special;
    tok_ids window;  /* prefix ids then pending ids */
    size_t n_prefix; /* ids of window that form the prefix */
    buf prefix_text; /* decode(window[0..n_prefix)) */
    buf text;        /* scratch */
};

/* A <0xNN> byte-fallback piece holding a UTF-8 continuation byte. */
static bool is_continuation_byte(const tok_tokenizer *tok, tok_id id)
{
    size_t n;
    const char *p = tok_id_to_piece(tok, id, &n);
    if (!p || n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return false;
    char hi = p[3];
    return hi == '8' || hi == '9' || hi == 'A' || hi == 'B' || hi == 'a' || hi == 'b';
}

/* Drops the ids before keep_from; the rest become the prefix. ByteFallback
 * decodes a run of byte pieces as one unit (all U+FFFD if the run is not
 * valid UTF-8), so the window must not start inside a character: step
 * back over continuation bytes (at most 3). */
static sem_status set_prefix(tok_stream *s, size_t keep_from, sem_err *err)
{
    for (int k = 0; k < 3 && keep_from > 0 && keep_from < s->window.len &&
                    is_continuation_byte(s->tok, s->window.data[keep_from]);
         k++)
        keep_from--;
    size_t n = s->window.len - keep_from;
    if (n) memmove(s->window.data, s->window.data + keep_from, n * sizeof(tok_id));
    s->window.len = n;
    s->n_prefix = n;
    buf_clear(&s->prefix_text);
    return tok_decode(s->tok, s->window.data, n, s->skip_special, &s->prefix_text, err);
}

sem_status tok_stream_create(const tok_tokenizer *tok, const tok_id *prefix, size_t n_prefix,
                             bool skip_special, tok_stream **out, sem_err *err)
{
    tok_stream *s = calloc(1, sizeof *s);
    if (!s) return sem_errf(err, SEM_ENOMEM, "out of memory");
    s->tok = tok;
    s->skip_special = skip_special;
    tok_ids_init(&s->window);
    buf_init(&s->prefix_text);
    buf_init(&s->text);
    if (n_prefix > TOK_STREAM_MAX_PREFIX) {
        prefix += n_prefix - TOK_STREAM_MAX_PREFIX;
        n_prefix = TOK_STREAM_MAX_PREFIX;
    }
    /* Leading continuation bytes cannot form a character without their
     * lead byte; dropping them keeps a prefix cut inside a character from
     * turning a whole byte-fallback run into U+FFFD. */
    while (n_prefix > 0 && is_continuation_byte(tok, prefix[0])) {
        prefix++;
        n_prefix--;
    }
    sem_status st = SEM_OK;
    if (!tok_ids_append(&s->window, prefix, n_prefix)) st = sem_errf(err, SEM_ENOMEM, "out of memory");
    if (st == SEM_OK) st = set_prefix(s, 0, err);
    if (st != SEM_OK) {
        tok_stream_destroy(s);
        return st;
    }
    *out = s;
    return SEM_OK;
}

void tok_stream_destroy(tok_stream *s)
{
    if (!s) return;
    tok_ids_fini(&s->window);
    buf_fini(&s->prefix_text);
    buf_fini(&s->text);
    free(s);
}

static bool ends_with_fffd(const buf *b)
{
    return b->len >= 3 && memcmp(b->data + b->len - 3, "\xEF\xBF\xBD", 3) == 0;
}

/* Where the new text starts: normally decode(prefix) is a prefix of the
 * window's text; when the prefix ends inside a character (its text ends
 * in U+FFFD) the new ids complete it, so take the longest common prefix,
 * backed off to a character start. */
static size_t new_text_start(const tok_stream *s)
{
    const buf *t = &s->text;
    size_t from = 0, pl = s->prefix_text.len;
    while (from < pl && from < t->len && s->prefix_text.data[from] == t->data[from]) from++;
    while (from > 0 && from < t->len && ((unsigned char)t->data[from] & 0xC0) == 0x80) from--;
    return from;
}

/* Emits the window text after `from`; the pending ids become the prefix. */
static sem_status emit(tok_stream *s, size_t from, buf *out, sem_err *err)
{
    if (!buf_append(out, s->text.data + from, s->text.len - from))
        return sem_errf(err, SEM_ENOMEM, "out of memory");
    return set_prefix(s, s->n_prefix, err);
}

static sem_status decode_window(tok_stream *s, sem_err *err)
{
    buf_clear(&s->text);
    sem_status st = tok_decode(s->tok, s->window.data, s->window.len, s->skip_special, &s->text, err);
    if (st == SEM_OK && !s->text.data && !buf_append(&s->text, "", 0))
        st = sem_errf(err, SEM_ENOMEM, "out of memory");
    return st;
}

sem_status tok_stream_push(tok_stream *s, tok_id id, buf *out, sem_err *err)
{
    if (!tok_ids_push(&s->window, id)) return sem_errf(err, SEM_ENOMEM, "out of memory");
    sem_status st = decode_window(s, err);
    if (st != SEM_OK) return st;
    size_t from = new_text_start(s);
    bool complete = s->text.len > from && !ends_with_fffd(&s->text);
    bool held_too_long = s->window.len - s->n_prefix >= TOK_STREAM_MAX_HELD;
    if (complete || held_too_long) return emit(s, from, out, err);
    return SEM_OK;
}

sem_status tok_stream_finish(tok_stream *s, buf *out, sem_err *err)
{
    if (s->window.len == s->n_prefix) return SEM_OK;
    sem_status st = decode_window(s, err);
    if (st != SEM_OK) return st;
    return emit(s, new_text_start(s), out, err);
}
