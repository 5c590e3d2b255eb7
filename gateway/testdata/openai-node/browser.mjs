// Opens OBOL_PAGE_URL (a page of another origin than the gateway) in
// headless Chromium and checks what it read of a streamed chat: the text,
// [DONE], and the rate-limit header that CORS must expose. Run by
// gateway/clients_test.go.
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let failed = 0;
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(process.env.OBOL_PAGE_URL);
  const result = await page.waitForFunction(() => window.result, null, { timeout: 20000 }).then((h) => h.jsonValue());
  try {
    assert.equal(result.error, undefined, result.error);
    assert.equal(result.status, 200);
    assert.equal(result.text, process.env.OBOL_WANT_TEXT);
    assert.ok(result.done, 'no [DONE]');
    assert.equal(result.remaining, process.env.OBOL_WANT_REMAINING);
    assert.match(result.requestId ?? '', /^chat_/);
    assert.deepEqual(errors, []);
    console.log('ok   a page of another origin streams a chat and reads x-ratelimit-remaining-requests');
  } catch (e) {
    failed++;
    console.log(`FAIL ${e.message}`, JSON.stringify(result), errors);
  }
} finally {
  await browser.close();
}
console.log(`node browser checks: ${failed} failed`);
process.exit(failed ? 1 : 0);
