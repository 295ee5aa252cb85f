/**
 * `teiplex router --standby` and `--onnx-cache-dir`, real processes: a standby router (started
 * without a model) handed its flags on stdin answers exactly like a router started with them; a
 * standby whose stdin closes first exits 0; the optimized-model cache writes an entry at the first
 * start and a router loading from it answers the same embeddings.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { projectPath } from '../../src/common/paths.js';
import { findReadyLine, startRouterProcess, type RouterProcess } from '../helpers/router-process.js';
import { testModel } from '../helpers/models.js';
import { until } from '../helpers/wait.js';

const TEXTS = ['a standby router takes its model', 'and answers like any other', 'x'];

let dir: string;
let model: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-router-standby-'));
  model = await testModel({ kind: 'embedding', shape: 'tiny' });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function embed(httpPort: number): Promise<number[][]> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: TEXTS }) });
  assert.equal(res.status, 200);
  return (await res.json()) as number[][];
}

/** A standby router: resolves once it printed its standby line. */
async function startStandby(): Promise<{ proc: ReturnType<typeof spawn>; output(): string; exited: Promise<number | null> }> {
  const proc = spawn(process.execPath, [projectPath('bin', 'teiplex.js'), 'router', '--standby'], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  try {
    await until('the standby line', () => out.includes('{"msg":"standby"') || proc.exitCode !== null, { timeoutMs: 60_000, context: () => out });
    assert.equal(proc.exitCode, null, `exited before its standby line:\n${out}`);
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  }
  return { proc, output: () => out, exited };
}

test('a standby router handed its flags on stdin serves that model: embeddings equal to a router started with the flags', async () => {
  const flags = ['--model-id', model, '--port', '0', '--http-port', '0', '--hostname', '127.0.0.1'];
  const fresh: RouterProcess = await startRouterProcess(flags);
  let expected: number[][];
  try {
    expected = await embed(fresh.httpPort!);
  } finally {
    await fresh.stop();
  }

  const sb = await startStandby();
  try {
    assert.equal(findReadyLine(sb.output()), undefined, 'no model yet: no ready line');
    sb.proc.stdin!.end(`${JSON.stringify({ argv: flags })}\n`);
    const ready = await until('the ready line', () => {
      assert.equal(sb.proc.exitCode, null, `exited before its ready line:\n${sb.output()}`);
      return findReadyLine(sb.output());
    }, { timeoutMs: 60_000, context: () => sb.output() });
    assert.equal(ready.model_id, model);
    assert.equal(ready.pid, sb.proc.pid, 'the standby process itself serves');
    assert.deepEqual(await embed(Number(ready.http_port)), expected);
  } finally {
    sb.proc.kill('SIGTERM');
  }
  assert.equal(await sb.exited, 0);
});

test('a standby router whose stdin closes before any flags exits 0 (its manager went away)', async () => {
  const sb = await startStandby();
  sb.proc.stdin!.end();
  assert.equal(await sb.exited, 0);
});

test('--onnx-cache-dir: the first start writes an entry (graph, external weights, calibration); a start from it answers the same', async () => {
  const cache = path.join(dir, 'onnx-cache');
  const flags = ['--model-id', model, '--port', '0', '--http-port', '0', '--hostname', '127.0.0.1'];
  const plain = await startRouterProcess(flags);
  let expected: number[][];
  try {
    expected = await embed(plain.httpPort!);
  } finally {
    await plain.stop();
  }
  const first = await startRouterProcess([...flags, '--onnx-cache-dir', cache]);
  try {
    assert.deepEqual(await embed(first.httpPort!), expected);
  } finally {
    await first.stop();
  }
  const entries = await readdir(cache);
  assert.equal(entries.length, 1, `one entry: ${entries.join(', ')}`);
  for (const f of ['model.onnx', 'model.onnx.data', 'calibration.json']) assert.ok(existsSync(path.join(cache, entries[0], f)), f);
  const second = await startRouterProcess([...flags, '--onnx-cache-dir', cache]);
  try {
    assert.match(second.output(), /kept in the optimized-model cache/);
    const got = await embed(second.httpPort!);
    for (let r = 0; r < expected.length; r++) for (let k = 0; k < expected[r].length; k++) assert.ok(Math.abs(got[r][k] - expected[r][k]) < 1e-5, `row ${r} dim ${k}`);
  } finally {
    await second.stop();
  }
});
