// Drives a running obol gateway with LangChain's ChatAnthropic, unchanged
// but for its base URL. Run by gateway/anthropic_clients_test.go with
// OBOL_BASE_URL, OBOL_KEY_ALL and OBOL_WANT_TEXT set.
import assert from 'node:assert/strict';
import { ChatAnthropic } from '@langchain/anthropic';
import { AIMessage, HumanMessage, SystemMessage, ToolMessage } from '@langchain/core/messages';

const model = new ChatAnthropic({
  model: 'hermes', anthropicApiUrl: process.env.OBOL_BASE_URL, apiKey: process.env.OBOL_KEY_ALL, maxTokens: 50, maxRetries: 0,
});
const want = process.env.OBOL_WANT_TEXT;
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

let invoked;
await check('invoke', async () => {
  const r = await model.invoke([new SystemMessage('Be brief.'), new HumanMessage('Say hello')]);
  assert.equal(r.content, want);
  assert.equal(r.usage_metadata.output_tokens, 8);
  assert.ok(r.usage_metadata.input_tokens > 0);
  assert.equal(r.response_metadata.stop_reason, 'end_turn');
  invoked = r;
});

await check('stream', async () => {
  let text = '';
  let out = 0;
  for await (const chunk of await model.stream([new SystemMessage('Be brief.'), new HumanMessage('Say hello')])) {
    text += typeof chunk.content === 'string' ? chunk.content : chunk.content.map((c) => c.text ?? '').join('');
    out += chunk.usage_metadata?.output_tokens ?? 0;
  }
  assert.equal(text, want);
  assert.equal(out, 8);
});

await check('bindTools: a tool call and its result', async () => {
  const tools = [{
    name: 'get_weather', description: 'The weather in a city',
    input_schema: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
  }];
  const withTools = model.bindTools(tools);
  const call = await withTools.invoke([new HumanMessage('Weather in Paris?')]);
  assert.equal(call.tool_calls.length, 1);
  assert.equal(call.tool_calls[0].name, 'get_weather');
  assert.deepEqual(call.tool_calls[0].args, { location: 'Paris', unit: 'celsius' });
  const answer = await withTools.invoke([new HumanMessage('Weather in Paris?'), call,
    new ToolMessage({ tool_call_id: call.tool_calls[0].id, content: '18 degrees' })]);
  assert.equal(answer.content, want);
  assert.ok(answer instanceof AIMessage);
});

console.log(`langchain anthropic checks: ${failed} failed`);
process.exit(failed ? 1 : 0);
