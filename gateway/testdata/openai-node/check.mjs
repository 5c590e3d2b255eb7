// Drives a running obol gateway with the official openai npm client, as
// an existing OpenAI application would, unchanged but for baseURL.
// Run by gateway/clients_test.go with OBOL_BASE_URL, OBOL_KEY_ALL,
// OBOL_KEY_HERMES, OBOL_FAULT_BASE_URL (a gateway whose backend fails
// mid-stream) and OBOL_LIMITED_BASE_URL (where OBOL_KEY_ALL has RPM 2 and
// TPM 1000) set.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const base = process.env.OBOL_BASE_URL;
const client = new OpenAI({ baseURL: base, apiKey: process.env.OBOL_KEY_ALL, maxRetries: 0 });
const msgs = [{ role: 'user', content: 'Say hello' }];
let failed = 0;

// OBOL_CHAT_ONLY: hermes's backend serves chat alone (an Anthropic
// backend): the embeddings and legacy completions checks are skipped.
const chatOnly = process.env.OBOL_CHAT_ONLY === '1';

async function check(name, fn) {
  if (chatOnly && /^(embeddings|completions)\.create/.test(name)) {
    console.log(`skip ${name}`);
    return;
  }
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e?.stack ?? e}`);
  }
}

await check('chat.completions.create', async () => {
  const r = await client.chat.completions.create({ model: 'hermes', messages: msgs, max_tokens: 5 });
  assert.equal(r.model, 'hermes');
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, 'Hello from the simulator,');
  assert.equal(r.usage.completion_tokens, 5);
  assert.match(r.id, /^chat_/);
});

await check('chat.completions.create with stream', async () => {
  const stream = await client.chat.completions.create({ model: 'hermes', messages: msgs, max_tokens: 4, stream: true });
  let text = '';
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.model, 'hermes');
    assert.equal(chunk.usage, undefined, 'usage sent unasked');
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  assert.equal(text, 'Hello from the simulator');
  assert.ok(chunks >= 5);
});

await check('stream with stream_options.include_usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'hermes', messages: msgs, max_tokens: 3, stream: true, stream_options: { include_usage: true },
  });
  let last;
  for await (const chunk of stream) last = chunk;
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, 3);
  assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + 3);
});

await check('stream helper (chat.completions.stream)', async () => {
  const runner = client.chat.completions.stream({ model: 'hermes', messages: msgs, max_tokens: 2 });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, 'Hello from');
});

await check('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    ids.push(m.id);
    assert.ok(m.context_window > 0);
  }
  assert.deepEqual(ids, ['charon', 'hermes']);
});

await check('models.retrieve', async () => {
  const m = await client.models.retrieve('charon');
  assert.equal(m.id, 'charon');
});

await check('401 is AuthenticationError', async () => {
  const bad = new OpenAI({ baseURL: base, apiKey: 'sk-not-a-key', maxRetries: 0 });
  await assert.rejects(bad.chat.completions.create({ model: 'hermes', messages: msgs }), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, e.constructor.name);
    assert.equal(e.status, 401);
    assert.equal(e.code, 'unauthorized');
    assert.equal(e.type, 'authentication_error');
    return true;
  });
});

await check('403 is PermissionDeniedError', async () => {
  const narrow = new OpenAI({ baseURL: base, apiKey: process.env.OBOL_KEY_HERMES, maxRetries: 0 });
  await assert.rejects(narrow.chat.completions.create({ model: 'charon', messages: msgs }), (e) => {
    assert.ok(e instanceof OpenAI.PermissionDeniedError, e.constructor.name);
    assert.equal(e.code, 'forbidden');
    return true;
  });
});

await check('404 is NotFoundError', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'gpt-4o', messages: msgs }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, e.constructor.name);
    assert.equal(e.code, 'not_found');
    assert.equal(e.param, 'model');
    return true;
  });
});

await check('400 is BadRequestError', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'hermes', messages: msgs, temperature: 9 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
    assert.equal(e.code, 'bad_request');
    assert.equal(e.param, 'temperature');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: 'hermes', messages: [] }), OpenAI.BadRequestError);
});

await check('context_length_exceeded is BadRequestError', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'hermes', messages: msgs, max_tokens: 100000 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.code, 'context_length_exceeded');
    return true;
  });
});

await check('an error mid-stream throws APIError', async () => {
  const faulty = new OpenAI({ baseURL: process.env.OBOL_FAULT_BASE_URL, apiKey: process.env.OBOL_KEY_ALL, maxRetries: 0 });
  const stream = await faulty.chat.completions.create({ model: 'hermes', messages: msgs, stream: true });
  let text = '';
  await assert.rejects((async () => {
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  })(), (e) => {
    assert.ok(e instanceof OpenAI.APIError, e.constructor.name);
    assert.match(e.message, /mid-stream/);
    return true;
  });
  assert.equal(text, 'Hello from');
});

// The native stream, read the way the hosted API's documentation shows:
// fetch, split on lines, print chunk.delta until [DONE].
await check('native /v1/chat/stream reader (chunk.delta)', async () => {
  const res = await fetch(`${base}/chat/stream`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${process.env.OBOL_KEY_ALL}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'hermes', messages: msgs, max_tokens: 6 }),
  });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let out = '';
  let done = false;
  let last;
  while (!done) {
    const { value, done: eof } = await reader.read();
    if (eof) break;
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split('\n');
    buffer = lines.pop();
    for (const line of lines) {
      if (!line.startsWith('data: ')) continue;
      const data = line.slice(6);
      if (data === '[DONE]') { done = true; break; }
      const chunk = JSON.parse(data);
      out += chunk.delta;
      last = chunk;
    }
  }
  assert.ok(done, 'no [DONE]');
  assert.equal(out, 'Hello from the simulator, a');
  assert.equal(last.choices[0].finish_reason, 'length');
  assert.equal(last.usage.completion_tokens, 6);
});

await check('a request larger than TPM is RateLimitError, not retried', async () => {
  const limited = new OpenAI({ baseURL: process.env.OBOL_LIMITED_BASE_URL, apiKey: process.env.OBOL_KEY_ALL, maxRetries: 2 });
  await assert.rejects(limited.chat.completions.create({ model: 'hermes', messages: msgs, max_tokens: 2000 }), (e) => {
    assert.ok(e instanceof OpenAI.RateLimitError, e.constructor.name);
    assert.equal(e.headers.get('x-should-retry'), 'false');
    assert.equal(e.headers.get('retry-after'), null);
    assert.match(e.message, /Request too large for hermes on tokens per min \(TPM\): Limit 1000/);
    return true;
  });
});

await check('429 is RateLimitError with retry-after-ms and rate-limit headers', async () => {
  const limited = new OpenAI({ baseURL: process.env.OBOL_LIMITED_BASE_URL, apiKey: process.env.OBOL_KEY_ALL, maxRetries: 0 });
  for (let i = 0; i < 2; i++) {
    const { response } = await limited.chat.completions.create({ model: 'hermes', messages: msgs, max_tokens: 5 }).withResponse();
    assert.equal(response.headers.get('x-ratelimit-limit-requests'), '2');
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), String(1 - i));
    assert.equal(response.headers.get('x-ratelimit-limit-tokens'), '1000');
  }
  await assert.rejects(limited.chat.completions.create({ model: 'hermes', messages: msgs, max_tokens: 5 }), (e) => {
    assert.ok(e instanceof OpenAI.RateLimitError, e.constructor.name);
    assert.equal(e.status, 429);
    assert.equal(e.code, 'rate_limit');
    assert.equal(e.type, 'rate_limit_exceeded');
    assert.match(e.message, /^429 Rate limit reached for hermes on requests per min \(RPM\): Limit 2, Used 2, Requested 1\./);
    const ms = Number(e.headers.get('retry-after-ms'));
    assert.ok(ms > 29000 && ms <= 30000, `retry-after-ms ${ms}`);
    assert.equal(e.headers.get('retry-after'), '30');
    assert.equal(e.headers.get('x-ratelimit-remaining-requests'), '0');
    return true;
  });
});

await check('responses.create', async () => {
  const r = await client.responses.create({ model: 'hermes', input: 'Say hello', instructions: 'Be brief.', max_output_tokens: 4 });
  assert.equal(r.object, 'response');
  assert.equal(r.model, 'hermes');
  assert.match(r.id, /^resp_/);
  assert.equal(r.output_text, 'Hello from the simulator');
  assert.equal(r.status, 'incomplete');
  assert.equal(r.incomplete_details.reason, 'max_output_tokens');
  assert.equal(r.usage.output_tokens, 4);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + 4);
});

await check('responses.create with stream', async () => {
  const stream = await client.responses.create({ model: 'hermes', input: [{ role: 'user', content: 'Say hello' }], max_output_tokens: 3, stream: true });
  const types = [];
  let text = '';
  let final;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.incomplete' || ev.type === 'response.completed') final = ev.response;
  }
  assert.equal(types[0], 'response.created');
  assert.equal(text, 'Hello from the');
  assert.equal(final.output[0].content[0].text, 'Hello from the');
  assert.equal(final.usage.output_tokens, 3);
});

await check('responses with a function tool, and its output sent back', async () => {
  const tools = [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { location: { type: 'string' } } } }];
  const first = await client.responses.create({ model: 'hermes', input: 'Weather in Paris?', tools });
  const call = first.output.find((o) => o.type === 'function_call');
  assert.equal(call.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.arguments), { location: 'Paris', unit: 'celsius' });
  const second = await client.responses.create({
    model: 'hermes', tools, max_output_tokens: 2,
    input: ['Weather in Paris?', call, { type: 'function_call_output', call_id: call.call_id, output: '{"temp":20}' }].map((i) => typeof i === 'string' ? { role: 'user', content: i } : i),
  });
  assert.equal(second.output_text, 'Hello from');
});

await check('responses refuses store and previous_response_id', async () => {
  await assert.rejects(client.responses.create({ model: 'hermes', input: 'x', store: true }), (e) => e instanceof OpenAI.BadRequestError && e.param === 'store');
  await assert.rejects(client.responses.create({ model: 'hermes', input: 'x', previous_response_id: 'resp_1' }), (e) => e instanceof OpenAI.BadRequestError && e.param === 'previous_response_id');
});

await check('embeddings.create', async () => {
  const e = await client.embeddings.create({ model: 'hermes', input: ['one two', 'three'] });
  assert.equal(e.data.length, 2);
  assert.equal(e.data[0].embedding.length, 8);
  assert.equal(e.model, 'hermes');
  assert.equal(e.usage.prompt_tokens, 3);
});

await check('completions.create, streamed and not', async () => {
  const c = await client.completions.create({ model: 'hermes', prompt: 'Say hello', max_tokens: 3 });
  assert.equal(c.object, 'text_completion');
  assert.equal(c.choices[0].text, 'Hello from the');
  assert.equal(c.usage.completion_tokens, 3);
  const stream = await client.completions.create({ model: 'hermes', prompt: 'Say hello', max_tokens: 2, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  assert.equal(text, 'Hello from');
});

await check('admin.organization.usage.completions and costs, grouped (arrays sent as name[])', async () => {
  const admin = new OpenAI({ baseURL: base, apiKey: 'unused', adminAPIKey: process.env.OBOL_ADMIN_TOKEN, maxRetries: 0 });
  const start_time = Math.floor(Date.now() / 1000) - 86400;
  let grouped = [];
  for (let i = 0; i < 50 && grouped.length === 0; i++) { // the last records land a moment after their answers
    const u = await admin.admin.organization.usage.completions({ start_time, group_by: ['model', 'api_key_id'], models: ['hermes'] });
    grouped = u.data.flatMap((b) => b.results);
    if (grouped.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(grouped.length > 0, 'no usage');
  for (const r of grouped) {
    assert.equal(r.model, 'hermes');
    assert.equal(r.api_key_id, 'key_all');
  }
  const c = await admin.admin.organization.usage.costs({ start_time, group_by: ['line_item'] });
  assert.ok(c.data.flatMap((b) => b.results).every((r) => r.line_item === 'hermes'));
  await assert.rejects(admin.admin.organization.usage.completions({ start_time, user_ids: ['u1'] }),
    (e) => e.status === 400 && /user_ids/.test(e.message));
});

console.log(`node openai checks: ${failed} failed`);
process.exit(failed ? 1 : 0);
