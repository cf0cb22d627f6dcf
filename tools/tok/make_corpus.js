#!/usr/bin/env node
// make_corpus.js - writes a reproducible tokenizer test corpus: one JSON
// string per line. Seeded (mulberry32), so the same --seed and --n give the
// same file on every machine. Categories: English prose, code with tabs and
// deep indentation, CJK, emoji with ZWJ sequences, combining marks, unusual
// whitespace (NBSP, U+3000, U+0085, U+2028, U+180E, CRLF), long digit runs,
// very long words, special-token strings inside text, leading/trailing
// spaces, random Unicode from established blocks, and random mixes of all.
// Only valid UTF-8 is produced (no lone surrogates).
//
// usage: node tools/tok/make_corpus.js [--seed 1] [--n 2400] [--only prose,code]
//          [--text] --out FILE
//   --only  restricts the generators (names as below); --text writes the
//           strings joined by newlines instead of JSON lines (bench input).
'use strict';
const fs = require('fs');

function args() {
  const a = { seed: 1, n: 2400, out: null, only: null, text: false };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i++) {
    if (v[i] === '--seed') a.seed = Number(v[++i]);
    else if (v[i] === '--n') a.n = Number(v[++i]);
    else if (v[i] === '--out') a.out = v[++i];
    else if (v[i] === '--only') a.only = v[++i].split(',');
    else if (v[i] === '--text') a.text = true;
    else throw new Error('unknown argument ' + v[i]);
  }
  if (!a.out) throw new Error('--out FILE is required');
  return a;
}

function mulberry32(seed) {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

const A = args();
const rnd = mulberry32(A.seed);
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1)); // inclusive
const pick = (arr) => arr[Math.floor(rnd() * arr.length)];
const rep = (n, f) => Array.from({ length: n }, f).join('');
const cp = (c) => String.fromCodePoint(c);

const WORDS = ('the of and to in is was that for it with as his on be at by had are but from or ' +
  'have an they which one you were all we her she there would their will when who him been has ' +
  'more if no out do so can what up said about other into than its time only could new them man ' +
  'some these then two first may any like now my such make over our even most me state after also ' +
  'made many did must before back see through way where get much go well your know should down ' +
  'work year because come people just say each those take day good how long Mr own too little use ' +
  'US very great still men here life both between old under last never place same another think ' +
  'house while high right might came off find states since used give against three himself look ' +
  'tokenizer inference server cache latency throughput gradient transformer embedding attention ' +
  'Hello World JavaScript Python naïve café résumé coöperate façade jalapeño Zürich Ångström').split(' ');
const CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "n't", "’s"];
const PUNCT = ['.', ',', ';', ':', '!', '?', '...', ' -', ' —', '–', '"', "'", '(', ')', '[', ']', '«', '»', '“', '”', '¿', '¡'];

function prose() {
  let s = '';
  const n = int(3, 60);
  for (let i = 0; i < n; i++) {
    let w = pick(WORDS);
    if (rnd() < 0.1) w = w[0].toUpperCase() + w.slice(1);
    if (rnd() < 0.05) w = w.toUpperCase();
    if (rnd() < 0.08) w += pick(CONTRACTIONS);
    s += (i ? ' ' : '') + w;
    if (rnd() < 0.12) s += pick(PUNCT);
  }
  return s + pick(['.', '!', '?', '', '\n']);
}

const CODE_LINES = [
  'def f(x, y=3):', 'return {"a": [1, 2, 3], \'b\': None}', 'for (int i = 0; i < n; i++) {',
  'if (a && b || !c) { x += y << 2; }', 'const re = /[a-z]+\\d*/g;', '#include <stdio.h>',
  'printf("%d\\n", x);', '} else {', '// TODO: fix this', '/* block comment */', 'x = y->z[i]->w;',
  'SELECT * FROM users WHERE id = 42;', '<div class="x">&amp;&lt;</div>', 'fn main() -> Result<(), E> {',
  'let v: Vec<u8> = vec![0xFF; 16];', 'import numpy as np', 'np.zeros((3, 4), dtype=np.float32)',
  '$ ls -la | grep "^d" > out.txt 2>&1', 'echo $HOME && cd ~', '@decorator(arg=1)', 'a=b==c!=d<=e>=f',
  'lambda x: x**2 % 7 // 3', 'try:', 'except Exception as e:', 'pass', '"""docstring"""',
];
function code() {
  const n = int(1, 25);
  const eol = rnd() < 0.3 ? '\r\n' : '\n';
  let s = '';
  for (let i = 0; i < n; i++) {
    const depth = int(0, 12);
    const indent = rnd() < 0.4 ? '\t'.repeat(depth) : ' '.repeat(depth * pick([1, 2, 4]));
    s += indent + pick(CODE_LINES) + (rnd() < 0.1 ? '   ' : '') + eol;
    if (rnd() < 0.1) s += eol;
  }
  return s;
}

function range(lo, hi) { return () => cp(int(lo, hi)); }
const CJK = [range(0x4e00, 0x9fa5), range(0x3041, 0x3096), range(0x30a1, 0x30fa), range(0xac00, 0xd7a3),
  () => pick(['。', '、', '！', '？', '「', '」', '（', '）', '：', '；', '　', '・', 'ー', '〜'])];
function cjk() {
  let s = '';
  const n = int(1, 80);
  for (let i = 0; i < n; i++) s += rnd() < 0.05 ? pick([' ', 'AI', '2024年', 'GPU', '\n']) : pick(CJK)();
  return s;
}

const EMOJI = ['😀', '😂', '🥲', '❤️', '👍', '👍🏽', '👨‍👩‍👧‍👦', '👩‍💻', '🏳️‍🌈', '🏴‍☠️', '🇺🇸', '🇯🇵', '1️⃣', '#️⃣',
  '🧑🏿‍🚀', '👁️‍🗨️', '❤️‍🔥', '🫠', '🦀', '✨', '☕', '⚡', '©️', '™', '🔥🔥🔥', '😀\u200d😀', '\u200d'];
function emoji() {
  let s = '';
  const n = int(1, 30);
  for (let i = 0; i < n; i++) s += pick(EMOJI) + (rnd() < 0.3 ? ' ' : '') + (rnd() < 0.2 ? pick(WORDS) : '');
  return s;
}

const COMBINING = [0x300, 0x301, 0x302, 0x303, 0x308, 0x30a, 0x327, 0x328, 0x331, 0x35c, 0x361, 0x1dc0, 0x20d0, 0x302a];
function combining() {
  let s = '';
  const n = int(1, 40);
  for (let i = 0; i < n; i++) {
    const base = pick(['a', 'e', 'o', 'u', 'A', 'n', 'c', 'i', 'Z', ' ', '1', 'ก', 'ᄀ', 'α', 'и', '◌']);
    s += base;
    const k = rnd() < 0.1 ? int(5, 20) : int(0, 3);
    for (let j = 0; j < k; j++) s += cp(pick(COMBINING));
    if (rnd() < 0.1) s += 'e\u0301' + 'A\u030a' + '\u1100\u1161\u11a8'; // decomposed forms
    if (rnd() < 0.1) s += ' ';
  }
  return s;
}

const SPACES = [' ', '  ', '   ', '\t', '\n', '\r\n', '\r', '\u00a0', '\u3000', '\u0085', '\u2028', '\u2029',
  '\u180e', '\u200b', '\ufeff', '\u2009', '\u202f', '\u205f', '\u000b', '\u000c', '\n\n\n', ' \n ', '\u1680', '\u2000'];
function spaces() {
  let s = '';
  const n = int(1, 30);
  for (let i = 0; i < n; i++) s += pick(SPACES) + (rnd() < 0.6 ? pick(WORDS) : '');
  return s;
}

function digits() {
  const f = pick([
    () => rep(int(1, 300), () => String(int(0, 9))),
    () => String(int(0, 1e9)) + '.' + String(int(0, 99999)),
    () => int(1, 999) + ',' + String(int(100, 999)) + ',' + String(int(100, 999)),
    () => rep(int(1, 20), () => cp(0x660 + int(0, 9))), // Arabic-Indic
    () => rep(int(1, 20), () => cp(0xff10 + int(0, 9))), // fullwidth
    () => '²³¹ ½ ¾ Ⅻ ⅷ ① ⑳ 𝟘𝟙𝟚',
    () => 'v' + int(0, 9) + '.' + int(0, 99) + '.' + int(0, 999) + '-rc' + int(1, 9),
    () => '0x' + rep(int(1, 16), () => pick('0123456789abcdefABCDEF'.split(''))),
    () => '3.14159265358979323846264338327950288419716939937510',
  ]);
  let s = '';
  const n = int(1, 8);
  for (let i = 0; i < n; i++) s += f() + pick([' ', '', '\n', ', ', 'abc']);
  return s;
}

function longword() {
  return pick([
    () => 'a'.repeat(int(50, 3000)),
    () => rep(int(100, 2000), () => pick('abcdefghijklmnopqrstuvwxyz'.split(''))),
    () => 'supercalifragilisticexpialidocious'.repeat(int(2, 40)),
    () => 'https://example.com/' + rep(int(10, 400), () => pick('abc/._-?=&%0123456789XYZ'.split(''))),
    () => rep(int(100, 3000), () => pick('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.split(''))) + '==',
    () => '!'.repeat(int(10, 500)),
    () => ' '.repeat(int(10, 2000)) + 'x',
    () => '\n'.repeat(int(5, 300)),
    () => '\t'.repeat(int(5, 300)) + 'end',
    () => '语'.repeat(int(10, 1000)),
    () => '▁'.repeat(int(1, 50)) + 'x' + '▁▁',
    () => 'ĠĊĉ'.repeat(int(1, 30)),
  ])();
}

const SPECIALS = ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<|begin_of_text|>', '<|end_of_text|>',
  '<|eot_id|>', '<|start_header_id|>', '<|end_header_id|>', '<s>', '</s>', '<unk>', '<bos>', '<eos>', '<pad>',
  '<start_of_turn>', '<end_of_turn>', '<start_of_image>', '<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>',
  '<｜User｜>', '<｜Assistant｜>', '<｜fim▁hole｜>', '<tool_call>', '</tool_call>', '<think>', '</think>',
  '<|fim_prefix|>', '<|fim_middle|>', '<|reserved_special_token_5|>', '[INST]', '[/INST]', '<mask>', '[multimodal]',
  '<|im_sta', '<s', '</', '<|', '|>', '<<s>>', '<s><s>', '<|im_start|><|im_end|>', '\n\n', '\t\t', '<unused0>',
  '<|python_tag|>', '<｜tool▁calls▁begin｜>', 'hello', 'world'];
function specials() {
  let s = rnd() < 0.3 ? pick(SPECIALS) : '';
  const n = int(1, 12);
  for (let i = 0; i < n; i++) {
    s += pick(['', ' ', '\n', pick(WORDS), ' ' + pick(WORDS) + ' ', pick(CONTRACTIONS)]);
    s += pick(SPECIALS);
  }
  return s + (rnd() < 0.5 ? pick(WORDS) : '');
}

function padded() {
  const sp = () => pick(['', ' ', '  ', '   ', '\t', '\n', ' \n', '\u00a0', '\u3000']);
  return sp() + pick([prose, code, cjk, emoji, digits])() + sp() + sp();
}

const BLOCKS = [[0x20, 0x7e], [0xa0, 0x17f], [0x180, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x5ff],
  [0x600, 0x6ff], [0x900, 0x97f], [0xe00, 0xe5b], [0x10a0, 0x10ff], [0x1e00, 0x1eff], [0x2000, 0x206f],
  [0x20a0, 0x20bf], [0x2100, 0x214f], [0x2190, 0x21ff], [0x2200, 0x22ff], [0x2500, 0x257f], [0x2600, 0x26ff],
  [0x3000, 0x303f], [0xe000, 0xe0ff], [0xff00, 0xffef], [0x1d400, 0x1d4ff], [0x1f300, 0x1f5ff], [0x20000, 0x2a6d6],
  [0x0, 0x1f]];
function randomUnicode() {
  let s = '';
  const n = int(1, 60);
  for (let i = 0; i < n; i++) {
    const [lo, hi] = pick(BLOCKS);
    s += cp(int(lo, hi));
  }
  return s;
}

const GENERATORS = [prose, prose, code, cjk, emoji, combining, spaces, digits, longword, specials, padded, randomUnicode];
function mix() {
  let s = '';
  const n = int(2, 8);
  for (let i = 0; i < n; i++) s += pick(GENERATORS)() + pick(['', ' ', '\n', '\r\n']);
  return s;
}

const FIXED = ['', ' ', '  ', '\n', '\r\n', 'a', 'Hello world', ' Hello', 'Hello ', "I'm can't you'll WE'RE",
  '\u00a0', '\u3000', '\u0085', '<s>', '</s>', '<|im_start|>user\nhi<|im_end|>', '▁', '▁▁Hello', 'Ġ', '\u0000',
  'x\u0000y', '12345678901234567890', 'e\u0301', 'é', 'ﬁ ① ™ Ⅻ', 'İstanbul ΣΑΣ ß', '\t\t\tx', '    x'];

const out = [];
let gens = GENERATORS.concat([mix, mix, mix]);
if (A.only) gens = gens.filter((g) => A.only.includes(g.name));
else for (const f of FIXED) out.push(f);
if (!gens.length) throw new Error('--only matched no generator');
while (out.length < A.n) out.push(pick(gens)());
if (A.text) fs.writeFileSync(A.out, out.join('\n') + '\n');
else fs.writeFileSync(A.out, out.map((s) => JSON.stringify(s)).join('\n') + '\n');
