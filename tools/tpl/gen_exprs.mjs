// gen_exprs.mjs - seeded random templates (expressions, filters, tests,
// methods, loops, sets, macros) with their @huggingface/jinja renders, for
// the expression-level parity test in tests/tokenizer/test_template_hf.c.
// Writes one JSON object per line: {"id", "template", "context",
// "expected": string | null, "error": string | null}. Only cases the
// reference renders are binding (the C engine accepts a superset).
//
//   node tools/tpl/gen_exprs.mjs --out /tmp/exprs.jsonl [--seed 3] [--count 3000]
import { tryRender } from "./reference.mjs";
import fs from "node:fs";

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
let rnd = mulberry32(1);
const int = (n) => Math.floor(rnd() * n);
const pick = (xs) => xs[int(xs.length)];
const chance = (p) => rnd() < p;

const CONTEXT = {
  s: "Hello, Wörld 😀 ",
  e: "",
  w: "  two  words \n",
  n: 7,
  m: -3,
  f: 2.5,
  z: 0,
  big: 1e21,
  tiny: 1.5e-7,
  l: [1, 2, 3],
  ls: ["b", "A", "c", "a"],
  mix: [1, "a", null, true, 2.5],
  d: { a: 1, b: [1, 2], c: { x: "y" }, "2": "two" },
  msgs: [
    { role: "system", content: " sys " },
    { role: "user", content: "hi\n" },
    { role: "assistant", content: "yo", tool_calls: [{ function: { name: "f", arguments: { k: "v" } } }] },
  ],
  t: true,
  nn: null,
};

const STRINGS = ["'abc'", "'A b-c d'", "'x,y,,z'", '"q\\"uote"', "'é😀'", "''", "' pad '", "'\\n\\tline\\n'", "'%d %b %Y'", "'10'", "'3.5x'", "'ß'"];
const NUMS = ["0", "1", "2", "-1", "7", "0.5", "2.0", "1.5", "-2.5", "100", "3"];
const VARS = Object.keys(CONTEXT).concat(["undef"]);

function atom() {
  const k = int(8);
  if (k < 2) return pick(NUMS);
  if (k < 4) return pick(STRINGS);
  if (k < 6) return pick(VARS);
  if (k === 6) return pick(["true", "false", "none", "True", "None"]);
  return pick(["[1, 2]", "[]", "['x', 'y']", "{'k': 1}", "{}", "(1, 'a')", "[3, 1, 2]", "(2 ** 10)", "(3 ** -1)", "(n ** 2)"]);
}

// `**` only on small integers: V8's pow is not correctly rounded (2 ** 1.5
// differs from C's pow by one ulp), see docs/CHAT_TEMPLATES.md.
const BIN = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">", "<=", ">=", "and", "or", "in", "not in"];
const FILTERS_PLAIN = ["length", "upper", "lower", "title", "capitalize", "trim", "first", "last", "list", "string",
  "int", "float", "abs", "reverse", "sort", "unique", "join", "tojson", "items", "safe", "indent", "dictsort", "bool"];
const FILTERS_CALL = ["join(', ')", "default('dflt')", "default('x', true)", "tojson(indent=2)", "tojson(ensure_ascii=true)",
  "replace('a', 'X')", "replace('l', '', 1)", "indent(2, true)", "int(9)", "float(1.0)", "sort(reverse=true)",
  "map(attribute='role')", "selectattr('role', 'equalto', 'user')", "rejectattr('role', 'equalto', 'user')",
  "selectattr('tool_calls')", "map(attribute='content') | join('|')", "dictsort(by='value')", "tojson(sort_keys=true)",
  "tojson(separators=(',', ':'))", "sort(attribute='role')"];
const TESTS = ["defined", "undefined", "none", "string", "number", "integer", "mapping", "iterable", "sequence",
  "boolean", "true", "false", "odd", "even", "lower", "upper", "callable"];
const METHODS = ["upper()", "lower()", "strip()", "lstrip()", "rstrip('x')", "title()", "capitalize()", "split()",
  "split(',')", "split(' ', 1)", "startswith('H')", "endswith(('a', ' '))", "replace('o', '0')", "replace('l', 'L', 1)",
  "items()", "keys()", "values()", "get('a')", "get('zz', 5)", "length"];

function expr(depth) {
  if (depth <= 0) return atom();
  const k = int(12);
  const sub = () => expr(depth - 1);
  switch (k) {
    case 0: case 1: return `${sub()} ${pick(BIN)} ${sub()}`;
    case 2: return `(${sub()})`;
    case 3: return `${sub()} | ${chance(0.5) ? pick(FILTERS_PLAIN) : pick(FILTERS_CALL)}`;
    case 4: return `${sub()} is ${chance(0.3) ? "not " : ""}${pick(TESTS)}`;
    case 5: return `(${sub()}).${pick(METHODS)}`;
    case 6: return `${sub()} if ${sub()} else ${sub()}`;
    case 7: return `not ${sub()}`;
    case 8: return `(${sub()})[${pick(["0", "-1", "1", "'a'", "1:", ":-1", "::-1", "::2", "-2:", "5"])}]`;
    case 9: return `-${pick(NUMS.concat(["n", "f", "(1)"]))}`;
    case 10: return `[${sub()}, ${sub()}]`;
    default: return atom();
  }
}

function statement() {
  const k = int(8);
  if (k === 0) return `{% for x in ${pick(["l", "ls", "mix", "msgs", "d", "[]", "range(3)", "d.items()"])} %}{{ x }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{% if loop.index0 == 1 %}{% ${pick(["break", "continue"])} %}{% endif %}{% else %}E{% endfor %}`;
  if (k === 1) return `{% set ns = namespace(v=${expr(1)}) %}{% for x in l %}{% set ns.v = ns.v ~ x %}{% endfor %}{{ ns.v }}`;
  if (k === 2) return `{% macro mm(a, b=${expr(1)}) %}[{{ a }}|{{ b }}]{% endmacro %}{{ mm(${expr(1)}) }}{{ mm(1, b=2) }}`;
  if (k === 3) return `{% set x = ${expr(2)} %}{{ x }}{% if x %}T{% elif x is none %}N{% else %}F{% endif %}`;
  if (k === 4) return `{% for k, v in d.items() if v ${pick(["is number", "is not none", "is string"])} %}{{ k }}={{ v | tojson }};{% endfor %}`;
  if (k === 5) return `  {%- if ${expr(1)} -%}\n  a {{ ${expr(1)} }}\n  {% endif %}\n b`;
  return `{{ ${expr(2 + int(2))} }}`;
}

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const out = arg("--out", null);
const seed = Number(arg("--seed", "3"));
const count = Number(arg("--count", "3000"));
if (!out) {
  console.error("usage: gen_exprs.mjs --out FILE [--seed N] [--count N]");
  process.exit(2);
}
rnd = mulberry32(seed);
const lines = [];
let ok = 0;
for (let i = 0; i < count; i++) {
  const template = statement() + (chance(0.3) ? statement() : "");
  const r = tryRender(template, CONTEXT);
  if (r.output !== undefined) ok++;
  lines.push(JSON.stringify({ id: `expr-${i}`, template, context: CONTEXT, expected: r.output ?? null, error: r.error ?? null }));
}
fs.writeFileSync(out, lines.join("\n") + "\n");
console.error(`gen_exprs: ${count} templates (${ok} rendered by the reference) -> ${out}`);
