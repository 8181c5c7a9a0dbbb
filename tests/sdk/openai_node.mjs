// The official OpenAI Node SDK, pointed at orproxy exactly as the README
// says (baseURL http://127.0.0.1:PORT/v1, any api key), against the fake
// upstream: a plain completion, a stream, an embedding, and an error.
// Usage: node openai_node.mjs PORT   (exit 0 = every check held)
import OpenAI from "openai";
import assert from "node:assert/strict";

const port = process.argv[2];
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0 });

const r = await client.chat.completions.create({
  model: "openai/gpt-4o-mini",
  messages: [{ role: "user", content: "Say hi" }],
});
assert.equal(r.choices[0].message.content, "Hello from the fake upstream.");
assert.equal(r.usage.prompt_tokens, 11);

let text = "";
let usage = null;
const stream = await client.chat.completions.create({
  model: "openai/gpt-4o-mini",
  messages: [{ role: "user", content: "Count" }],
  stream: true,
  fake: { events: 3, comments: 1 },
});
for await (const chunk of stream) {
  if (chunk.choices.length) text += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
assert.equal(text, "tok0 tok1 tok2 ");
assert.equal(usage.completion_tokens, 3);

const e = await client.embeddings.create({ model: "e/1", input: "x", encoding_format: "float" });
assert.deepEqual(e.data[0].embedding, [0.1, 0.2, 0.3]);

await assert.rejects(
  client.chat.completions.create({ model: "m", messages: [], fake: { status: 400 } }),
  (err) => err.status === 400,
);
console.log("openai-node: all checks passed");
