/**
 * The real `teiplex router` CLI as a process: the ready line, ports from flags and environment,
 * SIGTERM draining in-flight requests to exit 0, a model that cannot load, bad flags, and
 * `teiplex --help`. Needs the build in dist/ (`npm test` builds first).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { runCli, startRouterProcess, type RouterProcess } from '../helpers/router-process.js';
import { testModel } from '../helpers/models.js';
import { until } from '../helpers/wait.js';

function healthCheck(port: number): Promise<unknown> {
  const Client = grpc.makeGenericClientConstructor(healthService, 'Health');
  const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    (c as unknown as { check(req: object, cb: (e: Error | null, r: { status: unknown }) => void): void }).check({ service: '' }, (err, res) => {
      c.close();
      if (err) reject(err);
      else resolve(res.status);
    });
  });
}

async function postJson(port: number, route: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://127.0.0.1:${port}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

async function metricValue(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name + ' ') || line.startsWith(name + '{')) sum += Number(line.split(' ').pop());
  return sum;
}

describe('teiplex router process', () => {
  let modelDir: string;
  const running: RouterProcess[] = [];

  before(async () => {
    modelDir = await testModel({ kind: 'embedding' });
  });

  after(async () => {
    await Promise.all(running.map((r) => r.stop('SIGKILL')));
  });

  test('--json-output: the ready line carries every bound port; gRPC health is SERVING', async () => {
    const r = await startRouterProcess(['--model-id', modelDir, '--json-output', '--http-port', '0', '--prometheus-port', '0', '--threads', '1']);
    running.push(r);
    assert.equal(r.ready.msg, 'ready');
    assert.equal(r.ready.level, 30);
    for (const p of [r.grpcPort, r.httpPort, r.prometheusPort]) assert.ok(typeof p === 'number' && p > 0, String(p));
    assert.equal(r.ready.model_type, 'embedding');
    assert.equal(r.ready.pid, r.proc.pid);
    for (const line of r.output().trim().split('\n')) assert.doesNotThrow(() => JSON.parse(line), `not JSON: ${line}`);

    assert.ok(['SERVING', 1].includes((await healthCheck(r.grpcPort)) as string | number));
    const embed = await postJson(r.httpPort!, '/embed', { inputs: 'hello' });
    assert.equal(embed.status, 200);
    const prom = await (await fetch(`http://127.0.0.1:${r.prometheusPort}/metrics`)).text();
    assert.match(prom, /te_request_count\{method="embed"\} 1/);
    assert.equal(await r.stop(), 0);
  });

  test('plain logs: the ready line is still one JSON line; ports from the environment', async () => {
    const r = await startRouterProcess(['--model-id', modelDir], { TEIPLEX_HTTP_PORT: '0', TEIPLEX_THREADS: '1' });
    running.push(r);
    const lines = r.output().trim().split('\n');
    const ready = lines.filter((l) => l.startsWith('{'));
    assert.equal(ready.length, 1);
    assert.deepEqual(Object.keys(JSON.parse(ready[0])).slice(0, 3), ['msg', 'grpc_port', 'http_port']);
    assert.ok(lines.some((l) => / INFO {2}model ready: /.test(l)), r.output());
    assert.equal(r.prometheusPort, undefined, 'no Prometheus port unless asked');
    assert.equal((await fetch(`http://127.0.0.1:${r.httpPort}/health`)).status, 200);
    assert.equal(await r.stop('SIGINT'), 0);
  });

  test('SIGTERM drains in-flight requests: every one completes, then exit 0', async () => {
    const r = await startRouterProcess(['--model-id', modelDir, '--http-port', '0', '--threads', '1', '--max-batch-requests', '2']);
    running.push(r);
    const texts = Array.from({ length: 32 }, (_, i) => `request text number ${i} `.repeat(8));
    const N = 12;
    const replies = Array.from({ length: N }, () => postJson(r.httpPort!, '/embed', { inputs: texts }));
    // Wait until every request has reached the engine, so all of them are in flight at the signal.
    await until('every request counted by the engine', async () => (await metricValue(r.httpPort!, 'te_request_count')) >= N, { timeoutMs: 30_000, everyMs: 5 });
    const answeredBefore = await metricValue(r.httpPort!, 'te_request_success');
    const code = r.stop('SIGTERM');
    const done = await Promise.all(replies);
    assert.deepEqual(
      done.map((d) => d.status),
      Array(N).fill(200),
    );
    for (const d of done) assert.equal((d.body as number[][]).length, 32);
    assert.equal(await code, 0, r.output());
    assert.match(r.output(), /received SIGTERM; draining/);
    assert.match(r.output(), /stopped/);
    assert.ok(answeredBefore < N, `requests were still in flight at SIGTERM (${answeredBefore} of ${N} answered)`);
  });

  test('a model directory without config.json exits 1 with the reason on stderr', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'teiplex-bad-model-'));
    try {
      await writeFile(path.join(dir, 'tokenizer.json'), '{}');
      const res = await runCli(['router', '--model-id', dir, '--port', '0', '--hostname', '127.0.0.1']);
      assert.equal(res.code, 1, res.stdout + res.stderr);
      assert.match(res.stderr, /teiplex router: failed to start: .*config\.json/);
      assert.doesNotMatch(res.stdout, /"msg":"ready"/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('bad flags exit 2 and list the known ones', async () => {
    const res = await runCli(['router', '--model-id', modelDir, '--bogus']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /--bogus/);
    assert.match(res.stderr, /Known flags: .*--model-id.*--max-client-batch-size.*--http-port/);
  });

  test('`teiplex --help` lists the subcommands; `teiplex router --help` the flags', async () => {
    const top = await runCli(['--help']);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /router/);
    assert.match(top.stdout, /make-test-model/);
    const sub = await runCli(['router', '--help']);
    assert.equal(sub.code, 0);
    assert.match(sub.stdout, /--model-id/);
    assert.match(sub.stdout, /MAX_BATCH_TOKENS/);
  });
});
