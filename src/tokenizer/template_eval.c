/* template_eval.c - the interpreter: scopes, expression evaluation, the
 * statements (if/for/set/macro/call/filter blocks), and tpl_render().
 *
 * Semantics follow @huggingface/jinja's Interpreter, including its quirks:
 *  - `set` writes to the innermost scope; a for loop has one scope for all
 *    its iterations, if blocks have none, and a macro body runs in a child of
 *    the *calling* scope (dynamic scoping);
 *  - break/continue discard the output of the iteration they end, and a loop
 *    whose iterations all `continue` (or which breaks first) renders its else;
 *  - undefined.attr is undefined, printing none/undefined prints nothing, and
 *    arithmetic, ~ or `in` on undefined/none is an error.
 * Errors carry the position of the innermost node that failed.
 *
 * Thread: the rendering thread; the template itself is only read.
 */
#include "tokenizer/template_int.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ===================================================================== */
/* Scopes                                                                  */
/* ===================================================================== */

tpl_scope *tpl_scope_new(tpl_rctx *r, tpl_scope *parent)
{
    (void)r;
    tpl_scope *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->rc = 1;
    s->parent = parent;
    if (parent) parent->rc++;
    return s;
}

void tpl_scope_release(tpl_rctx *r, tpl_scope *s)
{
    while (s && --s->rc == 0) {
        tpl_scope *parent = s->parent;
        for (size_t i = 0; i < s->n; i++) {
            if (s->vars[i].key) tv_release(r, (tval){.type = TV_STR, .u.h = &s->vars[i].key->hdr});
            tv_release(r, s->vars[i].val);
        }
        free(s->vars);
        free(s);
        s = parent;
    }
}

static tpl_var *scope_find(const tpl_scope *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->vars[i].len == len && memcmp(s->vars[i].name, name, len) == 0) return &s->vars[i];
    return NULL;
}

/* name must outlive the scope (an AST string) unless key is given. */
static tstat scope_put(tpl_rctx *r, tpl_scope *s, const char *name, size_t len, tv_str *key, tval v)
{
    tpl_var *var = scope_find(s, name, len);
    if (var) {
        tval old = var->val;
        var->val = v;
        tv_release(r, old);
        return TS_OK;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        tpl_var *vars = realloc(s->vars, cap * sizeof *vars);
        if (!vars) {
            tv_release(r, v);
            return tpl_oom(r);
        }
        s->vars = vars;
        s->cap = cap;
    }
    if (key) key->hdr.rc++;
    s->vars[s->n++] = (tpl_var){.name = key ? key->p : name, .len = len, .key = key, .val = v};
    return TS_OK;
}

tstat tpl_scope_set(tpl_rctx *r, tpl_scope *s, const char *name, size_t len, tval v)
{
    return scope_put(r, s, name, len, NULL, v);
}

tval tpl_scope_lookup(const tpl_scope *s, const char *name, size_t len)
{
    for (; s; s = s->parent) {
        const tpl_var *v = scope_find(s, name, len);
        if (v) return v->val;
    }
    return tv_undef();
}

/* Every Environment of the reference declares `namespace` itself, so only a
 * binding in the innermost scope can shadow it. */
static tval lookup_var(tpl_rctx *r, const tpl_scope *sc, const char *name, size_t len)
{
    if (len == 9 && memcmp(name, "namespace", 9) == 0) {
        const tpl_var *v = scope_find(sc, name, len);
        return v ? v->val : r->fn_namespace;
    }
    tval v = tpl_scope_lookup(sc, name, len);
    if (v.type == TV_UNDEF && len == 4 && memcmp(name, "dict", 4) == 0) return r->fn_dict;
    return v;
}

/* ===================================================================== */
/* Errors with positions                                                   */
/* ===================================================================== */

static tstat at_node(tpl_rctx *r, const tpl_node *n, tstat s)
{
    if (s == TS_ERR && !r->err_pos_set && n) {
        unsigned line, col;
        tpl_line_col(r->t->src, r->t->src_len, n->pos, &line, &col);
        sem_err_prefix(r->err, "template line %u column %u: ", line, col);
        r->err_pos_set = true;
    }
    return s;
}

static tstat enter(tpl_rctx *r)
{
    if (++r->depth > TPL_MAX_EVAL_DEPTH) {
        r->depth--;
        return tpl_fail_code(r, SEM_ELIMIT, "evaluation nested deeper than %d levels (runaway recursion?)",
                             TPL_MAX_EVAL_DEPTH);
    }
    return tpl_charge(r, 1);
}

static const char *op_name(tpl_op op)
{
    static const char *names[] = {"", "+", "-", "~", "*", "/", "//", "%", "**", "==", "!=", "<",
                                  ">", "<=", ">=", "in", "not in", "and", "or", "not", "-", "+"};
    return op < sizeof names / sizeof names[0] ? names[op] : "?";
}

/* ===================================================================== */
/* Binary and unary operators                                              */
/* ===================================================================== */

static tstat concat_raw(tpl_rctx *r, tval a, tval b, tval *out)
{
    buf s;
    buf_init(&s);
    if (tv_raw_string(r, a, &s, 0) != TS_OK || tv_raw_string(r, b, &s, 0) != TS_OK) {
        buf_fini(&s);
        return TS_ERR;
    }
    return tv_str_from_buf(r, &s, out);
}

static bool numeric_like(tval v) { return tv_is_num(v) || v.type == TV_BOOL; }
static double num_of(tval v) { return v.type == TV_BOOL ? (v.u.b ? 1 : 0) : v.u.n; }

static tstat op_pow(tpl_rctx *r, tval a, tval b, tval *out)
{
    double x = num_of(a), y = num_of(b);
    if (x == 0 && y < 0) return tpl_fail(r, "0.0 cannot be raised to a negative power");
    double res = pow(x, y);
    if (!isfinite(res)) return tpl_fail(r, "Exponentiation result is not a finite real number");
    bool is_float = a.type == TV_FLOAT || b.type == TV_FLOAT || y < 0;
    *out = is_float ? tv_float(res) : tv_int(res);
    return TS_OK;
}

/* Both operands numbers. *handled is false for operators numbers lack. */
static void op_numeric(tpl_op op, tval a, tval b, tval *out, bool *handled)
{
    double x = a.u.n, y = b.u.n;
    bool f = a.type == TV_FLOAT || b.type == TV_FLOAT;
    *handled = true;
    switch (op) {
    case OP_ADD: *out = f ? tv_float(x + y) : tv_int(x + y); break;
    case OP_SUB: *out = f ? tv_float(x - y) : tv_int(x - y); break;
    case OP_MUL: *out = f ? tv_float(x * y) : tv_int(x * y); break;
    case OP_DIV: *out = tv_float(x / y); break;
    case OP_FLOORDIV: *out = f ? tv_float(floor(x / y)) : tv_int(floor(x / y)); break;
    case OP_MOD: *out = f ? tv_float(fmod(x, y)) : tv_int(fmod(x, y)); break;
    case OP_LT: *out = tv_bool(x < y); break;
    case OP_GT: *out = tv_bool(x > y); break;
    case OP_LE: *out = tv_bool(x <= y); break;
    case OP_GE: *out = tv_bool(x >= y); break;
    default: *handled = false;
    }
}

static tstat array_concat(tpl_rctx *r, tval a, tval b, tval *out)
{
    tv_arr *x = tv_a(a), *y = tv_a(b);
    if (x->n + y->n > TPL_MAX_CONTAINER_ITEMS)
        return tpl_fail_code(r, SEM_ELIMIT, "list exceeds %zu items", TPL_MAX_CONTAINER_ITEMS);
    if (tv_arr_new(r, TV_ARRAY, x->n + y->n, out) != TS_OK) return TS_ERR;
    for (size_t i = 0; i < x->n + y->n; i++) {
        tval v = i < x->n ? x->v[i] : y->v[i - x->n];
        tv_retain(v);
        if (tv_arr_push(r, *out, v) != TS_OK) {
            tv_release(r, *out);
            return TS_ERR;
        }
    }
    return TS_OK;
}

static bool str_contains(const tv_str *hay, const tv_str *needle)
{
    if (needle->len == 0) return true;
    if (needle->len > hay->len) return false;
    for (size_t i = 0; i + needle->len <= hay->len; i++)
        if (memcmp(hay->p + i, needle->p, needle->len) == 0) return true;
    return false;
}

/* Superset (Python Jinja): "ab" * 3 and string ordering. */
static tstat op_str_extra(tpl_rctx *r, tpl_op op, tval a, tval b, tval *out, bool *handled)
{
    *handled = false;
    if (op == OP_MUL && ((a.type == TV_STR && b.type == TV_INT) || (a.type == TV_INT && b.type == TV_STR))) {
        const tv_str *s = tv_s(a.type == TV_STR ? a : b);
        double k = a.type == TV_INT ? a.u.n : b.u.n;
        size_t reps = k > 0 ? (size_t)fmin(k, (double)r->max_out + 1) : 0;
        if (s->len && reps > r->max_out / s->len)
            return tpl_fail_code(r, SEM_ELIMIT, "string exceeds the %zu-byte limit", r->max_out);
        buf o;
        buf_init(&o);
        for (size_t i = 0; i < reps; i++)
            if (!buf_append(&o, s->p, s->len)) return buf_fini(&o), tpl_oom(r);
        *handled = true;
        return tv_str_from_buf(r, &o, out);
    }
    if (a.type == TV_STR && b.type == TV_STR && op >= OP_LT && op <= OP_GE) {
        const tv_str *x = tv_s(a), *y = tv_s(b);
        size_t n = x->len < y->len ? x->len : y->len;
        int c = memcmp(x->p, y->p, n);
        if (c == 0) c = x->len < y->len ? -1 : x->len > y->len ? 1 : 0;
        bool v = op == OP_LT ? c < 0 : op == OP_GT ? c > 0 : op == OP_LE ? c <= 0 : c >= 0;
        *out = tv_bool(v);
        *handled = true;
    }
    return TS_OK;
}

/* The tail of the reference's evaluateBinaryExpression: string operators. */
static tstat op_strings(tpl_rctx *r, tpl_op op, tval a, tval b, tval *out)
{
    if ((a.type == TV_STR || b.type == TV_STR) && op == OP_ADD) return concat_raw(r, a, b, out);
    if (a.type == TV_STR && b.type == TV_STR && (op == OP_IN || op == OP_NOTIN)) {
        bool in = str_contains(tv_s(b), tv_s(a));
        *out = tv_bool(op == OP_IN ? in : !in);
        return TS_OK;
    }
    if (a.type == TV_STR && tv_is_obj(b) && (op == OP_IN || op == OP_NOTIN)) {
        bool in = tv_obj_get(b, tv_s(a)->p, tv_s(a)->len) != NULL;
        *out = tv_bool(op == OP_IN ? in : !in);
        return TS_OK;
    }
    bool handled;
    if (op_str_extra(r, op, a, b, out, &handled) != TS_OK || handled) return handled ? TS_OK : TS_ERR;
    return tpl_fail(r, "Unknown operator \"%s\" between %s and %s", op_name(op), tv_type_name(a),
                    tv_type_name(b));
}

static tstat op_values(tpl_rctx *r, tpl_op op, tval a, tval b, tval *out)
{
    if (op == OP_EQ || op == OP_NE) {
        bool eq;
        if (tv_loose_eq(r, a, b, &eq) != TS_OK) return TS_ERR;
        *out = tv_bool(op == OP_EQ ? eq : !eq);
        return TS_OK;
    }
    if (a.type == TV_UNDEF || b.type == TV_UNDEF) {
        if (b.type == TV_UNDEF && (op == OP_IN || op == OP_NOTIN)) {
            *out = tv_bool(op == OP_NOTIN);
            return TS_OK;
        }
        return tpl_fail(r, "Cannot perform operation %s on undefined values", op_name(op));
    }
    if (a.type == TV_NULL || b.type == TV_NULL)
        return tpl_fail(r, "Cannot perform operation on null values");
    if (op == OP_CONCAT) return concat_raw(r, a, b, out);
    if (op == OP_POW && numeric_like(a) && numeric_like(b)) return op_pow(r, a, b, out);
    if (tv_is_num(a) && tv_is_num(b)) {
        bool handled;
        op_numeric(op, a, b, out, &handled);
        if (handled) return TS_OK;
    } else if (tv_is_arr(a) && tv_is_arr(b)) {
        if (op == OP_ADD) return array_concat(r, a, b, out);
    } else if (tv_is_arr(b) && (op == OP_IN || op == OP_NOTIN)) {
        bool in = false;
        for (size_t i = 0; !in && i < tv_a(b)->n; i++) in = tv_strict_eq(tv_a(b)->v[i], a);
        *out = tv_bool(op == OP_IN ? in : !in);
        return TS_OK;
    }
    return op_strings(r, op, a, b, out);
}

static tstat eval_binary(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, tval *out)
{
    tval a, b;
    if (tpl_eval(r, n->a, sc, &a) != TS_OK) return TS_ERR;
    if (n->op == OP_AND || n->op == OP_OR) {
        bool t = tv_truthy(a);
        if ((n->op == OP_AND) != t) {
            *out = a;
            return TS_OK;
        }
        tv_release(r, a);
        return tpl_eval(r, n->b, sc, out);
    }
    if (tpl_eval(r, n->b, sc, &b) != TS_OK) {
        tv_release(r, a);
        return TS_ERR;
    }
    tstat s = op_values(r, (tpl_op)n->op, a, b, out);
    tv_release(r, a);
    tv_release(r, b);
    return s;
}

static tstat eval_unary(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, tval *out)
{
    tval a;
    if (tpl_eval(r, n->a, sc, &a) != TS_OK) return TS_ERR;
    tstat s = TS_OK;
    if (n->op == OP_NOT) {
        *out = tv_bool(!tv_truthy(a));
    } else if (numeric_like(a)) {
        double v = (n->op == OP_NEG ? -1.0 : 1.0) * num_of(a);
        *out = a.type == TV_FLOAT ? tv_float(v) : tv_int(v);
    } else {
        s = tpl_fail(r, "Unknown operator \"%s\" for %s", op_name((tpl_op)n->op), tv_type_name(a));
    }
    tv_release(r, a);
    return s;
}

/* ===================================================================== */
/* Member access and slices                                                */
/* ===================================================================== */

static double js_max(double a, double b) { return isnan(a) || isnan(b) ? NAN : (a > b ? a : b); }
static double js_min(double a, double b) { return isnan(a) || isnan(b) ? NAN : (a < b ? a : b); }

/* utils.slice of the reference: Python-like, but `stop` -1 with a negative
 * step means "to the beginning". The indices are first, first+step, ...
 * while dir * i < dir * stop. */
typedef struct slice_it {
    double i, stop, step, dir, n;
} slice_it;

static slice_it slice_begin(size_t len, tval start, tval stop, tval step)
{
    slice_it it = {.n = (double)len, .step = step.type == TV_UNDEF ? 1 : step.u.n};
    double n = it.n, st = it.step;
    it.dir = st > 0 ? 1 : st < 0 ? -1 : isnan(st) ? NAN : 0;
    if (it.dir >= 0) {
        double a = start.type == TV_UNDEF ? 0 : start.u.n, b = stop.type == TV_UNDEF ? n : stop.u.n;
        it.i = a < 0 ? js_max(n + a, 0) : js_min(a, n);
        it.stop = b < 0 ? js_max(n + b, 0) : js_min(b, n);
    } else {
        double a = start.type == TV_UNDEF ? n - 1 : start.u.n, b = stop.type == TV_UNDEF ? -1 : stop.u.n;
        it.i = a < 0 ? js_max(n + a, -1) : js_min(a, n - 1);
        it.stop = b < -1 ? js_max(n + b, -1) : js_min(b, n - 1);
    }
    return it;
}

/* Next index, or false at the end (also for anything out of range). */
static bool slice_next(slice_it *it, size_t *idx)
{
    if (!(it->dir * it->i < it->dir * it->stop) || !(it->i >= 0 && it->i < it->n)) return false;
    *idx = (size_t)it->i;
    it->i += it->step;
    return true;
}

static tstat slice_string(tpl_rctx *r, const tv_str *s, tval a, tval b, tval c, tval *out)
{
    if (s->len > UINT32_MAX) return tpl_fail_code(r, SEM_ELIMIT, "string too long to slice");
    size_t ncp = 0;
    for (size_t i = 0; i < s->len; ncp++) {
        uint32_t cp;
        i += tpl_utf8_decode(s->p, s->len, i, &cp);
    }
    if (tpl_charge(r, ncp / 16) != TS_OK) return TS_ERR;
    uint32_t *offs = malloc((ncp + 1) * sizeof *offs); /* byte offset of each code point */
    if (!offs) return tpl_oom(r);
    size_t k = 0;
    for (size_t i = 0; i < s->len; k++) {
        uint32_t cp;
        offs[k] = (uint32_t)i;
        i += tpl_utf8_decode(s->p, s->len, i, &cp);
    }
    offs[ncp] = (uint32_t)s->len;
    slice_it it = slice_begin(ncp, a, b, c);
    buf o;
    buf_init(&o);
    bool ok = true;
    size_t x;
    while (ok && slice_next(&it, &x)) ok = buf_append(&o, s->p + offs[x], offs[x + 1] - offs[x]);
    free(offs);
    if (!ok) return buf_fini(&o), tpl_oom(r);
    return tv_str_from_buf(r, &o, out);
}

static tstat do_slice(tpl_rctx *r, tval obj, tval a, tval b, tval c, tval *out)
{
    if (obj.type == TV_STR) return slice_string(r, tv_s(obj), a, b, c, out);
    tv_arr *arr = tv_a(obj);
    slice_it it = slice_begin(arr->n, a, b, c);
    if (tv_arr_new(r, TV_ARRAY, 0, out) != TS_OK) return TS_ERR;
    size_t x;
    while (slice_next(&it, &x)) {
        tv_retain(arr->v[x]);
        if (tv_arr_push(r, *out, arr->v[x]) != TS_OK) return tv_release(r, *out), TS_ERR;
    }
    return TS_OK;
}

static tstat eval_slice(tpl_rctx *r, tval obj, const tpl_node *sl, tpl_scope *sc, tval *out)
{
    if (!tv_is_arr(obj) && obj.type != TV_STR) return tpl_fail(r, "Slice object must be an array or string");
    tval p[3] = {tv_undef(), tv_undef(), tv_undef()};
    const tpl_node *parts[3] = {sl->a, sl->b, sl->c};
    static const char *what[3] = {"start", "stop", "step"};
    tstat s = TS_OK;
    for (int i = 0; s == TS_OK && i < 3; i++) {
        if (parts[i] && (s = tpl_eval(r, parts[i], sc, &p[i])) == TS_OK &&
            p[i].type != TV_INT && p[i].type != TV_UNDEF)
            s = tpl_fail(r, "Slice %s must be numeric or undefined", what[i]);
    }
    if (s == TS_OK) s = do_slice(r, obj, p[0], p[1], p[2], out);
    for (int i = 0; i < 3; i++) tv_release(r, p[i]);
    return s;
}

static tstat index_value(tpl_rctx *r, tval obj, double idx, tval *out)
{
    if (isnan(idx)) idx = 0;
    idx = trunc(idx);
    if (obj.type == TV_STR) {
        buf b;
        buf_init(&b);
        bool found;
        int64_t i = idx > 9e18 ? INT64_MAX : idx < -9e18 ? INT64_MIN + 1 : (int64_t)idx;
        if (!tpl_utf16_at(tv_s(obj)->p, tv_s(obj)->len, i, &b, &found)) return buf_fini(&b), tpl_oom(r);
        if (!found) return buf_fini(&b), tv_ret(out, tv_undef());
        return tv_str_from_buf(r, &b, out);
    }
    tv_arr *a = tv_a(obj);
    double n = (double)a->n;
    if (idx < 0) idx += n;
    if (!(idx >= 0 && idx < n)) {
        *out = tv_undef();
        return TS_OK;
    }
    *out = a->v[(size_t)idx];
    tv_retain(*out);
    return TS_OK;
}

/* obj.name / obj['name'] / obj[i] once the property is known. */
static tstat member_value(tpl_rctx *r, tval obj, tval prop, tval *out)
{
    if (tv_is_attr(obj)) {
        if (prop.type != TV_STR)
            return tpl_fail(r, "Cannot access property with non-string: got %s", tv_type_name(prop));
        const tval *v = tv_obj_get(obj, tv_s(prop)->p, tv_s(prop)->len);
        if (v) {
            *out = *v;
            tv_retain(*out);
            return TS_OK;
        }
        if (obj.type == TV_NS) return tv_ret(out, tv_undef());
        return tpl_builtin_property(r, obj, tv_s(prop)->p, tv_s(prop)->len, out);
    }
    if (tv_is_arr(obj) || obj.type == TV_STR) {
        if (prop.type == TV_INT) return index_value(r, obj, prop.u.n, out);
        if (prop.type == TV_STR) return tpl_builtin_property(r, obj, tv_s(prop)->p, tv_s(prop)->len, out);
        return tpl_fail(r, "Cannot access property with non-string/non-number: got %s", tv_type_name(prop));
    }
    if (prop.type != TV_STR)
        return tpl_fail(r, "Cannot access property with non-string: got %s", tv_type_name(prop));
    *out = tv_undef();
    return TS_OK;
}

static tstat eval_member(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, tval *out)
{
    tval obj, prop;
    if (tpl_eval(r, n->a, sc, &obj) != TS_OK) return TS_ERR;
    tstat s;
    if ((n->flags & TPL_NF_COMPUTED) && n->b->kind == E_SLICE) {
        s = eval_slice(r, obj, n->b, sc, out);
        tv_release(r, obj);
        return s;
    }
    if (n->flags & TPL_NF_COMPUTED) s = tpl_eval(r, n->b, sc, &prop);
    else if (n->flags & TPL_NF_INDEX) s = (prop = tv_int(n->num), TS_OK);
    else s = tv_str_new(r, n->s, n->len, &prop);
    if (s == TS_OK) {
        s = member_value(r, obj, prop, out);
        tv_release(r, prop);
    }
    tv_release(r, obj);
    return s;
}

/* ===================================================================== */
/* Calls                                                                   */
/* ===================================================================== */

static tstat push_spread(tpl_rctx *r, tval pos, tval v)
{
    if (!tv_is_arr(v)) {
        tstat s = tpl_fail(r, "Cannot unpack non-iterable type: %s", tv_type_name(v));
        tv_release(r, v);
        return s;
    }
    for (size_t i = 0; i < tv_a(v)->n; i++) {
        tv_retain(tv_a(v)->v[i]);
        if (tv_arr_push(r, pos, tv_a(v)->v[i]) != TS_OK) return tv_release(r, v), TS_ERR;
    }
    tv_release(r, v);
    return TS_OK;
}

static tstat add_kwarg(tpl_rctx *r, tval kw, const char *name, size_t len, tval v)
{
    if (tv_obj_get(kw, name, len)) {
        tv_release(r, v);
        return tpl_fail(r, "Got multiple values for keyword argument '%.*s'", (int)len, name);
    }
    return tv_obj_set(r, kw, name, len, v);
}

static tstat eval_kwargs(tpl_rctx *r, const tpl_nodes *args, tpl_scope *sc, tval kw)
{
    for (size_t i = 0; i < args->n; i++) {
        const tpl_node *a = args->v[i];
        if (a->kind != E_KWARG && a->kind != E_KWSPREAD) continue;
        tval v;
        if (tpl_eval(r, a->a, sc, &v) != TS_OK) return TS_ERR;
        if (a->kind == E_KWARG) {
            if (add_kwarg(r, kw, a->s, a->len, v) != TS_OK) return TS_ERR;
            continue;
        }
        if (!tv_is_obj(v)) {
            tstat s = tpl_fail(r, "Argument after ** must be a mapping, not %s", tv_type_name(v));
            tv_release(r, v);
            return s;
        }
        tstat s = TS_OK;
        for (size_t k = 0; s == TS_OK && k < tv_o(v)->n; k++) {
            tv_kv *kv = &tv_o(v)->kv[k];
            tv_retain(kv->val);
            s = add_kwarg(r, kw, kv->key->p, kv->key->len, kv->val);
        }
        tv_release(r, v);
        if (s != TS_OK) return s;
    }
    return TS_OK;
}

tstat tpl_eval_args(tpl_rctx *r, const tpl_nodes *args, tpl_scope *sc, tval *pos, tval *kw)
{
    if (tv_arr_new(r, TV_ARRAY, args->n, pos) != TS_OK) return TS_ERR;
    if (tv_obj_new(r, TV_KWARGS, 0, kw) != TS_OK) return tv_release(r, *pos), TS_ERR;
    tstat s = TS_OK;
    for (size_t i = 0; s == TS_OK && i < args->n; i++) {
        const tpl_node *a = args->v[i];
        if (a->kind == E_KWARG || a->kind == E_KWSPREAD) continue;
        tval v;
        if ((s = tpl_eval(r, a->kind == E_SPREAD ? a->a : a, sc, &v)) != TS_OK) break;
        s = a->kind == E_SPREAD ? push_spread(r, *pos, v) : tv_arr_push(r, *pos, v);
    }
    if (s == TS_OK) s = eval_kwargs(r, args, sc, *kw);
    if (s != TS_OK) {
        tv_release(r, *pos);
        tv_release(r, *kw);
    }
    return s;
}

static tstat exec_block(tpl_rctx *r, const tpl_nodes *body, tpl_scope *sc, buf *out);

static tstat render_to_string(tpl_rctx *r, const tpl_nodes *body, tpl_scope *sc, tval *out)
{
    buf b;
    buf_init(&b);
    tstat s = exec_block(r, body, sc, &b);
    if (s != TS_OK) return buf_fini(&b), s;
    return tv_str_from_buf(r, &b, out);
}

/* bindMacroArguments: positional, then keyword, then pending defaults
 * evaluated in the new scope; kwargs/varargs only when the body reads them. */
static tstat bind_params(tpl_rctx *r, const tpl_node *def, const char *display, tval pos, tval kw,
                         tpl_scope *scope)
{
    const tpl_nodes *params = &def->args;
    tv_arr *p = tv_a(pos);
    tv_obj *k = kw.type == TV_KWARGS ? tv_o(kw) : NULL;
    size_t nk = k ? k->n : 0;
    bool *used = nk ? calloc(nk, sizeof *used) : NULL;
    if (nk && !used) return tpl_oom(r);
    tstat s = TS_OK;
    for (size_t i = 0; s == TS_OK && i < params->n; i++) {
        const tpl_node *pm = params->v[i];
        tval v = tv_undef();
        bool have = i < p->n;
        if (have) v = p->v[i];
        for (size_t j = 0; !have && j < nk; j++)
            if (!used[j] && k->kv[j].key->len == pm->len && memcmp(k->kv[j].key->p, pm->s, pm->len) == 0)
                used[j] = true, have = true, v = k->kv[j].val;
        tv_retain(v);
        s = tpl_scope_set(r, scope, pm->s, pm->len, v);
    }
    tval rest = tv_undef();
    if (s == TS_OK && (def->flags & TPL_NF_KWARGS)) {
        if ((s = tv_obj_new(r, TV_OBJECT, 0, &rest)) == TS_OK) {
            for (size_t j = 0; s == TS_OK && j < nk; j++)
                if (!used[j]) tv_retain(k->kv[j].val), s = tv_obj_set_key(r, rest, k->kv[j].key, k->kv[j].val);
            if (s == TS_OK) s = tpl_scope_set(r, scope, "kwargs", 6, rest);
            else tv_release(r, rest);
        }
    } else {
        for (size_t j = 0; s == TS_OK && j < nk; j++)
            if (!used[j])
                s = tpl_fail(r, "macro %s takes no keyword argument '%s'", display, k->kv[j].key->p);
    }
    free(used);
    if (s == TS_OK && (def->flags & TPL_NF_VARARGS)) {
        if ((s = tv_arr_new(r, TV_ARRAY, 0, &rest)) == TS_OK) {
            for (size_t i = params->n; s == TS_OK && i < p->n; i++) tv_retain(p->v[i]), s = tv_arr_push(r, rest, p->v[i]);
            if (s == TS_OK) s = tpl_scope_set(r, scope, "varargs", 7, rest);
            else tv_release(r, rest);
        }
    } else if (s == TS_OK && p->n > params->n) {
        s = tpl_fail(r, "macro %s takes not more than %zu argument(s)", display, params->n);
    }
    for (size_t i = 0; s == TS_OK && i < params->n; i++) {
        const tpl_node *pm = params->v[i];
        if (pm->kind != E_KWARG) continue;
        bool given = i < p->n;
        for (size_t j = 0; !given && j < nk; j++)
            given = k->kv[j].key->len == pm->len && memcmp(k->kv[j].key->p, pm->s, pm->len) == 0;
        if (given) continue;
        tval v;
        if ((s = tpl_eval(r, pm->a, scope, &v)) == TS_OK) s = tpl_scope_set(r, scope, pm->s, pm->len, v);
    }
    return s;
}

static tstat call_macro(tpl_rctx *r, const tv_fn *f, tval pos, tval kw, tpl_scope *caller_sc, tval *out)
{
    const tpl_node *def = f->node;
    tpl_scope *scope = tpl_scope_new(r, f->kind == FN_CALLER ? f->scope : caller_sc);
    if (!scope) return tpl_oom(r);
    char display[80];
    if (f->kind == FN_CALLER) snprintf(display, sizeof display, "None");
    else snprintf(display, sizeof display, "'%.*s'", (int)(def->len < 64 ? def->len : 64), def->s);
    tstat s = bind_params(r, def, display, pos, kw, scope);
    if (s == TS_OK) s = render_to_string(r, &def->body, scope, out);
    tpl_scope_release(r, scope);
    return s;
}

tstat tpl_call(tpl_rctx *r, tval fn, tval pos, tval kw, tpl_scope *sc, tval *out)
{
    if (fn.type != TV_FUNC)
        return tpl_fail(r, "Cannot call something that is not a function: got %s", tv_type_name(fn));
    const tv_fn *f = tv_f(fn);
    switch ((tv_fn_kind)f->kind) {
    case FN_GLOBAL: return tpl_call_global(r, (tpl_global_id)f->id, pos, kw, out);
    case FN_STR_METHOD:
    case FN_OBJ_METHOD: return tpl_call_method(r, f, pos, kw, out);
    case FN_LOOP_CYCLE: {
        tv_arr *a = tv_a(pos);
        const tval *i0 = tv_obj_get(f->self, "index0", 6);
        if (!a->n || !i0) return tpl_fail(r, "no items for cycling given");
        *out = a->v[(size_t)fmod(fabs(i0->u.n), (double)a->n)];
        tv_retain(*out);
        return TS_OK;
    }
    case FN_MACRO:
    case FN_CALLER: return call_macro(r, f, pos, kw, sc, out);
    }
    return tpl_fail(r, "bad function");
}

static tstat eval_call(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, tval *out)
{
    tval pos, kw, fn;
    if (tpl_eval_args(r, &n->args, sc, &pos, &kw) != TS_OK) return TS_ERR;
    tstat s = tpl_eval(r, n->a, sc, &fn);
    if (s == TS_OK) {
        s = tpl_call(r, fn, pos, kw, sc, out);
        tv_release(r, fn);
    }
    tv_release(r, pos);
    tv_release(r, kw);
    return s;
}

/* ===================================================================== */
/* Expressions                                                             */
/* ===================================================================== */

static tstat eval_list(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, tval *out)
{
    if (tv_arr_new(r, n->kind == E_TUPLE ? TV_TUPLE : TV_ARRAY, n->args.n, out) != TS_OK) return TS_ERR;
    for (size_t i = 0; i < n->args.n; i++) {
        tval v;
        if (tpl_eval(r, n->args.v[i], sc, &v) != TS_OK || tv_arr_push(r, *out, v) != TS_OK) {
            tv_release(r, *out);
            return TS_ERR;
        }
    }
    return TS_OK;
}

static tstat eval_object(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, tval *out)
{
    if (tv_obj_new(r, TV_OBJECT, n->args.n / 2, out) != TS_OK) return TS_ERR;
    for (size_t i = 0; i + 1 < n->args.n; i += 2) {
        tval k, v;
        if (tpl_eval(r, n->args.v[i], sc, &k) != TS_OK) goto fail;
        if (k.type != TV_STR) {
            tpl_fail(r, "Object keys must be strings: got %s", tv_type_name(k));
            tv_release(r, k);
            goto fail;
        }
        if (tpl_eval(r, n->args.v[i + 1], sc, &v) != TS_OK) {
            tv_release(r, k);
            goto fail;
        }
        tstat s = tv_obj_set_key(r, *out, tv_s(k), v);
        tv_release(r, k);
        if (s != TS_OK) goto fail;
    }
    return TS_OK;
fail:
    tv_release(r, *out);
    return TS_ERR;
}

static tstat eval_node(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, tval *out)
{
    switch ((tpl_node_kind)n->kind) {
    case E_INT: *out = tv_int(n->num); return TS_OK;
    case E_FLOAT: *out = tv_float(n->num); return TS_OK;
    case E_STR:
    case N_TEXT: return tv_str_new(r, n->s, n->len, out);
    case E_IDENT:
        *out = lookup_var(r, sc, n->s, n->len);
        tv_retain(*out);
        return TS_OK;
    case E_ARRAY:
    case E_TUPLE: return eval_list(r, n, sc, out);
    case E_OBJECT: return eval_object(r, n, sc, out);
    case E_MEMBER: return eval_member(r, n, sc, out);
    case E_CALL: return eval_call(r, n, sc, out);
    case E_UNARY: return eval_unary(r, n, sc, out);
    case E_BINARY: return eval_binary(r, n, sc, out);
    case E_TEST: return tpl_eval_test(r, n, sc, out);
    case E_FILTER: {
        tval operand;
        if (tpl_eval(r, n->a, sc, &operand) != TS_OK) return TS_ERR;
        tstat s = tpl_apply_filter(r, n, operand, sc, out);
        tv_release(r, operand);
        return s;
    }
    case E_SELECT: {
        tval c;
        if (tpl_eval(r, n->b, sc, &c) != TS_OK) return TS_ERR;
        bool t = tv_truthy(c);
        tv_release(r, c);
        if (!t) return tv_ret(out, tv_undef());
        return tpl_eval(r, n->a, sc, out);
    }
    case E_TERNARY: {
        tval c;
        if (tpl_eval(r, n->a, sc, &c) != TS_OK) return TS_ERR;
        bool t = tv_truthy(c);
        tv_release(r, c);
        return tpl_eval(r, t ? n->b : n->c, sc, out);
    }
    case E_SLICE: return tpl_fail(r, "slice outside of a subscript");
    default: return tpl_fail(r, "unexpected node in expression");
    }
}

tstat tpl_eval(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, tval *out)
{
    if (!n) {
        *out = tv_undef();
        return TS_OK;
    }
    if (enter(r) != TS_OK) return at_node(r, n, TS_ERR);
    tstat s = eval_node(r, n, sc, out);
    r->depth--;
    return at_node(r, n, s);
}

/* ===================================================================== */
/* Statements                                                              */
/* ===================================================================== */

static tstat emit(tpl_rctx *r, buf *out, const char *s, size_t n)
{
    if (out->len + n > r->max_out || out->len + n < out->len)
        return tpl_fail_code(r, SEM_ELIMIT, "output exceeds the %zu-byte limit", r->max_out);
    return buf_append(out, s, n) ? TS_OK : tpl_oom(r);
}

static tstat emit_value(tpl_rctx *r, tval v, buf *out)
{
    if (v.type == TV_NULL || v.type == TV_UNDEF) return TS_OK;
    size_t mark = out->len;
    if (tv_print(r, v, out, 0) != TS_OK) return TS_ERR;
    if (out->len > r->max_out) {
        out->len = mark;
        return tpl_fail_code(r, SEM_ELIMIT, "output exceeds the %zu-byte limit", r->max_out);
    }
    return TS_OK;
}

static tstat bind_target(tpl_rctx *r, const tpl_node *target, tval v, tpl_scope *sc, bool in_set)
{
    if (target->kind == E_IDENT) {
        tv_retain(v);
        return tpl_scope_set(r, sc, target->s, target->len, v);
    }
    if (!tv_is_arr(v))
        return tpl_fail(r, in_set ? "Cannot unpack non-iterable type in set: %s" : "Cannot unpack non-iterable type: %s",
                        tv_type_name(v));
    const tpl_nodes *names = &target->args;
    if (names->n != tv_a(v)->n)
        return tpl_fail(r, "Too %s items to unpack", names->n > tv_a(v)->n ? "few" : "many");
    for (size_t i = 0; i < names->n; i++) {
        if (names->v[i]->kind != E_IDENT)
            return tpl_fail(r, "Cannot unpack to non-identifier");
        tv_retain(tv_a(v)->v[i]);
        if (tpl_scope_set(r, sc, names->v[i]->s, names->v[i]->len, tv_a(v)->v[i]) != TS_OK) return TS_ERR;
    }
    return TS_OK;
}

static tstat set_member(tpl_rctx *r, const tpl_node *target, tval v, tpl_scope *sc)
{
    tval obj;
    if (tpl_eval(r, target->a, sc, &obj) != TS_OK) return TS_ERR;
    tstat s;
    if (obj.type != TV_NS) {
        s = tpl_fail(r, "cannot assign attribute on non-namespace object");
    } else if (target->flags & (TPL_NF_COMPUTED | TPL_NF_INDEX)) {
        s = tpl_fail(r, "Cannot assign to member with non-identifier property");
    } else {
        tv_retain(v);
        s = tv_obj_set(r, obj, target->s, target->len, v);
    }
    tv_release(r, obj);
    return s;
}

static tstat exec_set(tpl_rctx *r, const tpl_node *n, tpl_scope *sc)
{
    tval v;
    tstat s = n->b ? tpl_eval(r, n->b, sc, &v) : render_to_string(r, &n->body, sc, &v);
    if (s != TS_OK) return s;
    switch (n->a->kind) {
    case E_IDENT:
    case E_TUPLE: s = bind_target(r, n->a, v, sc, true); break;
    case E_MEMBER: s = set_member(r, n->a, v, sc); break;
    default: s = tpl_fail(r, "Invalid LHS inside assignment expression");
    }
    tv_release(r, v);
    return s;
}

static const char *const LOOP_KEYS[9] = {"index",  "index0", "revindex", "revindex0", "first",
                                          "last",   "length", "previtem", "nextitem"};

/* The loop object, with its field names interned once per render. */
static tstat make_loop(tpl_rctx *r, const tval *items, size_t n, size_t i, tval *out)
{
    for (size_t k = 0; k < 9 && !r->loop_keys[k]; k++) {
        tval key;
        if (tv_str_cstr(r, LOOP_KEYS[k], &key) != TS_OK) return TS_ERR;
        r->loop_keys[k] = tv_s(key);
    }
    if (tv_obj_new(r, TV_OBJECT, 9, out) != TS_OK) return TS_ERR;
    tv_o(*out)->is_loop = true;
    double di = (double)i, dn = (double)n;
    tval prev = i > 0 ? items[i - 1] : tv_undef(), next = i + 1 < n ? items[i + 1] : tv_undef();
    tv_retain(prev);
    tv_retain(next);
    tval f[9] = {tv_int(di + 1), tv_int(di), tv_int(dn - di), tv_int(dn - di - 1), tv_bool(i == 0),
                 tv_bool(i + 1 == n), tv_int(dn), prev, next};
    tstat s = TS_OK;
    for (size_t k = 0; k < 9; k++) {
        if (s == TS_OK) s = tv_obj_append_key(r, *out, r->loop_keys[k], f[k]);
        else tv_release(r, f[k]);
    }
    if (s != TS_OK) tv_release(r, *out);
    return s;
}

/* The items to iterate: a list, or a dict's keys; filtered by `if`. */
static tstat loop_items(tpl_rctx *r, const tpl_node *n, tpl_scope *scope, tval *items)
{
    tval it;
    if (tpl_eval(r, n->b, scope, &it) != TS_OK) return TS_ERR;
    if (!tv_is_arr(it) && !tv_is_obj(it)) {
        tstat s = tpl_fail(r, "Expected iterable or object type in for loop: got %s", tv_type_name(it));
        tv_release(r, it);
        return at_node(r, n->b, s);
    }
    size_t len = tv_is_arr(it) ? tv_a(it)->n : tv_o(it)->n;
    tstat s = tv_arr_new(r, TV_ARRAY, len, items);
    for (size_t i = 0; s == TS_OK && i < len; i++) {
        tval cur;
        if (tv_is_arr(it)) cur = tv_a(it)->v[i], tv_retain(cur);
        else cur = (tval){.type = TV_STR, .u.h = &tv_o(it)->kv[i].key->hdr}, tv_retain(cur);
        if (n->a->kind == E_TUPLE && !tv_is_arr(cur)) {
            s = tpl_fail(r, "Cannot unpack non-iterable type: %s", tv_type_name(cur));
        } else if (n->a->kind == E_TUPLE && tv_a(cur)->n != n->a->args.n) {
            s = tpl_fail(r, "Too %s items to unpack", n->a->args.n > tv_a(cur)->n ? "few" : "many");
        } else if (n->c) {
            tpl_scope *ls = tpl_scope_new(r, scope);
            tval t = tv_undef();
            s = !ls ? tpl_oom(r) : bind_target(r, n->a, cur, ls, false);
            if (s == TS_OK) s = tpl_eval(r, n->c, ls, &t);
            bool keep = s == TS_OK && tv_truthy(t);
            tv_release(r, t);
            tpl_scope_release(r, ls);
            if (s == TS_OK && !keep) {
                tv_release(r, cur);
                continue;
            }
        }
        if (s == TS_OK) s = tv_arr_push(r, *items, cur);
        else tv_release(r, cur);
    }
    if (s != TS_OK && items->type == TV_ARRAY) tv_release(r, *items), *items = tv_undef();
    tv_release(r, it);
    return s;
}

static tstat exec_for(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, buf *out)
{
    tpl_scope *scope = tpl_scope_new(r, sc);
    if (!scope) return tpl_oom(r);
    tval items = tv_undef();
    tstat s = loop_items(r, n, scope, &items);
    bool none = true;
    size_t count = s == TS_OK ? tv_a(items)->n : 0;
    for (size_t i = 0; s == TS_OK && i < count; i++) {
        tval loop;
        if ((s = tpl_charge(r, 1)) != TS_OK || (s = make_loop(r, tv_a(items)->v, count, i, &loop)) != TS_OK) break;
        if ((s = tpl_scope_set(r, scope, "loop", 4, loop)) != TS_OK) break;
        if ((s = bind_target(r, n->a, tv_a(items)->v[i], scope, false)) != TS_OK) break;
        size_t mark = out->len;
        s = exec_block(r, &n->body, scope, out);
        if (s == TS_CONTINUE || s == TS_BREAK) {
            out->len = mark; /* the reference drops the interrupted iteration's text */
            if (out->data) out->data[mark] = '\0';
            if (s == TS_BREAK) {
                s = TS_OK;
                break;
            }
            s = TS_OK;
            continue;
        }
        none = false;
    }
    if (s == TS_OK && none) s = exec_block(r, &n->alt, scope, out);
    tv_release(r, items);
    tpl_scope_release(r, scope);
    return s;
}

static tstat exec_callblock(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, tval *out)
{
    tval caller, pos, kw, fn = tv_undef();
    if (tv_fn_new(r, FN_CALLER, 0, tv_undef(), n, sc, &caller) != TS_OK) return TS_ERR;
    tstat s = tpl_eval_args(r, &n->a->args, sc, &pos, &kw);
    if (s != TS_OK) return tv_release(r, caller), s;
    tpl_scope *env = NULL;
    if ((s = tpl_eval(r, n->a->a, sc, &fn)) == TS_OK) {
        if (fn.type != TV_FUNC) {
            s = tpl_fail(r, "Cannot call something that is not a function: got %s", tv_type_name(fn));
        } else if (!(env = tpl_scope_new(r, sc))) {
            s = tpl_oom(r);
        } else {
            tv_retain(caller);
            if ((s = tpl_scope_set(r, env, "caller", 6, caller)) == TS_OK) s = tpl_call(r, fn, pos, kw, env, out);
        }
    }
    tpl_scope_release(r, env);
    tv_release(r, fn);
    tv_release(r, caller);
    tv_release(r, pos);
    tv_release(r, kw);
    return s;
}

static tstat exec_stmt(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, buf *out)
{
    tval v;
    tstat s;
    switch ((tpl_node_kind)n->kind) {
    case N_TEXT: return emit(r, out, n->s, n->len);
    case N_COMMENT: return TS_OK;
    case N_IF: {
        if (tpl_eval(r, n->a, sc, &v) != TS_OK) return TS_ERR;
        bool t = tv_truthy(v);
        tv_release(r, v);
        return exec_block(r, t ? &n->body : &n->alt, sc, out);
    }
    case N_FOR: return exec_for(r, n, sc, out);
    case N_SET: return exec_set(r, n, sc);
    case N_MACRO:
        if (tv_fn_new(r, FN_MACRO, 0, tv_undef(), n, NULL, &v) != TS_OK) return TS_ERR;
        return tpl_scope_set(r, sc, n->s, n->len, v);
    case N_BREAK: return TS_BREAK;
    case N_CONTINUE: return TS_CONTINUE;
    case N_CALLBLOCK: s = exec_callblock(r, n, sc, &v); break;
    case N_FILTERBLOCK: {
        tval body;
        if ((s = render_to_string(r, &n->body, sc, &body)) != TS_OK) return s;
        s = tpl_apply_filter(r, n->a, body, sc, &v);
        tv_release(r, body);
        break;
    }
    default: s = tpl_eval(r, n, sc, &v); break;
    }
    if (s != TS_OK) return s;
    s = emit_value(r, v, out);
    tv_release(r, v);
    return s;
}

static tstat exec_block(tpl_rctx *r, const tpl_nodes *body, tpl_scope *sc, buf *out)
{
    if (enter(r) != TS_OK) return TS_ERR;
    tstat s = TS_OK;
    for (size_t i = 0; s == TS_OK && i < body->n; i++) s = at_node(r, body->v[i], exec_stmt(r, body->v[i], sc, out));
    r->depth--;
    return s;
}

/* ===================================================================== */
/* tpl_render                                                              */
/* ===================================================================== */

tpl_render_params tpl_render_default_params(void)
{
    tpl_render_params p = {0};
    return p;
}

static tstat install_context(tpl_rctx *r, const json_t *ctx)
{
    if (!ctx) return TS_OK;
    if (!json_is_object(ctx)) return tpl_fail(r, "render context must be a JSON object");
    const char *k;
    json_t *jv;
    json_object_foreach((json_t *)ctx, k, jv) {
        size_t len = strlen(k);
        if (scope_find(r->globals, k, len) || (len == 9 && !memcmp(k, "namespace", 9)))
            return tpl_fail(r, "Variable already declared: %s", k);
        tval v, key;
        if (tv_from_json(r, jv, 0, &v) != TS_OK) return TS_ERR;
        if (tv_str_new(r, k, len, &key) != TS_OK) return tv_release(r, v), TS_ERR;
        tstat s = scope_put(r, r->globals, k, len, tv_s(key), v);
        tv_release(r, key);
        if (s != TS_OK) return s;
    }
    return TS_OK;
}

static sem_status finish(tpl_rctx *r, tstat s)
{
    tpl_scope_release(r, r->globals);
    r->globals = NULL;
    tv_release(r, r->fn_namespace);
    tv_release(r, r->fn_dict);
    r->fn_namespace = r->fn_dict = tv_undef();
    for (size_t k = 0; k < 9; k++)
        if (r->loop_keys[k]) tv_release(r, (tval){.type = TV_STR, .u.h = &r->loop_keys[k]->hdr});
    tv_break_cycles(r);
    tv_drain_free_list(r);
    if (s == TS_OK) return SEM_OK;
    return r->err_code != SEM_OK ? r->err_code : SEM_EINVAL;
}

sem_status tpl_render(const tpl_template *t, const json_t *ctx, const tpl_render_params *p,
                      char **out, size_t *out_len, sem_err *err)
{
    tpl_render_params d = tpl_render_default_params();
    if (!p) p = &d;
    tpl_rctx r = {.t = t, .err = err, .err_code = SEM_OK};
    r.max_out = p->max_output_bytes ? p->max_output_bytes : TPL_DEFAULT_MAX_OUTPUT_BYTES;
    r.max_steps = p->max_steps ? p->max_steps : TPL_DEFAULT_MAX_STEPS;
    r.now_unix_s = p->now_unix_s ? p->now_unix_s : (int64_t)time(NULL);
    r.now_utc = p->now_utc;
    if (!(r.globals = tpl_scope_new(&r, NULL))) return sem_errf(err, SEM_ENOMEM, "template: out of memory");
    buf o;
    buf_init(&o);
    tstat s = tpl_install_globals(&r, r.globals);
    if (s == TS_OK) s = install_context(&r, ctx);
    if (s == TS_OK) s = exec_block(&r, &t->body, r.globals, &o);
    if (s == TS_BREAK || s == TS_CONTINUE)
        s = tpl_fail(&r, "{%% %s %%} outside of a loop", s == TS_BREAK ? "break" : "continue");
    sem_status st = finish(&r, s);
    if (st != SEM_OK) {
        buf_fini(&o);
        if (strncmp(err->msg, "template", 8) != 0) sem_err_prefix(err, "template: ");
        return st;
    }
    if (o.data && tpl_has_surrogates(o.data, o.len)) {
        buf u;
        buf_init(&u);
        if (!tpl_wtf8_to_utf8(o.data, o.len, &u)) {
            buf_fini(&u), buf_fini(&o);
            return sem_errf(err, SEM_ENOMEM, "template: out of memory");
        }
        buf_fini(&o);
        o = u;
    }
    size_t len = o.len;
    char *res = buf_take(&o);
    if (!res) return sem_errf(err, SEM_ENOMEM, "template: out of memory");
    if (out_len) *out_len = len;
    *out = res;
    return SEM_OK;
}
