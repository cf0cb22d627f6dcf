// Checks of the committed demo model's tokenizer files with the real
// Hugging Face libraries (node binding of `tokenizers`, @huggingface/jinja).
//
// What it is for: tests/demo/demo_model.test.sh runs it. It checks that
//  - tokenizer.json loads, has 4096 tokens with <unk>/<s>/</s> at 0/1/2 and
//    <0x00>..<0xFF> at 3..258, and is the same file in all three model dirs;
//  - encoding every text of reference.json "tokenizer" gives the stored ids
//    (so reference.json agrees with the tokenizer the engine will load) and
//    decoding them gives the text back;
//  - the chat template renders to the documented transcript and encodes
//    with exactly one <s> at the front.
// Exit status 0 on success; one line per check.
import { createRequire } from 'module';
import fs from 'fs';
import path from 'path';

const src = process.env.SEM_SOURCE_DIR || path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const require = createRequire(path.join(src, 'package.json'));
const tk = require('tokenizers');
const { Template } = await import(path.join(src, 'node_modules', '@huggingface', 'jinja', 'dist', 'index.js'));

const base = process.env.SEM_DEMO_MODEL || path.join(src, 'models', 'semantic-demo-5m');
let fails = 0;
function check(cond, what) {
  console.log((cond ? 'ok   ' : 'FAIL ') + what);
  if (!cond) fails++;
}

const tokFile = path.join(base, 'tokenizer.json');
const tok = tk.Tokenizer.fromFile(tokFile);
check(tok.getVocabSize(true) === 4096, 'vocabulary size 4096');
check(tok.idToToken(0) === '<unk>' && tok.idToToken(1) === '<s>' && tok.idToToken(2) === '</s>',
  'special tokens at 0, 1, 2');
check(tok.idToToken(3) === '<0x00>' && tok.idToToken(258) === '<0xFF>', 'byte tokens at 3..258');
const raw = fs.readFileSync(tokFile);
for (const v of ['-q8', '-q4']) {
  check(Buffer.compare(raw, fs.readFileSync(path.join(base + v, 'tokenizer.json'))) === 0,
    'tokenizer.json identical in ' + path.basename(base + v));
}

const ref = JSON.parse(fs.readFileSync(path.join(base, 'reference.json'), 'utf8'));
for (const c of ref.tokenizer) {
  const e = await tok.encode(c.text, null, { addSpecialTokens: true });
  const ids = e.getIds();
  const same = ids.length === c.ids.length && ids.every((x, i) => x === c.ids[i]);
  const back = await tok.decode(ids, true);
  check(same && back === c.text, 'encode/decode ' + JSON.stringify(c.text.slice(0, 40)));
}
for (const g of ref.greedy.cases.slice(0, 3)) {
  const e = await tok.encode(g.prompt, null, { addSpecialTokens: true });
  check(JSON.stringify(e.getIds()) === JSON.stringify(g.prompt_ids), 'prompt ids ' + JSON.stringify(g.prompt));
}

const cfg = JSON.parse(fs.readFileSync(path.join(base, 'tokenizer_config.json'), 'utf8'));
const tpl = new Template(cfg.chat_template);
const text = tpl.render({
  messages: [
    { role: 'system', content: 'You are a character in a novel.' },
    { role: 'user', content: 'Who are you?' },
    { role: 'assistant', content: 'A humble clergyman.' },
    { role: 'user', content: 'And your parish?' },
  ],
  bos_token: cfg.bos_token,
  eos_token: cfg.eos_token,
  add_generation_prompt: true,
});
const want = '<s>You are a character in a novel.\n\nUser: Who are you?\n\n' +
  'Assistant: A humble clergyman.</s>\n\nUser: And your parish?\n\nAssistant:';
check(text === want, 'chat template renders the User/Assistant transcript');
const enc = await tok.encode(text, null, { addSpecialTokens: false });
const ids = enc.getIds();
check(ids[0] === 1 && ids.filter((x) => x === 1).length === 1 && ids.filter((x) => x === 2).length === 1,
  'rendered chat encodes with one <s> and one </s>');

if (fails) {
  console.log(fails + ' check(s) failed');
  process.exit(1);
}
console.log('all tokenizer checks passed');
