// The official, unmodified OpenAI Node SDK (npm `openai`, pinned in package.json) against a
// real `deliberate serve --demo` on ephemeral loopback ports: the Responses API plain and
// streamed, a function-calling round trip, `model: "auto"` routing, and chat completions.
//
// Run by scripts/test.sh (`node --test`); the binary comes from DELIBERATE_BIN.

import { spawn } from "node:child_process";
import { once } from "node:events";
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import OpenAI from "openai";

const DEMO_KEY = "deliberate-demo";
const GREETING = "hi there!";
const PROOF = "Prove that there are infinitely many prime numbers.";
const STARTUP_TIMEOUT_MS = 20_000;

let gateway;
let client;

/** Starts the gateway; resolves with its API address, read back from its log. */
function startGateway() {
  const bin = process.env.DELIBERATE_BIN;
  assert.ok(bin, "DELIBERATE_BIN must name the gateway binary");
  const child = spawn(
    bin,
    ["serve", "--demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, NO_COLOR: "1" } },
  );
  let log = "";
  const address = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`gateway did not start in time; log:\n${log}`)),
      STARTUP_TIMEOUT_MS,
    );
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const match = log.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "").match(/api listening on http:\/\/([^\s"]+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`gateway exited (${code}); log:\n${log}`)));
  });
  return { child, address };
}

before(async () => {
  gateway = startGateway();
  const api = await gateway.address;
  client = new OpenAI({
    baseURL: `http://${api}/v1`,
    apiKey: DEMO_KEY,
    maxRetries: 0,
    timeout: 20_000,
  });
});

after(async () => {
  if (gateway && gateway.child.exitCode === null) {
    gateway.child.kill("SIGTERM");
    await once(gateway.child, "exit");
  }
});

test("responses.create routes a greeting to fast", async () => {
  const { data, response } = await client.responses
    .create({ model: "auto", input: GREETING, instructions: "Be brief." })
    .withResponse();
  assert.equal(response.headers.get("x-deliberate-tier"), "fast");
  assert.equal(response.headers.get("x-deliberate-model"), "sim-fast");
  assert.equal(data.object, "response");
  assert.equal(data.status, "completed");
  assert.match(data.output_text, /^\[simulated\]/);
  assert.equal(data.usage.total_tokens, data.usage.input_tokens + data.usage.output_tokens);
});

test("responses.create routes a proof to reasoning", async () => {
  const { data, response } = await client.responses
    .create({ model: "auto", input: PROOF })
    .withResponse();
  assert.equal(response.headers.get("x-deliberate-tier"), "reasoning");
  assert.ok(data.usage.output_tokens_details.reasoning_tokens > 0);
});

test("responses.create with stream: true yields typed events", async () => {
  const stream = await client.responses.create({ model: "fast", input: GREETING, stream: true });
  const types = [];
  let text = "";
  let final;
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.completed") final = event.response;
  }
  assert.deepEqual(types.slice(0, 2), ["response.created", "response.in_progress"]);
  assert.equal(types.at(-1), "response.completed");
  assert.equal(text, final.output_text ?? final.output[0].content[0].text);
  assert.match(text, /^\[simulated\]/);
});

test("a function call round trip", async () => {
  const tools = [
    {
      type: "function",
      name: "get_weather",
      parameters: {
        type: "object",
        properties: { city: { type: "string" } },
        required: ["city"],
        additionalProperties: false,
      },
      strict: true,
    },
  ];
  const input = [{ role: "user", content: "What is the weather in Paris?" }];
  const first = await client.responses.create({ model: "fast", input, tools });
  const call = first.output.find((item) => item.type === "function_call");
  assert.ok(call, JSON.stringify(first.output));
  assert.equal(call.name, "get_weather");
  JSON.parse(call.arguments);
  const second = await client.responses.create({
    model: "fast",
    tools,
    input: [...input, ...first.output, { type: "function_call_output", call_id: call.call_id, output: "18C" }],
  });
  assert.equal(second.status, "completed");
  assert.ok(second.output_text.length > 0);
});

test("chat.completions still works beside it", async () => {
  const completion = await client.chat.completions.create({
    model: "fast",
    messages: [{ role: "user", content: GREETING }],
  });
  assert.match(completion.choices[0].message.content, /^\[simulated\]/);
});

test("previous_response_id is a BadRequestError", async () => {
  await assert.rejects(
    client.responses.create({ model: "auto", input: "hi", previous_response_id: "resp_1" }),
    (error) => error instanceof OpenAI.BadRequestError && /not supported/.test(error.message),
  );
});
