// openai_client.test.mjs - `spex serve` driven by the official openai npm client (pinned in
// package.json): every request field of issue 17 item 1 either works as OpenAI documents it or is
// refused with a 400 naming it (the SDK raises BadRequestError with .param), none silently ignored.
// Usage: node openai_client.test.mjs BASE_URL MODEL   (tests/cli/test_serve_openai_sdk.sh starts the server)
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
let failures = 0, passed = 0;

async function test(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

// The call must fail with a 400 whose param names the field.
async function refused(param, call) {
  await assert.rejects(call, (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, `expected BadRequestError, got ${e && e.constructor.name}: ${e}`);
    assert.equal(e.status, 400);
    assert.equal(e.param, param, `param of: ${e.message}`);
    return true;
  });
}

const cmpl = (body) => client.completions.create({ model, max_tokens: 6, ...body });
const chat = (body) => client.chat.completions.create({
  model, max_tokens: 6, messages: [{ role: 'user', content: 'Once upon a time' }], ...body });
const greedy = { temperature: 0 };
async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

// ------------------------------------------------------------------ completions

await test('completions: plain prompt, usage', async () => {
  const r = await cmpl({ prompt: 'It is a truth', ...greedy });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.usage.completion_tokens, 6);
  assert.equal(r.choices[0].logprobs, null, 'no logprobs unless asked');
});

await test('completions: logprobs (tokens, token_logprobs, top_logprobs, text_offset)', async () => {
  const r = await cmpl({ prompt: 'It is a truth', logprobs: 3, ...greedy });
  const lp = r.choices[0].logprobs;
  const n = r.usage.completion_tokens;
  assert.equal(lp.tokens.length, n);
  assert.equal(lp.token_logprobs.length, n);
  assert.equal(lp.top_logprobs.length, n);
  assert.equal(lp.text_offset.length, n);
  assert.equal(lp.text_offset[0], 0);
  for (let i = 0; i < n; i++) {
    assert.ok(lp.token_logprobs[i] <= 0, `logprob ${lp.token_logprobs[i]}`);
    const alts = Object.values(lp.top_logprobs[i]);
    assert.ok(alts.length >= 1 && alts.length <= 3);
    // greedy: the chosen token is the most likely one, and the first alternative
    assert.ok(Math.max(...alts) <= lp.token_logprobs[i] + 1e-6, `token ${i} is not the argmax`);
    assert.equal(lp.top_logprobs[i][lp.tokens[i]], lp.token_logprobs[i]);
    if (i) assert.ok(lp.text_offset[i] >= lp.text_offset[i - 1]);
  }
});

await test('completions: logprobs out of range -> 400', () => refused('logprobs', () => cmpl({ prompt: 'x', logprobs: 6 })));

await test('completions: streamed logprobs cover every token', async () => {
  const chunks = await collect(await cmpl({ prompt: 'It is a truth', logprobs: 1, stream: true,
    stream_options: { include_usage: true } }));
  const usage = chunks.at(-1).usage;
  let tokens = 0;
  for (const c of chunks) for (const ch of c.choices) if (ch.logprobs) tokens += ch.logprobs.tokens.length;
  assert.equal(tokens, usage.completion_tokens);
});

await test('completions: echo prepends the prompt', async () => {
  const plain = await cmpl({ prompt: 'It is a truth', ...greedy });
  const r = await cmpl({ prompt: 'It is a truth', echo: true, ...greedy });
  assert.equal(r.choices[0].text, 'It is a truth' + plain.choices[0].text);
});

await test('completions: echo with logprobs: the prompt tokens first, the first null', async () => {
  const r = await cmpl({ prompt: [5, 17, 42], echo: true, logprobs: 2, max_tokens: 3, ...greedy, return_tokens: true });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, 3 + 3);
  assert.equal(lp.token_logprobs[0], null);
  assert.equal(lp.top_logprobs[0], null);
  for (let i = 1; i < 6; i++) assert.ok(lp.token_logprobs[i] <= 0, `logprob ${i}: ${lp.token_logprobs[i]}`);
  assert.equal(lp.text_offset[0], 0);
  for (let i = 1; i < 6; i++) assert.ok(lp.text_offset[i] >= lp.text_offset[i - 1]);
  // a prompt token's logprob is the one that token gets when generated after the same tokens
  const first = r.choices[0].tokens[0];
  const again = await cmpl({ prompt: [5, 17, 42, first], echo: true, logprobs: 0, max_tokens: 1, ...greedy });
  assert.equal(again.choices[0].logprobs.token_logprobs[3], lp.token_logprobs[3]);
  // and position t's alternatives are those of a token generated after the first t tokens
  for (const t of [1, 2]) {
    const gen = await cmpl({ prompt: [5, 17, 42].slice(0, t), logprobs: 2, max_tokens: 1, ...greedy });
    assert.deepEqual(lp.top_logprobs[t], gen.choices[0].logprobs.top_logprobs[0], `position ${t}`);
  }
});

await test('completions: streamed echo with logprobs: the first chunk has the prompt and its logprobs', async () => {
  const body = { prompt: 'It is a truth', echo: true, logprobs: 2, max_tokens: 3, ...greedy };
  const whole = (await cmpl(body)).choices[0];
  const chunks = (await collect(await cmpl({ ...body, stream: true }))).filter((c) => c.choices.length);
  const first = chunks[0].choices[0];
  assert.equal(first.text, 'It is a truth');
  const n = first.logprobs.tokens.length;
  assert.equal(first.logprobs.token_logprobs[0], null);
  for (const key of ['tokens', 'token_logprobs', 'top_logprobs', 'text_offset'])
    assert.deepEqual(first.logprobs[key], whole.logprobs[key].slice(0, n), key);
  const rest = chunks.slice(1).flatMap((c) => (c.choices[0].logprobs ? c.choices[0].logprobs.token_logprobs : []));
  assert.deepEqual(rest, whole.logprobs.token_logprobs.slice(n));
  assert.equal(chunks.map((c) => c.choices[0].text).join(''), whole.text);
});

await test('completions: n choices, indexed, usage summed, seeded', async () => {
  const r = await cmpl({ prompt: 'It is a truth', n: 3, seed: 5, temperature: 1 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  assert.equal(r.usage.completion_tokens, 18);
  const again = await cmpl({ prompt: 'It is a truth', n: 3, seed: 5, temperature: 1 });
  assert.deepEqual(again.choices.map((c) => c.text), r.choices.map((c) => c.text), 'same seed, same choices');
  assert.ok(new Set(r.choices.map((c) => c.text)).size > 1, 'the n choices are independent samples');
});

await test('completions: n out of range -> 400', () => refused('n', () => cmpl({ prompt: 'x', n: 129 })));

await test('completions: prompt array (strings), choices in prompt order', async () => {
  const a = await cmpl({ prompt: 'It is a truth', ...greedy });
  const b = await cmpl({ prompt: 'Happy families', ...greedy });
  const r = await cmpl({ prompt: ['It is a truth', 'Happy families'], n: 2, ...greedy });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.deepEqual(r.choices.map((c) => c.text),
    [a.choices[0].text, a.choices[0].text, b.choices[0].text, b.choices[0].text]);
  assert.equal(r.usage.prompt_tokens, a.usage.prompt_tokens + b.usage.prompt_tokens);
  assert.equal(r.usage.completion_tokens, 24);
});

await test('completions: prompt array (token ids)', async () => {
  const r = await cmpl({ prompt: [[5, 17, 42], [9, 8]], ...greedy });
  assert.equal(r.choices.length, 2);
  assert.equal(r.usage.prompt_tokens, 5);
  const one = await cmpl({ prompt: [9, 8], ...greedy });
  assert.equal(r.choices[1].text, one.choices[0].text);
});

await test('completions: streamed prompt array keeps choice indexes', async () => {
  const chunks = await collect(await cmpl({ prompt: ['It is a truth', 'Happy families'], stream: true, ...greedy }));
  const seen = new Set(chunks.flatMap((c) => c.choices.map((ch) => ch.index)));
  assert.deepEqual([...seen].sort(), [0, 1]);
  const finished = chunks.flatMap((c) => c.choices.filter((ch) => ch.finish_reason).map((ch) => ch.index));
  assert.deepEqual(finished.sort(), [0, 1]);
});

await test('completions: frequency / presence penalties change greedy output', async () => {
  const body = { prompt: 'It is a truth', max_tokens: 24, ...greedy, return_tokens: true };
  const plain = await cmpl(body);
  const pen = await cmpl({ ...body, frequency_penalty: 2, presence_penalty: 2 });
  assert.notDeepEqual(pen.choices[0].tokens, plain.choices[0].tokens);
  const distinct = (t) => new Set(t).size;
  assert.ok(distinct(pen.choices[0].tokens) >= distinct(plain.choices[0].tokens), 'penalties reduce repetition');
});

await test('completions: penalties out of range -> 400', async () => {
  await refused('frequency_penalty', () => cmpl({ prompt: 'x', frequency_penalty: 2.5 }));
  await refused('presence_penalty', () => cmpl({ prompt: 'x', presence_penalty: -3 }));
});

await test('completions: logit_bias forces and bans tokens', async () => {
  const forced = await cmpl({ prompt: 'It is a truth', ...greedy, logit_bias: { 77: 100 }, return_tokens: true });
  assert.deepEqual(forced.choices[0].tokens, [77, 77, 77, 77, 77, 77]);
  const plain = await cmpl({ prompt: 'It is a truth', ...greedy, return_tokens: true });
  const first = plain.choices[0].tokens[0];
  const banned = await cmpl({ prompt: 'It is a truth', ...greedy, logit_bias: { [first]: -100 }, return_tokens: true });
  assert.ok(!banned.choices[0].tokens.includes(first));
});

await test('completions: logit_bias with a bad token id or value -> 400', async () => {
  await refused('logit_bias', () => cmpl({ prompt: 'x', logit_bias: { 999999: 1 } }));
  await refused('logit_bias', () => cmpl({ prompt: 'x', logit_bias: { 5: 101 } }));
});

await test('completions: best_of 1 accepted, other values -> 400', async () => {
  await cmpl({ prompt: 'x', best_of: 1 });
  await refused('best_of', () => cmpl({ prompt: 'x', best_of: 2 }));
});

await test('completions: suffix -> 400', () => refused('suffix', () => cmpl({ prompt: 'x', suffix: 'end' })));

await test('completions: chat-only fields -> 400', async () => {
  await refused('tools', () => cmpl({ prompt: 'x', tools: [{ type: 'function', function: { name: 'f' } }] }));
  await refused('top_logprobs', () => cmpl({ prompt: 'x', top_logprobs: 2 }));
});

// ------------------------------------------------------------------ chat

await test('chat: plain', async () => {
  const r = await chat({ ...greedy });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].logprobs, null);
});

await test('chat: role developer is the system prompt', async () => {
  const msgs = (role) => [{ role, content: 'Answer briefly.' }, { role: 'user', content: 'Once upon a time' }];
  const a = await chat({ messages: msgs('developer'), ...greedy, return_tokens: true });
  const b = await chat({ messages: msgs('system'), ...greedy, return_tokens: true });
  assert.equal(a.usage.prompt_tokens, b.usage.prompt_tokens);
  assert.deepEqual(a.choices[0].tokens, b.choices[0].tokens);
});

await test('chat: max_completion_tokens', async () => {
  const r = await chat({ max_tokens: undefined, max_completion_tokens: 3, ...greedy });
  assert.equal(r.usage.completion_tokens, 3);
  assert.equal(r.choices[0].finish_reason, 'length');
  const same = await chat({ max_tokens: 3, max_completion_tokens: 3, ...greedy });
  assert.equal(same.usage.completion_tokens, 3);
  await refused('max_completion_tokens', () => chat({ max_tokens: 4, max_completion_tokens: 3 }));
});

await test('chat: logprobs with top_logprobs', async () => {
  const r = await chat({ logprobs: true, top_logprobs: 4, temperature: 0.8, seed: 3 });
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, r.usage.completion_tokens);
  for (const t of content) {
    assert.equal(typeof t.token, 'string');
    assert.ok(t.logprob <= 0);
    assert.ok(Array.isArray(t.bytes));
    assert.equal(t.top_logprobs.length, 4);
    for (let k = 1; k < 4; k++) assert.ok(t.top_logprobs[k].logprob <= t.top_logprobs[k - 1].logprob);
    // the sampled token is in the distribution it was drawn from
    assert.ok(t.logprob > -9999);
  }
});

await test('chat: logprobs alone gives no alternatives', async () => {
  const r = await chat({ logprobs: true, ...greedy });
  for (const t of r.choices[0].logprobs.content) assert.equal(t.top_logprobs.length, 0);
});

await test('chat: top_logprobs without logprobs, or above 20 -> 400', async () => {
  await refused('top_logprobs', () => chat({ top_logprobs: 2 }));
  await refused('top_logprobs', () => chat({ logprobs: true, top_logprobs: 21 }));
});

await test('chat: streamed logprobs, n choices, usage', async () => {
  const chunks = await collect(await chat({ logprobs: true, top_logprobs: 2, n: 2, stream: true,
    stream_options: { include_usage: true }, seed: 9 }));
  const perChoice = [0, 0];
  for (const c of chunks) for (const ch of c.choices) if (ch.logprobs) perChoice[ch.index] += ch.logprobs.content.length;
  const roles = chunks.flatMap((c) => c.choices.filter((ch) => ch.delta.role === 'assistant').map((ch) => ch.index));
  assert.deepEqual(roles.sort(), [0, 1]);
  assert.equal(perChoice[0] + perChoice[1], chunks.at(-1).usage.completion_tokens);
  assert.equal(chunks.at(-1).usage.completion_tokens, 12);
});

await test('chat: n choices', async () => {
  const r = await chat({ n: 2, ...greedy });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
  assert.equal(r.choices[0].message.content, r.choices[1].message.content, 'greedy choices agree');
  assert.equal(r.usage.completion_tokens, 12);
});

await test('chat: penalties and logit_bias', async () => {
  const forced = await chat({ ...greedy, logit_bias: { 77: 100 }, return_tokens: true });
  assert.deepEqual(forced.choices[0].tokens, [77, 77, 77, 77, 77, 77]);
  const plain = await chat({ ...greedy, max_tokens: 24, return_tokens: true });
  const pen = await chat({ ...greedy, max_tokens: 24, frequency_penalty: 2, presence_penalty: 1, return_tokens: true });
  assert.notDeepEqual(pen.choices[0].tokens, plain.choices[0].tokens);
});

await test('chat: response_format text accepted, others -> 400', async () => {
  await chat({ response_format: { type: 'text' } });
  await refused('response_format', () => chat({ response_format: { type: 'json_object' } }));
  await refused('response_format', () => chat({
    response_format: { type: 'json_schema', json_schema: { name: 's', schema: { type: 'object' } } } }));
});

await test('chat: tools, tool_choice, functions, function_call -> 400', async () => {
  const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} } } }];
  await refused('tools', () => chat({ tools }));
  await refused('tool_choice', () => chat({ tool_choice: 'auto' }));
  await refused('parallel_tool_calls', () => chat({ parallel_tool_calls: false }));
  await refused('functions', () => chat({ functions: [{ name: 'f', parameters: {} }] }));
  await refused('function_call', () => chat({ function_call: 'auto' }));
});

await test('chat: other OpenAI fields Spex does not implement -> 400', async () => {
  await refused('audio', () => chat({ audio: { voice: 'alloy', format: 'mp3' } }));
  await refused('modalities', () => chat({ modalities: ['text', 'audio'] }));
  await refused('prediction', () => chat({ prediction: { type: 'content', content: 'x' } }));
  await refused('reasoning_effort', () => chat({ reasoning_effort: 'low' }));
  await refused('store', () => chat({ store: true }));
  await refused('metadata', () => chat({ metadata: { a: 'b' } }));
  await refused('service_tier', () => chat({ service_tier: 'flex' }));
  await refused('web_search_options', () => chat({ web_search_options: {} }));
  await refused('echo', () => chat({ echo: true }));
  await refused('best_of', () => chat({ best_of: 2 }));
  await refused('messages', () => chat({ messages: [{ role: 'user', content: 'hi', name: 'bob' }] }));
});

await test('chat: harmless values of those fields are accepted', async () => {
  await chat({ user: 'u1', store: false, service_tier: 'auto', modalities: ['text'], tool_choice: 'none' });
});

await test('unknown non-OpenAI fields are ignored (documented)', async () => {
  await cmpl({ prompt: 'x', some_vendor_extension: { a: 1 } });
});

console.log(`\n${passed} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
