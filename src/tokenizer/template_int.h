/* template_int.h - internals of the Jinja-subset template engine, shared by
 * template_*.c only (never included outside src/tokenizer/).
 *
 * Pipeline: template_lex.c turns the source into tokens (after the same
 * preprocessing @huggingface/jinja applies), template_parse.c builds an AST in
 * an arena owned by the tpl_template, and template_eval.c walks it with a
 * per-render context (tpl_rctx). Values (template_value.c) are JSON-like and
 * refcounted; strings are UTF-8. Where JavaScript semantics leak through the
 * reference (UTF-16 lengths, loose ==, number printing) the helpers in
 * template_str.c and template_value.c reproduce them.
 *
 * Invariants:
 *  - The AST is immutable after tpl_parse; renders never write to it.
 *  - Every tval returned by a function is a new reference owned by the
 *    caller; tv_release() gives it back. Only namespaces are mutable, so every
 *    reference cycle passes through a namespace; the render context keeps a
 *    list of live namespaces and clears them at the end to break cycles.
 *  - Freeing is iterative (a free list in the render context), so deeply
 *    nested values cannot overflow the C stack; recursive walks (tojson,
 *    printing, comparisons) stop at TPL_MAX_VALUE_DEPTH.
 *
 * Thread: one render context belongs to the thread that renders.
 */
#ifndef SEM_TOKENIZER_TEMPLATE_INT_H
#define SEM_TOKENIZER_TEMPLATE_INT_H

#include "tokenizer/template.h"
#include "tokenizer/tok_int.h" /* tok_utf8_encode */

#include <stdarg.h>

/* ===================================================================== */
/* Arena for the AST and token text                                        */
/* ===================================================================== */

typedef struct tpl_arena_chunk tpl_arena_chunk;
typedef struct tpl_arena {
    tpl_arena_chunk *head; /* owned chain */
    size_t used;           /* bytes used in head */
    size_t cap;            /* bytes available in head */
} tpl_arena;

void tpl_arena_init(tpl_arena *a);
void tpl_arena_fini(tpl_arena *a);
void *tpl_arena_alloc(tpl_arena *a, size_t bytes); /* zeroed, 16-aligned; NULL on OOM */
char *tpl_arena_strdup(tpl_arena *a, const char *s, size_t len); /* NUL-terminated copy */

/* ===================================================================== */
/* Lexer                                                                   */
/* ===================================================================== */

typedef enum tpl_tok_type {
    TT_TEXT,
    TT_NUMBER,      /* value is the literal text, possibly with a leading sign */
    TT_STRING,      /* value is the unescaped content */
    TT_IDENT,
    TT_EQUALS,      /* = */
    TT_LPAREN,
    TT_RPAREN,
    TT_OPEN_STMT,   /* {% */
    TT_CLOSE_STMT,  /* %} */
    TT_OPEN_EXPR,   /* {{ */
    TT_CLOSE_EXPR,  /* }} */
    TT_LBRACKET,
    TT_RBRACKET,
    TT_LBRACE,
    TT_RBRACE,
    TT_COMMA,
    TT_DOT,
    TT_COLON,
    TT_PIPE,
    TT_ADD_OP,      /* + - ~ */
    TT_MUL_OP,      /* * / // % */
    TT_POW_OP,      /* ** */
    TT_CMP_OP,      /* < > <= >= == != */
    TT_UNARY_OP,    /* - + not followed by a number */
    TT_COMMENT,
} tpl_tok_type;

typedef struct tpl_token {
    tpl_tok_type type;
    uint32_t pos;      /* byte offset in the original source */
    const char *s;     /* value (arena or preprocessed text); not NUL-terminated for TEXT */
    size_t len;
} tpl_token;

typedef struct tpl_lexed {
    tpl_token *toks; /* owned (malloc) */
    size_t n;
    char *text;      /* owned: preprocessed source that TEXT tokens point into */
} tpl_lexed;

/* Tokenizes src; strings live in arena a (which must outlive the tokens). */
sem_status tpl_lex(const char *src, size_t len, tpl_arena *a, tpl_lexed *out, sem_err *err);
void tpl_lexed_fini(tpl_lexed *lx);

/* 1-based line and column (in code points) of a byte offset. */
void tpl_line_col(const char *src, size_t len, size_t off, unsigned *line, unsigned *col);

/* ===================================================================== */
/* AST                                                                     */
/* ===================================================================== */

typedef enum tpl_node_kind {
    /* statements */
    N_TEXT,       /* s/len: literal output */
    N_COMMENT,
    N_IF,         /* a: test; body; alt */
    N_FOR,        /* a: loop var (ident/tuple); b: iterable; c: filter test or NULL; body; alt: else */
    N_SET,        /* a: target; b: value or NULL (then body is the block) */
    N_MACRO,      /* s: name; args: params (E_IDENT / E_KWARG); body */
    N_CALLBLOCK,  /* a: E_CALL; args: caller params; body */
    N_FILTERBLOCK,/* a: E_FILTER with NULL operand; body */
    N_BREAK,
    N_CONTINUE,
    /* expressions */
    E_INT,        /* num */
    E_FLOAT,      /* num */
    E_STR,        /* s/len */
    E_IDENT,      /* s/len */
    E_ARRAY,      /* args: items */
    E_TUPLE,      /* args: items */
    E_OBJECT,     /* args: keys at even, values at odd positions */
    E_MEMBER,     /* a: object; b: property (computed) or NULL with s = name / num = index */
    E_SLICE,      /* a, b, c: start, stop, step (any may be NULL) */
    E_CALL,       /* a: callee; args */
    E_UNARY,      /* op; a */
    E_BINARY,     /* op; a, b */
    E_FILTER,     /* a: operand; s: filter name; op: filter id; args (if has_args) */
    E_TEST,       /* a: operand; s: test name; op: test id; flags: negate; args */
    E_SELECT,     /* a: value; b: condition (value if cond, else undefined) */
    E_TERNARY,    /* a: condition; b: if true; c: if false */
    E_KWARG,      /* s: name; a: value */
    E_SPREAD,     /* a: *expr */
    E_KWSPREAD,   /* a: **expr */
} tpl_node_kind;

typedef enum tpl_op {
    OP_NONE,
    OP_ADD, OP_SUB, OP_CONCAT, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW,
    OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_IN, OP_NOTIN, OP_AND, OP_OR,
    OP_NOT, OP_NEG, OP_POS,
} tpl_op;

/* node flags */
#define TPL_NF_NEGATE 1u      /* E_TEST: `is not` */
#define TPL_NF_HAS_ARGS 2u    /* E_FILTER/E_TEST: called with (...) */
#define TPL_NF_COMPUTED 4u    /* E_MEMBER: obj[expr] */
#define TPL_NF_INDEX 8u       /* E_MEMBER: obj.0 (num holds the index) */
#define TPL_NF_KWARGS 16u     /* N_MACRO/N_CALLBLOCK: body reads `kwargs` */
#define TPL_NF_VARARGS 32u    /* N_MACRO/N_CALLBLOCK: body reads `varargs` */

typedef struct tpl_node tpl_node;
typedef struct tpl_nodes {
    tpl_node **v;
    size_t n;
} tpl_nodes;

struct tpl_node {
    uint8_t kind;  /* tpl_node_kind */
    uint8_t op;    /* tpl_op, or a filter/test id */
    uint8_t flags;
    uint32_t pos;  /* byte offset in the source, for errors */
    double num;
    const char *s; /* arena; NUL-terminated except N_TEXT */
    size_t len;
    tpl_node *a, *b, *c;
    tpl_nodes args;
    tpl_nodes body;
    tpl_nodes alt;
};

struct tpl_template {
    tpl_arena arena;  /* all nodes and strings */
    tpl_nodes body;   /* the program */
    char *src;        /* owned copy of the source, for error positions */
    size_t src_len;
};

/* Filter and test ids, resolved at parse time (unknown ones fail at render,
 * as in the reference, so unused branches may name anything). */
typedef enum tpl_filter_id {
    F_UNKNOWN, F_ABS, F_BOOL, F_CAPITALIZE, F_COUNT, F_DEFAULT, F_DICTSORT, F_FIRST, F_FLOAT,
    F_GET, F_INDENT, F_INT, F_ITEMS, F_JOIN, F_KEYS, F_LAST, F_LENGTH, F_LIST, F_LOWER, F_MAP,
    F_REJECT, F_REJECTATTR, F_REPLACE, F_REVERSE, F_ROUND, F_SAFE, F_SELECT, F_SELECTATTR,
    F_SORT, F_STRING, F_TITLE, F_TOJSON, F_TRIM, F_UNIQUE, F_UPPER, F_VALUES,
} tpl_filter_id;

typedef enum tpl_test_id {
    T_UNKNOWN, T_BOOLEAN, T_CALLABLE, T_DEFINED, T_DIVISIBLEBY, T_EQ, T_EVEN, T_FALSE, T_FLOAT,
    T_GE, T_GT, T_IN, T_INTEGER, T_ITERABLE, T_LE, T_LOWER, T_LT, T_MAPPING, T_NE, T_NONE,
    T_NUMBER, T_ODD, T_SAMEAS, T_SEQUENCE, T_STRING, T_TRUE, T_UNDEFINED, T_UPPER,
} tpl_test_id;

tpl_filter_id tpl_filter_lookup(const char *name, size_t len);
tpl_test_id tpl_test_lookup(const char *name, size_t len);
bool tpl_test_takes_arg(tpl_test_id id); /* may be written `x is eq 3` */

/* ===================================================================== */
/* Values                                                                  */
/* ===================================================================== */

typedef enum tv_type {
    TV_UNDEF, TV_NULL, TV_BOOL, TV_INT, TV_FLOAT, /* immediate */
    TV_STR, TV_ARRAY, TV_TUPLE, TV_OBJECT, TV_KWARGS, TV_NS, TV_FUNC, /* heap */
} tv_type;

typedef struct tv_hdr tv_hdr;
struct tv_hdr {
    uint32_t rc;
    uint8_t type;     /* tv_type */
    tv_hdr *link;     /* free list while dying; namespaces: live list */
    tv_hdr *prev;     /* namespaces: live list */
};

typedef struct tval {
    uint8_t type; /* tv_type */
    union {
        bool b;
        double n;   /* TV_INT and TV_FLOAT: JS numbers are doubles */
        tv_hdr *h;  /* heap types */
    } u;
} tval;

typedef struct tv_str {
    tv_hdr hdr;
    size_t len;
    char *p; /* owned, NUL-terminated */
} tv_str;

typedef struct tv_arr { /* TV_ARRAY and TV_TUPLE; immutable once built */
    tv_hdr hdr;
    size_t n, cap;
    tval *v;
} tv_arr;

typedef struct tv_kv {
    tv_str *key; /* owned ref */
    tval val;    /* owned ref */
} tv_kv;

typedef struct tv_obj { /* TV_OBJECT, TV_KWARGS, TV_NS; insertion-ordered */
    tv_hdr hdr;
    size_t n, cap;
    tv_kv *kv;
    bool is_loop; /* the `loop` object of a for statement (has loop.cycle) */
} tv_obj;

typedef enum tv_fn_kind {
    FN_GLOBAL,     /* id: tpl_global_id */
    FN_STR_METHOD, /* id: method; self: the string */
    FN_OBJ_METHOD, /* id: method; self: the object */
    FN_LOOP_CYCLE, /* self: the loop object */
    FN_MACRO,      /* node: N_MACRO */
    FN_CALLER,     /* node: N_CALLBLOCK; scope: where the call block stands */
} tv_fn_kind;

typedef struct tpl_scope tpl_scope;
typedef struct tv_fn {
    tv_hdr hdr;
    uint8_t kind;   /* tv_fn_kind */
    uint8_t id;
    tval self;      /* owned ref or undefined */
    const tpl_node *node;
    tpl_scope *scope; /* owned ref or NULL */
} tv_fn;

typedef enum tpl_global_id {
    G_RAISE_EXCEPTION, G_RANGE, G_STRFTIME_NOW, G_NAMESPACE, G_DICT,
} tpl_global_id;

typedef enum tpl_method_id {
    M_NONE,
    /* strings */
    M_UPPER, M_LOWER, M_STRIP, M_LSTRIP, M_RSTRIP, M_TITLE, M_CAPITALIZE, M_STARTSWITH,
    M_ENDSWITH, M_SPLIT, M_REPLACE,
    /* objects */
    M_GET, M_ITEMS, M_KEYS, M_VALUES, M_DICTSORT,
} tpl_method_id;

static inline tval tv_undef(void) { tval v = {.type = TV_UNDEF}; return v; }
static inline tval tv_null(void) { tval v = {.type = TV_NULL}; return v; }
static inline tval tv_bool(bool b) { tval v = {.type = TV_BOOL, .u.b = b}; return v; }
static inline tval tv_int(double n) { tval v = {.type = TV_INT, .u.n = n}; return v; }
static inline tval tv_float(double n) { tval v = {.type = TV_FLOAT, .u.n = n}; return v; }
static inline bool tv_is_heap(tval v) { return v.type >= TV_STR; }
static inline bool tv_is_num(tval v) { return v.type == TV_INT || v.type == TV_FLOAT; }
static inline bool tv_is_arr(tval v) { return v.type == TV_ARRAY || v.type == TV_TUPLE; }
/* ObjectValue in the reference: plain dicts and keyword-argument bags. */
static inline bool tv_is_obj(tval v) { return v.type == TV_OBJECT || v.type == TV_KWARGS; }
/* Attribute containers: dicts, kwargs and namespaces. */
static inline bool tv_is_attr(tval v) { return tv_is_obj(v) || v.type == TV_NS; }
static inline tv_str *tv_s(tval v) { return (tv_str *)v.u.h; }
static inline tv_arr *tv_a(tval v) { return (tv_arr *)v.u.h; }
static inline tv_obj *tv_o(tval v) { return (tv_obj *)v.u.h; }
static inline tv_fn *tv_f(tval v) { return (tv_fn *)v.u.h; }

/* ===================================================================== */
/* Render context and scopes                                               */
/* ===================================================================== */

/* Internal status: errors and loop control travel the same way, like the
 * exceptions the reference throws for break/continue. */
typedef enum tstat { TS_OK = 0, TS_ERR, TS_BREAK, TS_CONTINUE } tstat;

typedef struct tpl_var {
    const char *name; /* arena string of the AST, or a key held by `key` */
    size_t len;
    tv_str *key;      /* owned ref when the name came from a value, else NULL */
    tval val;         /* owned ref */
} tpl_var;

struct tpl_scope {
    uint32_t rc;
    tpl_scope *parent; /* owned ref */
    tpl_var *vars;     /* owned */
    size_t n, cap;
};

typedef struct tpl_rctx {
    const tpl_template *t;
    sem_err *err;
    bool err_pos_set;   /* the error message already names a position */
    sem_status err_code;
    size_t max_out;     /* also the cap for any one string */
    uint64_t steps, max_steps;
    unsigned depth;     /* evaluation depth */
    int64_t now_unix_s;
    bool now_utc;
    tv_hdr *free_head;  /* values waiting to be freed */
    bool freeing;
    tv_hdr *ns_head;    /* live namespaces (for cycle breaking) */
    tpl_scope *globals; /* builtins and the caller's variables */
    tval fn_namespace;  /* namespace(): every scope of the reference has it */
    tval fn_dict;       /* dict(): superset; only if no variable is named so */
    tv_str *loop_keys[9]; /* interned names of the loop object's fields (owned refs) */
} tpl_rctx;

/* Error helpers: fill r->err (code SEM_EINVAL unless said) and return TS_ERR. */
/* *out = v; return TS_OK (for one-line returns). */
static inline tstat tv_ret(tval *out, tval v)
{
    *out = v;
    return TS_OK;
}
tstat tpl_fail(tpl_rctx *r, const char *fmt, ...) SEM_PRINTF(2, 3);
tstat tpl_fail_code(tpl_rctx *r, sem_status code, const char *fmt, ...) SEM_PRINTF(3, 4);
tstat tpl_oom(tpl_rctx *r);
/* Counts work; fails with SEM_ELIMIT past max_steps. */
tstat tpl_charge(tpl_rctx *r, uint64_t units);

/* ---- values (template_value.c) ---- */
void tv_retain(tval v);
void tv_release(tpl_rctx *r, tval v);
void tv_drain_free_list(tpl_rctx *r);
void tv_break_cycles(tpl_rctx *r);

tstat tv_str_new(tpl_rctx *r, const char *p, size_t len, tval *out);
tstat tv_str_cstr(tpl_rctx *r, const char *p, tval *out);
tstat tv_str_from_buf(tpl_rctx *r, buf *b, tval *out); /* takes b's data; b left empty */
tstat tv_arr_new(tpl_rctx *r, tv_type type, size_t cap, tval *out);
tstat tv_arr_push(tpl_rctx *r, tval arr, tval item); /* takes item */
tstat tv_obj_new(tpl_rctx *r, tv_type type, size_t cap, tval *out);
/* Sets key (borrowed bytes) to val (taken); replaces in place if present. */
tstat tv_obj_set(tpl_rctx *r, tval obj, const char *key, size_t klen, tval val);
tstat tv_obj_set_key(tpl_rctx *r, tval obj, tv_str *key, tval val); /* key retained */
/* Appends without looking for the key (caller knows it is new). */
tstat tv_obj_append_key(tpl_rctx *r, tval obj, tv_str *key, tval val);
/* Borrowed lookup; NULL when absent. */
const tval *tv_obj_get(tval obj, const char *key, size_t klen);
tstat tv_fn_new(tpl_rctx *r, tv_fn_kind kind, uint8_t id, tval self, const tpl_node *node,
                tpl_scope *scope, tval *out);

tstat tv_from_json(tpl_rctx *r, const struct json_t *j, unsigned depth, tval *out);

bool tv_truthy(tval v);
const char *tv_type_name(tval v); /* "StringValue", ... as in the reference's messages */

/* JS Number#toString and the reference's FloatValue#toString. */
size_t tv_fmt_js_number(double x, char *out, size_t cap);
/* Appends the printed form (what {{ v }} writes; none/undefined print nothing
 * only at statement level, here they print "null"/"undefined"). */
tstat tv_print(tpl_rctx *r, tval v, buf *out, unsigned depth);
/* Appends JS `String(v.value)`: what ~ and + concatenate. */
tstat tv_raw_string(tpl_rctx *r, tval v, buf *out, unsigned depth);

typedef struct tv_json_opts {
    int indent;          /* 0 = compact */
    bool ensure_ascii;
    bool sort_keys;
    const char *item_sep, *key_sep; /* NULL = the defaults */
    size_t item_sep_len, key_sep_len;
    bool undefined_as_null; /* tojson: true; printing: false ("undefined") */
} tv_json_opts;
tstat tv_to_json(tpl_rctx *r, tval v, const tv_json_opts *o, unsigned depth, buf *out);

/* JS `a == b` on the raw values (loose equality). */
tstat tv_loose_eq(tpl_rctx *r, tval a, tval b, bool *eq);
/* JS `a === b` on the raw values. */
bool tv_strict_eq(tval a, tval b);
/* SameValueZero on raw values (Set membership for `unique`). */
bool tv_same_value_zero(tval a, tval b);
/* The reference's compareRuntimeValues (sort, dictsort). */
tstat tv_compare(tpl_rctx *r, tval a, tval b, bool case_sensitive, int *cmp);

/* ---- strings (template_str.c) ---- */
size_t tpl_utf8_decode(const char *s, size_t len, size_t i, uint32_t *cp); /* bytes used, >= 1 */
bool tpl_js_space(uint32_t cp);
size_t tpl_js_space_at(const char *s, size_t len, size_t i); /* bytes of whitespace char at i, or 0 */
size_t tpl_js_space_before(const char *s, size_t i);         /* bytes of whitespace char ending at i */
void tpl_js_trim(const char *s, size_t len, bool left, bool right, size_t *start, size_t *end);
size_t tpl_utf16_len(const char *s, size_t len);
/* Lone surrogates (WTF-8) present? And the UTF-8 that node would write:
 * surrogate pairs joined, lone ones as U+FFFD. */
bool tpl_has_surrogates(const char *s, size_t len);
bool tpl_wtf8_to_utf8(const char *s, size_t len, buf *out);
/* The UTF-16 code unit at index idx (negative from the end) as a string; a
 * unit inside an astral character yields that surrogate (WTF-8). *found is
 * false when out of range; false return = OOM. */
bool tpl_utf16_at(const char *s, size_t len, int64_t idx, buf *out, bool *found);
int tpl_utf16_cmp(const char *a, size_t alen, const char *b, size_t blen);
bool tpl_case_map(const char *s, size_t len, bool upper, buf *out);
bool tpl_title_case(const char *s, size_t len, buf *out);
bool tpl_capitalize(const char *s, size_t len, buf *out);
/* JS-style number parse (ToNumber) of a string; NaN when not numeric. */
double tpl_js_to_number(const char *s, size_t len);
/* parseInt(s, 10) / parseFloat(s); false when NaN. */
bool tpl_js_parse_int(const char *s, size_t len, double *out);
bool tpl_js_parse_float(const char *s, size_t len, double *out);

/* ---- scopes (template_eval.c) ---- */
tpl_scope *tpl_scope_new(tpl_rctx *r, tpl_scope *parent);
void tpl_scope_release(tpl_rctx *r, tpl_scope *s);
tstat tpl_scope_set(tpl_rctx *r, tpl_scope *s, const char *name, size_t len, tval v); /* takes v */
tval tpl_scope_lookup(const tpl_scope *s, const char *name, size_t len); /* borrowed; undef if absent */

/* ---- evaluation entry points shared between files ---- */
tstat tpl_eval(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, tval *out);
/* Evaluates call arguments: positional values into *pos (an array value),
 * keyword values into *kw (a TV_KWARGS object, maybe empty). */
tstat tpl_eval_args(tpl_rctx *r, const tpl_nodes *args, tpl_scope *sc, tval *pos, tval *kw);
/* Calls fn with positional args (array value) and keyword args (kwargs value
 * or undefined). */
tstat tpl_call(tpl_rctx *r, tval fn, tval pos, tval kw, tpl_scope *sc, tval *out);

/* ---- filters, tests, methods (template_filters.c, template_builtins.c) ---- */
tstat tpl_apply_filter(tpl_rctx *r, const tpl_node *f, tval operand, tpl_scope *sc, tval *out);
tstat tpl_run_test(tpl_rctx *r, tpl_test_id id, const char *name, tval v, const tval *arg,
                   bool *result);
tstat tpl_eval_test(tpl_rctx *r, const tpl_node *n, tpl_scope *sc, tval *out);
/* Property of a non-container value or a builtin of a dict: string methods,
 * .length, dict methods. *out is undefined when there is none. */
tstat tpl_builtin_property(tpl_rctx *r, tval obj, const char *name, size_t len, tval *out);
tstat tpl_call_method(tpl_rctx *r, const tv_fn *fn, tval pos, tval kw, tval *out);
tstat tpl_call_global(tpl_rctx *r, tpl_global_id id, tval pos, tval kw, tval *out);
tstat tpl_install_globals(tpl_rctx *r, tpl_scope *g);
/* items(): [[key, value], ...] of a dict or namespace. */
tstat tpl_obj_items(tpl_rctx *r, tval obj, tval *out);
/* Follows a dotted attribute path ("a.b.0") as map(attribute=) does. */
tval tpl_attr_path(tval item, const char *path, size_t len); /* borrowed */

#endif /* SEM_TOKENIZER_TEMPLATE_INT_H */
