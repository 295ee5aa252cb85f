/**
 * Every admin route fed malformed bodies, parameters and query strings (fast-check, seeded):
 * always the documented 4xx code (docs/errors.md) at its documented status, never a 5xx, never
 * a crash, and the state file unchanged. Next to them, valid bodies generated from the same
 * schemas (InstanceSpecSchema, ModelSpecSchema): 201 with the answer's shape, and deleted again.
 * The manager's app in this process over loopback (no route here needs a child; inject() would
 * resolve the encoded `..` names before the router saw them). Every generated value comes from
 * the seeded run (`TEIPLEX_FUZZ_SEED` replays another one); a failure names its seed.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { Value } from '@sinclair/typebox/value';
import fc from 'fast-check';
import { ERROR_CODES, type ErrorCode } from '../../src/common/errors.js';
import { InstanceSpecSchema } from '../../src/config/instance-spec.js';
import { ModelSpecSchema } from '../../src/config/model-spec.js';
import { managerApp, type ManagerApp } from '../helpers/manager-app.js';

/** The run's seed: fixed, or another one to replay (`TEIPLEX_FUZZ_SEED=123`); each property adds its own offset. */
const SEED = Number(process.env.TEIPLEX_FUZZ_SEED ?? 42);
const runs = (offset: number, numRuns: number) => ({ seed: SEED + offset, numRuns, includeErrorInReport: true });

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
/** A field no schema knows, with any value: from the seeded run (no random key outside it). */
const unknownKey = (known: string[]) =>
  fc.tuple(
    fc.string({ minLength: 1, maxLength: 8 }).filter((k) => !known.includes(k) && k !== '__proto__'),
    jsonValue,
  );
/** A generated body with the codes docs/errors.md gives for what is wrong with it. */
type Bad = { body: unknown; codes: ErrorCode[] };
const as =
  (codes: ErrorCode[]) =>
  (body: unknown): Bad => ({ body, codes });
const SCHEMA: ErrorCode[] = ['BAD_REQUEST'];

/** Specs that are nearly right: one field wrong at a time, plus unknown fields. */
const badSpec: fc.Arbitrary<Bad> = fc.oneof(
  fc.record({ name: fc.string().filter((s) => !/^[a-z0-9][a-z0-9._-]{0,62}$/.test(s)), model_id: fc.string() }).map(as(SCHEMA)),
  fc.record({ name: fc.constant('ok'), model_id: fc.constant('') }).map(as(SCHEMA)),
  fc
    .record({
      name: fc.constantFrom('ok', 'a.b-c'),
      model_id: fc.constant('m'),
      port: fc.oneof(fc.integer({ min: -5, max: 0 }), fc.integer({ min: 65536 }), fc.string(), fc.double()),
    })
    .map(as(SCHEMA)),
  fc
    .record({ name: fc.constant('ok'), model_id: fc.constant('m'), runtime: fc.string().filter((s) => !['router', 'tei', 'command'].includes(s)) })
    .map(as(SCHEMA)),
  fc.record({ name: fc.constant('ok'), model_id: fc.constant('m'), gpu_id: fc.oneof(fc.integer({ max: -1 }), fc.string(), fc.constant(null)) }).map(as(SCHEMA)),
  fc
    .record({ name: fc.constant('ok'), model_id: fc.constant('m'), extra_args: fc.oneof(fc.string(), fc.array(fc.integer(), { minLength: 1 })) })
    .map(as(SCHEMA)),
  fc
    .record({
      name: fc.constant('ok'),
      model_id: fc.constant('m'),
      env: fc.dictionary(
        fc.string().filter((k) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)),
        fc.string(),
        { minKeys: 1 },
      ),
    })
    .map(as(SCHEMA)),
  unknownKey(Object.keys(InstanceSpecSchema.properties)).map(([k, v]) => ({ body: { name: 'ok', model_id: 'm', [k]: v }, codes: SCHEMA })),
  fc.record({ name: fc.constant('keep'), model_id: fc.constant('m') }).map(as(['INSTANCE_EXISTS'])),
  fc.record({ name: fc.constant('ok'), model_id: fc.constant('m'), runtime: fc.constant('command') }).map(as(SCHEMA)),
  // What the default [security] keeps from specs made through the API.
  fc
    .record({ name: fc.constant('ok'), model_id: fc.constant('m'), runtime: fc.constant('command'), command: fc.string({ minLength: 1, maxLength: 10 }) })
    .map(as(['FORBIDDEN_SETTING'])),
  fc
    .record({
      name: fc.constant('ok'),
      model_id: fc.constant('m'),
      env: fc.dictionary(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,10}$/), fc.string({ maxLength: 10 }), { minKeys: 1, maxKeys: 3 }),
    })
    .map(as(['FORBIDDEN_SETTING'])),
  jsonValue.map(as(SCHEMA)),
);
/** Catalog specs one field wrong at a time (the catalog already has 'keepm' with model_id 'org/kept'). */
const badModel: fc.Arbitrary<Bad> = fc.oneof(
  fc.record({ model_id: fc.constant('') }).map(as(SCHEMA)),
  fc.record({ model_id: fc.constant('m2'), name: fc.string().filter((s) => !/^[a-z0-9][a-z0-9._-]{0,55}$/.test(s)) }).map(as(SCHEMA)),
  fc
    .record({ model_id: fc.constant('m2'), min_replicas: fc.oneof(fc.integer({ max: -1 }), fc.integer({ min: 65 }), fc.double(), fc.string()) })
    .map(as(SCHEMA)),
  fc.record({ model_id: fc.constant('m2'), max_replicas: fc.oneof(fc.integer({ max: 0 }), fc.string()) }).map(as(SCHEMA)),
  fc.record({ model_id: fc.constant('m2'), min_replicas: fc.constant(3), max_replicas: fc.constant(2) }).map(as(SCHEMA)),
  fc.record({ model_id: fc.constant('m2'), memory_mb: fc.oneof(fc.double({ max: 0 }), fc.string(), fc.constant(null)) }).map(as(SCHEMA)),
  fc.record({ model_id: fc.constant('m2'), idle_timeout_secs: fc.oneof(fc.double({ max: 0 }), fc.string()) }).map(as(SCHEMA)),
  fc.record({ model_id: fc.constant('m2'), on_demand: fc.oneof(fc.string(), fc.integer()) }).map(as(SCHEMA)),
  fc.record({ model_id: fc.constant('m2'), gpu_ids: fc.oneof(fc.constant([]), fc.array(fc.integer({ max: -1 }), { minLength: 1 })) }).map(as(SCHEMA)),
  fc.record({ model_id: fc.constant('m2'), gpu_ids: fc.constant([7]) }).map(as(['INVALID_GPU_ID'])),
  fc.record({ model_id: fc.constant('m2'), port: fc.integer({ min: 1, max: 65535 }) }).map(as(SCHEMA)),
  fc.record({ model_id: fc.constantFrom('org/kept', 'm2'), name: fc.constant('keepm') }).map(as(['MODEL_EXISTS'])),
  fc.record({ model_id: fc.constant('m2'), aliases: fc.constant(['org/kept']) }).map(as(['MODEL_EXISTS'])),
  fc.record({ model_id: fc.constant('m2'), runtime: fc.constant('command') }).map(as(SCHEMA)),
  fc
    .record({ model_id: fc.constant('m2'), runtime: fc.constant('command'), command: fc.string({ minLength: 1, maxLength: 10 }) })
    .map(as(['FORBIDDEN_SETTING'])),
  unknownKey(Object.keys(ModelSpecSchema.properties)).map(([k, v]) => ({ body: { model_id: 'm2', [k]: v }, codes: SCHEMA })),
  jsonValue.map(as(SCHEMA)),
);
const badName = fc.oneof(fc.string(), fc.constantFrom('..', '../etc', 'UPPER', '-lead', 'a'.repeat(64), '%2e%2e', 'nope', 'a/b'));

/** A valid instance spec (start=false: no child), named `vi-...` so that it is new; every optional field sometimes. */
const suffix = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/);
const validSpec = fc.record(
  {
    name: suffix.map((x) => `vi-${x}`),
    model_id: fc.string({ minLength: 1, maxLength: 60, unit: 'grapheme' }),
    runtime: fc.constantFrom('router', 'tei'),
    max_batch_tokens: fc.integer({ min: 1, max: 1 << 20 }),
    max_concurrent_requests: fc.integer({ min: 1, max: 4096 }),
    pooling: fc.constantFrom('cls', 'mean', 'splade', 'last-token'),
    dtype: fc.constantFrom('float32', 'float16'),
    revision: fc.string({ minLength: 1, maxLength: 12 }),
    startup_timeout_secs: fc.double({ min: 0.001, max: 1e4, noNaN: true }),
    // Long flags only through the API (docs/security.md).
    extra_args: fc.array(
      fc
        .tuple(fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/), fc.option(fc.stringMatching(/^[A-Za-z0-9._]{1,8}$/)))
        .map(([f, v]) => `--${f}${v === null ? '' : `=${v}`}`),
      { maxLength: 4 },
    ),
    restart_policy: fc.constantFrom('always', 'on-failure', 'never'),
  },
  { requiredKeys: ['name', 'model_id'] },
);
/** A valid catalog spec (on demand, nothing kept loaded: no child), named `vm-...`, model id `fz/<name>`. */
const validModel = fc
  .record(
    {
      name: suffix.map((x) => `vm-${x}`.slice(0, 56).replace(/[-.]+$/, '')),
      runtime: fc.constantFrom('router', 'tei'),
      on_demand: fc.constant(true),
      idle_timeout_secs: fc.double({ min: 0.01, max: 1e5, noNaN: true }),
      max_replicas: fc.integer({ min: 1, max: 64 }),
      memory_mb: fc.double({ min: 1, max: 1e6, noNaN: true }),
      pooling: fc.constantFrom('cls', 'mean'),
      aliases: fc.uniqueArray(suffix, { maxLength: 3 }),
    },
    { requiredKeys: ['name'] },
  )
  .map((m) => ({ ...m, model_id: `fz/${m.name}`, ...(m.aliases ? { aliases: m.aliases.map((a) => `al-${m.name}-${a}`) } : {}) }));

/** A 4xx in the error body's shape, with one of `codes` at the status docs/errors.md gives it. */
function expectCode(r: { status: number; body: any }, codes: readonly ErrorCode[], what: string): void {
  const label = `${what}: status ${r.status} ${JSON.stringify(r.body)} (seed ${SEED})`;
  assert.ok(r.status >= 400 && r.status < 500, label);
  assert.ok(codes.includes(r.body?.code), `${label}: expected ${codes.join(' or ')}`);
  assert.equal(r.status, ERROR_CODES[r.body.code as ErrorCode].http, `${label}: the status docs/errors.md gives ${r.body.code}`);
  assert.equal(typeof r.body?.error, 'string');
}

const NAME_CODES: ErrorCode[] = ['BAD_REQUEST', 'INSTANCE_NOT_FOUND'];
const MODEL_NAME_CODES: ErrorCode[] = ['BAD_REQUEST', 'MODEL_NOT_FOUND'];
const INSTANCE_ROUTES = ['GET', 'DELETE', 'POST start', 'POST stop', 'POST restart', 'GET logs', 'GET health'];
const MODEL_ROUTES = ['GET', 'DELETE', 'POST load', 'POST unload'];
// Dots encoded too, so the client does not resolve '..' before the server sees it.
const enc = (s: string) => encodeURIComponent(s).replace(/\./g, '%2E');

test('malformed bodies, names and queries: the documented 4xx code at its status, never 5xx, no state change', async (t) => {
  const before = await readFile(stateFile, 'utf8');
  let invalid = 0;
  await fc.assert(
    fc.asyncProperty(badSpec, async ({ body, codes }) => {
      const r = await m.api('POST', '/instances?start=false', body);
      expectCode(r, codes, `POST /instances ${JSON.stringify(body)}`);
      invalid++;
    }),
    runs(0, 300),
  );
  await fc.assert(
    fc.asyncProperty(fc.string(), async (raw) => {
      const r = await m.api('POST', '/instances', `{"name": ${raw}`);
      expectCode(r, SCHEMA, 'broken JSON');
      invalid++;
    }),
    runs(1, 50),
  );
  await fc.assert(
    fc.asyncProperty(badName, fc.constantFrom(...INSTANCE_ROUTES), async (name, route) => {
      const [method, action] = route.split(' ');
      const url = `/instances/${enc(name)}${action ? `/${action}` : ''}`;
      const r = await m.api(method, url);
      expectCode(r, NAME_CODES, `${route} ${JSON.stringify(name)}`);
      invalid++;
    }),
    runs(2, 300),
  );
  await fc.assert(
    fc.asyncProperty(fc.dictionary(fc.string({ minLength: 1 }), fc.string()), async (q) => {
      const qs = new URLSearchParams(q).toString();
      const r = await m.api('GET', `/instances/keep/logs?${qs}`);
      if (r.status !== 200) expectCode(r, SCHEMA, `logs ?${qs}`);
      else assert.ok(Array.isArray(r.body.lines));
    }),
    runs(3, 100),
  );
  await fc.assert(
    fc.asyncProperty(badModel, async ({ body, codes }) => {
      const r = await m.api('POST', '/models', body);
      expectCode(r, codes, `POST /models ${JSON.stringify(body)}`);
      invalid++;
    }),
    runs(4, 200),
  );
  await fc.assert(
    fc.asyncProperty(badName, fc.constantFrom(...MODEL_ROUTES), async (name, route) => {
      const [method, action] = route.split(' ');
      const r = await m.api(method, `/models/${enc(name)}${action ? `/${action}` : ''}`);
      expectCode(r, MODEL_NAME_CODES, `${route} /models/${JSON.stringify(name)}`);
      invalid++;
    }),
    runs(5, 200),
  );
  expectCode(await m.api('POST', '/instances/keepm-1/stop'), ['INSTANCE_NOT_FOUND'], 'unknown replica');
  const big = await m.api('POST', '/instances', { name: 'big', model_id: 'x'.repeat(2 * 1024 * 1024) });
  expectCode(big, ['PAYLOAD_TOO_LARGE'], 'oversized body');
  assert.equal(big.status, 413);
  assert.equal(await readFile(stateFile, 'utf8'), before, 'state unchanged');
  const list = await m.api('GET', '/instances');
  assert.deepEqual(
    list.body.map((i: { name: string }) => i.name),
    ['keep'],
  );
  t.diagnostic(`invalid requests: ${invalid + 2}, all 4xx with the documented code (seed ${SEED})`);
});

test('valid bodies from the schemas: 201 with the created instance or model in the answer shape, then deleted (200)', async (t) => {
  let valid = 0;
  await fc.assert(
    fc.asyncProperty(validSpec, async (spec) => {
      assert.ok(Value.Check(InstanceSpecSchema, spec), `generator: ${JSON.stringify([...Value.Errors(InstanceSpecSchema, spec)][0])}`);
      const label = `POST /instances ${JSON.stringify(spec)} (seed ${SEED})`;
      const r = await m.api('POST', '/instances?start=false', spec);
      assert.equal(r.status, 201, `${label}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.name, spec.name, label);
      assert.equal(r.body.model_id, spec.model_id, label);
      assert.equal(r.body.runtime, spec.runtime ?? 'router', label);
      assert.equal(r.body.status, 'stopped', label);
      assert.equal(r.body.pid, null, 'start=false: no process');
      assert.ok(Number.isInteger(r.body.port) && r.body.port > 0, label);
      assert.equal(r.body.model, null);
      const d = await m.api('DELETE', `/instances/${enc(spec.name)}`);
      assert.equal(d.status, 200, `DELETE ${spec.name}: ${JSON.stringify(d.body)}`);
      assert.equal(d.body.name, spec.name);
      valid += 2;
    }),
    runs(6, 150),
  );
  await fc.assert(
    fc.asyncProperty(validModel, async (spec) => {
      assert.ok(Value.Check(ModelSpecSchema, spec), `generator: ${JSON.stringify([...Value.Errors(ModelSpecSchema, spec)][0])}`);
      const label = `POST /models ${JSON.stringify(spec)} (seed ${SEED})`;
      const r = await m.api('POST', '/models', spec);
      assert.equal(r.status, 201, `${label}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.name, spec.name, label);
      assert.equal(r.body.model_id, spec.model_id, label);
      assert.equal(r.body.state, 'available', label);
      assert.deepEqual(r.body.replicas, [], 'on demand: nothing started');
      assert.equal(r.body.max_replicas, spec.max_replicas ?? 1, label);
      for (const alias of spec.aliases ?? []) assert.ok(r.body.aliases.includes(alias), `${label}: alias ${alias}`);
      const d = await m.api('DELETE', `/models/${enc(spec.name)}`);
      assert.equal(d.status, 200, `DELETE /models/${spec.name}: ${JSON.stringify(d.body)}`);
      valid += 2;
    }),
    runs(7, 100),
  );
  const list = await m.api('GET', '/instances');
  assert.deepEqual(
    list.body.map((i: { name: string }) => i.name),
    ['keep'],
    'every valid instance deleted again',
  );
  t.diagnostic(`valid requests: ${valid}, all 2xx (seed ${SEED})`);
});

test('the corpus is a function of the seed: the same seed gives the same bodies, another seed other ones', () => {
  const corpus = (seed: number) => ({
    spec: fc.sample(badSpec, { seed, numRuns: 200 }),
    model: fc.sample(badModel, { seed, numRuns: 200 }),
    valid: fc.sample(validSpec, { seed, numRuns: 50 }),
    validModel: fc.sample(validModel, { seed, numRuns: 50 }),
  });
  assert.deepEqual(corpus(SEED), corpus(SEED));
  assert.notDeepEqual(corpus(SEED), corpus(SEED + 1000));
});
