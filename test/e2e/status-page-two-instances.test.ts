/**
 * The status page with two instances (real `teiplex router` children) and one catalog model (on
 * demand, not started) on a manager without API keys, rendered in headless Chromium and saved as
 * reports/screenshots/status-page-two-instances.png (a test artifact, ignored by git): both
 * instances running with their measured memory, the model available with no replica, the CPU
 * device's use against its budget, the recent state changes, and the log tail of one instance.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchBrowser, SCREENSHOTS } from '../helpers/browser.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { until } from '../helpers/wait.js';

let dir: string;
let m: ManagerProcess;
let browser: Browser;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-status-two-'));
  const embedding = await testModel({ kind: 'embedding' });
  const reranker = await testModel({ kind: 'reranker' });
  const config = path.join(dir, 'manager.toml');
  await writeFile(
    config,
    `${loopbackConfig(dir)}
[[instances]]
name = "minilm"
model_id = ${JSON.stringify(embedding)}

[[instances]]
name = "minilm-b"
model_id = ${JSON.stringify(embedding)}

[[models]]
name = "reranker"
model_id = ${JSON.stringify(reranker)}
`,
  );
  m = await startManager(config);
  for (const name of ['minilm', 'minilm-b']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  if (m?.proc.exitCode === null) await m.stop();
  await rm(dir, { recursive: true, force: true });
});

test('two instances and one catalog model, rendered and saved as a screenshot', { timeout: 300_000 }, async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 860 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`http://127.0.0.1:${m.apiPort}/ui`);
  // No keys configured: the stream opens at once, no key is asked for.
  await until('the page is live', async () => (await page.locator('#conn').textContent()) === 'live', { timeoutMs: 30_000 });
  assert.equal(await page.locator('#key-form').isHidden(), true);

  const rows = page.locator('#instances tbody tr');
  await until('two instances running on the page', async () => {
    const s = await page.locator('#instances [data-field="status"]').allTextContents();
    return s.length === 2 && s.every((x) => x === 'running');
  }, { timeoutMs: 30_000 });
  assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-name'))), ['minilm', 'minilm-b']);
  const model = page.locator('#models tr[data-name="reranker"]');
  assert.equal(await model.locator('[data-field="state"]').textContent(), 'available');
  assert.equal(await page.locator('#models tbody tr').count(), 1);
  // Each instance's footprint is measured by the manager's sampler (every few seconds) and arrives as an update.
  await until('both instances memory measured', async () => {
    const cells = await rows.evaluateAll((trs) => trs.map((tr) => tr.children[7]?.textContent ?? ''));
    return cells.every((c) => /MiB|GiB/.test(c));
  }, { timeoutMs: 60_000 });
  await until('the cpu device row with its budget', async () => (await page.locator('#memory tr[data-device="cpu"]').count()) === 1, { timeoutMs: 30_000 });
  await page.locator('#instances tr[data-name="minilm"] button[data-log="minilm"]').click();
  await until('the log tail of minilm', async () => (await page.locator('#log .log-line').allTextContents()).some((l) => l.includes('"msg":"ready"')), { timeoutMs: 30_000 });
  const changes = await page.locator('#changes li').allTextContents();
  assert.ok(changes.filter((c) => / starting → running /.test(c)).length >= 2, changes.join('\n'));
  await page.screenshot({ path: path.join(SCREENSHOTS, 'status-page-two-instances.png'), fullPage: true });
  assert.deepEqual(errors, []);
});
