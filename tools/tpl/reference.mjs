// reference.mjs - shared helpers for the template tools: the @huggingface/jinja
// reference renderer with a fixed clock, and the chat context that
// transformers.js apply_chat_template builds from a tokenizer_config.json.
//
// The clock: strftime_now() in the reference calls `new Date()`; the tools
// pin it to FIXED_NOW_MS in UTC so that C and node render the same date (the
// C side passes tpl_render_params.now_unix_s = FIXED_NOW_MS / 1000, now_utc).
process.env.TZ = "UTC";

import { Template } from "@huggingface/jinja";
import fs from "node:fs";
import path from "node:path";

export const FIXED_NOW_MS = Date.UTC(2024, 6, 26, 12, 0, 0); // 26 Jul 2024 12:00 UTC

const RealDate = Date;
globalThis.Date = class extends RealDate {
  constructor(...a) {
    if (a.length === 0) super(FIXED_NOW_MS);
    else super(...a);
  }
  static now() {
    return FIXED_NOW_MS;
  }
};

const SPECIAL_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

// transformers.js getToken(): a string, or an AddedToken object's content.
function tokenString(v) {
  if (!v) return null;
  if (typeof v === "object") return v.__type === "AddedToken" || typeof v.content === "string" ? v.content : null;
  return v;
}

export function loadConfig(dir) {
  return JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
}

// HF's template choice: a string is the template; from a list, "tool_use"
// when tools are given and present, else "default".
export function chooseTemplate(config, tools) {
  const t = config.chat_template;
  if (typeof t === "string") return t;
  if (!Array.isArray(t)) throw new Error("no chat_template");
  const byName = Object.fromEntries(t.map((x) => [x.name, x.template]));
  if (tools !== null && tools !== undefined && "tool_use" in byName) return byName.tool_use;
  if ("default" in byName) return byName.default;
  throw new Error("multiple chat templates and no default");
}

export function chatContext(config, { messages, tools = null, add_generation_prompt = false, extra = null }) {
  const special = {};
  for (const k of SPECIAL_KEYS) {
    const s = tokenString(config[k]);
    if (s) special[k] = s;
  }
  return { messages, add_generation_prompt, tools, documents: null, ...special, ...(extra || {}) };
}

const compiled = new Map();
export function render(source, context) {
  let t = compiled.get(source);
  if (!t) {
    t = new Template(source);
    compiled.set(source, t);
  }
  return t.render(context);
}

// Renders and reports {output} or {error}. Lone surrogates become U+FFFD, as
// when node writes the string out as UTF-8 (and as tpl_render returns it).
export function tryRender(source, context) {
  try {
    return { output: render(source, context).toWellFormed() };
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
}
