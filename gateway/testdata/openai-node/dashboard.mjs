// Drives obol's /dashboard in headless Chromium as its users would: signs
// in with an API key, then with the admin token, and checks what the page
// shows against what the API answered (OBOL_WANT_*). Run by
// gateway/dashboard_test.go.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';

const base = process.env.OBOL_URL;
const shots = process.env.OBOL_SCREENSHOTS;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let failed = 0;
const check = async (name, f) => {
  try {
    await f();
    console.log('ok   ' + name);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
};
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const page = await context.newPage();
  const errors = [], foreign = [], dialogs = [];
  let expect401 = false;
  page.on('console', (m) => {
    if (m.type() === 'error' && !(expect401 && /401/.test(m.text()))) errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  page.on('request', (r) => { if (new URL(r.url()).origin !== new URL(base).origin && !r.url().startsWith('blob:')) foreign.push(r.url()); });

  const shot = async (name, width, height) => {
    if (!shots) return;
    await page.setViewportSize({ width, height });
    await page.waitForTimeout(500);
    await page.screenshot({ path: `${shots}/dashboard-${name}-${width}.png` });
  };

  await page.goto(base + '/dashboard');
  await page.waitForSelector('#signin:not([hidden])');

  await check('an API key signs in and sees the month cost /v1/usage reports', async () => {
    await page.fill('#credential', process.env.OBOL_KEY);
    await page.click('#signin-form button');
    await page.waitForSelector('.stat .usd');
    const cost = await page.$eval('.stat .usd', (e) => e.dataset.usd);
    const text = await page.$eval('.stat .usd', (e) => e.textContent);
    assert.equal(cost, process.env.OBOL_WANT_COST);
    assert.equal(text, '$' + process.env.OBOL_WANT_COST);
    const stored = await page.evaluate(() => Object.keys(sessionStorage));
    assert.deepEqual(stored, ['obol.dashboard.credential']);
    assert.ok(!page.url().includes(process.env.OBOL_KEY), 'the key is in the URL');
    const budgets = await page.$$eval('.budget .head strong', (es) => es.map((e) => e.textContent));
    assert.deepEqual(budgets, ['This key', 'Project acme']);
    assert.equal(await page.$eval('.budget .bar.amber, .budget .bar.red, .budget .bar.ok', (e) => e.className), 'bar amber');
    const models = await page.$$eval('.card table tbody tr td:first-child', (es) => es.map((e) => e.textContent));
    assert.deepEqual(models, ['hermes']);
    assert.equal(await page.$$eval('.chart svg rect', (es) => es.length) > 0, true, 'no bars in the charts');
  });
  await shot('key', 1280, 800);
  await shot('key', 390, 844);
  await page.setViewportSize({ width: 1280, height: 800 });

  await check('another month shows its own (empty) figures', async () => {
    const last = await page.$eval('#month', (s) => s.options[1].value);
    await page.selectOption('#month', last);
    await page.waitForFunction((m) => document.querySelector('.stat .label')?.textContent.includes(m), last);
    assert.equal(await page.$eval('.stat .usd', (e) => e.dataset.usd), '0');
    await page.selectOption('#month', await page.$eval('#month', (s) => s.options[0].value));
    await page.waitForFunction((c) => document.querySelector('.stat .usd')?.dataset.usd === c, process.env.OBOL_WANT_COST);
  });

  await check('signing out forgets the credential', async () => {
    await page.click('#signout');
    await page.waitForSelector('#signin:not([hidden])');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.equal(await page.$eval('#content', (e) => e.childElementCount), 0);
  });

  await check('a wrong credential shows the API\'s message', async () => {
    expect401 = true;
    await page.fill('#credential', 'sk-not-a-real-key-0000');
    await page.click('#signin-form button');
    await page.waitForSelector('#signin-error:not([hidden])');
    assert.equal(await page.$eval('#signin-error', (e) => e.textContent), 'invalid API key');
    expect401 = false;
  });

  await check('the admin token sees every key, the HTML-named one as text', async () => {
    await page.fill('#credential', process.env.OBOL_ADMIN);
    await page.click('#signin-form button');
    await page.waitForSelector('#keys-table');
    const text = await page.$eval('#keys-table', (e) => e.textContent);
    for (const id of process.env.OBOL_WANT_KEYS.split(',')) assert.ok(text.includes(id), `${id} is not listed`);
    assert.ok(text.includes(process.env.OBOL_HTML_NAME), 'the HTML name is not shown as text');
    assert.equal(await page.$$eval('#content img', (es) => es.length), 0);
    assert.equal(await page.$eval('.stat .usd', (e) => e.dataset.usd), process.env.OBOL_WANT_TOTAL);
    const projects = await page.$eval('#projects-table', (e) => e.textContent);
    assert.ok(projects.includes('acme'), 'project acme is not listed');
    assert.match(await page.$eval('#alerts', (e) => e.textContent), /No webhooks are configured/);
  });
  await check('the first screen names the budgets at risk, with percent, status words and what is left', async () => {
    await page.setViewportSize({ width: 1280, height: 800 });
    const box = await page.$eval('#at-risk', (e) => { const r = e.getBoundingClientRect(); return { top: r.top, bottom: r.bottom }; });
    assert.ok(box.bottom <= 800, `the at-risk card ends at ${box.bottom}px, below the first screen`);
    const rows = await page.$$eval('#risk-table tbody tr', (es) => es.map((e) => e.textContent));
    assert.ok(rows.length > 0, 'no budget at risk listed');
    assert.ok(rows.every((r) => /(past \d+%|blocked)/.test(r)), rows.join(' | '));
    assert.ok(rows.some((r) => r.includes(process.env.OBOL_RISK_KEY)), `${process.env.OBOL_RISK_KEY} is not at risk: ${rows}`);
    const spend = await page.$eval('.stat .usd', (e) => [e.textContent, e.title]);
    assert.match(spend[0], /^(\$\d[\d,]*\.\d\d|under \$0\.01)$/);
    assert.ok(spend[1].includes(process.env.OBOL_WANT_TOTAL), spend[1]);
    const top = await page.$eval('#top-spender', (e) => { const r = e.getBoundingClientRect(); return [e.textContent, r.bottom]; });
    assert.ok(top[0].includes('key_all') && top[1] <= 800, `top spender: ${top}`);
  });
  await shot('admin', 1280, 800);
  await check('on a 390-pixel phone, every table keeps its cost and budget columns in view', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const id of ['#keys-table', '#projects-table', '#risk-table']) {
      const over = await page.$eval(id, (t) => t.scrollWidth - t.parentElement.clientWidth);
      assert.ok(over <= 0, `${id} is ${over}px wider than its card`);
    }
    const right = await page.$$eval('#keys-table thead th', (ths) => ths.filter((t) => t.offsetParent).map((t) => t.getBoundingClientRect().right));
    assert.ok(Math.max(...right) <= 390, `a keys column ends at ${Math.max(...right)}px`);
  });
  await shot('admin', 390, 844);
  await page.setViewportSize({ width: 1280, height: 800 });

  await check('the Requests tab finds a request by its id, its cost the ledger\'s', async () => {
    await page.click('#tab-requests');
    await page.waitForSelector('#req-form, #error:not([hidden])');
    const err = await page.$eval('#error', (e) => (e.hidden ? '' : e.textContent));
    assert.equal(err, '', 'the Requests tab answered an error');
    await page.fill('#req-id', process.env.OBOL_REQUEST_ID);
    await page.click('#req-form button[type=submit]');
    await page.waitForFunction((id) => {
      const rows = document.querySelectorAll('#requests-table tbody tr.req');
      return rows.length === 1 && rows[0].textContent.includes(id);
    }, process.env.OBOL_REQUEST_ID);
    assert.equal(await page.$eval('#requests-table tbody tr.req .usd', (e) => e.dataset.usd), process.env.OBOL_REQUEST_COST);
    assert.match(await page.$eval('#latency-table', (e) => e.textContent), /hermes/);
    await page.click('#requests-table tbody tr.req');
    assert.ok(await page.$eval('#requests-table tr.detail', (e) => !e.hidden && e.textContent.includes('completion_tokens')));
  });
  await shot('requests', 1280, 800);
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.click('#tab-overview');
  await page.waitForSelector('#keys-table');

  await check('a custom range holding today shows the month\'s spend, with the period before beside it', async () => {
    const today = new Date().toISOString().slice(0, 10);
    await page.selectOption('#month', 'range:custom');
    await page.fill('#from', today);
    await page.fill('#to', today);
    await page.dispatchEvent('#to', 'change');
    await page.waitForSelector('#range-title');
    await page.waitForFunction((c) => document.querySelector('.stat .usd')?.dataset.usd === c, process.env.OBOL_WANT_TOTAL);
    assert.match(await page.$eval('.stat .note', (e) => e.textContent), /period before/);
  });
  await shot('range', 1280, 800);
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.selectOption('#month', await page.$eval('#month', (s) => s.options[0].value));
  await page.waitForSelector('#at-risk');

  await check('the CSV download is the API\'s CSV', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
    const got = await readFile(await download.path(), 'utf8');
    assert.equal(got, await readFile(process.env.OBOL_WANT_CSV, 'utf8'));
    assert.match(download.suggestedFilename(), /^obol-usage-\d{4}-\d{2}\.csv$/);
  });

  await check('filtering by project shows only its keys', async () => {
    await page.selectOption('#project', 'acme');
    await page.waitForFunction(() => document.querySelector('.title .meta')?.textContent.includes('project acme'));
    const rows = await page.$$eval('#keys-table tbody tr .id', (es) => es.map((e) => e.textContent.split(' ')[0]));
    assert.deepEqual(rows, ['key_all']);
  });

  await check('a key in the table links to its requests', async () => {
    await page.selectOption('#project', '');
    await page.click('#tab-overview');
    await page.waitForSelector('#keys-table');
    await page.click('#keys-table tbody tr:has-text("key_hermes") a.to-requests');
    await page.waitForSelector('#requests-table');
    const keys = await page.$$eval('#requests-table tbody tr.req .id', (es) => es.map((e) => e.textContent.split(' ')[0]));
    assert.ok(keys.length > 0 && keys.every((k) => k === 'key_hermes'), keys.join(','));
  });

  await check('no console error, no script run from data, no request to another origin', async () => {
    assert.deepEqual(errors, []);
    assert.deepEqual(dialogs, []);
    assert.deepEqual(foreign, []);
  });
} finally {
  await browser.close();
}
console.log(`node dashboard checks: ${failed} failed`);
process.exit(failed ? 1 : 0);
