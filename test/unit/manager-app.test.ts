/**
 * The manager's routes that need no child, in this process through fastify's inject(): unknown
 * routes, OpenAPI and /docs, health and metrics, empty listings (admin and data plane), admin
 * validation and body limits, and API-key refusals. The same app `teiplex serve` builds, over a
 * real Supervisor and catalog with a temp state file and no instance.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { managerApp, type ManagerApp } from '../helpers/manager-app.js';

describe('no auth, no instance', () => {
  let m: ManagerApp;
  before(async () => {
    m = await managerApp();
  });
  after(async () => {
    await m?.close();
  });

  test('an unknown route is 404 NOT_FOUND naming the method and path, without the query', async () => {
    const r = await m.api('GET', '/nope/at/all?x=1');
    assert.equal(r.status, 404);
    assert.equal(r.body.code, 'NOT_FOUND');
    assert.match(r.body.error, /no route GET \/nope\/at\/all$/);
  });

  test('OpenAPI document and the docs UI; health; Prometheus metrics', async () => {
    const spec = await m.api('GET', '/docs/json');
    assert.equal(spec.status, 200);
    assert.match(spec.body.openapi, /^3\./);
    assert.equal(spec.body.info.title, 'teiplex manager');
    for (const p of ['/instances', '/instances/{name}', '/models', '/health']) assert.ok(p in spec.body.paths, `${p} in the OpenAPI paths`);
    // The data plane's TEI and OpenAI routes (the shared plugin, src/tei/http-routes.ts), with its tags and `model` field.
    assert.deepEqual(spec.body.paths['/embed']?.post?.tags, ['data plane (TEI)']);
    assert.ok('model' in (spec.body.paths['/embed']?.post?.requestBody?.content?.['application/json']?.schema?.properties ?? {}), 'model in /embed body');
    assert.deepEqual(spec.body.paths['/v1/embeddings']?.post?.tags, ['data plane (OpenAI)']);
    const ui = await m.api('GET', '/docs/');
    assert.equal(ui.status, 200);
    assert.match(String(ui.res?.headers['content-type']), /text\/html/);
    assert.deepEqual((await m.api('GET', '/health')).body, { status: 'ok' });
    const metrics = await m.api('GET', '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(String(metrics.body), /^# HELP /m);
  });

  test('empty listings: GET /instances, GET /models, GET /v1/models', async () => {
    assert.deepEqual((await m.api('GET', '/instances')).body, []);
    const models = await m.api('GET', '/models');
    assert.equal(models.status, 200);
    assert.deepEqual(models.body, []);
    const v1 = await m.api('GET', '/v1/models');
    assert.equal(v1.status, 200);
    assert.deepEqual(v1.body, { object: 'list', data: [] });
    const one = await m.api('GET', '/v1/models/nope');
    assert.equal(one.status, 404);
    assert.equal(one.body.error.code, 'model_not_found');
    assert.deepEqual(Object.keys(one.body.error).sort(), ['code', 'message', 'param', 'type'], "OpenAI's error shape, not TEI's");
    assert.equal(one.body.error.type, 'not_found_error');
  });

  test('admin validation: unknown instance 404, bad spec 400 with a code, broken JSON 400, oversized body 413; state unchanged', async () => {
    const before = await readFile(m.stateFile, 'utf8');
    const missing = await m.api('GET', '/instances/ghost');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, 'INSTANCE_NOT_FOUND');
    const bad = await m.api('POST', '/instances?start=false', { name: 'UPPER', model_id: 'm' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'BAD_REQUEST');
    assert.match(bad.body.error, /name/);
    const unknown = await m.api('POST', '/instances?start=false', { name: 'ok', model_id: 'm', surprise: 1 });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.code, 'BAD_REQUEST');
    assert.match(unknown.body.error, /^body: must NOT have additional properties/);
    const broken = await m.api('POST', '/instances', '{"name": ');
    assert.equal(broken.status, 400);
    assert.equal(broken.body.code, 'BAD_REQUEST');
    const big = await m.api('POST', '/instances', { name: 'big', model_id: 'x'.repeat(2 * 1024 * 1024) });
    assert.equal(big.status, 413);
    assert.equal(big.body.code, 'PAYLOAD_TOO_LARGE');
    assert.equal(await readFile(m.stateFile, 'utf8'), before);
  });

  test('an instance created with ?start=false is listed stopped, without a child, and persisted', async () => {
    const r = await m.api('POST', '/instances?start=false', { name: 'idle', model_id: 'org/never-started' });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const got = await m.api('GET', '/instances/idle');
    assert.equal(got.body.status, 'stopped');
    assert.equal(got.body.pid ?? null, null);
    assert.match(await readFile(m.stateFile, 'utf8'), /name = "idle"/);
    assert.equal((await m.api('DELETE', '/instances/idle')).status < 300, true);
  });
});

describe('API keys on the admin API and the data plane', () => {
  const KEYS = { ops: 'ops-secret', any: 'any-secret' };
  let m: ManagerApp;
  before(async () => {
    m = await managerApp(
      [
        '[[auth.api_keys]]',
        'name = "ops"',
        `key_sha256 = "${sha256Hex(KEYS.ops)}"`,
        'admin = true',
        '[[auth.api_keys]]',
        'name = "any"',
        `key_sha256 = "${sha256Hex(KEYS.any)}"`,
      ].join('\n'),
    );
  });
  after(async () => {
    await m?.close();
  });
  const bearer = (k: string) => ({ authorization: `Bearer ${k}` });

  test('admin routes: no key or an unknown key is 401, a data-plane key is 403, the admin key passes', async () => {
    const none = await m.api('GET', '/instances');
    assert.equal(none.status, 401);
    assert.equal(none.body.code, 'UNAUTHENTICATED');
    const unknown = await m.api('GET', '/instances', undefined, bearer('not-a-key'));
    assert.equal(unknown.status, 401);
    assert.equal(unknown.body.code, 'UNAUTHENTICATED');
    const dataKey = await m.api('GET', '/instances', undefined, bearer(KEYS.any));
    assert.equal(dataKey.status, 403);
    assert.equal(dataKey.body.code, 'PERMISSION_DENIED');
    assert.equal((await m.api('GET', '/instances', undefined, bearer(KEYS.ops))).status, 200);
  });

  test('data plane: no key is 401; a key lists the models it may use; health, metrics and docs stay open', async () => {
    const none = await m.api('GET', '/v1/models');
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, 'unauthenticated');
    assert.equal(none.body.error.type, 'authentication_error');
    const listed = await m.api('GET', '/v1/models', undefined, bearer(KEYS.any));
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body.data, []);
    assert.equal((await m.api('GET', '/health')).status, 200);
    assert.equal((await m.api('GET', '/metrics')).status, 200);
    assert.equal((await m.api('GET', '/docs/json')).status, 200);
  });
});
