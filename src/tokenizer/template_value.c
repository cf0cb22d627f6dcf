/* template_value.c - template values: allocation and refcounting, conversion
 * from jansson, printing, tojson, and the comparisons the reference uses.
 *
 * The reference (@huggingface/jinja) is JavaScript, and its values leak JS
 * semantics into the output; these are reproduced on purpose:
 *  - numbers are doubles; integers print like Number#toString (2**60 prints
 *    1152921504606847000), floats print with ".0" when integral;
 *  - `~` and `+` concatenate String(raw value): lists join with ",",
 *    dicts print "[object Map]";
 *  - `==` is JS loose equality on raw values (1 == "1", none == undefined),
 *    `in` on lists uses ===, `unique` uses SameValueZero;
 *  - tojson is JSON.stringify with Python-style separators (", " and ": "),
 *    non-ASCII kept unless ensure_ascii, which escapes U+007F and up per
 *    UTF-16 unit; JSON object keys that look like array indices come first
 *    (JS property order).
 *
 * Memory: see template_int.h (refcounts, iterative free list, namespace
 * list for cycles). Thread: the rendering thread.
 */
#include "tokenizer/template_int.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* Errors and work accounting                                              */
/* ===================================================================== */

static tstat vfail(tpl_rctx *r, sem_status code, const char *fmt, va_list ap) SEM_PRINTF(3, 0);
static tstat vfail(tpl_rctx *r, sem_status code, const char *fmt, va_list ap)
{
    char msg[SEM_ERR_MSG_BYTES];
    vsnprintf(msg, sizeof msg, fmt, ap);
    sem_errf(r->err, code, "%s", msg);
    r->err_code = code;
    r->err_pos_set = false;
    return TS_ERR;
}

tstat tpl_fail(tpl_rctx *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tstat s = vfail(r, SEM_EINVAL, fmt, ap);
    va_end(ap);
    return s;
}

tstat tpl_fail_code(tpl_rctx *r, sem_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tstat s = vfail(r, code, fmt, ap);
    va_end(ap);
    return s;
}

tstat tpl_oom(tpl_rctx *r) { return tpl_fail_code(r, SEM_ENOMEM, "out of memory"); }

tstat tpl_charge(tpl_rctx *r, uint64_t units)
{
    r->steps += units;
    if (r->steps > r->max_steps)
        return tpl_fail_code(r, SEM_ELIMIT, "render exceeded %llu evaluation steps",
                             (unsigned long long)r->max_steps);
    return TS_OK;
}

/* ===================================================================== */
/* Refcounting and freeing                                                 */
/* ===================================================================== */

void tv_retain(tval v)
{
    if (tv_is_heap(v)) v.u.h->rc++;
}

static void ns_unlink(tpl_rctx *r, tv_hdr *h)
{
    if (h->prev) h->prev->link = h->link;
    else r->ns_head = h->link;
    if (h->link) h->link->prev = h->prev;
    h->link = h->prev = NULL;
}

static void free_one(tpl_rctx *r, tv_hdr *h)
{
    switch ((tv_type)h->type) {
    case TV_STR:
        free(((tv_str *)h)->p);
        break;
    case TV_ARRAY:
    case TV_TUPLE: {
        tv_arr *a = (tv_arr *)h;
        for (size_t i = 0; i < a->n; i++) tv_release(r, a->v[i]);
        free(a->v);
        break;
    }
    case TV_OBJECT:
    case TV_KWARGS:
    case TV_NS: {
        tv_obj *o = (tv_obj *)h;
        for (size_t i = 0; i < o->n; i++) {
            tv_release(r, (tval){.type = TV_STR, .u.h = &o->kv[i].key->hdr});
            tv_release(r, o->kv[i].val);
        }
        free(o->kv);
        break;
    }
    case TV_FUNC: {
        tv_fn *f = (tv_fn *)h;
        tv_release(r, f->self);
        tpl_scope_release(r, f->scope);
        break;
    }
    default:
        break;
    }
    free(h);
}

void tv_drain_free_list(tpl_rctx *r)
{
    if (r->freeing) return;
    r->freeing = true;
    while (r->free_head) {
        tv_hdr *h = r->free_head;
        r->free_head = h->link;
        free_one(r, h);
    }
    r->freeing = false;
}

void tv_release(tpl_rctx *r, tval v)
{
    if (!tv_is_heap(v)) return;
    tv_hdr *h = v.u.h;
    SEM_ASSERT(h->rc > 0);
    if (--h->rc) return;
    if (h->type == TV_NS) ns_unlink(r, h);
    h->link = r->free_head;
    r->free_head = h;
    tv_drain_free_list(r);
}

/* Every cycle passes through a namespace (the only mutable value): pin all
 * live namespaces, empty them, then unpin. */
void tv_break_cycles(tpl_rctx *r)
{
    for (tv_hdr *h = r->ns_head; h; h = h->link) h->rc++;
    for (tv_hdr *h = r->ns_head; h; h = h->link) {
        tv_obj *o = (tv_obj *)h;
        size_t n = o->n;
        o->n = 0;
        for (size_t i = 0; i < n; i++) {
            tv_release(r, (tval){.type = TV_STR, .u.h = &o->kv[i].key->hdr});
            tv_release(r, o->kv[i].val);
        }
    }
    tv_hdr *h = r->ns_head;
    while (h) {
        tv_hdr *next = h->link;
        tv_release(r, (tval){.type = TV_NS, .u.h = h});
        h = next;
    }
}

/* ===================================================================== */
/* Constructors                                                            */
/* ===================================================================== */

static void *hdr_new(tv_type type, size_t bytes)
{
    tv_hdr *h = calloc(1, bytes);
    if (!h) return NULL;
    h->rc = 1;
    h->type = (uint8_t)type;
    return h;
}

tstat tv_str_new(tpl_rctx *r, const char *p, size_t len, tval *out)
{
    if (len > r->max_out)
        return tpl_fail_code(r, SEM_ELIMIT, "string of %zu bytes exceeds the %zu-byte limit", len,
                             r->max_out);
    tv_str *s = hdr_new(TV_STR, sizeof *s);
    if (!s) return tpl_oom(r);
    s->p = malloc(len + 1);
    if (!s->p) {
        free(s);
        return tpl_oom(r);
    }
    if (len) memcpy(s->p, p, len);
    s->p[len] = '\0';
    s->len = len;
    out->type = TV_STR;
    out->u.h = &s->hdr;
    return tpl_charge(r, 1 + len / 64);
}

tstat tv_str_cstr(tpl_rctx *r, const char *p, tval *out) { return tv_str_new(r, p, strlen(p), out); }

tstat tv_str_from_buf(tpl_rctx *r, buf *b, tval *out)
{
    if (b->len > r->max_out) {
        buf_fini(b);
        return tpl_fail_code(r, SEM_ELIMIT, "string exceeds the %zu-byte limit", r->max_out);
    }
    if (!b->data) return tv_str_new(r, "", 0, out);
    tv_str *s = hdr_new(TV_STR, sizeof *s);
    if (!s) {
        buf_fini(b);
        return tpl_oom(r);
    }
    s->len = b->len;
    s->p = buf_take(b);
    out->type = TV_STR;
    out->u.h = &s->hdr;
    return tpl_charge(r, 1 + s->len / 64);
}

tstat tv_arr_new(tpl_rctx *r, tv_type type, size_t cap, tval *out)
{
    tv_arr *a = hdr_new(type, sizeof *a);
    if (!a) return tpl_oom(r);
    if (cap) {
        if (cap > TPL_MAX_CONTAINER_ITEMS) cap = TPL_MAX_CONTAINER_ITEMS;
        a->v = malloc(cap * sizeof *a->v);
        if (!a->v) {
            free(a);
            return tpl_oom(r);
        }
        a->cap = cap;
    }
    out->type = (uint8_t)type;
    out->u.h = &a->hdr;
    return TS_OK;
}

tstat tv_arr_push(tpl_rctx *r, tval arr, tval item)
{
    tv_arr *a = tv_a(arr);
    if (a->n == a->cap) {
        if (a->n >= TPL_MAX_CONTAINER_ITEMS) {
            tv_release(r, item);
            return tpl_fail_code(r, SEM_ELIMIT, "list exceeds %zu items", TPL_MAX_CONTAINER_ITEMS);
        }
        size_t cap = a->cap ? a->cap * 2 : 4;
        tval *v = realloc(a->v, cap * sizeof *v);
        if (!v) {
            tv_release(r, item);
            return tpl_oom(r);
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = item;
    return tpl_charge(r, 1);
}

tstat tv_obj_new(tpl_rctx *r, tv_type type, size_t cap, tval *out)
{
    tv_obj *o = hdr_new(type, sizeof *o);
    if (!o) return tpl_oom(r);
    if (cap) {
        if (cap > TPL_MAX_CONTAINER_ITEMS) cap = TPL_MAX_CONTAINER_ITEMS;
        o->kv = malloc(cap * sizeof *o->kv);
        if (!o->kv) {
            free(o);
            return tpl_oom(r);
        }
        o->cap = cap;
    }
    if (type == TV_NS) {
        o->hdr.link = r->ns_head;
        if (r->ns_head) r->ns_head->prev = &o->hdr;
        r->ns_head = &o->hdr;
    }
    out->type = (uint8_t)type;
    out->u.h = &o->hdr;
    return TS_OK;
}

const tval *tv_obj_get(tval obj, const char *key, size_t klen)
{
    tv_obj *o = tv_o(obj);
    for (size_t i = 0; i < o->n; i++)
        if (o->kv[i].key->len == klen && memcmp(o->kv[i].key->p, key, klen) == 0)
            return &o->kv[i].val;
    return NULL;
}

static tstat obj_append(tpl_rctx *r, tv_obj *o, tv_str *key, tval val)
{
    if (o->n == o->cap) {
        if (o->n >= TPL_MAX_CONTAINER_ITEMS) {
            tv_release(r, val);
            return tpl_fail_code(r, SEM_ELIMIT, "dict exceeds %zu items", TPL_MAX_CONTAINER_ITEMS);
        }
        size_t cap = o->cap ? o->cap * 2 : 4;
        tv_kv *kv = realloc(o->kv, cap * sizeof *kv);
        if (!kv) {
            tv_release(r, val);
            return tpl_oom(r);
        }
        o->kv = kv;
        o->cap = cap;
    }
    key->hdr.rc++;
    o->kv[o->n].key = key;
    o->kv[o->n].val = val;
    o->n++;
    return tpl_charge(r, 1);
}

tstat tv_obj_set_key(tpl_rctx *r, tval obj, tv_str *key, tval val)
{
    tv_obj *o = tv_o(obj);
    for (size_t i = 0; i < o->n; i++) {
        if (o->kv[i].key->len == key->len && memcmp(o->kv[i].key->p, key->p, key->len) == 0) {
            tval old = o->kv[i].val;
            o->kv[i].val = val;
            tv_release(r, old);
            return TS_OK;
        }
    }
    return obj_append(r, o, key, val);
}

tstat tv_obj_append_key(tpl_rctx *r, tval obj, tv_str *key, tval val)
{
    return obj_append(r, tv_o(obj), key, val);
}

tstat tv_obj_set(tpl_rctx *r, tval obj, const char *key, size_t klen, tval val)
{
    tval k;
    if (tv_str_new(r, key, klen, &k) != TS_OK) {
        tv_release(r, val);
        return TS_ERR;
    }
    tstat s = tv_obj_set_key(r, obj, tv_s(k), val);
    tv_release(r, k);
    return s;
}

tstat tv_fn_new(tpl_rctx *r, tv_fn_kind kind, uint8_t id, tval self, const tpl_node *node,
                tpl_scope *scope, tval *out)
{
    tv_fn *f = hdr_new(TV_FUNC, sizeof *f);
    if (!f) return tpl_oom(r);
    f->kind = (uint8_t)kind;
    f->id = id;
    f->self = self;
    tv_retain(self);
    f->node = node;
    f->scope = scope;
    if (scope) scope->rc++;
    out->type = TV_FUNC;
    out->u.h = &f->hdr;
    return TS_OK;
}

/* ===================================================================== */
/* From JSON                                                               */
/* ===================================================================== */

/* A canonical array index ("0", "17", not "01"): JS orders these first. */
static bool index_key(const char *k, size_t len, double *v)
{
    if (len == 0 || len > 10 || (len > 1 && k[0] == '0')) return false;
    double x = 0;
    for (size_t i = 0; i < len; i++) {
        if (k[i] < '0' || k[i] > '9') return false;
        x = x * 10 + (k[i] - '0');
    }
    if (x > 4294967294.0) return false;
    *v = x;
    return true;
}

static tstat obj_from_json(tpl_rctx *r, const json_t *j, unsigned depth, tval *out)
{
    size_t n = json_object_size(j), n_idx = 0;
    const char **keys = n ? malloc(n * sizeof *keys) : NULL;
    double *idx = n ? malloc(n * sizeof *idx) : NULL;
    if (n && (!keys || !idx)) {
        free(keys);
        free(idx);
        return tpl_oom(r);
    }
    const char *k;
    json_t *v;
    size_t m = 0;
    json_object_foreach((json_t *)j, k, v) keys[m++] = k;
    /* Index-like keys first in numeric order (insertion sort: objects are small). */
    for (size_t i = 0; i < m; i++) {
        double x;
        if (!index_key(keys[i], strlen(keys[i]), &x)) continue;
        const char *kk = keys[i];
        size_t p = i;
        while (p > n_idx) keys[p] = keys[p - 1], idx[p] = idx[p - 1], p--;
        while (p > 0 && idx[p - 1] > x) keys[p] = keys[p - 1], idx[p] = idx[p - 1], p--;
        keys[p] = kk;
        idx[p] = x;
        n_idx++;
    }
    free(idx);
    tval obj;
    tstat s = tv_obj_new(r, TV_OBJECT, m, &obj);
    if (s != TS_OK) {
        free(keys);
        return s;
    }
    for (size_t i = 0; s == TS_OK && i < m; i++) {
        tval cv;
        s = tv_from_json(r, json_object_get(j, keys[i]), depth + 1, &cv);
        if (s == TS_OK) s = tv_obj_set(r, obj, keys[i], strlen(keys[i]), cv);
    }
    free(keys);
    if (s != TS_OK) tv_release(r, obj);
    else *out = obj;
    return s;
}

tstat tv_from_json(tpl_rctx *r, const json_t *j, unsigned depth, tval *out)
{
    if (depth > TPL_MAX_VALUE_DEPTH)
        return tpl_fail_code(r, SEM_ELIMIT, "input nested deeper than %d levels",
                             TPL_MAX_VALUE_DEPTH);
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return obj_from_json(r, j, depth, out);
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        tval arr;
        if (tv_arr_new(r, TV_ARRAY, n, &arr) != TS_OK) return TS_ERR;
        tstat s = TS_OK;
        for (size_t i = 0; s == TS_OK && i < n; i++) {
            tval cv;
            s = tv_from_json(r, json_array_get(j, i), depth + 1, &cv);
            if (s == TS_OK) s = tv_arr_push(r, arr, cv);
        }
        if (s != TS_OK) tv_release(r, arr);
        else *out = arr;
        return s;
    }
    case JSON_STRING:
        return tv_str_new(r, json_string_value(j), json_string_length(j), out);
    case JSON_INTEGER:
        *out = tv_int((double)json_integer_value(j));
        return TS_OK;
    case JSON_REAL: {
        double x = json_real_value(j);
        *out = isfinite(x) && x == trunc(x) ? tv_int(x) : tv_float(x);
        return TS_OK;
    }
    case JSON_TRUE:
        *out = tv_bool(true);
        return TS_OK;
    case JSON_FALSE:
        *out = tv_bool(false);
        return TS_OK;
    default:
        *out = tv_null();
        return TS_OK;
    }
}

/* ===================================================================== */
/* Truthiness and names                                                    */
/* ===================================================================== */

bool tv_truthy(tval v)
{
    switch ((tv_type)v.type) {
    case TV_BOOL: return v.u.b;
    case TV_INT:
    case TV_FLOAT: return v.u.n != 0 && !isnan(v.u.n);
    case TV_STR: return tv_s(v)->len > 0;
    case TV_ARRAY:
    case TV_TUPLE: return tv_a(v)->n > 0;
    case TV_OBJECT:
    case TV_KWARGS: return tv_o(v)->n > 0;
    case TV_NS:
    case TV_FUNC: return true; /* `!!map` / `!!function` in the reference */
    default: return false;
    }
}

const char *tv_type_name(tval v)
{
    static const char *names[] = {
        "UndefinedValue", "NullValue",   "BooleanValue", "IntegerValue",
        "FloatValue",     "StringValue", "ArrayValue",   "TupleValue",
        "ObjectValue",    "KeywordArgumentsValue", "NamespaceValue", "FunctionValue",
    };
    return v.type < sizeof names / sizeof names[0] ? names[v.type] : "?";
}

/* ===================================================================== */
/* Number formatting                                                       */
/* ===================================================================== */

/* Shortest round-trip digits of x > 0: returns the digit count, fills the
 * decimal exponent n such that x = 0.d1d2... * 10^n. */
static size_t shortest_digits(double x, char *digits, int *n)
{
    char tmp[48];
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
        if (strtod(tmp, NULL) == x) break;
    }
    size_t k = 0;
    const char *q = tmp;
    digits[k++] = *q++;
    if (*q == '.')
        for (q++; *q && *q != 'e'; q++) digits[k++] = *q;
    if (*q == 'e') q++;
    *n = atoi(q) + 1;
    while (k > 1 && digits[k - 1] == '0') k--;
    return k;
}

size_t tv_fmt_js_number(double x, char *out, size_t cap)
{
    if (isnan(x)) return (size_t)snprintf(out, cap, "NaN");
    if (x == 0) return (size_t)snprintf(out, cap, "0");
    if (isinf(x)) return (size_t)snprintf(out, cap, x < 0 ? "-Infinity" : "Infinity");
    if (x == trunc(x) && fabs(x) < 9007199254740992.0) /* exact integers: the common case */
        return (size_t)snprintf(out, cap, "%.0f", x);
    char d[24], res[64];
    size_t o = 0;
    if (x < 0) res[o++] = '-', x = -x;
    int n;
    size_t k = shortest_digits(x, d, &n);
    int ki = (int)k;
    if (ki <= n && n <= 21) {
        memcpy(res + o, d, k), o += k;
        for (int i = 0; i < n - ki; i++) res[o++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(res + o, d, (size_t)n), o += (size_t)n;
        res[o++] = '.';
        memcpy(res + o, d + n, k - (size_t)n), o += k - (size_t)n;
    } else if (-6 < n && n <= 0) {
        res[o++] = '0', res[o++] = '.';
        for (int i = 0; i < -n; i++) res[o++] = '0';
        memcpy(res + o, d, k), o += k;
    } else {
        res[o++] = d[0];
        if (k > 1) res[o++] = '.', memcpy(res + o, d + 1, k - 1), o += k - 1;
        o += (size_t)snprintf(res + o, sizeof res - o, "e%c%d", n - 1 >= 0 ? '+' : '-',
                              abs(n - 1));
    }
    res[o] = '\0';
    return (size_t)snprintf(out, cap, "%s", res);
}

/* FloatValue#toString: "-0.0", integral values as toFixed(1). */
static size_t fmt_float(double x, char *out, size_t cap)
{
    if (x == 0 && signbit(x)) return (size_t)snprintf(out, cap, "-0.0");
    if (isfinite(x) && x == trunc(x) && fabs(x) < 1e21)
        return (size_t)snprintf(out, cap, "%.1f", x);
    return tv_fmt_js_number(x, out, cap);
}

static tstat put(tpl_rctx *r, buf *out, const char *s, size_t n)
{
    if (out->len + n > r->max_out)
        return tpl_fail_code(r, SEM_ELIMIT, "string exceeds the %zu-byte limit", r->max_out);
    return buf_append(out, s, n) ? TS_OK : tpl_oom(r);
}

static tstat put_num(tpl_rctx *r, buf *out, double x, bool as_float)
{
    char tmp[64];
    size_t n = as_float ? fmt_float(x, tmp, sizeof tmp) : tv_fmt_js_number(x, tmp, sizeof tmp);
    return put(r, out, tmp, n);
}

static tstat too_deep(tpl_rctx *r)
{
    return tpl_fail_code(r, SEM_ELIMIT, "value nested deeper than %d levels (or cyclic)",
                         TPL_MAX_VALUE_DEPTH);
}

/* ===================================================================== */
/* Printing                                                                */
/* ===================================================================== */

tstat tv_print(tpl_rctx *r, tval v, buf *out, unsigned depth)
{
    switch ((tv_type)v.type) {
    case TV_STR: return put(r, out, tv_s(v)->p, tv_s(v)->len);
    case TV_INT: return put_num(r, out, v.u.n, false);
    case TV_FLOAT: return put_num(r, out, v.u.n, true);
    case TV_BOOL: return put(r, out, v.u.b ? "true" : "false", v.u.b ? 4 : 5);
    case TV_NULL: /* the reference's NullValue holds JS undefined, not null */
    case TV_UNDEF: return put(r, out, "undefined", 9);
    case TV_FUNC: return tpl_fail(r, "cannot print a function");
    default: {
        tv_json_opts o = {0};
        return tv_to_json(r, v, &o, depth, out);
    }
    }
}

tstat tv_raw_string(tpl_rctx *r, tval v, buf *out, unsigned depth)
{
    if (depth > TPL_MAX_VALUE_DEPTH) return too_deep(r);
    switch ((tv_type)v.type) {
    case TV_FLOAT: return put_num(r, out, v.u.n, false);
    case TV_ARRAY:
    case TV_TUPLE: {
        tv_arr *a = tv_a(v);
        for (size_t i = 0; i < a->n; i++) {
            if (i && put(r, out, ",", 1) != TS_OK) return TS_ERR;
            if (tv_print(r, a->v[i], out, depth + 1) != TS_OK) return TS_ERR;
        }
        return TS_OK;
    }
    case TV_OBJECT:
    case TV_KWARGS:
    case TV_NS: return put(r, out, "[object Map]", 12);
    default: return tv_print(r, v, out, depth);
    }
}

/* ===================================================================== */
/* tojson                                                                  */
/* ===================================================================== */

/* JSON.stringify's string quoting: lone surrogates always become \udxxx;
 * ensure_ascii escapes U+007F and up per UTF-16 unit. */
static tstat json_quote_cp(tpl_rctx *r, uint32_t cp, bool ascii, const char *raw, size_t n, buf *out)
{
    char tmp[16];
    size_t k;
    if (cp >= 0xD800 && cp <= 0xDFFF) {
        k = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", cp);
    } else if (!ascii) {
        return put(r, out, raw, n);
    } else if (cp >= 0x10000) {
        k = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800u + ((cp - 0x10000u) >> 10),
                             0xDC00u + ((cp - 0x10000u) & 0x3FFu));
    } else {
        k = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", cp);
    }
    return put(r, out, tmp, k);
}

static tstat json_quote(tpl_rctx *r, const char *s, size_t len, bool ascii, buf *out)
{
    if (put(r, out, "\"", 1) != TS_OK) return TS_ERR;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            uint32_t cp, lo;
            size_t n = tpl_utf8_decode(s, len, i, &cp);
            if (cp >= 0xD800 && cp <= 0xDBFF && n == 3 && i + 3 < len &&
                tpl_utf8_decode(s, len, i + 3, &lo) == 3 && lo >= 0xDC00 && lo <= 0xDFFF) {
                char pair[4]; /* a WTF-8 pair is one character to JavaScript */
                cp = 0x10000u + ((cp - 0xD800u) << 10) + (lo - 0xDC00u);
                if (json_quote_cp(r, cp, ascii, pair, tok_utf8_encode(cp, pair), out) != TS_OK) return TS_ERR;
                i += 6;
                continue;
            }
            if (json_quote_cp(r, cp, ascii, s + i, n, out) != TS_OK) return TS_ERR;
            i += n;
            continue;
        }
        char tmp[8];
        size_t n = 0;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\', tmp[1] = (char)c, n = 2;
        } else if (c < 0x20) {
            static const char short_esc[] = "btn\0fr";
            if (c >= 8 && c <= 13 && c != 11) n = 2, tmp[0] = '\\', tmp[1] = short_esc[c - 8];
            else n = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", c);
        } else if (c == 0x7F && ascii) {
            n = (size_t)snprintf(tmp, sizeof tmp, "\\u007f");
        } else {
            size_t j = i + 1;
            while (j < len && (unsigned char)s[j] >= 0x20 && (unsigned char)s[j] < 0x7F && s[j] != '"' && s[j] != '\\')
                j++;
            if (put(r, out, s + i, j - i) != TS_OK) return TS_ERR;
            i = j;
            continue;
        }
        if (put(r, out, tmp, n) != TS_OK) return TS_ERR;
        i++;
    }
    return put(r, out, "\"", 1);
}

static tstat json_pad(tpl_rctx *r, const tv_json_opts *o, unsigned level, buf *out)
{
    if (put(r, out, "\n", 1) != TS_OK) return TS_ERR;
    for (unsigned l = 0; l < level; l++)
        for (int i = 0; i < o->indent; i++)
            if (put(r, out, " ", 1) != TS_OK) return TS_ERR;
    return TS_OK;
}

static tstat json_item_sep(tpl_rctx *r, const tv_json_opts *o, buf *out)
{
    if (o->item_sep) return put(r, out, o->item_sep, o->item_sep_len);
    return o->indent > 0 ? put(r, out, ",", 1) : put(r, out, ", ", 2);
}

static tstat json_list(tpl_rctx *r, tv_arr *a, const tv_json_opts *o, unsigned depth, buf *out)
{
    if (put(r, out, "[", 1) != TS_OK) return TS_ERR;
    for (size_t i = 0; i < a->n; i++) {
        if (i && json_item_sep(r, o, out) != TS_OK) return TS_ERR;
        if (o->indent > 0 && json_pad(r, o, depth + 1, out) != TS_OK) return TS_ERR;
        if (tv_to_json(r, a->v[i], o, depth + 1, out) != TS_OK) return TS_ERR;
    }
    if (o->indent > 0 && a->n && json_pad(r, o, depth, out) != TS_OK) return TS_ERR;
    return put(r, out, "]", 1);
}

/* localeCompare stand-in for sort_keys: case-insensitive, lower first. */
static int key_cmp(const tv_str *a, const tv_str *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a->p[i], y = (unsigned char)b->p[i];
        unsigned char lx = x >= 'A' && x <= 'Z' ? (unsigned char)(x + 32) : x;
        unsigned char ly = y >= 'A' && y <= 'Z' ? (unsigned char)(y + 32) : y;
        if (lx != ly) return lx < ly ? -1 : 1;
    }
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    int c = memcmp(a->p, b->p, n);
    return c ? -c : 0;
}

static tstat json_dict(tpl_rctx *r, tv_obj *obj, const tv_json_opts *o, unsigned depth,
                         buf *out)
{
    size_t n = obj->n;
    size_t *ord = n ? malloc(n * sizeof *ord) : NULL;
    if (n && !ord) return tpl_oom(r);
    for (size_t i = 0; i < n; i++) ord[i] = i;
    if (o->sort_keys)
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0 && key_cmp(obj->kv[ord[j - 1]].key, obj->kv[ord[j]].key) > 0; j--) {
                size_t t = ord[j];
                ord[j] = ord[j - 1];
                ord[j - 1] = t;
            }
    tstat s = put(r, out, "{", 1);
    for (size_t i = 0; s == TS_OK && i < n; i++) {
        const tv_kv *kv = &obj->kv[ord[i]];
        if (i) s = json_item_sep(r, o, out);
        if (s == TS_OK && o->indent > 0) s = json_pad(r, o, depth + 1, out);
        if (s == TS_OK) s = json_quote(r, kv->key->p, kv->key->len, o->ensure_ascii, out);
        if (s == TS_OK)
            s = o->key_sep ? put(r, out, o->key_sep, o->key_sep_len) : put(r, out, ": ", 2);
        if (s == TS_OK) s = tv_to_json(r, kv->val, o, depth + 1, out);
    }
    free(ord);
    if (s == TS_OK && o->indent > 0 && n) s = json_pad(r, o, depth, out);
    return s == TS_OK ? put(r, out, "}", 1) : s;
}

tstat tv_to_json(tpl_rctx *r, tval v, const tv_json_opts *o, unsigned depth, buf *out)
{
    if (depth > TPL_MAX_VALUE_DEPTH) return too_deep(r);
    switch ((tv_type)v.type) {
    case TV_NULL: return put(r, out, "null", 4);
    case TV_UNDEF:
        return o->undefined_as_null ? put(r, out, "null", 4) : put(r, out, "undefined", 9);
    case TV_INT:
    case TV_FLOAT:
        return isfinite(v.u.n) ? put_num(r, out, v.u.n, false) : put(r, out, "null", 4);
    case TV_BOOL: return put(r, out, v.u.b ? "true" : "false", v.u.b ? 4 : 5);
    case TV_STR: return json_quote(r, tv_s(v)->p, tv_s(v)->len, o->ensure_ascii, out);
    case TV_ARRAY:
    case TV_TUPLE: return json_list(r, tv_a(v), o, depth, out);
    case TV_OBJECT:
    case TV_KWARGS:
    case TV_NS: return json_dict(r, tv_o(v), o, depth, out);
    default: return tpl_fail(r, "Cannot convert to JSON: %s", tv_type_name(v));
    }
}

/* ===================================================================== */
/* Equality and ordering                                                   */
/* ===================================================================== */

typedef enum js_kind { JK_UNDEF, JK_BOOL, JK_NUM, JK_STR, JK_OBJ } js_kind;

/* NullValue's raw value is JS undefined in the reference (its constructor
 * is called without an argument), so none === undefined there. */
static js_kind js_kind_of(tval v)
{
    switch ((tv_type)v.type) {
    case TV_UNDEF:
    case TV_NULL: return JK_UNDEF;
    case TV_BOOL: return JK_BOOL;
    case TV_INT:
    case TV_FLOAT: return JK_NUM;
    case TV_STR: return JK_STR;
    default: return JK_OBJ;
    }
}

bool tv_strict_eq(tval a, tval b)
{
    js_kind ka = js_kind_of(a), kb = js_kind_of(b);
    if (ka != kb) return false;
    switch (ka) {
    case JK_UNDEF: return true;
    case JK_BOOL: return a.u.b == b.u.b;
    case JK_NUM: return a.u.n == b.u.n;
    case JK_STR: return tv_s(a)->len == tv_s(b)->len && memcmp(tv_s(a)->p, tv_s(b)->p, tv_s(a)->len) == 0;
    default: return a.u.h == b.u.h;
    }
}

bool tv_same_value_zero(tval a, tval b)
{
    if (tv_is_num(a) && tv_is_num(b) && isnan(a.u.n) && isnan(b.u.n)) return true;
    return tv_strict_eq(a, b);
}

/* ToPrimitive for == : lists join their printed items with ",". */
static tstat to_primitive(tpl_rctx *r, tval v, tval *out)
{
    buf b;
    buf_init(&b);
    if (v.type == TV_FUNC) return tpl_fail(r, "cannot compare a function");
    if (tv_raw_string(r, v, &b, 0) != TS_OK) {
        buf_fini(&b);
        return TS_ERR;
    }
    return tv_str_from_buf(r, &b, out);
}

tstat tv_loose_eq(tpl_rctx *r, tval a, tval b, bool *eq)
{
    js_kind ka = js_kind_of(a), kb = js_kind_of(b);
    if (ka == kb) {
        *eq = tv_strict_eq(a, b);
        return TS_OK;
    }
    if (ka == JK_UNDEF || kb == JK_UNDEF) {
        *eq = false;
        return TS_OK;
    }
    if (ka == JK_BOOL) return tv_loose_eq(r, tv_int(a.u.b ? 1 : 0), b, eq);
    if (kb == JK_BOOL) return tv_loose_eq(r, a, tv_int(b.u.b ? 1 : 0), eq);
    if (ka == JK_NUM && kb == JK_STR) {
        *eq = a.u.n == tpl_js_to_number(tv_s(b)->p, tv_s(b)->len);
        return TS_OK;
    }
    if (ka == JK_STR && kb == JK_NUM) return tv_loose_eq(r, b, a, eq);
    tval prim;
    bool obj_a = ka == JK_OBJ;
    if (to_primitive(r, obj_a ? a : b, &prim) != TS_OK) return TS_ERR;
    tstat s = obj_a ? tv_loose_eq(r, prim, b, eq) : tv_loose_eq(r, a, prim, eq);
    tv_release(r, prim);
    return s;
}

static bool numeric_like(tval v) { return tv_is_num(v) || v.type == TV_BOOL; }
static double numeric_value(tval v) { return v.type == TV_BOOL ? (v.u.b ? 1 : 0) : v.u.n; }

tstat tv_compare(tpl_rctx *r, tval a, tval b, bool case_sensitive, int *cmp)
{
    *cmp = 0;
    if (a.type == TV_NULL && b.type == TV_NULL) return TS_OK;
    if (a.type == TV_NULL || b.type == TV_NULL || a.type == TV_UNDEF || b.type == TV_UNDEF) {
        if (a.type == b.type) return TS_OK;
        return tpl_fail(r, "Cannot compare %s with %s", tv_type_name(a), tv_type_name(b));
    }
    if (numeric_like(a) && numeric_like(b)) {
        double x = numeric_value(a), y = numeric_value(b);
        *cmp = x < y ? -1 : x > y ? 1 : 0;
        return TS_OK;
    }
    if (a.type != b.type)
        return tpl_fail(r, "Cannot compare different types: %s and %s", tv_type_name(a),
                        tv_type_name(b));
    if (a.type != TV_STR) return tpl_fail(r, "Cannot compare type: %s", tv_type_name(a));
    if (case_sensitive) {
        *cmp = tpl_utf16_cmp(tv_s(a)->p, tv_s(a)->len, tv_s(b)->p, tv_s(b)->len);
        return TS_OK;
    }
    buf la, lb;
    buf_init(&la);
    buf_init(&lb);
    bool ok = tpl_case_map(tv_s(a)->p, tv_s(a)->len, false, &la) &&
              tpl_case_map(tv_s(b)->p, tv_s(b)->len, false, &lb);
    if (ok) *cmp = tpl_utf16_cmp(la.data ? la.data : "", la.len, lb.data ? lb.data : "", lb.len);
    buf_fini(&la);
    buf_fini(&lb);
    return ok ? TS_OK : tpl_oom(r);
}
