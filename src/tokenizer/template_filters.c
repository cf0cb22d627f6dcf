/* template_filters.c - filters (`x | name`, `x | name(args)`) and tests
 * (`x is name`).
 *
 * The dispatch mirrors @huggingface/jinja's applyFilter: `safe` and `tojson`
 * work on anything, then the operand's type decides which filters exist
 * (lists: list first last length reverse sort join string unique, and with
 * arguments sort selectattr rejectattr map; strings: length upper lower title
 * capitalize trim indent join string int float, with arguments indent
 * replace; numbers: abs int float string; dicts: items length and the dict
 * methods; booleans: bool int float string; `default`, `int`, `float`,
 * `join`, `tojson` with arguments on anything they accept). Additions the
 * reference lacks: `d`, `count`, `round`, `select`/`reject`, `map('filter')`,
 * list/first/last/reverse of strings, and any argument-less filter written
 * with empty parentheses. Tests follow the reference's table plus float,
 * divisibleby, ne, sameas, in, gt/ge/lt/le, which take an argument.
 *
 * Thread: the rendering thread.
 */
#include "tokenizer/template_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* Name tables                                                             */
/* ===================================================================== */

typedef struct filter_name {
    const char *name;
    tpl_filter_id id;
} filter_name;

static const filter_name FILTERS[] = {
    {"abs", F_ABS},           {"bool", F_BOOL},         {"capitalize", F_CAPITALIZE},
    {"count", F_COUNT},       {"d", F_DEFAULT},         {"default", F_DEFAULT},
    {"dictsort", F_DICTSORT}, {"first", F_FIRST},       {"float", F_FLOAT},
    {"get", F_GET},           {"indent", F_INDENT},     {"int", F_INT},
    {"items", F_ITEMS},       {"join", F_JOIN},         {"keys", F_KEYS},
    {"last", F_LAST},         {"length", F_LENGTH},     {"list", F_LIST},
    {"lower", F_LOWER},       {"map", F_MAP},           {"reject", F_REJECT},
    {"rejectattr", F_REJECTATTR}, {"replace", F_REPLACE}, {"reverse", F_REVERSE},
    {"round", F_ROUND},       {"safe", F_SAFE},         {"select", F_SELECT},
    {"selectattr", F_SELECTATTR}, {"sort", F_SORT},     {"string", F_STRING},
    {"title", F_TITLE},       {"tojson", F_TOJSON},     {"trim", F_TRIM},
    {"unique", F_UNIQUE},     {"upper", F_UPPER},       {"values", F_VALUES},
};

typedef struct test_name {
    const char *name;
    tpl_test_id id;
} test_name;

static const test_name TESTS[] = {
    {"boolean", T_BOOLEAN},   {"callable", T_CALLABLE}, {"defined", T_DEFINED},
    {"divisibleby", T_DIVISIBLEBY}, {"eq", T_EQ},       {"equalto", T_EQ},
    {"==", T_EQ},             {"even", T_EVEN},         {"false", T_FALSE},
    {"float", T_FLOAT},       {"ge", T_GE},             {">=", T_GE},
    {"gt", T_GT},             {"greaterthan", T_GT},    {">", T_GT},
    {"in", T_IN},             {"integer", T_INTEGER},   {"iterable", T_ITERABLE},
    {"le", T_LE},             {"<=", T_LE},             {"lower", T_LOWER},
    {"lt", T_LT},             {"lessthan", T_LT},       {"<", T_LT},
    {"mapping", T_MAPPING},   {"ne", T_NE},             {"!=", T_NE},
    {"none", T_NONE},         {"number", T_NUMBER},     {"odd", T_ODD},
    {"sameas", T_SAMEAS},     {"sequence", T_SEQUENCE}, {"string", T_STRING},
    {"true", T_TRUE},         {"undefined", T_UNDEFINED}, {"upper", T_UPPER},
};

tpl_filter_id tpl_filter_lookup(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof FILTERS / sizeof FILTERS[0]; i++)
        if (strlen(FILTERS[i].name) == len && memcmp(FILTERS[i].name, name, len) == 0) return FILTERS[i].id;
    return F_UNKNOWN;
}

tpl_test_id tpl_test_lookup(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof TESTS / sizeof TESTS[0]; i++)
        if (strlen(TESTS[i].name) == len && memcmp(TESTS[i].name, name, len) == 0) return TESTS[i].id;
    return T_UNKNOWN;
}

bool tpl_test_takes_arg(tpl_test_id id)
{
    switch (id) {
    case T_DIVISIBLEBY: case T_EQ: case T_NE: case T_SAMEAS: case T_IN:
    case T_GT: case T_GE: case T_LT: case T_LE:
        return true;
    default:
        return false;
    }
}

/* ===================================================================== */
/* Tests                                                                   */
/* ===================================================================== */

static tstat membership(tpl_rctx *r, tval v, tval seq, bool *in)
{
    *in = false;
    if (tv_is_arr(seq)) {
        for (size_t i = 0; !*in && i < tv_a(seq)->n; i++) *in = tv_strict_eq(tv_a(seq)->v[i], v);
    } else if (seq.type == TV_STR && v.type == TV_STR) {
        const tv_str *h = tv_s(seq), *n = tv_s(v);
        for (size_t i = 0; !*in && i + n->len <= h->len; i++) *in = memcmp(h->p + i, n->p, n->len) == 0;
    } else if (tv_is_attr(seq) && v.type == TV_STR) {
        *in = tv_obj_get(seq, tv_s(v)->p, tv_s(v)->len) != NULL;
    } else {
        return tpl_fail(r, "'in' test needs a list, string or dict, got %s", tv_type_name(seq));
    }
    return TS_OK;
}

static tstat tv_ret_bool(bool *res, bool v)
{
    *res = v;
    return TS_OK;
}

static tstat case_test(tpl_rctx *r, tval v, bool upper, bool *res)
{
    if (v.type != TV_STR) return tv_ret_bool(res, false);
    buf b;
    buf_init(&b);
    if (!tpl_case_map(tv_s(v)->p, tv_s(v)->len, upper, &b)) return buf_fini(&b), tpl_oom(r);
    *res = b.len == tv_s(v)->len && (b.len == 0 || memcmp(b.data, tv_s(v)->p, b.len) == 0);
    buf_fini(&b);
    return TS_OK;
}

static tstat order_test(tpl_rctx *r, tpl_test_id id, tval a, tval b, bool *res)
{
    int c;
    if (a.type == TV_STR && b.type == TV_STR) {
        c = tpl_utf16_cmp(tv_s(a)->p, tv_s(a)->len, tv_s(b)->p, tv_s(b)->len);
    } else if (tv_compare(r, a, b, true, &c) != TS_OK) {
        return TS_ERR;
    }
    *res = id == T_GT ? c > 0 : id == T_GE ? c >= 0 : id == T_LT ? c < 0 : c <= 0;
    return TS_OK;
}

static tstat arg_test(tpl_rctx *r, tpl_test_id id, tval v, tval a, bool *res)
{
    switch (id) {
    case T_EQ: *res = tv_strict_eq(v, a); return TS_OK;
    case T_NE: *res = !tv_strict_eq(v, a); return TS_OK;
    case T_SAMEAS: *res = tv_strict_eq(v, a); return TS_OK;
    case T_IN: return membership(r, v, a, res);
    case T_DIVISIBLEBY:
        if (!tv_is_num(v) || !tv_is_num(a)) return tpl_fail(r, "divisibleby needs numbers");
        *res = a.u.n != 0 && fmod(v.u.n, a.u.n) == 0;
        return TS_OK;
    default: return order_test(r, id, v, a, res);
    }
}

tstat tpl_run_test(tpl_rctx *r, tpl_test_id id, const char *name, tval v, const tval *arg, bool *res)
{
    switch (id) {
    case T_BOOLEAN: *res = v.type == TV_BOOL; break;
    case T_CALLABLE: *res = v.type == TV_FUNC; break;
    case T_ODD:
    case T_EVEN:
        if (v.type != TV_INT) return tpl_fail(r, "cannot %s on %s", name, tv_type_name(v));
        *res = (fmod(v.u.n, 2) != 0) == (id == T_ODD);
        break;
    case T_FALSE: *res = v.type == TV_BOOL && !v.u.b; break;
    case T_TRUE: *res = v.type == TV_BOOL && v.u.b; break;
    case T_NONE: *res = v.type == TV_NULL; break;
    case T_STRING: *res = v.type == TV_STR; break;
    case T_NUMBER: *res = tv_is_num(v); break;
    case T_INTEGER: *res = v.type == TV_INT; break;
    case T_FLOAT: *res = v.type == TV_FLOAT; break;
    case T_ITERABLE: *res = v.type == TV_ARRAY || v.type == TV_STR; break;
    case T_MAPPING: *res = tv_is_obj(v); break;
    case T_SEQUENCE: *res = tv_is_arr(v) || tv_is_obj(v) || v.type == TV_STR; break;
    case T_LOWER:
    case T_UPPER: return case_test(r, v, id == T_UPPER, res);
    case T_DEFINED: *res = v.type != TV_UNDEF; break;
    case T_UNDEFINED: *res = v.type == TV_UNDEF; break;
    case T_UNKNOWN: return tpl_fail(r, "Unknown test: %s", name);
    default:
        if (!arg) return tpl_fail(r, "test '%s' needs an argument", name);
        return arg_test(r, id, v, *arg, res);
    }
    return TS_OK;
}

tstat tpl_eval_test(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, tval *out)
{
    tval v, pos = tv_undef(), kw = tv_undef();
    if (tpl_eval(r, n->a, sc, &v) != TS_OK) return TS_ERR;
    tstat s = TS_OK;
    if (n->flags & TPL_NF_HAS_ARGS) s = tpl_eval_args(r, &n->args, sc, &pos, &kw);
    bool res = false;
    if (s == TS_OK) {
        const tval *arg = pos.type == TV_ARRAY && tv_a(pos)->n ? &tv_a(pos)->v[0] : NULL;
        s = tpl_run_test(r, (tpl_test_id)n->op, n->s, v, arg, &res);
    }
    if (s == TS_OK) *out = tv_bool((n->flags & TPL_NF_NEGATE) ? !res : res);
    tv_release(r, v);
    tv_release(r, pos);
    tv_release(r, kw);
    return s;
}

/* ===================================================================== */
/* Helpers                                                                 */
/* ===================================================================== */

static tstat str_out(tpl_rctx *r, buf *b, bool ok, tval *out)
{
    if (!ok) return buf_fini(b), tpl_oom(r);
    return tv_str_from_buf(r, b, out);
}

static tstat keep(tval v, tval *out)
{
    *out = v;
    tv_retain(v);
    return TS_OK;
}

static tstat to_json_str(tpl_rctx *r, tval v, const tv_json_opts *o, tval *out)
{
    buf b;
    buf_init(&b);
    if (tv_to_json(r, v, o, 0, &b) != TS_OK) return buf_fini(&b), TS_ERR;
    return tv_str_from_buf(r, &b, out);
}

/* Array.prototype.join over raw values: none/undefined become "". */
static tstat join_raw(tpl_rctx *r, tv_arr *a, const char *sep, size_t sep_len, tval *out)
{
    buf b;
    buf_init(&b);
    for (size_t i = 0; i < a->n; i++) {
        if (i && !buf_append(&b, sep, sep_len)) return buf_fini(&b), tpl_oom(r);
        if (a->v[i].type == TV_NULL || a->v[i].type == TV_UNDEF) continue;
        if (tv_raw_string(r, a->v[i], &b, 1) != TS_OK) return buf_fini(&b), TS_ERR;
        if (b.len > r->max_out) return buf_fini(&b), tpl_fail_code(r, SEM_ELIMIT, "string too long");
    }
    return tv_str_from_buf(r, &b, out);
}

/* Code points of s as a list of one-character strings. */
static tstat chars_of(tpl_rctx *r, const tv_str *s, tval *out)
{
    if (tv_arr_new(r, TV_ARRAY, s->len, out) != TS_OK) return TS_ERR;
    for (size_t i = 0; i < s->len;) {
        uint32_t cp;
        size_t n = tpl_utf8_decode(s->p, s->len, i, &cp);
        tval c;
        if (tv_str_new(r, s->p + i, n, &c) != TS_OK || tv_arr_push(r, *out, c) != TS_OK) {
            tv_release(r, *out);
            return TS_ERR;
        }
        i += n;
    }
    return TS_OK;
}

static tstat reversed(tpl_rctx *r, tval list, tval *out)
{
    tv_arr *a = tv_a(list);
    if (tv_arr_new(r, TV_ARRAY, a->n, out) != TS_OK) return TS_ERR;
    for (size_t i = a->n; i-- > 0;) {
        tv_retain(a->v[i]);
        if (tv_arr_push(r, *out, a->v[i]) != TS_OK) return tv_release(r, *out), TS_ERR;
    }
    return TS_OK;
}

static tstat join_chars(tpl_rctx *r, tval list, const char *sep, size_t sep_len, tval *out)
{
    tstat s = join_raw(r, tv_a(list), sep, sep_len, out);
    tv_release(r, list);
    return s;
}

static tstat indent_str(tpl_rctx *r, const tv_str *s, const char *ind, size_t ind_len, bool first,
                        bool blank, tval *out)
{
    buf b;
    buf_init(&b);
    bool ok = true;
    size_t start = 0;
    for (size_t line = 0; ok; line++) {
        const char *nl = memchr(s->p + start, '\n', s->len - start);
        size_t end = nl ? (size_t)(nl - s->p) : s->len;
        bool skip = (!first && line == 0) || (!blank && end == start);
        if (!skip) ok = buf_append(&b, ind, ind_len);
        ok = ok && buf_append(&b, s->p + start, end - start);
        if (!nl) break;
        ok = ok && buf_append(&b, "\n", 1);
        start = end + 1;
        if (b.len > r->max_out) break;
    }
    return str_out(r, &b, ok, out);
}

typedef struct sort_ctx {
    const tval *items;
    bool case_sensitive, reverse;
    const char *attr; /* NULL = the items themselves */
    size_t attr_len;
} sort_ctx;

static tstat sort_cmp(tpl_rctx *r, void *c, size_t a, size_t b, int *cmp);

/* ===================================================================== */
/* Filters without arguments                                               */
/* ===================================================================== */

static tstat list_filter(tpl_rctx *r, tpl_filter_id id, const char *name, tval v, tval *out);

static tstat unique(tpl_rctx *r, tval v, tval *out)
{
    tv_arr *a = tv_a(v);
    if (tv_arr_new(r, TV_ARRAY, a->n, out) != TS_OK) return TS_ERR;
    for (size_t i = 0; i < a->n; i++) {
        bool seen = false;
        for (size_t j = 0; !seen && j < tv_a(*out)->n; j++) seen = tv_same_value_zero(tv_a(*out)->v[j], a->v[i]);
        if (seen) continue;
        if (tpl_charge(r, tv_a(*out)->n) != TS_OK) return tv_release(r, *out), TS_ERR;
        tv_retain(a->v[i]);
        if (tv_arr_push(r, *out, a->v[i]) != TS_OK) return tv_release(r, *out), TS_ERR;
    }
    return TS_OK;
}

static tstat tpl_sort_list(tpl_rctx *r, tval v, const sort_ctx *sc0, tval *out);

static tstat list_filter(tpl_rctx *r, tpl_filter_id id, const char *name, tval v, tval *out)
{
    tv_arr *a = tv_a(v);
    switch (id) {
    case F_LIST: return keep(v, out);
    case F_FIRST: return a->n ? keep(a->v[0], out) : tv_ret(out, tv_undef());
    case F_LAST: return a->n ? keep(a->v[a->n - 1], out) : tv_ret(out, tv_undef());
    case F_LENGTH:
    case F_COUNT: *out = tv_int((double)a->n); return TS_OK;
    case F_REVERSE: return reversed(r, v, out);
    case F_SORT: {
        sort_ctx c = {a->v, false, false, NULL, 0};
        return tpl_sort_list(r, v, &c, out);
    }
    case F_JOIN: return join_raw(r, a, "", 0, out);
    case F_STRING: {
        tv_json_opts o = {0};
        return to_json_str(r, v, &o, out);
    }
    case F_UNIQUE: return unique(r, v, out);
    default: return tpl_fail(r, "Unknown ArrayValue filter: %s", name);
    }
}

static tstat string_filter(tpl_rctx *r, tpl_filter_id id, const char *name, tval v, tval *out)
{
    const tv_str *s = tv_s(v);
    buf b;
    buf_init(&b);
    size_t x, y;
    double d;
    tval list;
    switch (id) {
    case F_LENGTH:
    case F_COUNT: *out = tv_int((double)tpl_utf16_len(s->p, s->len)); return TS_OK;
    case F_UPPER:
    case F_LOWER: return str_out(r, &b, tpl_case_map(s->p, s->len, id == F_UPPER, &b), out);
    case F_TITLE: return str_out(r, &b, tpl_title_case(s->p, s->len, &b), out);
    case F_CAPITALIZE: return str_out(r, &b, tpl_capitalize(s->p, s->len, &b), out);
    case F_TRIM:
        tpl_js_trim(s->p, s->len, true, true, &x, &y);
        return tv_str_new(r, s->p + x, y - x, out);
    case F_INDENT: return indent_str(r, s, "    ", 4, false, false, out);
    case F_JOIN:
    case F_STRING: return keep(v, out);
    case F_INT: *out = tv_int(tpl_js_parse_int(s->p, s->len, &d) ? d : 0); return TS_OK;
    case F_FLOAT: *out = tv_float(tpl_js_parse_float(s->p, s->len, &d) ? d : 0); return TS_OK;
    case F_LIST: return chars_of(r, s, out);
    case F_FIRST:
    case F_LAST:
    case F_REVERSE: {
        if (chars_of(r, s, &list) != TS_OK) return TS_ERR;
        tval res;
        tstat st = list_filter(r, id, name, list, &res);
        tv_release(r, list);
        if (st != TS_OK) return st;
        return id == F_REVERSE ? join_chars(r, res, "", 0, out) : tv_ret(out, res);
    }
    default: return tpl_fail(r, "Unknown StringValue filter: %s", name);
    }
}

static tstat round_value(tpl_rctx *r, tval v, double prec, const char *method, tval *out)
{
    double m = pow(10, prec), x = v.u.n * m;
    if (!strcmp(method, "ceil")) x = ceil(x);
    else if (!strcmp(method, "floor")) x = floor(x);
    else if (!strcmp(method, "common")) x = round(x);
    else return tpl_fail(r, "method must be 'common', 'ceil' or 'floor'");
    *out = tv_float(x / m);
    return TS_OK;
}

static tstat number_filter(tpl_rctx *r, tpl_filter_id id, const char *name, tval v, tval *out)
{
    buf b;
    buf_init(&b);
    switch (id) {
    case F_ABS: *out = v.type == TV_INT ? tv_int(fabs(v.u.n)) : tv_float(fabs(v.u.n)); return TS_OK;
    case F_INT: *out = tv_int(floor(v.u.n)); return TS_OK;
    case F_FLOAT: *out = tv_float(v.u.n); return TS_OK;
    case F_STRING:
        if (tv_print(r, v, &b, 0) != TS_OK) return buf_fini(&b), TS_ERR;
        return tv_str_from_buf(r, &b, out);
    case F_ROUND: return round_value(r, v, 0, "common", out);
    default: return tpl_fail(r, "Unknown NumericValue filter: %s", name);
    }
}

static tstat dict_builtin(tpl_rctx *r, const char *name, tval v, tval pos, tval kw, tval *out)
{
    tval fn;
    if (tpl_builtin_property(r, v, name, strlen(name), &fn) != TS_OK) return TS_ERR;
    if (fn.type != TV_FUNC) return tpl_fail(r, "Unknown ObjectValue filter: %s", name);
    tstat s = tpl_call_method(r, tv_f(fn), pos, kw, out);
    tv_release(r, fn);
    return s;
}

static tstat empty_args(tpl_rctx *r, tval *pos, tval *kw)
{
    if (tv_arr_new(r, TV_ARRAY, 0, pos) != TS_OK) return TS_ERR;
    *kw = tv_undef();
    return TS_OK;
}

static tstat object_filter(tpl_rctx *r, tpl_filter_id id, const char *name, tval v, tval *out)
{
    switch (id) {
    case F_ITEMS: return tpl_obj_items(r, v, out);
    case F_LENGTH:
    case F_COUNT: *out = tv_int((double)tv_o(v)->n); return TS_OK;
    case F_LIST: {
        tval fn_out;
        tval pos, kw;
        if (empty_args(r, &pos, &kw) != TS_OK) return TS_ERR;
        tstat s = dict_builtin(r, "keys", v, pos, kw, &fn_out);
        tv_release(r, pos);
        if (s == TS_OK) *out = fn_out;
        return s;
    }
    default: {
        tval pos, kw;
        if (empty_args(r, &pos, &kw) != TS_OK) return TS_ERR;
        tstat s = dict_builtin(r, name, v, pos, kw, out);
        tv_release(r, pos);
        return s;
    }
    }
}

static tstat bool_filter(tpl_rctx *r, tpl_filter_id id, const char *name, tval v, tval *out)
{
    switch (id) {
    case F_BOOL: return keep(v, out);
    case F_INT: *out = tv_int(v.u.b ? 1 : 0); return TS_OK;
    case F_FLOAT: *out = tv_float(v.u.b ? 1 : 0); return TS_OK;
    case F_STRING: return tv_str_cstr(r, v.u.b ? "true" : "false", out);
    default: return tpl_fail(r, "Unknown BooleanValue filter: %s", name);
    }
}

static tstat filter_plain(tpl_rctx *r, tpl_filter_id id, const char *name, tval v, tval *out)
{
    if (id == F_SAFE) return keep(v, out);
    if (id == F_TOJSON) {
        tv_json_opts o = {.undefined_as_null = true};
        return to_json_str(r, v, &o, out);
    }
    if (id == F_DEFAULT) return v.type == TV_UNDEF ? tv_str_new(r, "", 0, out) : keep(v, out);
    if (tv_is_arr(v)) return list_filter(r, id, name, v, out);
    if (v.type == TV_STR) return string_filter(r, id, name, v, out);
    if (tv_is_num(v)) return number_filter(r, id, name, v, out);
    if (tv_is_obj(v)) return object_filter(r, id, name, v, out);
    if (v.type == TV_BOOL) return bool_filter(r, id, name, v, out);
    return tpl_fail(r, "Cannot apply filter \"%s\" to type: %s", name, tv_type_name(v));
}

/* ===================================================================== */
/* Filters with arguments                                                  */
/* ===================================================================== */

static const tval *pos_or_kw(tval pos, tval kw, size_t i, const char *name)
{
    if (i < tv_a(pos)->n) return &tv_a(pos)->v[i];
    return tv_obj_get(kw, name, strlen(name));
}

static tstat f_tojson(tpl_rctx *r, tval v, tval kw, tval *out)
{
    tv_json_opts o = {.undefined_as_null = true};
    const tval *ind = tv_obj_get(kw, "indent", 6), *asc = tv_obj_get(kw, "ensure_ascii", 12);
    const tval *sk = tv_obj_get(kw, "sort_keys", 9), *sep = tv_obj_get(kw, "separators", 10);
    if (ind && ind->type != TV_INT && ind->type != TV_NULL) return tpl_fail(r, "If set, indent must be a number");
    if (asc && asc->type != TV_BOOL) return tpl_fail(r, "If set, ensure_ascii must be a boolean");
    if (sk && sk->type != TV_BOOL) return tpl_fail(r, "If set, sort_keys must be a boolean");
    if (ind && ind->type == TV_INT) {
        if (ind->u.n < 0 || ind->u.n > 64) return tpl_fail(r, "indent must be between 0 and 64");
        o.indent = (int)ind->u.n;
    }
    o.ensure_ascii = asc && asc->u.b;
    o.sort_keys = sk && sk->u.b;
    if (sep && sep->type != TV_NULL) {
        if (!tv_is_arr(*sep) || tv_a(*sep)->n != 2 || tv_a(*sep)->v[0].type != TV_STR ||
            tv_a(*sep)->v[1].type != TV_STR)
            return tpl_fail(r, "separators must be a tuple of two strings");
        const tv_str *is = tv_s(tv_a(*sep)->v[0]), *ks = tv_s(tv_a(*sep)->v[1]);
        o.item_sep = is->p, o.item_sep_len = is->len, o.key_sep = ks->p, o.key_sep_len = ks->len;
    }
    return to_json_str(r, v, &o, out);
}

static tstat f_join(tpl_rctx *r, tval v, tval pos, tval kw, tval *out)
{
    const tval *sep = pos_or_kw(pos, kw, 0, "separator");
    if (sep && sep->type != TV_STR) return tpl_fail(r, "separator must be a string");
    const char *sp = sep ? tv_s(*sep)->p : "";
    size_t sl = sep ? tv_s(*sep)->len : 0;
    if (tv_is_arr(v)) return join_raw(r, tv_a(v), sp, sl, out);
    if (v.type != TV_STR) return tpl_fail(r, "Cannot apply filter \"join\" to type: %s", tv_type_name(v));
    const tv_str *s = tv_s(v); /* Array.from(string).join(sep): code points */
    buf b;
    buf_init(&b);
    bool ok = true;
    for (size_t i = 0; ok && i < s->len;) {
        uint32_t cp;
        size_t n = tpl_utf8_decode(s->p, s->len, i, &cp);
        if (i) ok = buf_append(&b, sp, sl);
        ok = ok && buf_append(&b, s->p + i, n);
        i += n;
        if (b.len > r->max_out) break;
    }
    return str_out(r, &b, ok, out);
}

static tstat f_int_float(tpl_rctx *r, bool is_int, tval v, tval pos, tval kw, tval *out)
{
    const tval *dflt = pos_or_kw(pos, kw, 0, "default");
    double d;
    if (v.type == TV_STR) {
        bool ok = is_int ? tpl_js_parse_int(tv_s(v)->p, tv_s(v)->len, &d) : tpl_js_parse_float(tv_s(v)->p, tv_s(v)->len, &d);
        if (ok) return tv_ret(out, is_int ? tv_int(d) : tv_float(d));
        if (dflt) return keep(*dflt, out);
        return tv_ret(out, is_int ? tv_int(0) : tv_float(0));
    }
    if (tv_is_num(v)) return keep(v, out);
    if (v.type == TV_BOOL) return tv_ret(out, is_int ? tv_int(v.u.b) : tv_float(v.u.b));
    return tpl_fail(r, "Cannot apply filter \"%s\" to type: %s", is_int ? "int" : "float", tv_type_name(v));
}

static tstat f_default(tpl_rctx *r, tval v, tval pos, tval kw, tval *out)
{
    const tval *bl = pos_or_kw(pos, kw, 1, "boolean");
    if (bl && bl->type != TV_BOOL) return tpl_fail(r, "`default` filter flag must be a boolean");
    if (v.type == TV_UNDEF || (bl && bl->u.b && !tv_truthy(v))) {
        if (tv_a(pos)->n) return keep(tv_a(pos)->v[0], out);
        return tv_str_new(r, "", 0, out);
    }
    return keep(v, out);
}

static tstat sort_cmp(tpl_rctx *r, void *c, size_t a, size_t b, int *cmp)
{
    sort_ctx *s = c;
    tval x = s->items[a], y = s->items[b];
    if (s->attr) x = tpl_attr_path(x, s->attr, s->attr_len), y = tpl_attr_path(y, s->attr, s->attr_len);
    if (tv_compare(r, x, y, s->case_sensitive, cmp) != TS_OK) return TS_ERR;
    if (s->reverse) *cmp = -*cmp;
    return TS_OK;
}

/* Stable merge sort of a list value by sort_ctx. */
static tstat tpl_sort_list(tpl_rctx *r, tval v, const sort_ctx *sc0, tval *out)
{
    tv_arr *a = tv_a(v);
    size_t n = a->n;
    size_t *idx = malloc((n + 1) * sizeof *idx), *tmp = malloc((n + 1) * sizeof *tmp);
    if (!idx || !tmp) return free(idx), free(tmp), tpl_oom(r);
    for (size_t i = 0; i < n; i++) idx[i] = i;
    sort_ctx c = *sc0;
    tstat s = TS_OK;
    for (size_t width = 1; s == TS_OK && width < n; width *= 2) {
        for (size_t lo = 0; s == TS_OK && lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (s == TS_OK && i < mid && j < hi) {
                int cmp;
                if ((s = sort_cmp(r, &c, idx[j], idx[i], &cmp)) == TS_OK) tmp[k++] = cmp < 0 ? idx[j++] : idx[i++];
            }
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
            if (s == TS_OK) memcpy(idx + lo, tmp + lo, (hi - lo) * sizeof *idx);
        }
        if (s == TS_OK) s = tpl_charge(r, n);
    }
    if (s == TS_OK) s = tv_arr_new(r, TV_ARRAY, n, out);
    for (size_t i = 0; s == TS_OK && i < n; i++) {
        tv_retain(a->v[idx[i]]);
        if ((s = tv_arr_push(r, *out, a->v[idx[i]])) != TS_OK) tv_release(r, *out);
    }
    free(idx), free(tmp);
    return s;
}

static tstat f_sort(tpl_rctx *r, tval v, tval pos, tval kw, tval *out)
{
    const tval *rev = pos_or_kw(pos, kw, 0, "reverse"), *cs = pos_or_kw(pos, kw, 1, "case_sensitive");
    const tval *attr = pos_or_kw(pos, kw, 2, "attribute");
    if (rev && rev->type != TV_BOOL) return tpl_fail(r, "reverse must be a boolean");
    if (cs && cs->type != TV_BOOL) return tpl_fail(r, "case_sensitive must be a boolean");
    if (attr && attr->type != TV_STR && attr->type != TV_INT && attr->type != TV_NULL)
        return tpl_fail(r, "attribute must be a string, integer, or null");
    sort_ctx c = {tv_a(v)->v, cs && cs->u.b, rev && rev->u.b, NULL, 0};
    char num[64];
    if (attr && attr->type == TV_STR) c.attr = tv_s(*attr)->p, c.attr_len = tv_s(*attr)->len;
    if (attr && attr->type == TV_INT) c.attr_len = tv_fmt_js_number(attr->u.n, num, sizeof num), c.attr = num;
    return tpl_sort_list(r, v, &c, out);
}

static tstat filter_list_by(tpl_rctx *r, tval v, const bool *keep_it, tval *out)
{
    tv_arr *a = tv_a(v);
    if (tv_arr_new(r, TV_ARRAY, a->n, out) != TS_OK) return TS_ERR;
    for (size_t i = 0; i < a->n; i++) {
        if (!keep_it[i]) continue;
        tv_retain(a->v[i]);
        if (tv_arr_push(r, *out, a->v[i]) != TS_OK) return tv_release(r, *out), TS_ERR;
    }
    return TS_OK;
}

/* selectattr/rejectattr (attr, [test, [value]]) and select/reject ([test, [value]]). */
static tstat f_select(tpl_rctx *r, const tpl_node *f, tval v, tval pos, bool by_attr, bool select, tval *out)
{
    tv_arr *a = tv_a(v), *p = tv_a(pos);
    if (by_attr) {
        for (size_t i = 0; i < a->n; i++)
            if (!tv_is_attr(a->v[i])) return tpl_fail(r, "`%s` can only be applied to array of objects", f->s);
        for (size_t i = 0; i < f->args.n; i++)
            if (f->args.v[i]->kind != E_STR) return tpl_fail(r, "arguments of `%s` must be strings", f->s);
        if (p->n < 1) return tpl_fail(r, "`%s` needs an attribute name", f->s);
    }
    size_t t0 = by_attr ? 1 : 0;
    const tval *test = p->n > t0 ? &p->v[t0] : NULL, *arg = p->n > t0 + 1 ? &p->v[t0 + 1] : NULL;
    if (test && test->type != TV_STR) return tpl_fail(r, "test name must be a string");
    tpl_test_id id = test ? tpl_test_lookup(tv_s(*test)->p, tv_s(*test)->len) : T_UNKNOWN;
    bool *keep_it = calloc(a->n + 1, sizeof *keep_it);
    if (!keep_it) return tpl_oom(r);
    tstat s = TS_OK;
    for (size_t i = 0; s == TS_OK && i < a->n; i++) {
        tval item = a->v[i];
        bool res = false;
        if (by_attr) {
            const tval *x = tv_obj_get(item, tv_s(p->v[0])->p, tv_s(p->v[0])->len);
            if (!x) goto decided;
            item = *x;
        }
        if (!test) res = tv_truthy(item);
        else s = tpl_run_test(r, id, tv_s(*test)->p, item, arg, &res);
    decided:
        keep_it[i] = select ? res : !res;
    }
    if (s == TS_OK) s = filter_list_by(r, v, keep_it, out);
    free(keep_it);
    return s;
}

static tstat f_map(tpl_rctx *r, tval v, tval pos, tval kw, tval *out)
{
    const tval *attr = tv_obj_get(kw, "attribute", 9), *dflt = tv_obj_get(kw, "default", 7);
    tv_arr *a = tv_a(v);
    bool by_filter = !attr && tv_a(pos)->n >= 1 && tv_a(pos)->v[0].type == TV_STR;
    if (!attr && !by_filter)
        return tpl_fail(r, "`map` expressions without `attribute` set are not currently supported.");
    if (attr && attr->type != TV_STR) return tpl_fail(r, "attribute must be a string");
    if (tv_arr_new(r, TV_ARRAY, a->n, out) != TS_OK) return TS_ERR;
    const tv_str *name = tv_s(attr ? *attr : tv_a(pos)->v[0]);
    for (size_t i = 0; i < a->n; i++) {
        tval x;
        if (by_filter) {
            if (filter_plain(r, tpl_filter_lookup(name->p, name->len), name->p, a->v[i], &x) != TS_OK)
                return tv_release(r, *out), TS_ERR;
        } else {
            if (!tv_is_attr(a->v[i])) return tv_release(r, *out), tpl_fail(r, "items in map must be an object");
            x = tpl_attr_path(a->v[i], name->p, name->len);
            if (x.type == TV_UNDEF && dflt) x = *dflt;
            tv_retain(x);
        }
        if (tv_arr_push(r, *out, x) != TS_OK) return tv_release(r, *out), TS_ERR;
    }
    return TS_OK;
}

static bool raw_truthy(tval v) { return tv_is_heap(v) && v.type != TV_STR ? true : tv_truthy(v); }

static tstat f_indent(tpl_rctx *r, tval v, tval pos, tval kw, tval *out)
{
    const tval *w = pos_or_kw(pos, kw, 0, "width"), *first = pos_or_kw(pos, kw, 1, "first");
    const tval *blank = pos_or_kw(pos, kw, 2, "blank");
    char ind[256];
    size_t ind_len = 4;
    memcpy(ind, "    ", 4);
    if (w && w->type == TV_INT) {
        if (w->u.n < 0 || w->u.n > 255) ind_len = 0;
        else ind_len = (size_t)w->u.n, memset(ind, ' ', ind_len);
    } else if (w && w->type == TV_STR && tv_s(*w)->len < sizeof ind) {
        ind_len = tv_s(*w)->len, memcpy(ind, tv_s(*w)->p, ind_len);
    } else if (w) {
        return tpl_fail(r, "width must be a number");
    }
    return indent_str(r, tv_s(v), ind, ind_len, first && raw_truthy(*first), blank && raw_truthy(*blank), out);
}

static tstat f_replace(tpl_rctx *r, tval v, tval pos, tval kw, tval *out)
{
    tval fn;
    if (tpl_builtin_property(r, v, "replace", 7, &fn) != TS_OK) return TS_ERR;
    tstat s = tpl_call_method(r, tv_f(fn), pos, kw, out);
    tv_release(r, fn);
    return s;
}

/* Filters called with (...) on a list, string or dict. *done = false when
 * the name is not one of them. */
static tstat filter_typed_call(tpl_rctx *r, const tpl_node *f, tval v, tval pos, tval kw, tval *out,
                               bool *done)
{
    tpl_filter_id id = (tpl_filter_id)f->op;
    *done = true;
    if (tv_is_arr(v)) {
        switch (id) {
        case F_SORT: return f_sort(r, v, pos, kw, out);
        case F_SELECTATTR:
        case F_REJECTATTR: return f_select(r, f, v, pos, true, id == F_SELECTATTR, out);
        case F_SELECT:
        case F_REJECT: return f_select(r, f, v, pos, false, id == F_SELECT, out);
        case F_MAP: return f_map(r, v, pos, kw, out);
        default: break;
        }
    } else if (v.type == TV_STR) {
        if (id == F_INDENT) return f_indent(r, v, pos, kw, out);
        if (id == F_REPLACE) return f_replace(r, v, pos, kw, out);
    } else if (tv_is_obj(v)) {
        tval fn;
        if (tpl_builtin_property(r, v, f->s, f->len, &fn) != TS_OK) return TS_ERR;
        if (fn.type == TV_FUNC) {
            tstat s = tpl_call_method(r, tv_f(fn), pos, kw, out);
            tv_release(r, fn);
            return s;
        }
    }
    *done = false;
    return TS_OK;
}

static tstat filter_call(tpl_rctx *r, const tpl_node *f, tval v, tval pos, tval kw, tval *out)
{
    switch ((tpl_filter_id)f->op) {
    case F_TOJSON: return f_tojson(r, v, kw, out);
    case F_JOIN: return f_join(r, v, pos, kw, out);
    case F_INT:
    case F_FLOAT: return f_int_float(r, f->op == F_INT, v, pos, kw, out);
    case F_DEFAULT: return f_default(r, v, pos, kw, out);
    case F_ROUND:
        if (tv_is_num(v)) {
            const tval *pr = pos_or_kw(pos, kw, 0, "precision"), *m = pos_or_kw(pos, kw, 1, "method");
            if (m && m->type != TV_STR) return tpl_fail(r, "method must be a string");
            return round_value(r, v, pr && tv_is_num(*pr) ? pr->u.n : 0, m ? tv_s(*m)->p : "common", out);
        }
        break;
    default: {
        bool done;
        tstat s = filter_typed_call(r, f, v, pos, kw, out, &done);
        if (done) return s;
    }
    }
    if (tv_a(pos)->n == 0 && tv_o(kw)->n == 0) return filter_plain(r, (tpl_filter_id)f->op, f->s, v, out);
    if (!tv_is_arr(v) && v.type != TV_STR && !tv_is_obj(v))
        return tpl_fail(r, "Cannot apply filter \"%s\" to type: %s", f->s, tv_type_name(v));
    return tpl_fail(r, "Unknown %s filter: %s", tv_type_name(v), f->s);
}

tstat tpl_apply_filter(tpl_rctx *r, const tpl_node *f, tval operand, tpl_scope *sc, tval *out)
{
    if (!(f->flags & TPL_NF_HAS_ARGS)) return filter_plain(r, (tpl_filter_id)f->op, f->s, operand, out);
    tval pos, kw;
    if (tpl_eval_args(r, &f->args, sc, &pos, &kw) != TS_OK) return TS_ERR;
    tstat s = filter_call(r, f, operand, pos, kw, out);
    tv_release(r, pos);
    tv_release(r, kw);
    return s;
}
