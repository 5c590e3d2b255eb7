// Screenshots of /dashboard for docs/: OBOL_URL (e.g. make run's), a key
// (OBOL_KEY) and the admin token (OBOL_ADMIN), into OBOL_SCREENSHOTS.
//   node screens.mjs   (from gateway/testdata/openai-node)
import { chromium } from 'playwright-core';

const base = process.env.OBOL_URL ?? 'http://127.0.0.1:8080';
const dir = process.env.OBOL_SCREENSHOTS ?? '.';
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  for (const [view, cred] of [['key', process.env.OBOL_KEY ?? 'sk-demo-pro-7b2e51'], ['admin', process.env.OBOL_ADMIN ?? 'demo-admin-token-not-a-secret']]) {
    for (const [w, h] of [[1280, 800], [390, 844]]) {
      const page = await browser.newPage({ viewport: { width: w, height: h } });
      await page.goto(base + '/dashboard');
      await page.fill('#credential', cred);
      await page.click('#signin-form button');
      await page.waitForSelector('.stat .usd');
      await page.waitForTimeout(300);
      await page.screenshot({ path: `${dir}/dashboard-${view}-${w}.png` });
      await page.close();
    }
  }
} finally {
  await browser.close();
}
