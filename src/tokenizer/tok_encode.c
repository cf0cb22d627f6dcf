/* tok_encode.c - text -> ids, the encode pipeline of HF's TokenizerImpl:
 *
 *   1. split the original text on non-normalized added tokens;
 *   2. normalize each remaining segment on its own (so a Prepend normalizer
 *      applies after every added token, exactly as HF does);
 *   3. split the normalized segment on normalized added tokens;
 *   4. pre-tokenize each text part into pieces;
 *   5. BPE each piece (word cache in the encoder);
 *   6. post-process (templates) when add_special is set.
 *
 * Also the tok_encoder scratch object (create/destroy).
 *
 * Thread: tokenizer read-only; encoder owned by the calling thread.
 */
#include "tokenizer/tok_int.h"

#include <stdlib.h>
#include <string.h>

#define OOM(err) sem_errf(err, SEM_ENOMEM, "out of memory")

sem_status tok_encoder_create(const tok_tokenizer *tok, tok_encoder **out, sem_err *err)
{
    tok_encoder *e = calloc(1, sizeof *e);
    if (!e) return OOM(err);
    e->tok = tok;
    buf_init(&e->arena);
    buf_init(&e->norm);
    buf_init(&e->tmp);
    buf_init(&e->tmp2);
    buf_init(&e->word);
    tok_strmap_init(&e->cache);
    /* The JIT stack is made on first need (tok_regex.c): most patterns
     * run in PCRE2's default 32 KiB, and a temporary encoder stays cheap. */
    e->md = pcre2_match_data_create(1, NULL);
    e->mctx = pcre2_match_context_create(NULL);
    if (!e->md || !e->mctx) {
        tok_encoder_destroy(e);
        return OOM(err);
    }
    *out = e;
    return SEM_OK;
}

void tok_encoder_destroy(tok_encoder *e)
{
    if (!e) return;
    if (e->md) pcre2_match_data_free(e->md);
    if (e->mctx) pcre2_match_context_free(e->mctx);
    if (e->jit) pcre2_jit_stack_free(e->jit);
    buf_fini(&e->arena);
    buf_fini(&e->norm);
    buf_fini(&e->tmp);
    buf_fini(&e->tmp2);
    buf_fini(&e->word);
    free(e->pa.v);
    free(e->pb.v);
    free(e->spans.v);
    free(e->spans2.v);
    free(e->segs.v);
    free(e->nsegs.v);
    tok_ids_fini(&e->segidx);
    tok_ids_fini(&e->nsegidx);
    tok_ids_fini(&e->seg_ids);
    tok_ids_fini(&e->pair_ids);
    free(e->syms);
    free(e->heap);
    tok_strmap_fini(&e->cache);
    tok_ids_fini(&e->cache_pool);
    free(e);
}

/* Steps 4-5 for one text part. */
static sem_status model_part(const tok_tokenizer *tok, tok_encoder *enc, const char *s, size_t n,
                             bool at_start, tok_ids *out, sem_err *err)
{
    if (!tok->pretok)
        return tok_bpe_encode(&tok->bpe, enc, s, n, false, out, err);
    buf_clear(&enc->arena);
    if (!buf_append(&enc->arena, s, n)) return OOM(err);
    const tok_pieces *pieces;
    sem_status st = tok_pretokenize(tok->pretok, enc, 0, n, at_start, &pieces, err);
    if (st != SEM_OK) return st;
    for (size_t i = 0; i < pieces->n; i++) {
        const tok_piece *pc = &pieces->v[i];
        st = tok_bpe_encode(&tok->bpe, enc, enc->arena.data + pc->off, pc->len,
                            (pc->flags & TOK_PIECE_BYTEMAP) != 0, out, err);
        if (st != SEM_OK) return st;
    }
    return SEM_OK;
}

/* Steps 2-5 for one segment of original text. */
static sem_status text_segment(const tok_tokenizer *tok, tok_encoder *enc, const char *s, size_t n,
                               bool at_start, tok_ids *out, sem_err *err)
{
    if (tok->normalizer) {
        sem_status st = tok_normalize(tok->normalizer, enc, s, n, &enc->norm, err);
        if (st != SEM_OK) return st;
        s = enc->norm.data;
        n = enc->norm.len;
    }
    if (n == 0) return SEM_OK;
    if (!tok->has_trie_norm) return model_part(tok, enc, s, n, at_start, out, err);
    sem_status st = tok_added_split(tok, &tok->trie_norm, s, n, &enc->nsegs, &enc->nsegidx, err);
    for (size_t i = 0; st == SEM_OK && i < enc->nsegs.n; i++) {
        tok_span sp = enc->nsegs.v[i];
        int32_t which = enc->nsegidx.data[i];
        if (which >= 0) {
            if (!tok_ids_push(out, tok->added[which].id)) st = OOM(err);
        } else if (sp.end > sp.start) {
            st = model_part(tok, enc, s + sp.start, sp.end - sp.start, at_start && sp.start == 0,
                            out, err);
        }
    }
    return st;
}

/* Steps 1-5: one sequence into out (no post-processing). */
static sem_status encode_sequence(const tok_tokenizer *tok, tok_encoder *enc, const char *s,
                                  size_t n, tok_ids *out, sem_err *err)
{
    if (n > TOK_MAX_INPUT_BYTES)
        return sem_errf(err, SEM_ELIMIT, "input of %zu bytes exceeds %zu", n, TOK_MAX_INPUT_BYTES);
    size_t bad;
    if (!tok_utf8_valid(s, n, &bad))
        return sem_errf(err, SEM_EINVAL, "input is not valid UTF-8 at byte %zu", bad);
    if (n == 0) return SEM_OK;
    if (!tok->has_trie_raw) return text_segment(tok, enc, s, n, true, out, err);
    sem_status st = tok_added_split(tok, &tok->trie_raw, s, n, &enc->segs, &enc->segidx, err);
    for (size_t i = 0; st == SEM_OK && i < enc->segs.n; i++) {
        tok_span sp = enc->segs.v[i];
        int32_t which = enc->segidx.data[i];
        if (which >= 0) {
            if (!tok_ids_push(out, tok->added[which].id)) st = OOM(err);
        } else if (sp.end > sp.start) {
            st = text_segment(tok, enc, s + sp.start, sp.end - sp.start, sp.start == 0, out, err);
        }
    }
    return st;
}

static sem_status encode_any(const tok_tokenizer *tok, tok_encoder *enc, const char *a,
                             size_t a_len, const char *b, size_t b_len, bool add_special,
                             tok_ids *out, sem_err *err)
{
    tok_encoder *tmp = NULL;
    if (!enc) {
        sem_status st = tok_encoder_create(tok, &tmp, err);
        if (st != SEM_OK) return st;
        enc = tmp;
    }
    SEM_ASSERT(enc->tok == tok);
    size_t old = out->len;
    enc->seg_ids.len = 0;
    enc->pair_ids.len = 0;
    sem_status st = encode_sequence(tok, enc, a ? a : "", a_len, &enc->seg_ids, err);
    if (st == SEM_OK && b) st = encode_sequence(tok, enc, b, b_len, &enc->pair_ids, err);
    if (st == SEM_OK &&
        !tok_post_apply(&tok->post, add_special, &enc->seg_ids, b ? &enc->pair_ids : NULL, out))
        st = OOM(err);
    if (st != SEM_OK) out->len = old;
    tok_encoder_destroy(tmp);
    return st;
}

sem_status tok_encode(const tok_tokenizer *tok, tok_encoder *enc, const char *text, size_t len,
                      bool add_special, tok_ids *out, sem_err *err)
{
    return encode_any(tok, enc, text, len, NULL, 0, add_special, out, err);
}

sem_status tok_encode_pair(const tok_tokenizer *tok, tok_encoder *enc, const char *a,
                           size_t a_len, const char *b, size_t b_len, bool add_special,
                           tok_ids *out, sem_err *err)
{
    return encode_any(tok, enc, a, a_len, b ? b : "", b_len, add_special, out, err);
}
