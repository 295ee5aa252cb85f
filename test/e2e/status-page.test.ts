/**
 * The status page in headless Chromium (Debian `chromium`, driven by playwright-core) against a
 * real manager with API keys and a real `teiplex router` child:
 * - /ui asks for the admin key (/events answered 401), then lists the running instance;
 * - after `kill -9` of the child (pid from GET /instances/{name}) the page shows the status change
 *   and the restart count go up, without a reload (no navigation; a marker set in the page before
 *   the kill is still there);
 * - the log tail shows a line the child printed (its ready line) and the manager's note of the kill;
 * - the model id, a directory named like an HTML tag with an event handler, is shown as text and
 *   never runs (log lines and names from the server are attacker-controlled).
 * Screenshots are written to reports/screenshots/ (ignored by git: test artifacts).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchBrowser, SCREENSHOTS } from '../helpers/browser.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { until } from '../helpers/wait.js';

/** A model directory name the page must show as text: markup with a handler that would set a flag. */
const HOSTILE = '<img src=x onerror="window.__xss=1">';
const ADMIN_KEY = 'status-page-admin-key';

let dir: string;
let m: ManagerProcess;
let browser: Browser;
let page: Page;

async function adminGet(url: string): Promise<any> {
  const res = await fetch(`http://127.0.0.1:${m.apiPort}${url}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  assert.equal(res.status, 200);
  return res.json();
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-status-page-'));
  const model = await testModel({ kind: 'embedding' });
  const hostile = path.join(dir, HOSTILE);
  await symlink(model, hostile);
  const config = path.join(dir, 'manager.toml');
  await writeFile(
    config,
    `${loopbackConfig(dir)}
[restart]
initial_backoff_ms = 500

[[instances]]
name = "a"
model_id = ${JSON.stringify(hostile)}

[[auth.api_keys]]
name = "ops"
key_sha256 = "${createHash('sha256').update(ADMIN_KEY).digest('hex')}"
admin = true
`,
  );
  m = await startManager(config);
  await until('instance a running', async () => (await adminGet('/instances/a')).status === 'running', { timeoutMs: 120_000, everyMs: 100, context: () => m.output().slice(-3000) });
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
});

after(async () => {
  await browser?.close();
  if (m?.proc.exitCode === null) await m.stop();
  await rm(dir, { recursive: true, force: true });
});

test('the page lists the instance, shows a kill -9 live (status, restarts) without a reload, and tails the child log', { timeout: 300_000 }, async () => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  let navigations = 0;
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) navigations++;
  });
  const loaded = await page.goto(`http://127.0.0.1:${m.apiPort}/ui`);
  assert.equal(loaded?.status(), 200);
  assert.match((await loaded?.allHeaders())?.['content-security-policy'] ?? '', /script-src 'self'/);

  // Keys are configured: /events answered 401, so the page asks for the admin key.
  const form = page.locator('#key-form');
  await form.waitFor({ state: 'visible' });
  assert.match((await page.locator('#key-reason').textContent()) ?? '', /401 UNAUTHENTICATED/);
  assert.equal(await page.locator('#instances tbody tr').count(), 0, 'nothing shown without the key');
  await page.screenshot({ path: path.join(SCREENSHOTS, 'status-page-key-prompt.png'), fullPage: true });
  // A wrong key is refused, said so, and not kept.
  await page.locator('#key-input').fill('not-the-key');
  await page.locator('#key-form button[type=submit]').click();
  await until('the page says the key was refused', async () => /401 UNAUTHENTICATED.*not accepted/.test((await page.locator('#key-reason').textContent()) ?? ''), { timeoutMs: 30_000 });
  assert.equal(await page.evaluate("sessionStorage.getItem('teiplex.adminKey')"), null);
  await page.locator('#key-input').fill(ADMIN_KEY);
  await page.locator('#key-form button[type=submit]').click();

  const row = page.locator('#instances tr[data-name="a"]');
  const status = row.locator('[data-field="status"]');
  const restarts = row.locator('[data-field="restarts"]');
  await until('the page lists instance a running', async () => (await status.textContent()) === 'running', { timeoutMs: 30_000 });
  assert.equal(await restarts.textContent(), '0');
  assert.equal(await page.locator('#conn').textContent(), 'live');
  assert.equal(await form.isHidden(), true);
  // The key stays in the tab's sessionStorage, and nowhere in the URL.
  assert.equal(await page.evaluate("sessionStorage.getItem('teiplex.adminKey')"), ADMIN_KEY);
  assert.doesNotMatch(page.url(), new RegExp(ADMIN_KEY));

  // The hostile model id is text: shown literally, no image element, the handler never ran.
  assert.ok(((await row.locator('td').nth(1).textContent()) ?? '').includes(HOSTILE));
  assert.equal(await page.locator('img').count(), 0);
  assert.equal(await page.evaluate('window.__xss'), undefined);

  // The log tail of instance a: the child's own ready line.
  await row.locator('button[data-log="a"]').click();
  await until('the log tail shows the child ready line', async () => (await page.locator('#log .log-line').allTextContents()).some((l) => l.includes('"msg":"ready"')), { timeoutMs: 30_000 });
  assert.equal(await page.locator('#log-name').textContent(), 'a');
  await page.screenshot({ path: path.join(SCREENSHOTS, 'status-page-running.png'), fullPage: true });

  // From here on: no reload. A marker in the page survives only if the document is the same one,
  // and every status the row shows is recorded as it changes.
  const navigationsBefore = navigations;
  // A string, not a function: the test runner's transform would name inner functions with a helper the page lacks.
  await page.evaluate(`(() => {
    window.__marker = 'same document';
    window.__statuses = [];
    new MutationObserver(() => {
      const s = document.querySelector('#instances tr[data-name="a"] [data-field="status"]')?.textContent ?? '';
      if (window.__statuses.at(-1) !== s) window.__statuses.push(s);
    }).observe(document.querySelector('#instances tbody'), { childList: true, subtree: true, characterData: true });
  })()`);

  const before = await adminGet('/instances/a');
  assert.equal(typeof before.pid, 'number');
  process.kill(before.pid, 'SIGKILL');

  await until('the page shows restarts 1 and a running again', async () => (await restarts.textContent()) === '1' && (await status.textContent()) === 'running', { timeoutMs: 120_000, context: () => m.output().slice(-3000) });
  const statuses = (await page.evaluate('window.__statuses')) as string[];
  assert.ok(statuses.some((s) => s !== 'running'), `the page showed a status other than running between: ${JSON.stringify(statuses)}`);
  assert.equal(statuses.at(-1), 'running');
  assert.equal(await page.evaluate('window.__marker'), 'same document', 'the page was not reloaded');
  assert.equal(navigations, navigationsBefore, 'no navigation happened');
  const after = await adminGet('/instances/a');
  assert.equal(after.restarts, 1);
  assert.notEqual(after.pid, before.pid);
  assert.equal(await row.locator('td').nth(9).textContent(), String(after.pid), 'the new pid shown');
  assert.match((await row.locator('td').nth(6).textContent()) ?? '', /SIGKILL/, 'last exit: the signal');

  // The recent changes list the crash; the log tail the manager's note of it and the new child's ready line.
  const changes = (await page.locator('#changes li').allTextContents()).join('\n');
  assert.match(changes, /a running → /);
  await until('the log tail shows the new child ready line after the kill', async () => {
    const lines = await page.locator('#log .log-line').allTextContents();
    const kill = lines.findIndex((l) => l.includes('SIGKILL'));
    return kill >= 0 && lines.slice(kill).some((l) => l.includes('"msg":"ready"'));
  }, { timeoutMs: 60_000 });
  await page.screenshot({ path: path.join(SCREENSHOTS, 'status-page-after-kill.png'), fullPage: true });
  assert.deepEqual(errors, [], 'no script error in the page');
});
