// render.mjs - render templates with the reference engine (@huggingface/jinja)
// for developers and tests. Reads JSON from stdin: an array of
// {template, context}; writes a JSON array of {output} or {error} in order.
// The clock is fixed (see reference.mjs).
//   echo '[{"template":"{{ 1/3 }}","context":{}}]' | node tools/tpl/render.mjs
import { tryRender } from "./reference.mjs";

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const cases = JSON.parse(input);
  const out = cases.map((c) => {
    try {
      return tryRender(c.template, c.context || {});
    } catch (e) {
      return { error: String(e) };
    }
  });
  process.stdout.write(JSON.stringify(out));
});
