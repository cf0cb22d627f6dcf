/* template_parse.c - recursive-descent parser from tokens to the AST, and
 * tpl_parse()/tpl_destroy().
 *
 * The grammar and precedence follow @huggingface/jinja, lowest first:
 *   a if c else b (and `a if c` = a or undefined, used by `for x in xs if c`)
 *   or, and, not, comparisons and in/not in (left to right, one level),
 *   + - ~, * / // %, ** (left-associative), `is` tests, `|` filters,
 *   unary - +, member access/calls/slices, primaries.
 * Statements: if/elif/else, for/else (with tuple targets and a filter), set
 * (also `set ns.x = ...` and block set), macro, call blocks, filter blocks,
 * break, continue. Beyond the reference, tests may take arguments
 * (`x is divisibleby(3)`, `x is eq 3`).
 *
 * Nesting is capped at TPL_MAX_PARSE_DEPTH so that hostile input cannot
 * exhaust the stack. Errors name the line and column of the token.
 *
 * Thread: any.
 */
#include "tokenizer/template_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const tpl_token *t;
    size_t n, cur;
    tpl_arena *a;
    sem_err *err;
    const char *src;
    size_t src_len;
    unsigned depth;
    bool failed;
} parser;

typedef struct list_b {
    tpl_nodes l;
    size_t cap;
} list_b;

static tpl_node *pfail(parser *p, size_t at, const char *fmt, ...) SEM_PRINTF(3, 4);
static tpl_node *pfail(parser *p, size_t at, const char *fmt, ...)
{
    if (p->failed) return NULL;
    p->failed = true;
    unsigned line, col;
    uint32_t pos = at < p->n ? p->t[at].pos : (uint32_t)p->src_len;
    tpl_line_col(p->src, p->src_len, pos, &line, &col);
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sem_errf(p->err, SEM_EINVAL, "template line %u column %u: %s", line, col, msg);
    return NULL;
}

static tpl_node *poom(parser *p)
{
    if (!p->failed) sem_errf(p->err, SEM_ENOMEM, "template: out of memory while parsing");
    p->failed = true;
    return NULL;
}

static tpl_node *node_new(parser *p, tpl_node_kind kind, size_t tok)
{
    tpl_node *n = tpl_arena_alloc(p->a, sizeof *n);
    if (!n) return poom(p);
    n->kind = (uint8_t)kind;
    n->pos = tok < p->n ? p->t[tok].pos : (uint32_t)p->src_len;
    return n;
}

static bool list_push(parser *p, list_b *b, tpl_node *n)
{
    if (!n) return false;
    if (b->l.n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4;
        tpl_node **v = tpl_arena_alloc(p->a, cap * sizeof *v);
        if (!v) return poom(p), false;
        if (b->l.n) memcpy(v, b->l.v, b->l.n * sizeof *v);
        b->l.v = v;
        b->cap = cap;
    }
    b->l.v[b->l.n++] = n;
    return true;
}

/* ---- token predicates ---- */

static bool is(const parser *p, tpl_tok_type type) { return p->cur < p->n && p->t[p->cur].type == type; }

static bool tok_is_ident(const parser *p, size_t i, const char *name)
{
    return i < p->n && p->t[i].type == TT_IDENT && p->t[i].len == strlen(name) &&
           memcmp(p->t[i].s, name, p->t[i].len) == 0;
}

static bool is_ident(const parser *p, const char *name) { return tok_is_ident(p, p->cur, name); }

/* {% name ... with name among names (NULL-terminated). */
static bool is_stmt(const parser *p, const char *const *names)
{
    if (!is(p, TT_OPEN_STMT)) return false;
    for (; *names; names++)
        if (tok_is_ident(p, p->cur + 1, *names)) return true;
    return false;
}

static bool expect(parser *p, tpl_tok_type type, const char *what)
{
    if (is(p, type)) {
        p->cur++;
        return true;
    }
    if (p->cur >= p->n) pfail(p, p->cur, "unexpected end of template: expected %s", what);
    else pfail(p, p->cur, "expected %s", what);
    return false;
}

static bool expect_ident(parser *p, const char *name)
{
    if (is_ident(p, name)) {
        p->cur++;
        return true;
    }
    pfail(p, p->cur, "expected '%s'", name);
    return false;
}

static bool enter(parser *p)
{
    if (++p->depth > TPL_MAX_PARSE_DEPTH) {
        if (!p->failed)
            sem_errf(p->err, SEM_ELIMIT, "template: nested deeper than %d levels", TPL_MAX_PARSE_DEPTH);
        p->failed = true;
        return false;
    }
    return true;
}

static tpl_node *leave(parser *p, tpl_node *n)
{
    p->depth--;
    return n;
}

/* ---- forward declarations ---- */
static tpl_node *parse_any(parser *p);
static tpl_node *parse_expression(parser *p);
static tpl_node *parse_primary(parser *p);
static tpl_node *parse_or(parser *p);
static tpl_node *parse_call_member(parser *p);
static tpl_node *parse_call_expression(parser *p, tpl_node *callee);
static bool parse_args(parser *p, bool params, tpl_nodes *out);

/* Statements until {% one-of-names %}; the end tag itself is not consumed. */
static bool parse_body(parser *p, const char *const *names, tpl_nodes *out)
{
    list_b b = {0};
    while (!is_stmt(p, names)) {
        if (p->cur >= p->n) {
            pfail(p, p->cur, "unexpected end of template: missing {%% %s %%}", names[0]);
            return false;
        }
        if (!list_push(p, &b, parse_any(p))) return false;
    }
    *out = b.l;
    return true;
}

static bool end_tag(parser *p, const char *name)
{
    return expect(p, TT_OPEN_STMT, "'{%'") && expect_ident(p, name) &&
           expect(p, TT_CLOSE_STMT, "'%}'");
}

/* ===================================================================== */
/* Expressions                                                             */
/* ===================================================================== */

static tpl_node *make2(parser *p, tpl_node_kind k, size_t tok, tpl_op op, tpl_node *a, tpl_node *b)
{
    if (!a || (!b && k == E_BINARY)) return NULL; /* the failing side already raised */
    tpl_node *n = node_new(p, k, tok);
    if (!n) return NULL;
    n->op = (uint8_t)op;
    n->a = a;
    n->b = b;
    return n;
}

static tpl_node *parse_expr_sequence(parser *p, bool primary)
{
    size_t at = p->cur;
    tpl_node *first = primary ? parse_primary(p) : parse_expression(p);
    if (!first || !is(p, TT_COMMA)) return first;
    tpl_node *tup = node_new(p, E_TUPLE, at);
    list_b b = {0};
    if (!tup || !list_push(p, &b, first)) return NULL;
    while (is(p, TT_COMMA)) {
        p->cur++;
        if (!list_push(p, &b, primary ? parse_primary(p) : parse_expression(p))) return NULL;
    }
    tup->args = b.l;
    return tup;
}

static tpl_node *parse_number(parser *p, const tpl_token *tok, size_t at)
{
    bool is_float = memchr(tok->s, '.', tok->len) != NULL;
    tpl_node *n = node_new(p, is_float ? E_FLOAT : E_INT, at);
    if (n) n->num = strtod(tok->s, NULL);
    return n;
}

static tpl_node *parse_string(parser *p, size_t at)
{
    buf b;
    buf_init(&b);
    bool ok = buf_append(&b, p->t[at].s, p->t[at].len);
    while (ok && is(p, TT_STRING)) {
        ok = buf_append(&b, p->t[p->cur].s, p->t[p->cur].len);
        p->cur++;
    }
    tpl_node *n = ok ? node_new(p, E_STR, at) : poom(p);
    if (n) {
        n->len = b.len;
        n->s = tpl_arena_strdup(p->a, b.data ? b.data : "", b.len);
        if (!n->s) n = poom(p);
    }
    buf_fini(&b);
    return n;
}

static tpl_node *parse_list_literal(parser *p, size_t at, bool object)
{
    tpl_node *n = node_new(p, object ? E_OBJECT : E_ARRAY, at);
    list_b b = {0};
    tpl_tok_type close = object ? TT_RBRACE : TT_RBRACKET;
    while (n && !is(p, close)) {
        if (!list_push(p, &b, parse_expression(p))) return NULL;
        if (object) {
            if (!expect(p, TT_COLON, "':' between key and value")) return NULL;
            if (!list_push(p, &b, parse_expression(p))) return NULL;
        }
        if (is(p, TT_COMMA)) p->cur++;
    }
    if (!n) return NULL;
    p->cur++;
    n->args = b.l;
    return n;
}

static tpl_node *parse_primary(parser *p)
{
    if (p->cur >= p->n) return pfail(p, p->cur, "unexpected end of template%s", "");
    size_t at = p->cur++;
    const tpl_token *tok = &p->t[at];
    switch (tok->type) {
    case TT_NUMBER: return parse_number(p, tok, at);
    case TT_STRING: return parse_string(p, at);
    case TT_IDENT: {
        tpl_node *n = node_new(p, E_IDENT, at);
        if (n && !(n->s = tpl_arena_strdup(p->a, tok->s, tok->len))) return poom(p);
        if (n) n->len = tok->len;
        return n;
    }
    case TT_LPAREN: {
        if (!enter(p)) return NULL;
        tpl_node *e = parse_expr_sequence(p, false);
        if (e && !expect(p, TT_RPAREN, "')'")) e = NULL;
        return leave(p, e);
    }
    case TT_LBRACKET:
    case TT_LBRACE:
        if (!enter(p)) return NULL;
        return leave(p, parse_list_literal(p, at, tok->type == TT_LBRACE));
    default:
        return pfail(p, at, "unexpected token%s", "");
    }
}

/* Inside [...]: an index, or a slice a:b:c with any part omitted. */
static tpl_node *parse_subscript(parser *p)
{
    size_t at = p->cur;
    tpl_node *parts[3] = {0};
    size_t n = 0;
    bool slice = false, any = false;
    while (!is(p, TT_RBRACKET)) {
        if (p->cur >= p->n) return pfail(p, p->cur, "unexpected end of template%s", "");
        any = true;
        if (is(p, TT_COLON)) {
            if (n < 3) parts[n] = NULL;
            n++;
            p->cur++;
            slice = true;
            continue;
        }
        tpl_node *e = parse_expression(p);
        if (!e) return NULL;
        if (n < 3) parts[n] = e;
        n++;
        if (is(p, TT_COLON)) {
            p->cur++;
            slice = true;
        }
    }
    if (!any) return pfail(p, at, "expected at least one argument for member/slice expression%s", "");
    if (!slice) return parts[0];
    if (n > 3) return pfail(p, at, "expected 0-3 arguments for slice expression%s", "");
    tpl_node *s = node_new(p, E_SLICE, at);
    if (s) s->a = parts[0], s->b = parts[1], s->c = parts[2];
    return s;
}

static tpl_node *parse_member(parser *p, tpl_node *obj)
{
    while (obj && (is(p, TT_DOT) || is(p, TT_LBRACKET))) {
        size_t at = p->cur;
        bool computed = p->t[p->cur++].type == TT_LBRACKET;
        tpl_node *m = node_new(p, E_MEMBER, at);
        if (!m) return NULL;
        m->a = obj;
        if (computed) {
            m->flags |= TPL_NF_COMPUTED;
            if (!(m->b = parse_subscript(p)) || !expect(p, TT_RBRACKET, "']'")) return NULL;
        } else {
            tpl_node *prop = parse_primary(p);
            if (!prop) return NULL;
            if (prop->kind == E_IDENT) {
                m->s = prop->s, m->len = prop->len;
            } else if (prop->kind == E_INT) {
                m->flags |= TPL_NF_INDEX;
                m->num = prop->num;
            } else {
                return pfail(p, at, "expected identifier or integer following dot operator%s", "");
            }
        }
        obj = m;
    }
    return obj;
}

static tpl_node *parse_call_expression(parser *p, tpl_node *callee)
{
    if (!enter(p)) return NULL;
    tpl_node *c = node_new(p, E_CALL, p->cur);
    if (!c || !parse_args(p, false, &c->args)) return leave(p, NULL);
    c->a = callee;
    tpl_node *e = parse_member(p, c);
    if (e && is(p, TT_LPAREN)) e = parse_call_expression(p, e);
    return leave(p, e);
}

static tpl_node *parse_call_member(parser *p)
{
    tpl_node *m = parse_member(p, parse_primary(p));
    if (m && is(p, TT_LPAREN)) return parse_call_expression(p, m);
    return m;
}

static tpl_node *parse_unary_sign(parser *p)
{
    if (p->cur < p->n) {
        const tpl_token *t = &p->t[p->cur];
        if ((t->type == TT_UNARY_OP || t->type == TT_ADD_OP) && t->len == 1 &&
            (t->s[0] == '-' || t->s[0] == '+')) {
            size_t at = p->cur++;
            if (!enter(p)) return NULL;
            tpl_node *arg = parse_unary_sign(p);
            return leave(p, make2(p, E_UNARY, at, t->s[0] == '-' ? OP_NEG : OP_POS, arg, NULL));
        }
    }
    return parse_call_member(p);
}

/* `name` or `name(args)` after | or {% filter. */
static tpl_node *parse_filter_ref(parser *p, size_t at, tpl_node *operand)
{
    tpl_node *name = parse_primary(p);
    if (!name) return NULL;
    if (name->kind != E_IDENT) return pfail(p, at, "expected identifier for the filter%s", "");
    tpl_node *f = node_new(p, E_FILTER, at);
    if (!f) return NULL;
    f->a = operand;
    f->s = name->s;
    f->len = name->len;
    f->op = (uint8_t)tpl_filter_lookup(name->s, name->len);
    if (is(p, TT_LPAREN)) {
        tpl_node *call = parse_call_expression(p, name);
        if (!call) return NULL;
        if (call->kind != E_CALL || call->a != name)
            return pfail(p, at, "unsupported filter expression '%s'", name->s);
        f->args = call->args;
        f->flags |= TPL_NF_HAS_ARGS;
    }
    return f;
}

static tpl_node *parse_filter(parser *p)
{
    tpl_node *operand = parse_unary_sign(p);
    while (operand && is(p, TT_PIPE)) {
        size_t at = p->cur++;
        operand = parse_filter_ref(p, at, operand);
    }
    return operand;
}

/* Superset: a test argument without parentheses (`x is eq 3`). */
static bool starts_test_arg(const parser *p)
{
    if (p->cur >= p->n) return false;
    switch (p->t[p->cur].type) {
    case TT_NUMBER: case TT_STRING: case TT_LBRACKET: case TT_LBRACE: return true;
    case TT_IDENT: {
        static const char *const kw[] = {"and", "or", "not", "if", "else", "in", "is", NULL};
        for (const char *const *k = kw; *k; k++)
            if (is_ident(p, *k)) return false;
        return true;
    }
    default: return false;
    }
}

static tpl_node *parse_test(parser *p)
{
    tpl_node *operand = parse_filter(p);
    while (operand && is_ident(p, "is")) {
        size_t at = p->cur++;
        bool negate = is_ident(p, "not");
        if (negate) p->cur++;
        tpl_node *name = parse_primary(p);
        if (!name) return NULL;
        if (name->kind != E_IDENT) return pfail(p, at, "expected identifier for the test%s", "");
        tpl_node *t = node_new(p, E_TEST, at);
        if (!t) return NULL;
        t->a = operand;
        t->s = name->s;
        t->len = name->len;
        t->op = (uint8_t)tpl_test_lookup(name->s, name->len);
        if (negate) t->flags |= TPL_NF_NEGATE;
        if (is(p, TT_LPAREN)) {
            if (!parse_args(p, false, &t->args)) return NULL;
            t->flags |= TPL_NF_HAS_ARGS;
        } else if (tpl_test_takes_arg((tpl_test_id)t->op) && starts_test_arg(p)) {
            list_b b = {0};
            if (!list_push(p, &b, parse_call_member(p))) return NULL;
            t->args = b.l;
            t->flags |= TPL_NF_HAS_ARGS;
        }
        operand = t;
    }
    return operand;
}

static tpl_op op_of(const tpl_token *t)
{
    static const struct { const char *s; tpl_op op; } ops[] = {
        {"+", OP_ADD}, {"-", OP_SUB}, {"~", OP_CONCAT}, {"*", OP_MUL}, {"/", OP_DIV},
        {"//", OP_FLOORDIV}, {"%", OP_MOD}, {"**", OP_POW}, {"==", OP_EQ}, {"!=", OP_NE},
        {"<", OP_LT}, {">", OP_GT}, {"<=", OP_LE}, {">=", OP_GE},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strlen(ops[i].s) == t->len && memcmp(ops[i].s, t->s, t->len) == 0) return ops[i].op;
    return OP_NONE;
}

typedef tpl_node *(*parse_fn)(parser *p);

/* Left-associative binary level: operands from `next`, operators of `type`. */
static tpl_node *parse_binary_level(parser *p, tpl_tok_type type, parse_fn next)
{
    tpl_node *left = next(p);
    while (left && is(p, type)) {
        size_t at = p->cur++;
        tpl_node *right = next(p);
        left = make2(p, E_BINARY, at, op_of(&p->t[at]), left, right);
    }
    return left;
}

static tpl_node *parse_power(parser *p) { return parse_binary_level(p, TT_POW_OP, parse_test); }
static tpl_node *parse_mul(parser *p) { return parse_binary_level(p, TT_MUL_OP, parse_power); }
static tpl_node *parse_add(parser *p) { return parse_binary_level(p, TT_ADD_OP, parse_mul); }

static tpl_node *parse_comparison(parser *p)
{
    tpl_node *left = parse_add(p);
    while (left) {
        size_t at = p->cur;
        tpl_op op;
        if (is_ident(p, "not") && tok_is_ident(p, p->cur + 1, "in")) {
            op = OP_NOTIN;
            p->cur += 2;
        } else if (is_ident(p, "in")) {
            op = OP_IN;
            p->cur++;
        } else if (is(p, TT_CMP_OP)) {
            op = op_of(&p->t[p->cur++]);
        } else {
            break;
        }
        left = make2(p, E_BINARY, at, op, left, parse_add(p));
    }
    return left;
}

static tpl_node *parse_not(parser *p)
{
    tpl_node *right = NULL;
    while (is_ident(p, "not")) {
        size_t at = p->cur++;
        if (!enter(p)) return NULL;
        tpl_node *arg = leave(p, parse_not(p));
        if (!(right = make2(p, E_UNARY, at, OP_NOT, arg, NULL))) return NULL;
    }
    return right ? right : parse_comparison(p);
}

static tpl_node *parse_logic(parser *p, const char *word, tpl_op op, parse_fn next)
{
    tpl_node *left = next(p);
    while (left && is_ident(p, word)) {
        size_t at = p->cur++;
        left = make2(p, E_BINARY, at, op, left, next(p));
    }
    return left;
}

static tpl_node *parse_and(parser *p) { return parse_logic(p, "and", OP_AND, parse_not); }
static tpl_node *parse_or(parser *p) { return parse_logic(p, "or", OP_OR, parse_and); }

static tpl_node *parse_if_expr(parser *p)
{
    tpl_node *a = parse_or(p);
    if (!a || !is_ident(p, "if")) return a;
    size_t at = p->cur++;
    tpl_node *test = parse_or(p);
    if (!test) return NULL;
    if (!is_ident(p, "else")) return make2(p, E_SELECT, at, OP_NONE, a, test);
    p->cur++;
    if (!enter(p)) return NULL;
    tpl_node *f = leave(p, parse_if_expr(p));
    tpl_node *t = make2(p, E_TERNARY, at, OP_NONE, test, a);
    if (t && f) t->c = f;
    return f ? t : NULL;
}

static tpl_node *parse_expression(parser *p)
{
    if (!enter(p)) return NULL;
    return leave(p, parse_if_expr(p));
}

/* Call arguments or macro parameters, between ( and ). */
static bool parse_arg(parser *p, bool params, tpl_node **out, bool *spread_seen)
{
    size_t at = p->cur;
    bool kw_spread = is(p, TT_POW_OP);
    bool spread = is(p, TT_MUL_OP) && p->t[p->cur].len == 1 && p->t[p->cur].s[0] == '*';
    if (params && (kw_spread || spread))
        return pfail(p, at, "argument unpacking is not allowed in parameter declarations%s", ""), false;
    if (kw_spread || spread) {
        if (spread && *spread_seen) return pfail(p, at, "only one `*` argument unpacking is allowed%s", ""), false;
        *spread_seen = *spread_seen || spread;
        p->cur++;
        tpl_node *e = parse_expression(p);
        *out = make2(p, kw_spread ? E_KWSPREAD : E_SPREAD, at, OP_NONE, e, NULL);
        return *out != NULL;
    }
    tpl_node *arg = parse_expression(p);
    if (!arg) return false;
    if (is(p, TT_EQUALS)) {
        p->cur++;
        if (arg->kind != E_IDENT) return pfail(p, at, "expected identifier for keyword argument%s", ""), false;
        tpl_node *kw = make2(p, E_KWARG, at, OP_NONE, parse_expression(p), NULL);
        if (!kw) return false;
        kw->s = arg->s;
        kw->len = arg->len;
        arg = kw;
    }
    if (params && arg->kind != E_IDENT && arg->kind != E_KWARG)
        return pfail(p, at, "expected identifier for parameter declaration%s", ""), false;
    *out = arg;
    return true;
}

static bool check_arg_order(parser *p, const list_b *b, tpl_node *arg, bool params, size_t at)
{
    bool saw_kw = false, saw_spread = false;
    for (size_t i = 0; i < b->l.n; i++) {
        tpl_node *x = b->l.v[i];
        saw_kw = saw_kw || x->kind == E_KWARG;
        saw_spread = saw_spread || x->kind == E_SPREAD;
        if (params && arg->kind != E_SPREAD && x->len == arg->len && x->s && arg->s &&
            memcmp(x->s, arg->s, x->len) == 0)
            return pfail(p, at, "duplicate parameter name: %s", arg->s), false;
    }
    if (arg->kind == E_IDENT || arg->kind >= E_INT) {
        bool positional = arg->kind != E_KWARG && arg->kind != E_SPREAD && arg->kind != E_KWSPREAD;
        if (positional && saw_kw)
            return pfail(p, at, params ? "non-default argument follows default argument%s"
                                       : "positional arguments must come before keyword arguments%s", ""), false;
        if (positional && saw_spread)
            return pfail(p, at, "positional arguments must not follow `*` argument unpacking%s", ""), false;
    }
    return true;
}

static bool parse_args(parser *p, bool params, tpl_nodes *out)
{
    if (!expect(p, TT_LPAREN, "'('")) return false;
    list_b b = {0};
    bool spread_seen = false;
    while (!is(p, TT_RPAREN)) {
        if (p->cur >= p->n) return pfail(p, p->cur, "unexpected end of template%s", ""), false;
        size_t at = p->cur;
        tpl_node *arg;
        if (!parse_arg(p, params, &arg, &spread_seen)) return false;
        if (!check_arg_order(p, &b, arg, params, at) || !list_push(p, &b, arg)) return false;
        if (is(p, TT_COMMA)) p->cur++;
        if (arg->kind == E_KWSPREAD && !is(p, TT_RPAREN))
            return pfail(p, p->cur, "`**` must be applied to the final argument%s", ""), false;
    }
    p->cur++;
    *out = b.l;
    return true;
}

/* ===================================================================== */
/* Statements                                                              */
/* ===================================================================== */

static tpl_node *parse_set(parser *p, size_t at)
{
    tpl_node *n = node_new(p, N_SET, at);
    if (!n || !(n->a = parse_expr_sequence(p, false))) return NULL;
    if (is(p, TT_EQUALS)) {
        p->cur++;
        if (!(n->b = parse_expr_sequence(p, false))) return NULL;
    } else {
        static const char *const end[] = {"endset", NULL};
        if (!expect(p, TT_CLOSE_STMT, "'%}'") || !parse_body(p, end, &n->body)) return NULL;
        if (!expect(p, TT_OPEN_STMT, "'{%'") || !expect_ident(p, "endset")) return NULL;
    }
    return expect(p, TT_CLOSE_STMT, "'%}'") ? n : NULL;
}

static tpl_node *parse_if(parser *p, size_t at)
{
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    static const char *const endif[] = {"endif", NULL};
    tpl_node *n = node_new(p, N_IF, at);
    if (!n || !(n->a = parse_expression(p)) || !expect(p, TT_CLOSE_STMT, "'%}'")) return NULL;
    if (!parse_body(p, stops, &n->body)) return NULL;
    if (is_stmt(p, (const char *const[]){"elif", NULL})) {
        size_t elif_at = p->cur + 1;
        p->cur += 2;
        list_b b = {0};
        if (!enter(p)) return NULL;
        tpl_node *nested = leave(p, parse_if(p, elif_at));
        if (!list_push(p, &b, nested)) return NULL;
        n->alt = b.l;
    } else if (is_stmt(p, (const char *const[]){"else", NULL})) {
        p->cur += 2;
        if (!expect(p, TT_CLOSE_STMT, "'%}'") || !parse_body(p, endif, &n->alt)) return NULL;
    }
    return n;
}

static bool body_reads(const tpl_nodes *l, const char *name);

static bool node_reads(const tpl_node *n, const char *name)
{
    if (!n) return false;
    if (n->kind == E_IDENT && strcmp(n->s, name) == 0) return true;
    return node_reads(n->a, name) || node_reads(n->b, name) || node_reads(n->c, name) ||
           body_reads(&n->args, name) || body_reads(&n->body, name) || body_reads(&n->alt, name);
}

static bool body_reads(const tpl_nodes *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (node_reads(l->v[i], name)) return true;
    return false;
}

static void mark_special_args(tpl_node *n)
{
    if (body_reads(&n->body, "kwargs")) n->flags |= TPL_NF_KWARGS;
    if (body_reads(&n->body, "varargs")) n->flags |= TPL_NF_VARARGS;
}

static tpl_node *parse_macro(parser *p, size_t at)
{
    static const char *const end[] = {"endmacro", NULL};
    tpl_node *n = node_new(p, N_MACRO, at);
    tpl_node *name = n ? parse_primary(p) : NULL;
    if (!name) return NULL;
    if (name->kind != E_IDENT) return pfail(p, at, "expected identifier following macro statement%s", "");
    n->s = name->s;
    n->len = name->len;
    if (!parse_args(p, true, &n->args) || !expect(p, TT_CLOSE_STMT, "'%}'")) return NULL;
    if (!parse_body(p, end, &n->body)) return NULL;
    mark_special_args(n);
    return n;
}

static tpl_node *parse_for(parser *p, size_t at)
{
    static const char *const stops[] = {"endfor", "else", NULL};
    static const char *const end[] = {"endfor", NULL};
    tpl_node *n = node_new(p, N_FOR, at);
    if (!n || !(n->a = parse_expr_sequence(p, true))) return NULL;
    if (n->a->kind != E_IDENT && n->a->kind != E_TUPLE)
        return pfail(p, at, "expected identifier/tuple for the loop variable%s", "");
    if (!is_ident(p, "in")) return pfail(p, p->cur, "expected `in` keyword following loop variable%s", "");
    p->cur++;
    tpl_node *it = parse_expression(p);
    if (!it || !expect(p, TT_CLOSE_STMT, "'%}'")) return NULL;
    if (it->kind == E_SELECT) {
        n->b = it->a;
        n->c = it->b;
    } else {
        n->b = it;
    }
    if (!parse_body(p, stops, &n->body)) return NULL;
    if (is_stmt(p, (const char *const[]){"else", NULL})) {
        p->cur += 2;
        if (!expect(p, TT_CLOSE_STMT, "'%}'") || !parse_body(p, end, &n->alt)) return NULL;
    }
    return n;
}

static tpl_node *parse_call_block(parser *p, size_t at)
{
    static const char *const end[] = {"endcall", NULL};
    tpl_node *n = node_new(p, N_CALLBLOCK, at);
    if (!n) return NULL;
    if (is(p, TT_LPAREN) && !parse_args(p, true, &n->args)) return NULL;
    tpl_node *callee = parse_primary(p);
    if (!callee) return NULL;
    if (callee->kind != E_IDENT) return pfail(p, at, "expected identifier following call statement%s", "");
    tpl_node *call = node_new(p, E_CALL, p->cur);
    if (!call || !parse_args(p, false, &call->args)) return NULL;
    call->a = callee;
    n->a = call;
    if (!expect(p, TT_CLOSE_STMT, "'%}'") || !parse_body(p, end, &n->body)) return NULL;
    mark_special_args(n);
    return end_tag(p, "endcall") ? n : NULL;
}

static tpl_node *parse_filter_block(parser *p, size_t at)
{
    static const char *const end[] = {"endfilter", NULL};
    tpl_node *n = node_new(p, N_FILTERBLOCK, at);
    if (!n || !(n->a = parse_filter_ref(p, p->cur, NULL))) return NULL;
    if (!expect(p, TT_CLOSE_STMT, "'%}'") || !parse_body(p, end, &n->body)) return NULL;
    return end_tag(p, "endfilter") ? n : NULL;
}

static tpl_node *parse_statement_body(parser *p, size_t at)
{
    if (!is(p, TT_IDENT)) return pfail(p, p->cur, "unknown statement%s", "");
    const tpl_token *name = &p->t[p->cur++];
    char nm[24];
    size_t l = name->len < sizeof nm - 1 ? name->len : sizeof nm - 1;
    memcpy(nm, name->s, l);
    nm[l] = '\0';
    if (!strcmp(nm, "set")) return parse_set(p, at);
    if (!strcmp(nm, "if")) {
        tpl_node *n = parse_if(p, at);
        return n && end_tag(p, "endif") ? n : NULL;
    }
    if (!strcmp(nm, "macro")) {
        tpl_node *n = parse_macro(p, at);
        return n && end_tag(p, "endmacro") ? n : NULL;
    }
    if (!strcmp(nm, "for")) {
        tpl_node *n = parse_for(p, at);
        return n && end_tag(p, "endfor") ? n : NULL;
    }
    if (!strcmp(nm, "call")) return parse_call_block(p, at);
    if (!strcmp(nm, "filter")) return parse_filter_block(p, at);
    if (!strcmp(nm, "break") || !strcmp(nm, "continue")) {
        tpl_node *n = node_new(p, nm[0] == 'b' ? N_BREAK : N_CONTINUE, at);
        return n && expect(p, TT_CLOSE_STMT, "'%}'") ? n : NULL;
    }
    return pfail(p, at, "unknown statement type: %s", nm);
}

static tpl_node *parse_any(parser *p)
{
    size_t at = p->cur;
    const tpl_token *t = &p->t[at];
    switch (t->type) {
    case TT_COMMENT:
        p->cur++;
        return node_new(p, N_COMMENT, at);
    case TT_TEXT: {
        p->cur++;
        tpl_node *n = node_new(p, N_TEXT, at);
        if (n && !(n->s = tpl_arena_strdup(p->a, t->s, t->len))) return poom(p);
        if (n) n->len = t->len;
        return n;
    }
    case TT_OPEN_STMT: {
        p->cur++;
        if (!enter(p)) return NULL;
        return leave(p, parse_statement_body(p, at + 1));
    }
    case TT_OPEN_EXPR: {
        p->cur++;
        tpl_node *e = parse_expression(p);
        return e && expect(p, TT_CLOSE_EXPR, "'}}'") ? e : NULL;
    }
    default:
        return pfail(p, at, "unexpected token%s", "");
    }
}

/* ===================================================================== */
/* Door                                                                    */
/* ===================================================================== */

void tpl_destroy(tpl_template *t)
{
    if (!t) return;
    tpl_arena_fini(&t->arena);
    free(t->src);
    free(t);
}

sem_status tpl_parse(const char *src, size_t len, tpl_template **out, sem_err *err)
{
    if (len > TPL_MAX_SOURCE_BYTES)
        return sem_errf(err, SEM_ELIMIT, "template: %zu bytes exceeds the %zu-byte limit", len,
                        TPL_MAX_SOURCE_BYTES);
    tpl_template *t = calloc(1, sizeof *t);
    if (!t || !(t->src = malloc(len + 1))) {
        free(t);
        return sem_errf(err, SEM_ENOMEM, "template: out of memory");
    }
    if (len) memcpy(t->src, src, len);
    t->src[len] = '\0';
    t->src_len = len;
    tpl_arena_init(&t->arena);
    tpl_lexed lx;
    sem_status s = tpl_lex(t->src, len, &t->arena, &lx, err);
    if (s != SEM_OK) {
        tpl_destroy(t);
        return s;
    }
    parser p = {.t = lx.toks, .n = lx.n, .a = &t->arena, .err = err, .src = t->src, .src_len = len};
    list_b body = {0};
    while (p.cur < p.n && list_push(&p, &body, parse_any(&p))) {
    }
    tpl_lexed_fini(&lx);
    SEM_ASSERT(p.failed || p.cur >= p.n); /* every NULL node comes with an error */
    if (p.failed) {
        tpl_destroy(t);
        return err->code != SEM_OK ? err->code : SEM_EINVAL;
    }
    t->body = body.l;
    *out = t;
    return SEM_OK;
}
