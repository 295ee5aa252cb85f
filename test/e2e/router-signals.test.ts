/**
 * The router's signals (docs/router.md): the first SIGTERM drains in-flight requests; a second
 * signal during the drain stops waiting for them and exits 1. A real `teiplex router` process with
 * a test model (test/helpers/models.ts), kept busy by requests queued one batch at a time.
 * (The first signal's clean drain, exit 0: test/e2e/router-lifecycle.test.ts.)
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { testModel } from '../helpers/models.js';
import { startRouterProcess, type RouterProcess } from '../helpers/router-process.js';
import { until } from '../helpers/wait.js';

let modelDir: string;
let r: RouterProcess | undefined;
before(async () => {
  modelDir = await testModel({ kind: 'embedding' });
});
after(async () => {
  await r?.stop('SIGKILL');
});

async function counter(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.split(' ').pop());
  return sum;
}

test('a second SIGTERM during the drain: exit 1 without waiting for the requests still in flight', async () => {
  r = await startRouterProcess(['--model-id', modelDir, '--http-port', '0', '--threads', '1', '--max-batch-requests', '1', '--max-concurrent-requests', '100000'], {}, { timeoutMs: 180_000 });
  const port = r.httpPort!;
  const texts = Array.from({ length: 32 }, (_, i) => `request text number ${i} `.repeat(16));
  const N = 48;
  const replies = Array.from({ length: N }, () =>
    fetch(`http://127.0.0.1:${port}/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: texts }) }).then(
      (res) => res.status,
      () => 'no answer' as const,
    ),
  );
  await until('every request in the router', async () => (await counter(port, 'te_request_count')) >= N, { timeoutMs: 120_000 });
  r.proc.kill('SIGTERM');
  await until('the drain begun', () => /received SIGTERM; draining/.test(r!.output()), { timeoutMs: 60_000 });
  r.proc.kill('SIGTERM');
  const code = await r.exited;
  assert.equal(code, 1, r.output());
  assert.match(r.output(), /received SIGTERM again; closing without waiting/);
  const outcomes = await Promise.all(replies);
  // The drain was cut short: requests still in flight at the second signal got no answer.
  assert.ok(outcomes.some((o) => o === 'no answer'), JSON.stringify(outcomes));
  assert.ok(outcomes.every((o) => o === 200 || o === 'no answer'), JSON.stringify(outcomes));
});
