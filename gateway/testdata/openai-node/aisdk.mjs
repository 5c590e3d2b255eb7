// Drives a running obol gateway with the Vercel AI SDK's default OpenAI
// provider (@ai-sdk/openai, which speaks the Responses API), unchanged but
// for baseURL. Run by gateway/clients_test.go with OBOL_BASE_URL and
// OBOL_KEY_ALL set.
import assert from 'node:assert/strict';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText, tool, jsonSchema, stepCountIs } from 'ai';

const openai = createOpenAI({ baseURL: process.env.OBOL_BASE_URL, apiKey: process.env.OBOL_KEY_ALL });
let failed = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e?.stack ?? e}`);
  }
}

await check('generateText', async () => {
  const r = await generateText({ model: openai('hermes'), prompt: 'Say hello', maxOutputTokens: 5, maxRetries: 0 });
  assert.equal(r.text, 'Hello from the simulator,');
  assert.equal(r.usage.outputTokens, 5);
  assert.equal(r.finishReason, 'length');
});

await check('streamText with usage', async () => {
  const r = streamText({ model: openai('hermes'), prompt: 'Say hello', maxRetries: 0 });
  let text = '';
  for await (const part of r.textStream) text += part;
  const usage = await r.usage;
  assert.equal(text, 'Hello from the simulator, a stand-in for a model server.');
  assert.equal(usage.outputTokens, 13);
  assert.equal(usage.totalTokens, usage.inputTokens + 13);
  assert.equal(await r.finishReason, 'stop');
});

await check('generateText with a tool, over two steps', async () => {
  const r = await generateText({
    model: openai('hermes'), prompt: 'Weather in Paris?', stopWhen: stepCountIs(3), maxRetries: 0,
    tools: {
      get_weather: tool({
        description: 'The weather in a city',
        inputSchema: jsonSchema({ type: 'object', properties: { location: { type: 'string' } } }),
        execute: async ({ location }) => ({ location, temp: 20 }),
      }),
    },
  });
  assert.equal(r.steps.length, 2);
  assert.deepEqual(r.steps[0].toolCalls[0].input, { location: 'Paris', unit: 'celsius' });
  assert.equal(r.text, 'Hello from the simulator, a stand-in for a model server.');
});

await check('a bad key is an APICallError with the gateway\'s message', async () => {
  const bad = createOpenAI({ baseURL: process.env.OBOL_BASE_URL, apiKey: 'sk-not-a-key' });
  await assert.rejects(generateText({ model: bad('hermes'), prompt: 'x', maxRetries: 0 }), (e) => {
    assert.equal(e.statusCode, 401);
    assert.match(e.message, /invalid API key/);
    return true;
  });
});

console.log(`node ai-sdk checks: ${failed} failed`);
process.exit(failed ? 1 : 0);
