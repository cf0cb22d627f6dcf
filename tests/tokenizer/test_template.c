/* test_template.c - unit tests of the Jinja-subset interpreter through the
 * door (tpl_parse / tpl_render): a table of small templates with expected
 * output (statements, expressions, filters, tests, methods, undefined
 * semantics, whitespace control, JavaScript-isms of the reference), a table
 * of malformed templates and failing renders (each must give its status and
 * never crash), the named limits (recursion, loops, output and string size,
 * cyclic values), and API behaviour.
 *
 * Rows marked REF are also rendered by @huggingface/jinja
 * (tools/tpl/render.mjs) when node is available, so the expected values here
 * are the reference's, not our guess. Rows marked SUP use features the
 * reference lacks (our superset).
 *
 * Thread: test main thread only.
 */
#include "test_util.h"

#include "tokenizer/template.h"

#include <jansson.h>

#define REF 1u
#define SUP 2u
#define NOW_S 1721995200 /* 26 Jul 2024 12:00 UTC, as tools/tpl/reference.mjs */

typedef struct tcase {
    const char *name;
    const char *src;
    const char *ctx;  /* JSON object or NULL */
    const char *want; /* expected output, or NULL when an error is expected */
    sem_status st;
    unsigned flags;
} tcase;

#define MSGS "{\"messages\":[{\"role\":\"system\",\"content\":\" sys \"},{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}"

static const tcase CASES[] = {
    /* ---- statements ---- */
    {"if/elif/else", "{% for x in [1,2,3] %}{% if x == 1 %}a{% elif x == 2 %}b{% else %}c{% endif %}{% endfor %}", NULL, "abc", SEM_OK, REF},
    {"list of a string", "{% for x in 'ab'|list %}{{ x }};{% endfor %}{{ 'ab'|first }}{{ 'ab'|reverse }}", NULL, "a;b;aba", SEM_OK, SUP},
    {"loop vars on list", "{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}", NULL, "1032truefalse3;2121falsefalse3;3210falsetrue3;", SEM_OK, REF},
    {"previtem/nextitem", "{% for x in [1,2,3] %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}|{% endfor %}", NULL, "<1>2|1<2>3|2<3>|", SEM_OK, REF},
    {"loop.cycle", "{% for x in [1,2,3] %}{{ loop.cycle('a','b') }}{% endfor %}", NULL, "aba", SEM_OK, SUP},
    {"for else", "{% for x in [] %}x{% else %}empty{% endfor %}", NULL, "empty", SEM_OK, REF},
    {"for filter", "{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }} {% endfor %}", NULL, "22 42 ", SEM_OK, REF},
    {"tuple unpack items", "{% for k, v in {'a': 1, 'b': [2]}.items() %}{{ k }}={{ v }};{% endfor %}", NULL, "a=1;b=[2];", SEM_OK, REF},
    {"for over dict keys", "{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}", NULL, "xy", SEM_OK, REF},
    {"for over string fails", "{% for c in 'abc' %}{{ c }}{% endfor %}", NULL, NULL, SEM_EINVAL, REF},
    {"set", "{% set x = 1 + 2 %}{{ x }}", NULL, "3", SEM_OK, REF},
    {"set tuple", "{% set a, b = 1, 'two' %}{{ a }}{{ b }}", NULL, "1two", SEM_OK, REF},
    {"namespace", "{% set ns = namespace(n=0, s='') %}{% for x in [1,2,3] %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}", NULL, "6", SEM_OK, REF},
    {"namespace from dict", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns | tojson }}", NULL, "12{\"a\": 1, \"b\": 2}", SEM_OK, REF},
    {"set on dict fails", "{% set d = {'a': 1} %}{% set d.a = 2 %}", NULL, NULL, SEM_EINVAL, REF},
    {"block set", "{% set x %}a{{ 1 }}b{% endset %}[{{ x }}]", NULL, "[a1b]", SEM_OK, REF},
    {"set in loop does not leak", "{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}", NULL, "21", SEM_OK, REF},
    {"set in if leaks", "{% if true %}{% set x = 5 %}{% endif %}{{ x }}", NULL, "5", SEM_OK, REF},
    {"macro defaults", "{% macro greet(name, greeting='Hi') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', greeting='Yo') }}", NULL, "Hi, Ann! Yo, Bo!", SEM_OK, REF},
    {"macro default uses param", "{% macro f(a, b=a*2) %}{{ a }}{{ b }}{% endmacro %}{{ f(3) }}", NULL, "36", SEM_OK, REF},
    {"macro varargs kwargs", "{% macro f(a) %}{{ a }}{{ varargs }}{{ kwargs | tojson }}{% endmacro %}{{ f(1, 2, 3, k='v') }}", NULL, "1[2, 3]{\"k\": \"v\"}", SEM_OK, REF},
    {"macro too many args", "{% macro f(a) %}{% endmacro %}{{ f(1, 2) }}", NULL, NULL, SEM_EINVAL, REF},
    {"macro dynamic scope", "{% macro f() %}{{ who }}{% endmacro %}{% for who in ['x', 'y'] %}{{ f() }}{% endfor %}", NULL, "xy", SEM_OK, REF},
    {"call block", "{% macro wrap(t) %}<{{ t }}>{{ caller() }}</{{ t }}>{% endmacro %}{% call wrap('b') %}inside{% endcall %}", NULL, "<b>inside</b>", SEM_OK, REF},
    {"call block args", "{% macro m() %}{{ caller(1, 2) }}{% endmacro %}{% call(a, b) m() %}{{ a + b }}{% endcall %}", NULL, "3", SEM_OK, REF},
    {"filter block", "{% filter upper %}abc{{ 'd' }}{% endfilter %}", NULL, "ABCD", SEM_OK, REF},
    {"filter block args", "{% filter replace('a', 'b') %}aXa{% endfilter %}", NULL, "bXb", SEM_OK, REF},
    {"generation block", "A{% generation %}B{% endgeneration %}C", NULL, "ABC", SEM_OK, REF},
    {"generation block strip", "A  {%- generation -%}  B  {%- endgeneration %}  C", NULL, "AB  C", SEM_OK, REF},
    {"break discards iteration", "{% for x in [1,2,3] %}{{ x }}{% if x == 2 %}{% break %}{% endif %}{% endfor %}", NULL, "1", SEM_OK, REF},
    {"continue", "{% for x in [1,2,3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}", NULL, "13", SEM_OK, REF},
    {"all continue renders else", "{% for x in [1] %}{% continue %}{% else %}E{% endfor %}", NULL, "E", SEM_OK, REF},
    {"comment", "a{# note #}b{#- strip -#}  c", NULL, "abc", SEM_OK, REF},
    /* ---- whitespace ---- */
    {"trim_blocks", "{% if true %}\nyes\n{% endif %}\nend", NULL, "yes\nend", SEM_OK, REF},
    {"lstrip_blocks", "  {% if true %}\n  x\n  {% endif %}\n", NULL, "  x\n", SEM_OK, REF},
    {"no lstrip before {{", "  {{ 'v' }}\n", NULL, "  v", SEM_OK, REF},
    {"dash both sides", "a \n {{- 'b' -}} \n c", NULL, "abc", SEM_OK, REF},
    {"dash statements", "x  {%- if true -%}  y  {%- endif -%}  z", NULL, "xyz", SEM_OK, REF},
    {"trailing newline dropped", "abc\n", NULL, "abc", SEM_OK, REF},
    {"unicode whitespace trimmed by dash", "a\xC2\xA0\xE3\x80\x80{{- 'b' }}", NULL, "ab", SEM_OK, REF},
    /* ---- literals and operators ---- */
    {"string escapes", "{{ 'a\\tb\\n\\'c\\' \\x41 \\u00e9 \\\\' }}", NULL, "a\tb\n'c' A \xC3\xA9 \\", SEM_OK, REF},
    {"adjacent strings", "{{ 'ab' \"cd\" }}", NULL, "abcd", SEM_OK, REF},
    {"constants", "{{ true }}{{ True }}{{ false }}{{ none }}{{ None }}|", NULL, "truetruefalse|", SEM_OK, REF},
    {"numbers print like JS", "{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 2 ** 60 }} {{ 1e21 is defined }} {{ 10 / 4 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ -0.0 }}", NULL, NULL, SEM_EINVAL, REF},
    {"number printing", "{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 2 ** 60 }} {{ 10 / 4 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ -0.0 }} {{ 3 * 1.5 }} {{ 1 / 3 }}", NULL, "1.0 0.30000000000000004 1152921504606847000 2.5 3 -4 1 -0.0 4.5 0.3333333333333333", SEM_OK, REF},
    {"power left assoc", "{{ 2 ** 3 ** 2 }} {{ 2 ** -1 }}", NULL, "64 0.5", SEM_OK, REF},
    {"precedence", "{{ 1 + 2 * 3 - 4 / 2 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }}", NULL, "5.0 9 4", SEM_OK, REF},
    {"concat", "{{ 'a' ~ 1 ~ 1.5 ~ 2.0 ~ true }} {{ 'x' + 1 }} {{ [1, 'b'] ~ '' }} {{ {'a': 1} ~ '' }}", NULL, "a11.52true x1 1,b [object Map]", SEM_OK, REF},
    {"list concat", "{{ [1] + [2, 3] }}", NULL, "[1, 2, 3]", SEM_OK, REF},
    {"comparisons", "{{ 1 < 2 }}{{ 2 <= 2 }}{{ 3 > 4 }}{{ 1 == 1.0 }}{{ 1 != 2 }}{{ 1 == '1' }}{{ none == undefined_var }}", NULL, "truetruefalsetruetruetruetrue", SEM_OK, REF},
    {"and/or return operands", "{{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ [] or none }}|{{ not 0 }}{{ not 'a' }}", NULL, "x|b||truefalse", SEM_OK, REF},
    {"in / not in", "{{ 'b' in 'abc' }}{{ 2 in [1, 2] }}{{ 'k' in {'k': 1} }}{{ 'z' not in 'abc' }}{{ 1 in undefined_var }}", NULL, "truetruetruetruefalse", SEM_OK, REF},
    {"is / is not", "{{ x is defined }}{{ y is not defined }}{{ none is none }}{{ 1 is number }}", "{\"x\":1}", "truetruetruetrue", SEM_OK, REF},
    {"ternary", "{{ 'y' if 1 > 0 else 'n' }}{{ 'y' if 0 else 'n' }}{{ 'a' if false else 'b' if true else 'c' }}", NULL, "ynb", SEM_OK, REF},
    {"select expression", "[{{ 'v' if false }}]", NULL, "[]", SEM_OK, REF},
    {"dict literal with }}", "{{ {'a': {'b': 1}} | tojson }}", NULL, "{\"a\": {\"b\": 1}}", SEM_OK, REF},
    {"attribute and subscript", "{{ d.a.b }}{{ d['a']['b'] }}{{ l[0] }}{{ l[-1] }}{{ l.1 }}", "{\"d\":{\"a\":{\"b\":7}},\"l\":[1,2,3]}", "77132", SEM_OK, REF},
    {"slices", "{{ s[1:3] }}|{{ s[::-1] }}|{{ s[:-1] }}|{{ s[2:] }}|{{ l[::2] }}|{{ l[-2:] }}|{{ l[3:-1:-1] }}", "{\"s\":\"abcdé\",\"l\":[1,2,3,4,5]}", "bc|édcba|abcd|cdé|[1, 3, 5]|[4, 5]|[4, 3, 2, 1]", SEM_OK, REF},
    {"string slice by code point", "{{ 'a\xF0\x9F\x98\x80" "b'[::-1] }}|{{ 'a\xF0\x9F\x98\x80" "b'|length }}", NULL, "b\xF0\x9F\x98\x80" "a|4", SEM_OK, REF},
    {"kwargs call", "{{ range(1, 10, 3) }}{{ dict(a=1, b=[2]) | tojson }}", NULL, "[1, 4, 7]{\"a\": 1, \"b\": [2]}", SEM_OK, SUP},
    {"string repeat", "{{ '-' * 3 }}", NULL, "---", SEM_OK, SUP},
    {"string ordering", "{{ 'a' < 'b' }}", NULL, "true", SEM_OK, SUP},
    /* ---- undefined and none ---- */
    {"undefined prints nothing", "[{{ nope }}][{{ nope.x.y }}][{{ none }}][{{ d.missing }}]", "{\"d\":{}}", "[][][][]", SEM_OK, REF},
    {"undefined in list prints", "{{ [1, none, nope] }}", NULL, "[1, null, undefined]", SEM_OK, REF},
    {"undefined concat fails", "{{ nope ~ 'a' }}", NULL, NULL, SEM_EINVAL, REF},
    {"none arithmetic fails", "{{ none + 1 }}", NULL, NULL, SEM_EINVAL, REF},
    {"subscript of undefined fails", "{{ nope[0] }}", NULL, NULL, SEM_EINVAL, REF},
    {"get on dict", "{{ d.get('a') }}|{{ d.get('z') }}|{{ d.get('z', 5) }}", "{\"d\":{\"a\":1}}", "1||5", SEM_OK, REF},
    /* ---- filters ---- */
    {"tojson", "{{ v | tojson }}", "{\"v\":{\"s\":\"a\\\"b\\\\c\\n\\u0001\\u00e9\\u2028\",\"n\":[1,2.5,true,null],\"e\":{}}}", "{\"s\": \"a\\\"b\\\\c\\n\\u0001\xC3\xA9\xE2\x80\xA8\", \"n\": [1, 2.5, true, null], \"e\": {}}", SEM_OK, REF},
    {"tojson indent", "{{ v | tojson(indent=2) }}", "{\"v\":{\"a\":[1,{\"b\":[]}],\"c\":\"x\"}}", "{\n  \"a\": [\n    1,\n    {\n      \"b\": []\n    }\n  ],\n  \"c\": \"x\"\n}", SEM_OK, REF},
    {"tojson ensure_ascii", "{{ 'é\xF0\x9F\x98\x80\x7f' | tojson(ensure_ascii=true) }}", NULL, "\"\\u00e9\\ud83d\\ude00\\u007f\"", SEM_OK, REF},
    {"tojson separators sort_keys", "{{ {'b': 1, 'a': [1, 2]} | tojson(separators=(',', ':'), sort_keys=true) }}", NULL, "{\"a\":[1,2],\"b\":1}", SEM_OK, REF},
    {"tojson index keys first", "{{ d | tojson }}", "{\"d\":{\"b\":1,\"10\":2,\"2\":3}}", "{\"2\": 3, \"10\": 2, \"b\": 1}", SEM_OK, REF},
    {"tojson undefined", "{{ nope | tojson }}", NULL, "null", SEM_OK, REF},
    {"trim", "[{{ '  a b \\n' | trim }}]", NULL, "[a b]", SEM_OK, REF},
    {"length/count", "{{ 'héllo' | length }}{{ [1, 2] | length }}{{ {'a': 1} | length }}{{ [1, 2] | count }}", NULL, "5212", SEM_OK, SUP},
    {"default", "{{ nope | default('d') }}|{{ '' | default('e') }}|{{ '' | default('f', true) }}|{{ none | default('g') }}|{{ nope | d('h') }}", NULL, "d||f||h", SEM_OK, SUP},
    {"default ref", "{{ nope | default('d') }}|{{ '' | default('e') }}|{{ '' | default('f', true) }}|{{ none | default('g') }}", NULL, "d||f|", SEM_OK, REF},
    {"items", "{% for k, v in {'a': 1} | items %}{{ k }}{{ v }}{% endfor %}", NULL, "a1", SEM_OK, REF},
    {"selectattr/rejectattr", "{{ l | selectattr('t', 'equalto', 'f') | map(attribute='n') | join(',') }}|{{ l | rejectattr('t', 'equalto', 'f') | map(attribute='n') | join(',') }}|{{ l | selectattr('x') | length }}|{{ l | selectattr('x', 'defined') | length }}", "{\"l\":[{\"t\":\"f\",\"n\":1},{\"t\":\"g\",\"n\":2,\"x\":0},{\"t\":\"f\",\"n\":3,\"x\":1}]}", "1,3|2|1|2", SEM_OK, REF},
    {"map attribute default", "{{ l | map(attribute='a.b', default='-') | list }}", "{\"l\":[{\"a\":{\"b\":1}},{\"a\":{}}]}", "[1, \"-\"]", SEM_OK, REF},
    {"join", "{{ [1, 'a', none, 2.0] | join('-') }}|{{ 'abc' | join('.') }}|{{ [1, 2] | join }}", NULL, "1-a--2|a.b.c|12", SEM_OK, REF},
    {"case filters", "{{ 'hELLO wORLD' | upper }}|{{ 'ABC' | lower }}|{{ 'hELLO' | capitalize }}|{{ 'hello wORLD it\\'s' | title }}", NULL, "HELLO WORLD|abc|HELLO|Hello WORLD It'S", SEM_OK, REF},
    {"unicode case", "{{ 'straße' | upper }}|{{ 'ÀÉ' | lower }}", NULL, "STRASSE|àé", SEM_OK, REF},
    {"first/last/list/string", "{{ [1, 2, 3] | first }}{{ [1, 2, 3] | last }}{{ [1, 2] | list }}{{ [1, 'a'] | string }}{{ 5 | string }}{{ 2.0 | string }}{{ true | string }}", NULL, "13[1, 2][1, \"a\"]52.0true", SEM_OK, REF},
    {"int/float/abs", "{{ '42x' | int }} {{ 'x' | int }} {{ -2.5 | int }} {{ '3.5' | float }} {{ 4 | float }} {{ -3 | abs }} {{ 'x' | int(7) }} {{ true | int }}", NULL, "42 0 -3 3.5 4.0 3 7 1", SEM_OK, REF},
    {"replace", "{{ 'aaa' | replace('a', 'b') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 'ab' | replace('', '-') }}", NULL, "bbb|bba|-a-b-", SEM_OK, REF},
    {"round", "{{ 2.5 | round }} {{ 3.14159 | round(2) }} {{ 2.1 | round(0, 'ceil') }}", NULL, "3.0 3.14 3.0", SEM_OK, SUP},
    {"unique/sort/reverse", "{{ [3, 1, 3, 2, 1.0] | unique }}|{{ ['b', 'A', 'c'] | sort }}|{{ [3, 1, 2] | sort(reverse=true) }}|{{ [1, 2] | reverse }}", NULL, "[3, 1, 2]|[\"A\", \"b\", \"c\"]|[3, 2, 1]|[2, 1]", SEM_OK, REF},
    {"sort attribute", "{{ l | sort(attribute='n') | map(attribute='k') | join }}", "{\"l\":[{\"n\":2,\"k\":\"b\"},{\"n\":1,\"k\":\"a\"},{\"n\":2,\"k\":\"c\"}]}", "abc", SEM_OK, REF},
    {"safe", "{{ '<b>' | safe }}", NULL, "<b>", SEM_OK, REF},
    {"indent", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}", NULL, "a\n    b\n\n    c|  a\n  b", SEM_OK, REF},
    {"dictsort", "{% for k, v in {'b': 1, 'A': 2, 'c': 0} | dictsort %}{{ k }}{% endfor %}|{% for k, v in {'b': 1, 'a': 2} | dictsort(by='value', reverse=true) %}{{ k }}{% endfor %}", NULL, "Abc|ab", SEM_OK, REF},
    {"select/reject/map filter", "{{ [1, 2, 3, 4] | select('odd') | list }}{{ [1, 2, 3] | reject('even') | list }}{{ ['a', 'b'] | map('upper') | list }}", NULL, "[1, 3][1, 3][\"A\", \"B\"]", SEM_OK, SUP},
    {"unknown filter", "{{ 1 | nosuch }}", NULL, NULL, SEM_EINVAL, REF},
    {"unknown filter in untaken branch", "{% if false %}{{ 1 | nosuch }}{% endif %}ok", NULL, "ok", SEM_OK, REF},
    /* ---- tests ---- */
    {"type tests", "{{ 'a' is string }}{{ 1 is integer }}{{ 1.5 is integer }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ {} is iterable }}{{ [] is sequence }}{{ true is boolean }}{{ 1 is boolean }}", NULL, "truetruefalsetruetruetruefalsetruetruefalse", SEM_OK, REF},
    {"value tests", "{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 3 is odd }}{{ 4 is even }}{{ none is none }}{{ nope is undefined }}{{ 'ab' is lower }}{{ 'AB' is upper }}", NULL, "truefalsetruetruetruetruetruetruetrue", SEM_OK, REF},
    {"superset tests", "{{ 1.5 is float }}{{ 9 is divisibleby(3) }}{{ 9 is divisibleby 4 }}{{ 2 is in [1, 2] }}{{ 3 is eq 3 }}{{ 3 is gt(2) }}", NULL, "truetruefalsetruetruetrue", SEM_OK, SUP},
    {"unknown test", "{{ 1 is nosuch }}", NULL, NULL, SEM_EINVAL, REF},
    /* ---- methods and globals ---- */
    {"strip ignores chars like the reference", "[{{ '\\n a \\n'.strip('\\n') }}][{{ ' a '.lstrip() }}][{{ ' a '.rstrip() }}]", NULL, "[a][a ][ a]", SEM_OK, REF},
    {"split", "{{ 'a,b,,c'.split(',') }}{{ '  a  b '.split() }}{{ 'a,b,c'.split(',', 1) }}{{ ' a b c'.split(none, 1) }}", NULL, "[\"a\", \"b\", \"\", \"c\"][\"a\", \"b\"][\"a\", \"b,c\"][\"a\", \"b c\"]", SEM_OK, REF},
    {"startswith/endswith", "{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}{{ 'abc'.startswith('b') }}", NULL, "truetruefalse", SEM_OK, REF},
    {"string methods", "{{ 'aXa'.replace('a', 'b', 1) }}{{ 'ab'.upper() }}{{ 'AB'.lower() }}{{ 'ab cd'.title() }}{{ 'ab'.capitalize() }}{{ 'héllo'.length }}", NULL, "bXaABabAb CdAb5", SEM_OK, REF},
    {"dict methods", "{{ d.keys() }}{{ d.values() }}{{ d.items() }}", "{\"d\":{\"a\":1,\"b\":\"x\"}}", "[\"a\", \"b\"][1, \"x\"][[\"a\", 1], [\"b\", \"x\"]]", SEM_OK, REF},
    {"list length property", "{{ [1, 2].length }}", NULL, "2", SEM_OK, REF},
    {"raise_exception", "{{ raise_exception('bad order') }}", NULL, NULL, SEM_EINVAL, REF},
    {"strftime_now", "{{ strftime_now('%d %b %Y|%B|%Y-%m-%d %H:%M|%%|%A') }}", NULL, "26 Jul 2024|July|2024-07-26 12:00|%|%A", SEM_OK, REF},
    {"range", "{{ range(3) }}{{ range(1, 3) }}{{ range(5, 0, -2) }}", NULL, "[0, 1, 2][1, 2][5, 3, 1]", SEM_OK, REF},
    {"context values", "{{ n }} {{ f }} {{ big }} {{ s }}", "{\"n\":3,\"f\":2.5,\"big\":1e30,\"s\":\"x\"}", "3 2.5 1e+30 x", SEM_OK, REF},
    {"integral JSON real is int", "{{ f }}", "{\"f\":2.0}", "2", SEM_OK, REF},
    /* ---- a real-world shape ---- */
    {"chatml loop", "{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}", MSGS, "<|system|>sys\n<|user|>hi\n<|assistant|>yo\n", SEM_OK, REF},
};

/* ---- templates that must not parse ---- */
typedef struct bad_src {
    const char *src;
    sem_status st;
} bad_src;

static const bad_src BAD_PARSE[] = {
    {"{% if x %}", SEM_EINVAL},          {"{% for %}", SEM_EINVAL},
    {"{{ x ", SEM_EINVAL},               {"{{ x }", SEM_EINVAL},
    {"{% endif %}", SEM_EINVAL},         {"{% if x %}{% endfor %}", SEM_EINVAL},
    {"{{ 'abc }}", SEM_EINVAL},          {"{{ 1 + }}", SEM_EINVAL},
    {"{{ (1 }}", SEM_EINVAL},            {"{{ [1, 2 }}", SEM_EINVAL},
    {"{# comment", SEM_EINVAL},          {"{{ x | }}", SEM_EINVAL},
    {"{{ x is }}", SEM_EINVAL},          {"{% set %}", SEM_EINVAL},
    {"{% macro %}", SEM_EINVAL},         {"{% unknown %}", SEM_EINVAL},
    {"{{ '\\q' }}", SEM_EINVAL},         {"{{ @ }}", SEM_EINVAL},
    {"{{ x[] }}", SEM_EINVAL},           {"{% for x in y %}{% else %}", SEM_EINVAL},
    {"{{ }}", SEM_EINVAL},               {"{% %}", SEM_EINVAL},
    {"{{ f(a=1, 2) }}", SEM_EINVAL},     {"{% macro m(a=1, b) %}{% endmacro %}", SEM_EINVAL},
    {"{{ x.+ }}", SEM_EINVAL},           {"{{ '\\u12' }}", SEM_EINVAL},
    {"{% for 1 in x %}{% endfor %}", SEM_EINVAL}, {"{{ x[1:2:3:4] }}", SEM_EINVAL},
    {"{% if x %}{% elif %}{% endif %}", SEM_EINVAL}, {"{% call 1 %}{% endcall %}", SEM_EINVAL},
};

static tpl_render_params fixed_clock(void)
{
    tpl_render_params p = tpl_render_default_params();
    p.now_unix_s = NOW_S;
    p.now_utc = true;
    return p;
}

static sem_status render_str(const char *src, const char *ctx_json, const tpl_render_params *p,
                             char **out, sem_err *err)
{
    tpl_template *t;
    sem_status s = tpl_parse(src, strlen(src), &t, err);
    if (s != SEM_OK) return s;
    json_t *ctx = NULL;
    if (ctx_json) {
        json_error_t je;
        ctx = json_loads(ctx_json, JSON_DECODE_INT_AS_REAL, &je);
        if (!ctx) fprintf(stderr, "bad test ctx %s: %s\n", ctx_json, je.text);
        assert_non_null(ctx);
    }
    s = tpl_render(t, ctx, p, out, NULL, err);
    json_decref(ctx);
    tpl_destroy(t);
    return s;
}

static void test_feature_table(void **state)
{
    (void)state;
    tpl_render_params p = fixed_clock();
    int failures = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const tcase *c = &CASES[i];
        char *out = NULL;
        sem_err err;
        sem_status s = render_str(c->src, c->ctx, &p, &out, &err);
        bool ok = c->want ? s == SEM_OK && !strcmp(out, c->want) : s == c->st;
        if (!ok) {
            failures++;
            fprintf(stderr, "FAIL %s\n  template: %s\n  want: %s (%s)\n  got:  %s (%s)\n", c->name,
                    c->src, c->want ? c->want : "(error)", sem_status_name(c->st),
                    s == SEM_OK ? out : err.msg, sem_status_name(s));
        }
        free(out);
    }
    assert_int_equal(failures, 0);
}

/* Every REF row once more through the reference itself. */
static void test_reference_agrees(void **state)
{
    (void)state;
    if (tu_run(NULL, "node --version") != 0) skip();
    json_t *arr = json_array();
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        if (!(CASES[i].flags & REF)) continue;
        json_t *ctx = CASES[i].ctx ? json_loads(CASES[i].ctx, 0, NULL) : json_object();
        assert_non_null(ctx);
        json_t *row = json_pack("{s:s,s:o}", "template", CASES[i].src, "context", ctx);
        assert_non_null(row);
        json_array_append_new(arr, row);
    }
    char *dir = tu_tmpdir(), in[512], *out = NULL;
    snprintf(in, sizeof in, "%s/in.json", dir);
    assert_int_equal(json_dump_file(arr, in, 0), 0);
    int rc = tu_run(&out, "cd '%s' && node tools/tpl/render.mjs < '%s'", tu_source_dir(), in);
    assert_int_equal(rc, 0);
    json_t *res = json_loads(out, 0, NULL);
    assert_non_null(res);
    size_t k = 0;
    int failures = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const tcase *c = &CASES[i];
        if (!(c->flags & REF)) continue;
        json_t *r = json_array_get(res, k++);
        const char *o = json_string_value(json_object_get(r, "output"));
        bool ok = c->want ? o && !strcmp(o, c->want) : o == NULL;
        if (!ok) {
            failures++;
            fprintf(stderr, "REFERENCE DISAGREES %s\n  want: %s\n  reference: %s\n", c->name,
                    c->want ? c->want : "(error)", o ? o : json_string_value(json_object_get(r, "error")));
        }
    }
    json_decref(res);
    json_decref(arr);
    free(out);
    tu_rmrf(dir);
    free(dir);
    assert_int_equal(failures, 0);
}

static void test_malformed_templates(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof BAD_PARSE / sizeof BAD_PARSE[0]; i++) {
        tpl_template *t = NULL;
        sem_err err;
        sem_status s = tpl_parse(BAD_PARSE[i].src, strlen(BAD_PARSE[i].src), &t, &err);
        if (s != BAD_PARSE[i].st) {
            failures++;
            fprintf(stderr, "FAIL parse %s: got %s\n", BAD_PARSE[i].src, sem_status_name(s));
            tpl_destroy(t);
            continue;
        }
        if (strstr(err.msg, "line") == NULL) {
            failures++;
            fprintf(stderr, "FAIL parse %s: message without position: %s\n", BAD_PARSE[i].src, err.msg);
        }
    }
    /* every prefix of a real template either parses or fails cleanly */
    const char *real = "{%- for m in messages %}{{- '<|' + m['role'] + '|>' + m.content | trim }}"
                       "{%- if loop.last and add_generation_prompt %}{{ 'x' }}{% endif %}{% endfor %}";
    for (size_t n = 0; n <= strlen(real); n++) {
        tpl_template *t = NULL;
        sem_err err;
        if (tpl_parse(real, n, &t, &err) == SEM_OK) tpl_destroy(t);
    }
    assert_int_equal(failures, 0);
}

static void expect_render_error(const char *src, const char *ctx, const tpl_render_params *p,
                                sem_status want, const char *needle)
{
    char *out = NULL;
    sem_err err;
    sem_status s = render_str(src, ctx, p, &out, &err);
    if (s != want || (needle && !strstr(err.msg, needle)))
        fprintf(stderr, "FAIL %s\n  got %s: %s\n", src, sem_status_name(s), s == SEM_OK ? out : err.msg);
    free(out);
    assert_int_equal(s, want);
    if (needle) assert_non_null(strstr(err.msg, needle));
}

static void test_render_errors_and_limits(void **state)
{
    (void)state;
    tpl_render_params p = fixed_clock();
    expect_render_error("line one\n{{ raise_exception('Conversation roles must alternate') }}", NULL, &p,
                        SEM_EINVAL, "Conversation roles must alternate");
    expect_render_error("a\nb\n  {{ 1 | nosuch }}", NULL, &p, SEM_EINVAL, "line 3 column");
    expect_render_error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", NULL, &p, SEM_ELIMIT, "nested");
    expect_render_error("{% for i in range(100000000) %}{% endfor %}", NULL, &p, SEM_ELIMIT, "range");
    expect_render_error("{% break %}", NULL, &p, SEM_EINVAL, "outside of a loop");
    expect_render_error("{{ x }}", "{\"true\": 1}", &p, SEM_EINVAL, "already declared");
    expect_render_error("{% set ns = namespace() %}{% set ns.self = ns %}{{ ns | tojson }}", NULL, &p,
                        SEM_ELIMIT, "nested");
    expect_render_error("{% set ns = namespace(s='xy') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                        NULL, &p, SEM_ELIMIT, "limit");
    expect_render_error("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
                        NULL, &p, SEM_ELIMIT, NULL);
    tpl_render_params small = p;
    small.max_steps = 20000;
    expect_render_error("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", NULL,
                        &small, SEM_ELIMIT, "steps");
    tpl_render_params tiny = p;
    tiny.max_output_bytes = 1000;
    expect_render_error("{% for i in range(1000) %}xxxxxxxxxx{% endfor %}", NULL, &tiny, SEM_ELIMIT, "limit");
    /* a cycle that is never printed is freed without complaint (ASan checks the leak) */
    char *out = NULL;
    sem_err err;
    assert_int_equal(render_str("{% set a = namespace() %}{% set b = namespace(a=a) %}{% set a.b = b %}ok",
                                NULL, &p, &out, &err), SEM_OK);
    assert_string_equal(out, "ok");
    free(out);
}

static void test_parse_once_render_many(void **state)
{
    (void)state;
    const char *src = "{% for m in messages %}{{ m }};{% endfor %}{{ strftime_now('%Y') }}";
    tpl_template *t;
    sem_err err;
    assert_int_equal(tpl_parse(src, strlen(src), &t, &err), SEM_OK);
    tpl_render_params p = fixed_clock();
    for (int i = 0; i < 50; i++) {
        json_t *ctx = json_pack("{s:[i,i]}", "messages", i, i + 1);
        char *out;
        size_t len;
        assert_int_equal(tpl_render(t, ctx, &p, &out, &len, &err), SEM_OK);
        char want[64];
        snprintf(want, sizeof want, "%d;%d;2024", i, i + 1);
        assert_string_equal(out, want);
        assert_int_equal(len, strlen(want));
        free(out);
        json_decref(ctx);
    }
    char *out;
    assert_int_equal(tpl_render(t, NULL, &p, &out, NULL, &err), SEM_EINVAL); /* messages undefined */
    assert_non_null(strstr(err.msg, "line 1 column"));
    json_t *not_obj = json_array();
    assert_int_equal(tpl_render(t, not_obj, NULL, &out, NULL, &err), SEM_EINVAL);
    json_decref(not_obj);
    tpl_destroy(t);
    tpl_destroy(NULL);
    assert_int_equal(tpl_parse("x{{ 1 }}", 8, &t, &err), SEM_OK);
    assert_int_equal(tpl_render(t, NULL, NULL, &out, NULL, &err), SEM_OK); /* NULL ctx and params */
    assert_string_equal(out, "x1");
    free(out);
    tpl_destroy(t);
}

static void test_source_limits(void **state)
{
    (void)state;
    sem_err err;
    tpl_template *t = NULL;
    size_t n = 2000;
    char *deep = malloc(n * 2 + 16);
    size_t o = 0;
    o += (size_t)sprintf(deep + o, "{{ ");
    for (size_t i = 0; i < n; i++) deep[o++] = '(';
    deep[o++] = '1';
    for (size_t i = 0; i < n; i++) deep[o++] = ')';
    o += (size_t)sprintf(deep + o, " }}");
    assert_int_equal(tpl_parse(deep, o, &t, &err), SEM_ELIMIT);
    free(deep);
    char *big = calloc(TPL_MAX_SOURCE_BYTES + 2, 1);
    memset(big, 'a', TPL_MAX_SOURCE_BYTES + 1);
    assert_int_equal(tpl_parse(big, TPL_MAX_SOURCE_BYTES + 1, &t, &err), SEM_ELIMIT);
    free(big);
    /* NUL bytes and invalid UTF-8 in text pass through unchanged */
    const char raw[] = "a\0b\xff{{ 'c' }}";
    char *out;
    size_t len;
    assert_int_equal(tpl_parse(raw, sizeof raw - 1, &t, &err), SEM_OK);
    assert_int_equal(tpl_render(t, NULL, NULL, &out, &len, &err), SEM_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "a\0b\xff" "c", 5);
    free(out);
    tpl_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feature_table),
        cmocka_unit_test(test_reference_agrees),
        cmocka_unit_test(test_malformed_templates),
        cmocka_unit_test(test_render_errors_and_limits),
        cmocka_unit_test(test_parse_once_render_many),
        cmocka_unit_test(test_source_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
