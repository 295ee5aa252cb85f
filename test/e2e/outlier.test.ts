/**
 * Outlier detection (docs/manager.md#outlier-detection) in a real `teiplex serve` with two
 * replicas of one model, each the FAKE tei.v1 child (test/helpers/fake-tei-child.ts). One child is
 * frozen with SIGSTOP: its calls run into the manager's grpc_request_timeout_secs (1 s), and after
 * `consecutive_failures` of them it is ejected: GET /instances and /metrics show it, and every
 * model_id call goes to the other replica. Probes fail while it is frozen; after SIGCONT a probe
 * passes and it is readmitted. The same through the HTTP data plane (/v1/embeddings by model:
 * 504 REQUEST_TIMEOUT answers count). Health checks are kept out of the way (a long interval), so
 * only outlier detection moves traffic.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { fakeChildScript, fakeInstanceToml } from '../helpers/fake-tei-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { mux, unary, type AnyClient } from '../helpers/mux-client.js';
import { until } from '../helpers/wait.js';

const MODEL = 'fake/outlier';

let dir: string;
let m: ManagerProcess;
let c: AnyClient;
let frozen: number | undefined;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-outlier-'));
  const script = await fakeChildScript(dir);
  const file = path.join(dir, 'manager.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}startup_timeout_secs = 120\ngraceful_shutdown_timeout_secs = 2\nhealth_check_interval_secs = 3600\nhealth_check_timeout_secs = 1\ngrpc_request_timeout_secs = 1\n` +
      `[outlier_detection]\nconsecutive_failures = 2\nbase_ejection_secs = 4\nmax_ejection_secs = 8\n` +
      fakeInstanceToml('rep-a', script, MODEL) +
      fakeInstanceToml('rep-b', script, MODEL),
  );
  m = await startManager(file);
  for (const name of ['rep-a', 'rep-b']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
  c = mux(Number(m.ready.grpc_port));
});

after(async () => {
  if (frozen !== undefined) process.kill(-frozen, 'SIGCONT');
  c?.close();
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

/** One model_id call: the instance that answered, or the gRPC status it failed with. */
async function callModel(i: number): Promise<string> {
  try {
    const r = await unary(c, 'Embed', { target: { model_id: MODEL }, request: { inputs: `call ${i}` } });
    return String(r.headers.get('teiplex-instance')[0]);
  } catch (err) {
    return `error ${grpc.status[(err as grpc.ServiceError).code]}`;
  }
}

async function metrics(): Promise<string> {
  return String((await m.api('GET', '/metrics')).body);
}

describe('outlier ejection and readmission (fake children, one frozen with SIGSTOP)', () => {
  test('a frozen replica is ejected after its calls time out; traffic goes to the other; SIGCONT -> probed back in', async () => {
    const b = await m.waitFor('rep-b', (i) => i.status === 'running');
    assert.deepEqual(b.outlier, { ejected: false, ejected_until: null, ejections: 0, reason: null });
    frozen = b.pid as number;
    process.kill(-frozen, 'SIGSTOP');

    // Calls by model_id alternate between the replicas; rep-b's run into the 1 s timeout.
    const seen: string[] = [];
    await until(
      'rep-b ejected',
      async () => {
        seen.push(await callModel(seen.length));
        const i = (await m.api('GET', '/instances/rep-b')).body;
        return i.outlier?.ejected === true && i;
      },
      { timeoutMs: 60_000, everyMs: 1, context: () => `calls: ${JSON.stringify(seen)}` },
    );
    assert.ok(seen.includes('error DEADLINE_EXCEEDED'), `rep-b's calls timed out: ${JSON.stringify(seen)}`);
    const ejected = (await m.api('GET', '/instances/rep-b')).body;
    assert.equal(ejected.outlier.reason, 'consecutive_failures');
    assert.equal(ejected.outlier.ejections >= 1, true);
    assert.equal(typeof ejected.outlier.ejected_until, 'string');
    assert.equal(ejected.status, 'running', 'health checks did not touch it');
    const text = await metrics();
    assert.match(text, /teiplex_instance_ejected\{instance="rep-b"\} 1/);
    assert.match(text, /teiplex_instance_ejected\{instance="rep-a"\} 0/);
    assert.match(text, /teiplex_outlier_ejections_total\{instance="rep-b",reason="consecutive_failures"\} 1/);

    // While it is frozen no probe can pass: every call goes to rep-a.
    const during: string[] = [];
    for (let i = 0; i < 8; i++) during.push(await callModel(100 + i));
    assert.deepEqual(during, Array(8).fill('rep-a'));
    // Its ejection ran out at least once while frozen: the probe failed, ejected again.
    await until('a failed probe of rep-b', async () => (await metrics()).includes('teiplex_outlier_ejections_total{instance="rep-b",reason="probe_failed"}'), { timeoutMs: 60_000, everyMs: 200 });
    assert.equal((await m.api('GET', '/instances/rep-b')).body.outlier.ejected, true);

    process.kill(-frozen, 'SIGCONT');
    frozen = undefined;
    const back = await m.waitFor('rep-b', (i) => i.outlier.ejected === false, 60_000);
    assert.equal(back.outlier.ejections >= 2, true, 'the count stays for this child');
    assert.match(await metrics(), /teiplex_instance_ejected\{instance="rep-b"\} 0/);
    const answered = new Set<string>();
    await until(
      'both replicas answer model_id calls again',
      async () => {
        answered.add(await callModel(200 + answered.size));
        return answered.has('rep-a') && answered.has('rep-b');
      },
      { timeoutMs: 30_000, everyMs: 1 },
    );
    assert.deepEqual([...answered].filter((a) => a.startsWith('error')), []);
  });

  test('HTTP data plane calls count too: a frozen replica timing out /v1/embeddings (504) is ejected', async () => {
    const a = await m.waitFor('rep-a', (i) => i.status === 'running' && i.outlier.ejected === false);
    // The data plane reads every replica's Info before it picks one (once per child, then cached):
    // fetched now, while rep-a still answers.
    const warm = await m.api('POST', '/v1/embeddings', { model: MODEL, input: 'warm up' });
    assert.equal(warm.status, 200, JSON.stringify(warm.body));
    frozen = a.pid as number;
    process.kill(-frozen, 'SIGSTOP');
    const seen: string[] = [];
    await until(
      'rep-a ejected by HTTP outcomes',
      async () => {
        const r = await m.api('POST', '/v1/embeddings', { model: MODEL, input: `http ${seen.length}` });
        seen.push(r.status === 200 ? 'ok' : `${r.status} ${r.body?.error?.code ?? r.body?.error_type ?? JSON.stringify(r.body)}`);
        const i = (await m.api('GET', '/instances/rep-a')).body;
        return i.outlier?.ejected === true && i;
      },
      { timeoutMs: 60_000, everyMs: 1, context: () => `answers: ${JSON.stringify(seen)}` },
    );
    assert.ok(seen.some((x) => x.startsWith('504')), `rep-a's requests timed out (504): ${JSON.stringify(seen)}`);
    assert.equal((await m.api('GET', '/instances/rep-a')).body.outlier.reason, 'consecutive_failures');
    assert.match(await metrics(), /teiplex_outlier_ejections_total\{instance="rep-a",reason="consecutive_failures"\} 1/);
    const during: number[] = [];
    for (let i = 0; i < 4; i++) during.push((await m.api('POST', '/v1/embeddings', { model: MODEL, input: `during ${i}` })).status);
    assert.deepEqual(during, [200, 200, 200, 200]);
    process.kill(-frozen, 'SIGCONT');
    frozen = undefined;
    await m.waitFor('rep-a', (i) => i.outlier.ejected === false, 60_000);
  });
});
