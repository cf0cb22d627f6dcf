/* tok_pretok.c - tokenizer.json pre-tokenizers: Split (String or Regex,
 * five delimiter behaviors, invert), ByteLevel (prefix space, GPT-2 regex,
 * byte -> char mapping), Digits, Metaspace (replacement, prepend scheme,
 * split), WhitespaceSplit and Sequence (flattened when loaded).
 *
 * Pieces are byte ranges of the encoder's arena. A stage that rewrites text
 * (prefix space, Metaspace) appends the new bytes to the arena. ByteLevel's
 * mapping is lazy: a piece marked TOK_PIECE_BYTEMAP still holds raw bytes,
 * and the BPE model maps them itself (the common case: ByteLevel is last);
 * a later stage materializes the mapping first.
 *
 * The delimiter behaviors follow HF's SplitDelimiterBehavior exactly,
 * including empty matches (they count as matches for the merge rules, and
 * empty pieces are dropped at the end).
 *
 * Thread: the caller's (pre-tokenizers are read-only).
 */
#include "tokenizer/tok_int.h"

#include <stdlib.h>
#include <string.h>

bool tok_spans_push(tok_spans *s, size_t start, size_t end, bool match)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        tok_span *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) return false;
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n++] = (tok_span){start, end, match};
    return true;
}

bool tok_pieces_push(tok_pieces *p, size_t off, size_t len, unsigned flags)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        tok_piece *nv = realloc(p->v, nc * sizeof *nv);
        if (!nv) return false;
        p->v = nv;
        p->cap = nc;
    }
    p->v[p->n++] = (tok_piece){off, len, flags};
    return true;
}

void tok_pretok_fini(tok_pretok *p)
{
    if (!p) return;
    tok_pattern_fini(&p->pat);
    for (size_t i = 0; i < p->n_items; i++) tok_pretok_fini(&p->items[i]);
    free(p->items);
    memset(p, 0, sizeof *p);
}

#define OOM(err) sem_errf(err, SEM_ENOMEM, "out of memory")

/* ---- helpers ------------------------------------------------------------- */

/* Replaces a lazily mapped piece with its ByteLevel text. */
static sem_status materialize(tok_encoder *enc, tok_piece *pc, sem_err *err)
{
    if (!(pc->flags & TOK_PIECE_BYTEMAP)) return SEM_OK;
    size_t start = enc->arena.len;
    if (!buf_reserve(&enc->arena, pc->len * 2)) return OOM(err);
    for (size_t i = 0; i < pc->len; i++) {
        char u[4];
        size_t k = tok_utf8_encode(tok_byte_to_cp((uint8_t)enc->arena.data[pc->off + i]), u);
        buf_append(&enc->arena, u, k); /* reserved above: cannot fail */
    }
    pc->off = start;
    pc->len = enc->arena.len - start;
    pc->flags &= ~(unsigned)TOK_PIECE_BYTEMAP;
    return SEM_OK;
}

/* Turns a list of matches into a full cover of [0, n) (HF find_matches). */
static bool cover(const tok_spans *m, size_t n, tok_spans *out)
{
    out->n = 0;
    size_t prev = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (prev != m->v[i].start && !tok_spans_push(out, prev, m->v[i].start, false)) return false;
        if (!tok_spans_push(out, m->v[i].start, m->v[i].end, true)) return false;
        prev = m->v[i].end;
    }
    if (prev != n && !tok_spans_push(out, prev, n, false)) return false;
    return true;
}

typedef bool (*cp_pred)(uint32_t cp, const tok_pretok *p);

/* Each character satisfying pred is one match (HF's char patterns). */
static bool char_matches(const char *s, size_t n, cp_pred pred, const tok_pretok *p, tok_spans *out)
{
    out->n = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t w = tok_utf8_next(s + i, n - i, &cp);
        if (pred(cp, p) && !tok_spans_push(out, i, i + w, true)) return false;
        i += w;
    }
    return true;
}

/* Applies a delimiter behavior to a cover, in place; survivors are pieces. */
static void apply_behavior(tok_spans *c, tok_split_behavior b, bool invert)
{
    if (invert)
        for (size_t i = 0; i < c->n; i++) c->v[i].match = !c->v[i].match;
    size_t o = 0;
    switch (b) {
    case TOK_SPLIT_ISOLATED: return;
    case TOK_SPLIT_REMOVED:
        for (size_t i = 0; i < c->n; i++)
            if (!c->v[i].match) c->v[o++] = c->v[i];
        c->n = o;
        return;
    case TOK_SPLIT_MERGED_PREV: {
        bool prev_match = false;
        for (size_t i = 0; i < c->n; i++) {
            tok_span s = c->v[i];
            if (s.match && !prev_match && o > 0) c->v[o - 1].end = s.end;
            else c->v[o++] = s;
            prev_match = s.match;
        }
        c->n = o;
        return;
    }
    case TOK_SPLIT_MERGED_NEXT: {
        /* Walk backwards, merging a match into the piece after it. */
        bool prev_match = false;
        size_t w = c->n; /* survivors fill the tail [w, n) */
        for (size_t i = c->n; i-- > 0;) {
            tok_span s = c->v[i];
            if (s.match && !prev_match && w < c->n) c->v[w].start = s.start;
            else c->v[--w] = s;
            prev_match = s.match;
        }
        memmove(c->v, c->v + w, (c->n - w) * sizeof *c->v);
        c->n -= w;
        return;
    }
    case TOK_SPLIT_CONTIGUOUS: {
        int prev = -1;
        for (size_t i = 0; i < c->n; i++) {
            tok_span s = c->v[i];
            if (prev == (int)s.match && o > 0) c->v[o - 1].end = s.end;
            else c->v[o++] = s;
            prev = (int)s.match;
        }
        c->n = o;
        return;
    }
    }
}

/* Emits the non-empty spans of cover c of piece pc. */
static sem_status emit(const tok_spans *c, const tok_piece *pc, unsigned extra, tok_pieces *out,
                       sem_err *err)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->v[i].end <= c->v[i].start) continue;
        unsigned fl = extra;
        if ((pc->flags & TOK_PIECE_AT_START) && c->v[i].start == 0) fl |= TOK_PIECE_AT_START;
        if (!tok_pieces_push(out, pc->off + c->v[i].start, c->v[i].end - c->v[i].start, fl))
            return OOM(err);
    }
    return SEM_OK;
}

/* ---- stages -------------------------------------------------------------- */

static sem_status split_pattern(const tok_pretok *p, const tok_pattern *pat,
                                tok_split_behavior b, bool invert, tok_encoder *enc,
                                const tok_piece *pc, unsigned extra, tok_pieces *out, sem_err *err)
{
    enc->spans.n = 0;
    sem_status s = tok_pattern_find(pat, enc, enc->arena.data + pc->off, pc->len, &enc->spans, err);
    if (s != SEM_OK) return s;
    (void)p;
    if (!cover(&enc->spans, pc->len, &enc->spans2)) return OOM(err);
    apply_behavior(&enc->spans2, b, invert);
    return emit(&enc->spans2, pc, extra, out, err);
}

static sem_status split_chars(const tok_pretok *p, cp_pred pred, tok_split_behavior b,
                              tok_encoder *enc, const tok_piece *pc, tok_pieces *out, sem_err *err)
{
    if (!char_matches(enc->arena.data + pc->off, pc->len, pred, p, &enc->spans) ||
        !cover(&enc->spans, pc->len, &enc->spans2))
        return OOM(err);
    apply_behavior(&enc->spans2, b, false);
    return emit(&enc->spans2, pc, 0, out, err);
}

static bool pred_numeric(uint32_t cp, const tok_pretok *p)
{
    (void)p;
    return tok_cp_is_numeric(cp);
}
static bool pred_space(uint32_t cp, const tok_pretok *p)
{
    (void)p;
    return tok_cp_is_whitespace(cp);
}
static bool pred_repl(uint32_t cp, const tok_pretok *p) { return cp == p->repl_cp; }

static sem_status bytelevel(const tok_pretok *p, tok_encoder *enc, tok_piece pc, tok_pieces *out,
                            sem_err *err)
{
    if (p->add_prefix_space && enc->arena.data[pc.off] != ' ') {
        size_t start = enc->arena.len;
        if (!buf_reserve(&enc->arena, pc.len + 1)) return OOM(err);
        buf_append(&enc->arena, " ", 1);
        buf_append(&enc->arena, enc->arena.data + pc.off, pc.len); /* reserved: no realloc */
        pc.off = start;
        pc.len += 1;
    }
    if (p->use_regex)
        return split_pattern(p, &p->pat, TOK_SPLIT_ISOLATED, false, enc, &pc, TOK_PIECE_BYTEMAP,
                             out, err);
    if (!tok_pieces_push(out, pc.off, pc.len, pc.flags | TOK_PIECE_BYTEMAP)) return OOM(err);
    return SEM_OK;
}

static sem_status metaspace(const tok_pretok *p, tok_encoder *enc, tok_piece pc, tok_pieces *out,
                            sem_err *err)
{
    /* Replace spaces, then maybe prepend the replacement (HF order). */
    size_t start = enc->arena.len;
    size_t n_sp = 0;
    for (size_t i = 0; i < pc.len; i++) n_sp += enc->arena.data[pc.off + i] == ' ';
    size_t need;
    /* Room for the prepended replacement too: src must not move below. */
    if (!sem_mul_size(n_sp, p->repl_len, &need) || !sem_add_size(need, pc.len + p->repl_len, &need) ||
        !buf_reserve(&enc->arena, need))
        return OOM(err);
    const char *src = enc->arena.data + pc.off; /* stable: reserved above */
    bool starts_repl = false;
    if (pc.len > 0) {
        if (src[0] == ' ') starts_repl = true;
        else if (pc.len >= p->repl_len && memcmp(src, p->repl, p->repl_len) == 0) starts_repl = true;
    }
    bool prepend = !starts_repl && (p->prepend == TOK_PREPEND_ALWAYS ||
                                    (p->prepend == TOK_PREPEND_FIRST &&
                                     (pc.flags & TOK_PIECE_AT_START)));
    if (prepend) buf_append(&enc->arena, p->repl, p->repl_len);
    for (size_t i = 0; i < pc.len; i++) {
        if (src[i] == ' ') buf_append(&enc->arena, p->repl, p->repl_len);
        else buf_append(&enc->arena, src + i, 1);
    }
    tok_piece np = {start, enc->arena.len - start, pc.flags};
    if (!p->split) {
        if (np.len && !tok_pieces_push(out, np.off, np.len, np.flags)) return OOM(err);
        return SEM_OK;
    }
    return split_chars(p, pred_repl, TOK_SPLIT_MERGED_NEXT, enc, &np, out, err);
}

static sem_status stage(const tok_pretok *p, tok_encoder *enc, const tok_pieces *in,
                        tok_pieces *out, sem_err *err)
{
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        tok_piece pc = in->v[i];
        sem_status s = materialize(enc, &pc, err);
        if (s != SEM_OK) return s;
        switch (p->kind) {
        case TOK_PT_SPLIT:
            s = split_pattern(p, &p->pat, p->behavior, p->invert, enc, &pc, 0, out, err);
            break;
        case TOK_PT_BYTELEVEL: s = bytelevel(p, enc, pc, out, err); break;
        case TOK_PT_DIGITS:
            s = split_chars(p, pred_numeric,
                            p->individual_digits ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS, enc,
                            &pc, out, err);
            break;
        case TOK_PT_METASPACE: s = metaspace(p, enc, pc, out, err); break;
        case TOK_PT_WHITESPACE_SPLIT:
            s = split_chars(p, pred_space, TOK_SPLIT_REMOVED, enc, &pc, out, err);
            break;
        case TOK_PT_SEQUENCE:
            return sem_errf(err, SEM_EINVAL, "nested pre-tokenizer Sequence was not flattened");
        }
        if (s != SEM_OK) return s;
    }
    return SEM_OK;
}

sem_status tok_pretokenize(const tok_pretok *p, tok_encoder *enc, size_t off, size_t len,
                           bool at_start, const tok_pieces **out, sem_err *err)
{
    tok_pieces *cur = &enc->pa, *nxt = &enc->pb;
    cur->n = 0;
    if (!tok_pieces_push(cur, off, len, at_start ? TOK_PIECE_AT_START : 0)) return OOM(err);
    size_t n_stages = p->kind == TOK_PT_SEQUENCE ? p->n_items : 1;
    for (size_t i = 0; i < n_stages; i++) {
        const tok_pretok *st = p->kind == TOK_PT_SEQUENCE ? &p->items[i] : p;
        sem_status s = stage(st, enc, cur, nxt, err);
        if (s != SEM_OK) return s;
        tok_pieces *t = cur;
        cur = nxt;
        nxt = t;
    }
    *out = cur;
    return SEM_OK;
}
