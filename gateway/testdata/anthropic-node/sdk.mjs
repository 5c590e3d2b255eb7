// Drives a running obol gateway with the official @anthropic-ai/sdk, as an
// Anthropic application would, unchanged but for baseURL. Run by
// gateway/anthropic_clients_test.go with OBOL_BASE_URL (the gateway's
// root), OBOL_KEY_ALL, OBOL_KEY_HERMES, OBOL_WANT_TEXT (the simulator's
// reply of 8 tokens), OBOL_FAULT_BASE_URL (a backend failing mid-stream),
// OBOL_LIMITED_BASE_URL (OBOL_KEY_ALL has RPM 2) and OBOL_RETRY_BASE_URL
// (the backend asks the first request to wait a second) set.
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';

const base = process.env.OBOL_BASE_URL;
const key = process.env.OBOL_KEY_ALL;
const want = process.env.OBOL_WANT_TEXT;
const client = new Anthropic({ baseURL: base, apiKey: key, maxRetries: 0 });
const msgs = [{ role: 'user', content: 'Say hello' }];
const weather = {
  name: 'get_weather', description: 'The weather in a city',
  input_schema: { type: 'object', properties: { location: { type: 'string' }, unit: { type: 'string' } }, required: ['location'] },
};
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

let created;
await check('messages.create: the answer, its usage and headers', async () => {
  const { data: m, response } = await client.messages.create({ model: 'hermes', max_tokens: 50, messages: msgs }).withResponse();
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.equal(m.model, 'hermes');
  assert.match(m.id, /^msg_/);
  assert.equal(m.content.length, 1);
  assert.equal(m.content[0].type, 'text');
  assert.equal(m.content[0].text, want);
  assert.equal(m.stop_reason, 'end_turn');
  assert.equal(m.stop_sequence, null);
  assert.equal(m.usage.output_tokens, 8);
  assert.ok(m.usage.input_tokens > 0);
  assert.equal(m.usage.cache_read_input_tokens, 0);
  assert.equal(m.usage.cache_creation_input_tokens, 0);
  assert.equal(response.headers.get('request-id'), m.id);
  assert.match(response.headers.get('x-obol-cost'), /^\d+\.\d+$/);
  created = m;
});

await check('messages.create with max_tokens short of the reply: max_tokens', async () => {
  const m = await client.messages.create({ model: 'hermes', max_tokens: 3, system: 'Be brief', messages: msgs });
  assert.equal(m.stop_reason, 'max_tokens');
  assert.equal(m.usage.output_tokens, 3);
});

await check('messages.stream and finalMessage: the same answer and usage', async () => {
  const stream = client.messages.stream({ model: 'hermes', max_tokens: 50, messages: msgs });
  let text = '';
  const types = new Set();
  stream.on('text', (t) => { text += t; });
  stream.on('streamEvent', (e) => types.add(e.type));
  const m = await stream.finalMessage();
  assert.equal(text, want);
  assert.equal(m.content[0].text, want);
  assert.equal(m.stop_reason, 'end_turn');
  assert.deepEqual(m.usage.output_tokens, 8);
  assert.equal(m.usage.input_tokens, created.usage.input_tokens, 'message_delta carries the backend\'s prompt count');
  for (const t of ['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']) {
    assert.ok(types.has(t), t);
  }
});

await check('a tool round trip, not streamed', async () => {
  const first = await client.messages.create({ model: 'hermes', max_tokens: 100, messages: msgs, tools: [weather] });
  assert.equal(first.stop_reason, 'tool_use');
  const use = first.content.find((b) => b.type === 'tool_use');
  assert.equal(use.name, 'get_weather');
  assert.deepEqual(use.input, { location: 'Paris', unit: 'celsius' });
  const second = await client.messages.create({
    model: 'hermes', max_tokens: 50, tools: [weather],
    messages: [...msgs, { role: 'assistant', content: first.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '18 degrees' }] }],
  });
  assert.equal(second.stop_reason, 'end_turn');
  assert.equal(second.content[0].text, want);
});

await check('a tool round trip, streamed: input_json_delta builds the input', async () => {
  const m = await client.messages.stream({ model: 'hermes', max_tokens: 100, messages: msgs, tools: [weather], tool_choice: { type: 'any' } }).finalMessage();
  assert.equal(m.stop_reason, 'tool_use');
  const use = m.content.find((b) => b.type === 'tool_use');
  assert.deepEqual(use.input, { location: 'Paris', unit: 'celsius' });
  const after = await client.messages.stream({
    model: 'hermes', max_tokens: 50, tools: [weather],
    messages: [...msgs, { role: 'assistant', content: m.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: [{ type: 'text', text: 'rain' }], is_error: true }] }],
  }).finalMessage();
  assert.equal(after.content[0].text, want);
});

await check('messages.countTokens', async () => {
  const r = await client.messages.countTokens({ model: 'hermes', messages: msgs, system: 'You are terse.' });
  assert.equal(typeof r.input_tokens, 'number');
  assert.ok(r.input_tokens > 0);
});

await check('models.list and models.retrieve in Anthropic\'s shape', async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    assert.equal(m.type, 'model');
    assert.ok(!Number.isNaN(Date.parse(m.created_at)));
    ids.push(m.id);
  }
  assert.deepEqual(ids, ['charon', 'hermes']);
  const m = await client.models.retrieve('hermes');
  assert.equal(m.id, 'hermes');
  assert.equal(m.display_name, 'hermes');
});

await check('the /anthropic prefix', async () => {
  const c = new Anthropic({ baseURL: base + '/anthropic', apiKey: key, maxRetries: 0 });
  const m = await c.messages.create({ model: 'hermes', max_tokens: 50, messages: msgs });
  assert.equal(m.content[0].text, want);
});

await check('an image to a vision model, and to one without vision', async () => {
  const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
  const content = [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } }, { type: 'text', text: 'What is it?' }];
  const m = await client.messages.create({ model: 'charon', max_tokens: 50, messages: [{ role: 'user', content }] });
  assert.equal(m.content[0].text, want);
  await assert.rejects(client.messages.create({ model: 'hermes', max_tokens: 50, messages: [{ role: 'user', content }] }), (e) => {
    assert.ok(e instanceof Anthropic.BadRequestError, e.constructor.name);
    assert.match(e.message, /image/);
    return true;
  });
});

await check('errors are the SDK\'s classes, in Anthropic\'s shape', async () => {
  const bad = new Anthropic({ baseURL: base, apiKey: 'sk-not-a-key', maxRetries: 0 });
  await assert.rejects(bad.messages.create({ model: 'hermes', max_tokens: 5, messages: msgs }), (e) => {
    assert.ok(e instanceof Anthropic.AuthenticationError, e.constructor.name);
    assert.equal(e.error.type, 'error');
    assert.equal(e.error.error.type, 'authentication_error');
    assert.match(e.requestID, /^msg_/);
    return true;
  });
  await assert.rejects(client.messages.create({ model: 'nope', max_tokens: 5, messages: msgs }), (e) => {
    assert.ok(e instanceof Anthropic.NotFoundError, e.constructor.name);
    assert.equal(e.error.error.type, 'not_found_error');
    return true;
  });
  const hermesOnly = new Anthropic({ baseURL: base, apiKey: process.env.OBOL_KEY_HERMES, maxRetries: 0 });
  await assert.rejects(hermesOnly.messages.create({ model: 'charon', max_tokens: 5, messages: msgs }), (e) => {
    assert.ok(e instanceof Anthropic.PermissionDeniedError, e.constructor.name);
    assert.equal(e.error.error.type, 'permission_error');
    return true;
  });
  await assert.rejects(client.messages.create({ model: 'hermes', messages: msgs }), (e) => {
    assert.ok(e instanceof Anthropic.BadRequestError, e.constructor.name);
    assert.equal(e.error.error.type, 'invalid_request_error');
    assert.match(e.message, /max_tokens/);
    return true;
  });
  await assert.rejects(client.messages.create({ model: 'hermes', max_tokens: 5, messages: msgs, tools: [{ type: 'web_search_20250305', name: 'web_search' }] }), (e) => {
    assert.ok(e instanceof Anthropic.BadRequestError, e.constructor.name);
    assert.match(e.message, /web_search_20250305/);
    return true;
  });
});

await check('an error after the stream began is an error event the SDK throws', async () => {
  const c = new Anthropic({ baseURL: process.env.OBOL_FAULT_BASE_URL, apiKey: key, maxRetries: 0 });
  const stream = c.messages.stream({ model: 'hermes', max_tokens: 50, messages: msgs });
  await assert.rejects(stream.finalMessage(), (e) => {
    assert.ok(e instanceof Anthropic.APIError, e.constructor.name);
    assert.equal(e.error?.error?.type, 'api_error');
    return true;
  });
});

await check('429 is RateLimitError with retry-after and Anthropic\'s rate-limit headers', async () => {
  const limited = new Anthropic({ baseURL: process.env.OBOL_LIMITED_BASE_URL, apiKey: key, maxRetries: 0 });
  for (let i = 0; i < 2; i++) {
    const { response } = await limited.messages.create({ model: 'hermes', max_tokens: 5, messages: msgs }).withResponse();
    assert.equal(response.headers.get('anthropic-ratelimit-requests-limit'), '2');
    assert.equal(response.headers.get('anthropic-ratelimit-requests-remaining'), String(1 - i));
    assert.ok(!Number.isNaN(Date.parse(response.headers.get('anthropic-ratelimit-requests-reset'))));
  }
  await assert.rejects(limited.messages.create({ model: 'hermes', max_tokens: 5, messages: msgs }), (e) => {
    assert.ok(e instanceof Anthropic.RateLimitError, e.constructor.name);
    assert.equal(e.status, 429);
    assert.equal(e.error.error.type, 'rate_limit_error');
    assert.ok(Number(e.headers.get('retry-after')) >= 1);
    assert.equal(e.headers.get('anthropic-ratelimit-requests-remaining'), '0');
    return true;
  });
});

await check('the SDK retries a 529 after its retry-after, and gets the answer', async () => {
  const statuses = [];
  const c = new Anthropic({
    baseURL: process.env.OBOL_RETRY_BASE_URL, apiKey: key, maxRetries: 2,
    fetch: async (url, init) => { const r = await fetch(url, init); statuses.push(r.status); return r; },
  });
  const m = await c.messages.create({ model: 'hermes', max_tokens: 50, messages: msgs });
  assert.equal(m.content[0].text, want);
  assert.deepEqual(statuses, [529, 200]);
});

console.log(`anthropic sdk checks: ${failed} failed`);
process.exit(failed ? 1 : 0);
