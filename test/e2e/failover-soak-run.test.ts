/**
 * The failover soak (bench/failover-soak.ts) run for a few seconds against the real manager
 * (bin/teiplex.js -> dist/, so `npm run build` first), so the benchmark cannot rot: it starts the
 * two replicas, kills children, restarts one through the API, samples the manager's memory and
 * writes its JSON and Markdown. Its thresholds are the benchmark's business, not this test's:
 * the exit code may be 0 or 1 (a failed threshold), never anything else. Also the tally's verdict
 * on made-up counts, and the heap snapshot reader (bench/lib/heap-diff.ts) on a snapshot of this
 * process.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { writeHeapSnapshot } from 'node:v8';
import { byClass, chain, loadHeap } from '../../bench/lib/heap-diff.js';
import { PhaseTally } from '../../bench/soak/phase-tally.js';
import { projectPath } from '../../src/common/paths.js';
import { until } from '../helpers/wait.js';

test('failover soak: a short run kills children, restarts a replica through the API, and writes its figures', async (t) => {
  const out = mkdtempSync(path.join(tmpdir(), 'teiplex-failover-soak-test-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const args = ['--import', 'tsx', projectPath('bench', 'failover-soak.ts'), '--duration-secs', '5', '--kill-every-secs', '2', '--restarts', '1', '--settle-secs', '0', '--sample-every-secs', '1', '--out', out];
  const proc = spawn(process.execPath, args, { cwd: projectPath(), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
  t.after(() => proc.kill('SIGKILL'));
  const code = await until('the failover soak to exit', () => proc.exitCode ?? false, { timeoutMs: 400_000, everyMs: 200, context: () => output.slice(-4000) });
  assert.ok(code === 0 || code === 1, `exit code ${code}:\n${output.slice(-4000)}`);

  const json = readdirSync(out).find((f) => /^failover-soak-.*\.json$/.test(f));
  assert.ok(json !== undefined, `no JSON in ${readdirSync(out).join(', ')}:\n${output.slice(-4000)}`);
  assert.ok(readdirSync(out).includes(json.replace(/\.json$/, '.md')));
  const r = JSON.parse(readFileSync(path.join(out, json), 'utf8'));
  assert.equal(r.aborted, null, output.slice(-4000));
  assert.equal(r.pass, code === 0);
  assert.ok(r.phases.kills.requests > 0 && r.phases.restarts.requests > 0, JSON.stringify(r.phases));
  for (const p of ['kills', 'restarts']) {
    const c = r.phases[p];
    assert.equal(c.ok + c.errors + c.unanswered, c.requests, `${p}: every request is counted once`);
  }
  assert.ok(r.phases.kills.events >= 1, 'at least one child was killed');
  assert.equal(r.phases.restarts.events, 1);
  const restart = r.events.find((e: { what: string }) => e.what === 'api-restart');
  assert.notEqual(restart.detail.new_pid, restart.detail.old_pid, 'the restarted replica runs a new child');
  assert.ok(r.memory.length >= 2 && r.memory.every((m: { rss_mib: number | null }) => m.rss_mib !== null && m.rss_mib > 0), JSON.stringify(r.memory));
  assert.ok(r.memory.some((m: { heap_used_mib: number | null }) => m.heap_used_mib !== null), 'heap figures read from /metrics');
  assert.match(readFileSync(path.join(out, json.replace(/\.json$/, '.md')), 'utf8'), /\| kills \| \d+ \|/);
  // The run left its manager's output behind, and no child of its own.
  assert.ok(readFileSync(path.join(out, json.replace(/\.json$/, '-logs'), 'manager.log'), 'utf8').length > 0);
});

test('failover soak verdict: over 0.1 % errors while killing, any error while restarting, anything unanswered', () => {
  const tally = new PhaseTally();
  for (let i = 0; i < 999; i++) tally.ok('kills', i / 100);
  tally.error('kills', 5, 'grpc-0', 'grpc:UNAVAILABLE', 3);
  assert.deepEqual(tally.verdict(), { pass: true, reasons: [] }, '1 error in 1000 requests is 0.1 %: allowed');
  tally.error('kills', 6, 'http-0', 'http:503:instance_unavailable', 3);
  assert.match(tally.verdict().reasons.join(), /kills phase: 2 errors in 1001 requests/);
  const restarts = new PhaseTally();
  restarts.ok('restarts', 1);
  restarts.error('restarts', 2, 'grpc-1', 'grpc:UNAVAILABLE', 3);
  assert.match(restarts.verdict().reasons.join(), /restarts phase: 1 errors \(must be 0\)/);
  const unanswered = new PhaseTally();
  unanswered.unanswered('restarts', 2, 'grpc-1', 15_000);
  assert.match(unanswered.verdict().reasons.join(), /restarts phase: 1 requests unanswered/);
  // Errors per kill: from each kill until the next.
  assert.deepEqual(tally.perKill([0, 5.5]).map((k) => k.errors), [1, 1]);
});

test('heap diff: retained sizes from the dominator tree, and a chain from a root to an object', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'teiplex-heap-diff-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  class HeapDiffMarker {
    readonly payload = new Array(1000).fill(0).map((_, i) => ({ i }));
  }
  const held = { markers: [new HeapDiffMarker(), new HeapDiffMarker()] };
  const heap = loadHeap(writeHeapSnapshot(path.join(dir, 'a.heapsnapshot')));
  const marker = byClass(heap).get('HeapDiffMarker');
  assert.equal(marker?.count, 2);
  // Each marker alone retains its 1000 small objects and their array: more than its own size.
  assert.ok(marker!.retained > marker!.self + 2 * 1000 * 8, JSON.stringify(marker));
  const i = heap.cls.indexOf('HeapDiffMarker');
  assert.equal(chain(heap, i, 64).at(-1)?.startsWith('HeapDiffMarker'), true);
  assert.equal(held.markers.length, 2);
});
