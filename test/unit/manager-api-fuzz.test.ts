/**
 * Every admin route fed malformed bodies, parameters and query strings (fast-check, seeded):
 * always a 4xx with a machine code, never a 5xx, never a crash, and the state file unchanged.
 * The manager's app in this process over loopback (no route here needs a child; inject() would
 * resolve the encoded `..` names before the router saw them).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { managerApp, type ManagerApp } from '../helpers/manager-app.js';

let m: ManagerApp;
let stateFile: string;

before(async () => {
  m = await managerApp('max_instances = 3\n[[models]]\nname = "keepm"\nmodel_id = "org/kept"\n', { listen: true });
  stateFile = m.stateFile;
  const keep = await m.api('POST', '/instances?start=false', { name: 'keep', model_id: 'org/never-started' });
  assert.equal(keep.status, 201, JSON.stringify(keep.body));
});
after(async () => {
  await m?.close();
});

const jsonValue = fc.jsonValue({ maxDepth: 3 });
/** Specs that are nearly right: one field wrong at a time, plus unknown fields. */
const badSpec = fc.oneof(
  fc.record({ name: fc.string().filter((s) => !/^[a-z0-9][a-z0-9._-]{0,62}$/.test(s)), model_id: fc.string() }),
  fc.record({ name: fc.constant('ok'), model_id: fc.constant('') }),
  fc.record({ name: fc.constantFrom('ok', 'a.b-c'), model_id: fc.constant('m'), port: fc.oneof(fc.integer({ min: -5, max: 0 }), fc.integer({ min: 65536 }), fc.string(), fc.double()) }),
  fc.record({ name: fc.constant('ok'), model_id: fc.constant('m'), runtime: fc.string().filter((s) => !['router', 'tei', 'command'].includes(s)) }),
  fc.record({ name: fc.constant('ok'), model_id: fc.constant('m'), gpu_id: fc.oneof(fc.integer({ max: -1 }), fc.string(), fc.constant(null)) }),
  fc.record({ name: fc.constant('ok'), model_id: fc.constant('m'), extra_args: fc.oneof(fc.string(), fc.array(fc.integer(), { minLength: 1 })) }),
  fc.record({ name: fc.constant('ok'), model_id: fc.constant('m'), env: fc.dictionary(fc.string().filter((k) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)), fc.string(), { minKeys: 1 }) }),
  fc.record({ name: fc.constant('ok'), model_id: fc.constant('m'), [`x${Math.random().toString(36).slice(2, 6)}`]: jsonValue }),
  fc.record({ name: fc.constant('keep'), model_id: fc.constant('m') }),
  fc.record({ name: fc.constant('ok'), model_id: fc.constant('m'), runtime: fc.constant('command') }),
  jsonValue,
);
/** Catalog specs one field wrong at a time (the catalog already has 'keepm' with model_id 'org/kept'). */
const badModel = fc.oneof(
  fc.record({ model_id: fc.constant('') }),
  fc.record({ model_id: fc.constant('m2'), name: fc.string().filter((s) => !/^[a-z0-9][a-z0-9._-]{0,55}$/.test(s)) }),
  fc.record({ model_id: fc.constant('m2'), min_replicas: fc.oneof(fc.integer({ max: -1 }), fc.integer({ min: 65 }), fc.double(), fc.string()) }),
  fc.record({ model_id: fc.constant('m2'), max_replicas: fc.oneof(fc.integer({ max: 0 }), fc.string()) }),
  fc.record({ model_id: fc.constant('m2'), min_replicas: fc.constant(3), max_replicas: fc.constant(2) }),
  fc.record({ model_id: fc.constant('m2'), memory_mb: fc.oneof(fc.double({ max: 0 }), fc.string(), fc.constant(null)) }),
  fc.record({ model_id: fc.constant('m2'), idle_timeout_secs: fc.oneof(fc.double({ max: 0 }), fc.string()) }),
  fc.record({ model_id: fc.constant('m2'), on_demand: fc.oneof(fc.string(), fc.integer()) }),
  fc.record({ model_id: fc.constant('m2'), gpu_ids: fc.oneof(fc.constant([]), fc.constant([7]), fc.array(fc.integer({ max: -1 }), { minLength: 1 })) }),
  fc.record({ model_id: fc.constant('m2'), port: fc.integer({ min: 1, max: 65535 }) }),
  fc.record({ model_id: fc.constantFrom('org/kept', 'm2'), name: fc.constant('keepm') }),
  fc.record({ model_id: fc.constant('m2'), aliases: fc.constant(['org/kept']) }),
  fc.record({ model_id: fc.constant('m2'), runtime: fc.constant('command') }),
  fc.record({ model_id: fc.constant('m2'), [`x${Math.random().toString(36).slice(2, 6)}`]: jsonValue }),
  jsonValue,
);
const badName = fc.oneof(fc.string(), fc.constantFrom('..', '../etc', 'UPPER', '-lead', 'a'.repeat(64), '%2e%2e', 'nope', 'a/b'));

function expectClientError(r: { status: number; body: any }, what: string): void {
  assert.ok(r.status >= 400 && r.status < 500, `${what}: status ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(typeof r.body?.code, 'string', `${what}: no code in ${JSON.stringify(r.body)}`);
  assert.equal(typeof r.body?.error, 'string');
}

test('malformed bodies, names and queries: 4xx with a code, never 5xx, no state change', async () => {
  const before = await readFile(stateFile, 'utf8');
  // Dots encoded too, so the client does not resolve '..' before the server sees it.
  const enc = (s: string) => encodeURIComponent(s).replace(/\./g, '%2E');
  await fc.assert(
    fc.asyncProperty(badSpec, async (body) => {
      const r = await m.api('POST', '/instances?start=false', body);
      expectClientError(r, `POST /instances ${JSON.stringify(body)}`);
    }),
    { numRuns: 300, seed: 42 },
  );
  await fc.assert(
    fc.asyncProperty(fc.string(), async (raw) => {
      const r = await m.api('POST', '/instances', `{"name": ${raw}`);
      expectClientError(r, 'broken JSON');
    }),
    { numRuns: 50, seed: 43 },
  );
  await fc.assert(
    fc.asyncProperty(badName, fc.constantFrom('GET', 'DELETE', 'POST start', 'POST stop', 'POST restart', 'GET logs', 'GET health'), async (name, route) => {
      const [method, action] = route.split(' ');
      const url = `/instances/${enc(name)}${action ? `/${action}` : ''}`;
      const r = await m.api(method, url);
      expectClientError(r, `${route} ${JSON.stringify(name)}`);
    }),
    { numRuns: 300, seed: 44 },
  );
  await fc.assert(
    fc.asyncProperty(fc.dictionary(fc.string({ minLength: 1 }), fc.string()), async (q) => {
      const qs = new URLSearchParams(q).toString();
      const r = await m.api('GET', `/instances/keep/logs?${qs}`);
      if (r.status !== 200) expectClientError(r, `logs ?${qs}`);
      else assert.ok(Array.isArray(r.body.lines));
    }),
    { numRuns: 100, seed: 45 },
  );
  await fc.assert(
    fc.asyncProperty(badModel, async (body) => {
      const r = await m.api('POST', '/models', body);
      expectClientError(r, `POST /models ${JSON.stringify(body)}`);
    }),
    { numRuns: 200, seed: 46 },
  );
  await fc.assert(
    fc.asyncProperty(badName, fc.constantFrom('GET', 'DELETE', 'POST load', 'POST unload'), async (name, route) => {
      const [method, action] = route.split(' ');
      const r = await m.api(method, `/models/${enc(name)}${action ? `/${action}` : ''}`);
      expectClientError(r, `${route} /models/${JSON.stringify(name)}`);
    }),
    { numRuns: 200, seed: 47 },
  );
  const managed = await m.api('POST', '/instances/keepm-1/stop');
  expectClientError(managed, 'unknown replica');
  const big = await m.api('POST', '/instances', { name: 'big', model_id: 'x'.repeat(2 * 1024 * 1024) });
  expectClientError(big, 'oversized body');
  assert.equal(await readFile(stateFile, 'utf8'), before, 'state unchanged');
  const list = await m.api('GET', '/instances');
  assert.deepEqual(list.body.map((i: { name: string }) => i.name), ['keep']);
});
