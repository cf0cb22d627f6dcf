/* template_builtins.c - global functions (raise_exception, range,
 * strftime_now, namespace, dict), string methods (upper, lower, strip,
 * lstrip, rstrip, title, capitalize, startswith, endswith, split, replace,
 * .length), dict methods (get, items, keys, values, dictsort) and
 * loop.cycle.
 *
 * Argument handling mirrors the reference: methods see keyword arguments as
 * one trailing positional "kwargs" value, so `s.split(',', maxsplit=1)` fails
 * there and here alike. strip/lstrip/rstrip ignore their argument and trim
 * JS whitespace (a known difference from Python: see docs/CHAT_TEMPLATES.md).
 * dict() and loop.cycle() are additions the reference lacks.
 *
 * Thread: the rendering thread.
 */
#include "tokenizer/template_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ===================================================================== */
/* Argument views                                                          */
/* ===================================================================== */

static size_t arg_count(tval pos, tval kw)
{
    return tv_a(pos)->n + (kw.type == TV_KWARGS && tv_o(kw)->n ? 1u : 0u);
}

static tval arg_at(tval pos, tval kw, size_t i)
{
    tv_arr *a = tv_a(pos);
    if (i < a->n) return a->v[i];
    if (i == a->n && kw.type == TV_KWARGS && tv_o(kw)->n) return kw;
    return tv_undef();
}

static const tval *kwarg(tval kw, const char *name)
{
    return kw.type == TV_KWARGS ? tv_obj_get(kw, name, strlen(name)) : NULL;
}

static tstat ret_buf(tpl_rctx *r, buf *b, bool ok, tval *out)
{
    if (!ok) {
        buf_fini(b);
        return tpl_oom(r);
    }
    return tv_str_from_buf(r, b, out);
}

/* ===================================================================== */
/* Stable merge sort with a fallible comparison                            */
/* ===================================================================== */

typedef tstat (*cmp_fn)(tpl_rctx *r, void *ctx, size_t a, size_t b, int *cmp);

static tstat merge_sort(tpl_rctx *r, size_t *idx, size_t *tmp, size_t n, cmp_fn f, void *ctx)
{
    if (n < 2) return TS_OK;
    size_t h = n / 2;
    if (merge_sort(r, idx, tmp, h, f, ctx) != TS_OK) return TS_ERR;
    if (merge_sort(r, idx + h, tmp, n - h, f, ctx) != TS_OK) return TS_ERR;
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int c;
        if (f(r, ctx, idx[j], idx[i], &c) != TS_OK) return TS_ERR;
        tmp[k++] = c < 0 ? idx[j++] : idx[i++];
    }
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
    return tpl_charge(r, n);
}

/* Sorts items[0..n) (borrowed) into a new list value. */
static tstat sort_values(tpl_rctx *r, const tval *items, size_t n, cmp_fn f, void *ctx, tval *out)
{
    size_t *idx = malloc((n + 1) * sizeof *idx), *tmp = malloc((n + 1) * sizeof *tmp);
    if (!idx || !tmp) {
        free(idx), free(tmp);
        return tpl_oom(r);
    }
    for (size_t i = 0; i < n; i++) idx[i] = i;
    tstat s = merge_sort(r, idx, tmp, n, f, ctx);
    if (s == TS_OK) s = tv_arr_new(r, TV_ARRAY, n, out);
    for (size_t i = 0; s == TS_OK && i < n; i++) {
        tv_retain(items[idx[i]]);
        if ((s = tv_arr_push(r, *out, items[idx[i]])) != TS_OK) tv_release(r, *out);
    }
    free(idx), free(tmp);
    return s;
}

/* ===================================================================== */
/* Dicts                                                                   */
/* ===================================================================== */

static tstat pair(tpl_rctx *r, tv_str *k, tval v, tval *out)
{
    if (tv_arr_new(r, TV_ARRAY, 2, out) != TS_OK) return TS_ERR;
    k->hdr.rc++;
    tv_retain(v);
    if (tv_arr_push(r, *out, (tval){.type = TV_STR, .u.h = &k->hdr}) != TS_OK ||
        tv_arr_push(r, *out, v) != TS_OK) {
        tv_release(r, *out);
        return TS_ERR;
    }
    return TS_OK;
}

tstat tpl_obj_items(tpl_rctx *r, tval obj, tval *out)
{
    tv_obj *o = tv_o(obj);
    if (tv_arr_new(r, TV_ARRAY, o->n, out) != TS_OK) return TS_ERR;
    for (size_t i = 0; i < o->n; i++) {
        tval p;
        if (pair(r, o->kv[i].key, o->kv[i].val, &p) != TS_OK || tv_arr_push(r, *out, p) != TS_OK) {
            tv_release(r, *out);
            return TS_ERR;
        }
    }
    return TS_OK;
}

static tstat obj_keys_or_values(tpl_rctx *r, tval obj, bool keys, tval *out)
{
    tv_obj *o = tv_o(obj);
    if (tv_arr_new(r, TV_ARRAY, o->n, out) != TS_OK) return TS_ERR;
    for (size_t i = 0; i < o->n; i++) {
        tval v = keys ? (tval){.type = TV_STR, .u.h = &o->kv[i].key->hdr} : o->kv[i].val;
        tv_retain(v);
        if (tv_arr_push(r, *out, v) != TS_OK) {
            tv_release(r, *out);
            return TS_ERR;
        }
    }
    return TS_OK;
}

typedef struct dictsort_ctx {
    const tval *pairs;
    int index;
    bool case_sensitive, reverse;
} dictsort_ctx;

static tstat dictsort_cmp(tpl_rctx *r, void *c, size_t a, size_t b, int *cmp)
{
    dictsort_ctx *d = c;
    tval x = tv_a(d->pairs[a])->v[d->index], y = tv_a(d->pairs[b])->v[d->index];
    if (tv_compare(r, x, y, d->case_sensitive, cmp) != TS_OK) return TS_ERR;
    if (d->reverse) *cmp = -*cmp;
    return TS_OK;
}

static tstat obj_dictsort(tpl_rctx *r, tval obj, tval pos, tval kw, tval *out)
{
    const tval *cs = tv_a(pos)->n > 0 ? &tv_a(pos)->v[0] : kwarg(kw, "case_sensitive");
    const tval *by = tv_a(pos)->n > 1 ? &tv_a(pos)->v[1] : kwarg(kw, "by");
    const tval *rev = tv_a(pos)->n > 2 ? &tv_a(pos)->v[2] : kwarg(kw, "reverse");
    if (cs && cs->type != TV_BOOL) return tpl_fail(r, "case_sensitive must be a boolean");
    if (by && by->type != TV_STR) return tpl_fail(r, "by must be a string");
    bool by_value = by && tv_s(*by)->len == 5 && memcmp(tv_s(*by)->p, "value", 5) == 0;
    if (by && !by_value && !(tv_s(*by)->len == 3 && memcmp(tv_s(*by)->p, "key", 3) == 0))
        return tpl_fail(r, "by must be either 'key' or 'value'");
    if (rev && rev->type != TV_BOOL) return tpl_fail(r, "reverse must be a boolean");
    tval items;
    if (tpl_obj_items(r, obj, &items) != TS_OK) return TS_ERR;
    dictsort_ctx d = {tv_a(items)->v, by_value ? 1 : 0, cs && cs->u.b, rev && rev->u.b};
    tstat s = sort_values(r, tv_a(items)->v, tv_a(items)->n, dictsort_cmp, &d, out);
    tv_release(r, items);
    return s;
}

static tstat obj_method(tpl_rctx *r, const tv_fn *f, tval pos, tval kw, tval *out)
{
    tval self = f->self;
    switch ((tpl_method_id)f->id) {
    case M_GET: {
        tval key = arg_at(pos, kw, 0);
        if (key.type != TV_STR) return tpl_fail(r, "Object key must be a string: got %s", tv_type_name(key));
        const tval *v = tv_obj_get(self, tv_s(key)->p, tv_s(key)->len);
        *out = v ? *v : arg_count(pos, kw) > 1 ? arg_at(pos, kw, 1) : tv_null();
        tv_retain(*out);
        return TS_OK;
    }
    case M_ITEMS: return tpl_obj_items(r, self, out);
    case M_KEYS: return obj_keys_or_values(r, self, true, out);
    case M_VALUES: return obj_keys_or_values(r, self, false, out);
    case M_DICTSORT: return obj_dictsort(r, self, pos, kw, out);
    default: return tpl_fail(r, "unknown dict method");
    }
}

/* ===================================================================== */
/* Strings                                                                 */
/* ===================================================================== */

static bool has_prefix(const tv_str *s, const tv_str *p, bool suffix)
{
    if (p->len > s->len) return false;
    return memcmp(s->p + (suffix ? s->len - p->len : 0), p->p, p->len) == 0;
}

static tstat str_affix(tpl_rctx *r, const tv_str *s, tval pos, tval kw, bool suffix, tval *out)
{
    const char *name = suffix ? "endswith" : "startswith";
    if (arg_count(pos, kw) == 0) return tpl_fail(r, "%s() requires at least one argument", name);
    tval p = arg_at(pos, kw, 0);
    if (p.type == TV_STR) {
        *out = tv_bool(has_prefix(s, tv_s(p), suffix));
        return TS_OK;
    }
    if (!tv_is_arr(p)) return tpl_fail(r, "%s() argument must be a string or tuple of strings", name);
    for (size_t i = 0; i < tv_a(p)->n; i++) {
        tval item = tv_a(p)->v[i];
        if (item.type != TV_STR) return tpl_fail(r, "%s() tuple elements must be strings", name);
        if (has_prefix(s, tv_s(item), suffix)) return tv_ret(out, tv_bool(true));
    }
    *out = tv_bool(false);
    return TS_OK;
}

static tstat push_str(tpl_rctx *r, tval arr, const char *p, size_t n)
{
    tval v;
    if (tv_str_new(r, p, n, &v) != TS_OK) return TS_ERR;
    return tv_arr_push(r, arr, v);
}

/* split() with no separator: runs of whitespace, no empty ends. */
static tstat split_ws(tpl_rctx *r, const tv_str *s, double maxsplit, tval arr)
{
    size_t i, end;
    tpl_js_trim(s->p, s->len, true, false, &i, &end);
    while (i < s->len) {
        size_t j = i, w;
        while (j < s->len && !tpl_js_space_at(s->p, s->len, j)) {
            uint32_t cp;
            j += tpl_utf8_decode(s->p, s->len, j, &cp);
        }
        if (maxsplit != -1 && (double)tv_a(arr)->n >= maxsplit) return push_str(r, arr, s->p + i, s->len - i);
        if (push_str(r, arr, s->p + i, j - i) != TS_OK) return TS_ERR;
        i = j;
        while ((w = tpl_js_space_at(s->p, s->len, i)) > 0) i += w;
    }
    return TS_OK;
}

static tstat split_sep(tpl_rctx *r, const tv_str *s, const tv_str *sep, double maxsplit, tval arr)
{
    size_t n_parts = 1;
    for (size_t i = 0; i + sep->len <= s->len;)
        if (memcmp(s->p + i, sep->p, sep->len) == 0) n_parts++, i += sep->len;
        else i++;
    /* Python's maxsplit: the first k parts, then the rest joined back. */
    double k = maxsplit == -1 || (double)n_parts <= maxsplit ? (double)n_parts
               : maxsplit >= 0 ? maxsplit : fmax((double)n_parts + maxsplit, 0);
    size_t start = 0, made = 0;
    for (size_t i = 0; (double)made < k && i + sep->len <= s->len;) {
        if (memcmp(s->p + i, sep->p, sep->len) != 0) {
            i++;
            continue;
        }
        if (push_str(r, arr, s->p + start, i - start) != TS_OK) return TS_ERR;
        made++;
        i += sep->len;
        start = i;
    }
    return push_str(r, arr, s->p + start, s->len - start);
}

static tstat str_split(tpl_rctx *r, const tv_str *s, tval pos, tval kw, tval *out)
{
    size_t n = arg_count(pos, kw);
    tval sep = n > 0 ? arg_at(pos, kw, 0) : tv_null();
    tval ms = n > 1 ? arg_at(pos, kw, 1) : tv_int(-1);
    if (sep.type != TV_STR && sep.type != TV_NULL) return tpl_fail(r, "sep argument must be a string or null");
    if (ms.type != TV_INT) return tpl_fail(r, "maxsplit argument must be a number");
    if (sep.type == TV_STR && tv_s(sep)->len == 0) return tpl_fail(r, "empty separator");
    if (tv_arr_new(r, TV_ARRAY, 4, out) != TS_OK) return TS_ERR;
    tstat st = sep.type == TV_NULL ? split_ws(r, s, ms.u.n, *out) : split_sep(r, s, tv_s(sep), ms.u.n, *out);
    if (st != TS_OK) tv_release(r, *out);
    return st;
}

/* Python's str.replace via the reference's regex: "" matches at every code
 * point boundary; count < 0 or none means all. */
static tstat str_replace_impl(tpl_rctx *r, const tv_str *s, const tv_str *from, const tv_str *to,
                              double count, tval *out)
{
    buf b;
    buf_init(&b);
    double left = count < 0 || isnan(count) ? INFINITY : count;
    bool ok = true;
    size_t i = 0;
    if (from->len == 0) {
        for (;;) {
            if (left > 0) ok = ok && buf_append(&b, to->p, to->len), left--;
            if (i >= s->len || !ok) break;
            uint32_t cp;
            size_t n = tpl_utf8_decode(s->p, s->len, i, &cp);
            ok = buf_append(&b, s->p + i, n);
            i += n;
            if (b.len > r->max_out) break;
        }
        ok = ok && buf_append(&b, s->p + i, s->len - i);
    } else {
        while (ok && i < s->len) {
            if (left > 0 && s->len - i >= from->len && memcmp(s->p + i, from->p, from->len) == 0) {
                ok = buf_append(&b, to->p, to->len);
                i += from->len;
                left--;
            } else {
                size_t j = i + 1;
                if (left <= 0) j = s->len;
                ok = buf_append(&b, s->p + i, j - i);
                i = j;
            }
            if (b.len > r->max_out) break;
        }
    }
    return ret_buf(r, &b, ok, out);
}

static tstat str_replace(tpl_rctx *r, const tv_str *s, tval pos, tval kw, tval *out)
{
    size_t n = arg_count(pos, kw);
    if (n < 2) return tpl_fail(r, "replace() requires at least two arguments");
    tval from = arg_at(pos, kw, 0), to = arg_at(pos, kw, 1), count = tv_null();
    if (from.type != TV_STR || to.type != TV_STR) return tpl_fail(r, "replace() arguments must be strings");
    if (n > 2) {
        tval c = arg_at(pos, kw, 2);
        if (c.type == TV_KWARGS) {
            const tval *kc = tv_obj_get(c, "count", 5);
            count = kc ? *kc : tv_null();
        } else {
            count = c;
        }
    }
    if (count.type != TV_INT && count.type != TV_NULL)
        return tpl_fail(r, "replace() count argument must be a number or null");
    if (count.type == TV_INT && count.u.n == 0) {
        *out = (tval){.type = TV_STR, .u.h = (tv_hdr *)&s->hdr};
        tv_retain(*out);
        return TS_OK;
    }
    return str_replace_impl(r, s, tv_s(from), tv_s(to), count.type == TV_INT ? count.u.n : -1, out);
}

static tstat str_method(tpl_rctx *r, const tv_fn *f, tval pos, tval kw, tval *out)
{
    const tv_str *s = tv_s(f->self);
    buf b;
    buf_init(&b);
    size_t a, e;
    switch ((tpl_method_id)f->id) {
    case M_UPPER:
    case M_LOWER: return ret_buf(r, &b, tpl_case_map(s->p, s->len, f->id == M_UPPER, &b), out);
    case M_TITLE: return ret_buf(r, &b, tpl_title_case(s->p, s->len, &b), out);
    case M_CAPITALIZE: return ret_buf(r, &b, tpl_capitalize(s->p, s->len, &b), out);
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP:
        tpl_js_trim(s->p, s->len, f->id != M_RSTRIP, f->id != M_LSTRIP, &a, &e);
        return tv_str_new(r, s->p + a, e - a, out);
    case M_STARTSWITH:
    case M_ENDSWITH: return str_affix(r, s, pos, kw, f->id == M_ENDSWITH, out);
    case M_SPLIT: return str_split(r, s, pos, kw, out);
    case M_REPLACE: return str_replace(r, s, pos, kw, out);
    default: return tpl_fail(r, "unknown string method");
    }
}

tstat tpl_call_method(tpl_rctx *r, const tv_fn *f, tval pos, tval kw, tval *out)
{
    return f->kind == FN_STR_METHOD ? str_method(r, f, pos, kw, out) : obj_method(r, f, pos, kw, out);
}

/* ===================================================================== */
/* Properties                                                              */
/* ===================================================================== */

typedef struct name_id {
    const char *name;
    tpl_method_id id;
} name_id;

static const name_id STR_METHODS[] = {
    {"upper", M_UPPER},       {"lower", M_LOWER},         {"strip", M_STRIP},
    {"title", M_TITLE},       {"capitalize", M_CAPITALIZE}, {"rstrip", M_RSTRIP},
    {"lstrip", M_LSTRIP},     {"startswith", M_STARTSWITH}, {"endswith", M_ENDSWITH},
    {"split", M_SPLIT},       {"replace", M_REPLACE},
};
static const name_id OBJ_METHODS[] = {
    {"get", M_GET}, {"items", M_ITEMS}, {"keys", M_KEYS}, {"values", M_VALUES}, {"dictsort", M_DICTSORT},
};

static tpl_method_id find_method(const name_id *t, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(t[i].name) == len && memcmp(t[i].name, name, len) == 0) return t[i].id;
    return M_NONE;
}

static bool is_name(const char *name, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(name, lit, len) == 0;
}

tstat tpl_builtin_property(tpl_rctx *r, tval obj, const char *name, size_t len, tval *out)
{
    *out = tv_undef();
    if (obj.type == TV_STR) {
        if (is_name(name, len, "length")) {
            *out = tv_int((double)tpl_utf16_len(tv_s(obj)->p, tv_s(obj)->len));
            return TS_OK;
        }
        tpl_method_id m = find_method(STR_METHODS, sizeof STR_METHODS / sizeof STR_METHODS[0], name, len);
        return m == M_NONE ? TS_OK : tv_fn_new(r, FN_STR_METHOD, (uint8_t)m, obj, NULL, NULL, out);
    }
    if (tv_is_arr(obj)) {
        if (is_name(name, len, "length")) *out = tv_int((double)tv_a(obj)->n);
        return TS_OK;
    }
    if (tv_is_obj(obj)) {
        if (tv_o(obj)->is_loop && is_name(name, len, "cycle"))
            return tv_fn_new(r, FN_LOOP_CYCLE, 0, obj, NULL, NULL, out);
        tpl_method_id m = find_method(OBJ_METHODS, sizeof OBJ_METHODS / sizeof OBJ_METHODS[0], name, len);
        return m == M_NONE ? TS_OK : tv_fn_new(r, FN_OBJ_METHOD, (uint8_t)m, obj, NULL, NULL, out);
    }
    return TS_OK;
}

tval tpl_attr_path(tval item, const char *path, size_t len)
{
    tval v = item;
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < len && path[j] != '.') j++;
        if (tv_is_attr(v)) {
            const tval *x = tv_obj_get(v, path + i, j - i);
            v = x ? *x : tv_undef();
        } else if (tv_is_arr(v)) {
            double idx;
            if (!tpl_js_parse_int(path + i, j - i, &idx) || !(idx >= 0 && idx < (double)tv_a(v)->n))
                return tv_undef();
            v = tv_a(v)->v[(size_t)idx];
        } else {
            return tv_undef();
        }
        if (j >= len) return v;
        i = j + 1;
    }
}

/* ===================================================================== */
/* Global functions                                                        */
/* ===================================================================== */

static tstat g_range(tpl_rctx *r, tval pos, tval *out)
{
    tv_arr *a = tv_a(pos);
    for (size_t i = 0; i < a->n; i++)
        if (!tv_is_num(a->v[i])) return tpl_fail(r, "range() arguments must be numbers");
    if (a->n == 0) return tpl_fail(r, "range expected at least 1 argument");
    double start = a->n >= 2 ? a->v[0].u.n : 0, stop = a->n >= 2 ? a->v[1].u.n : a->v[0].u.n;
    double step = a->n >= 3 ? a->v[2].u.n : 1;
    if (step == 0) return tpl_fail(r, "range() step must not be zero");
    double count = step > 0 ? ceil((stop - start) / step) : ceil((start - stop) / -step);
    if (count > (double)TPL_MAX_RANGE_ITEMS)
        return tpl_fail_code(r, SEM_ELIMIT, "range() of more than %zu items", TPL_MAX_RANGE_ITEMS);
    if (tv_arr_new(r, TV_ARRAY, count > 0 ? (size_t)count : 0, out) != TS_OK) return TS_ERR;
    for (double i = start; step > 0 ? i < stop : i > stop; i += step) {
        tval v = i == trunc(i) ? tv_int(i) : tv_float(i);
        if (tv_arr_push(r, *out, v) != TS_OK) return tv_release(r, *out), TS_ERR;
    }
    return TS_OK;
}

static bool pad2(buf *b, int v) { return buf_printf(b, "%02d", v); }

/* The reference's strftime: %Y %m %d %b %B %H %M %%; others stay as written. */
static tstat g_strftime(tpl_rctx *r, tval pos, tval *out)
{
    static const char *mon[] = {"January", "February", "March",     "April",   "May",      "June",
                                "July",    "August",   "September", "October", "November", "December"};
    if (tv_a(pos)->n < 1 || tv_a(pos)->v[0].type != TV_STR)
        return tpl_fail(r, "strftime_now() expects a format string");
    const tv_str *f = tv_s(tv_a(pos)->v[0]);
    time_t t = (time_t)r->now_unix_s;
    struct tm tm;
    if (!(r->now_utc ? gmtime_r(&t, &tm) : localtime_r(&t, &tm))) return tpl_fail(r, "bad clock");
    buf b;
    buf_init(&b);
    bool ok = buf_reserve(&b, f->len);
    for (size_t i = 0; ok && i < f->len; i++) {
        char c = i + 1 < f->len && f->p[i] == '%' ? f->p[i + 1] : 0;
        switch (c) {
        case 'Y': ok = buf_printf(&b, "%d", tm.tm_year + 1900); break;
        case 'm': ok = pad2(&b, tm.tm_mon + 1); break;
        case 'd': ok = pad2(&b, tm.tm_mday); break;
        case 'b': ok = buf_printf(&b, "%.3s", mon[tm.tm_mon]); break;
        case 'B': ok = buf_append_str(&b, mon[tm.tm_mon]); break;
        case 'H': ok = pad2(&b, tm.tm_hour); break;
        case 'M': ok = pad2(&b, tm.tm_min); break;
        case '%': ok = buf_append(&b, "%", 1); break;
        default: ok = buf_append(&b, f->p + i, 1); continue;
        }
        i++;
    }
    return ret_buf(r, &b, ok, out);
}

static tstat ns_add_pair(tpl_rctx *r, tval ns, tval pairv)
{
    tval k = tv_undef(), v = tv_undef();
    if (tv_is_arr(pairv) && tv_a(pairv)->n == 2) {
        k = tv_a(pairv)->v[0];
        v = tv_a(pairv)->v[1];
    } else if (pairv.type == TV_STR && tpl_utf16_len(tv_s(pairv)->p, tv_s(pairv)->len) == 2) {
        return tpl_fail(r, "namespace keys from a 2-character string are not supported");
    } else {
        return tpl_fail(r, "namespace expected an object or an iterable of [key, value] pairs");
    }
    if (k.type != TV_STR) return tpl_fail(r, "namespace keys must be strings");
    tv_retain(v);
    return tv_obj_set_key(r, ns, tv_s(k), v);
}

/* namespace(...) and dict(...): one optional mapping or list of pairs, then
 * keyword arguments. */
static tstat g_mapping(tpl_rctx *r, tv_type type, tval pos, tval kw, tval *out)
{
    const char *name = type == TV_NS ? "namespace" : "dict";
    if (tv_a(pos)->n > 1) return tpl_fail(r, "%s expected at most 1 argument, got %zu", name, tv_a(pos)->n);
    if (tv_obj_new(r, type, 4, out) != TS_OK) return TS_ERR;
    tstat s = TS_OK;
    if (tv_a(pos)->n == 1) {
        tval src = tv_a(pos)->v[0];
        if (tv_is_obj(src)) {
            for (size_t i = 0; s == TS_OK && i < tv_o(src)->n; i++)
                tv_retain(tv_o(src)->kv[i].val), s = tv_obj_set_key(r, *out, tv_o(src)->kv[i].key, tv_o(src)->kv[i].val);
        } else if (tv_is_arr(src)) {
            for (size_t i = 0; s == TS_OK && i < tv_a(src)->n; i++) s = ns_add_pair(r, *out, tv_a(src)->v[i]);
        } else {
            s = tpl_fail(r, "'%s' object is not iterable", tv_type_name(src));
        }
    }
    for (size_t i = 0; s == TS_OK && kw.type == TV_KWARGS && i < tv_o(kw)->n; i++)
        tv_retain(tv_o(kw)->kv[i].val), s = tv_obj_set_key(r, *out, tv_o(kw)->kv[i].key, tv_o(kw)->kv[i].val);
    if (s != TS_OK) tv_release(r, *out);
    return s;
}

tstat tpl_call_global(tpl_rctx *r, tpl_global_id id, tval pos, tval kw, tval *out)
{
    switch (id) {
    case G_RAISE_EXCEPTION: {
        buf b;
        buf_init(&b);
        tval m = arg_at(pos, kw, 0);
        if (tv_raw_string(r, m, &b, 0) != TS_OK) return buf_fini(&b), TS_ERR;
        tpl_fail(r, "raise_exception: %s", b.data ? b.data : "");
        buf_fini(&b);
        return TS_ERR;
    }
    case G_RANGE: return g_range(r, pos, out);
    case G_STRFTIME_NOW: return g_strftime(r, pos, out);
    case G_NAMESPACE: return g_mapping(r, TV_NS, pos, kw, out);
    case G_DICT: return g_mapping(r, TV_OBJECT, pos, kw, out);
    }
    return tpl_fail(r, "unknown function");
}

tstat tpl_install_globals(tpl_rctx *r, tpl_scope *g)
{
    static const struct { const char *name; tpl_global_id id; } fns[] = {
        {"raise_exception", G_RAISE_EXCEPTION}, {"range", G_RANGE}, {"strftime_now", G_STRFTIME_NOW},
    };
    static const struct { const char *name; int v; } consts[] = {
        {"false", 0}, {"true", 1}, {"none", 2}, {"True", 1}, {"False", 0}, {"None", 2},
    };
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
        tval v = consts[i].v == 2 ? tv_null() : tv_bool(consts[i].v == 1);
        if (tpl_scope_set(r, g, consts[i].name, strlen(consts[i].name), v) != TS_OK) return TS_ERR;
    }
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        tval f;
        if (tv_fn_new(r, FN_GLOBAL, (uint8_t)fns[i].id, tv_undef(), NULL, NULL, &f) != TS_OK) return TS_ERR;
        if (tpl_scope_set(r, g, fns[i].name, strlen(fns[i].name), f) != TS_OK) return TS_ERR;
    }
    if (tv_fn_new(r, FN_GLOBAL, G_NAMESPACE, tv_undef(), NULL, NULL, &r->fn_namespace) != TS_OK) return TS_ERR;
    return tv_fn_new(r, FN_GLOBAL, G_DICT, tv_undef(), NULL, NULL, &r->fn_dict);
}
