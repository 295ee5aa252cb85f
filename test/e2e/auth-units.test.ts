/**
 * Authentication pieces in-process: subject patterns and SAN parsing, the allow-list, API keys
 * (hash match, what a restriction allows), config errors that name the key or the file, gRPC open methods, and
 * the HTTP hook on a small fastify app (admin key, data-plane key, a restricted key's grant, open routes).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import Fastify from 'fastify';
import { AllowList, parseSubjectAltNames, parseSubjectPattern, subjectMatches } from '../../src/auth/allow-list.js';
import { mayUse } from '../../src/auth/access.js';
import { ApiKeys, sha256Hex } from '../../src/auth/api-keys.js';
import { loadAuth } from '../../src/auth/auth.js';
import { grpcMethodIsOpen } from '../../src/auth/grpc-auth.js';
import { httpRouteKind, installHttpAuth, requestGrant } from '../../src/auth/http-auth.js';
import type { TeiplexError } from '../../src/common/errors.js';
import { DEFAULTS, resolveConfig, type ApiKeyConfig, type AuthConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/config/validate.js';
import { adminErrorHandler } from '../../src/http/error-body.js';
import { assertErrorCode } from '../helpers/data-plane.js';
import { makeTestPki, type TestPki } from '../helpers/test-certs.js';

let dir: string;
let pki: TestPki;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-auth-'));
  pki = makeTestPki(dir);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const peer = (subject: Record<string, string | string[]>, subjectaltname?: string): PeerCertificate =>
  ({ subject, subjectaltname, raw: Buffer.from(JSON.stringify([subject, subjectaltname])), fingerprint256: JSON.stringify([subject, subjectaltname]) }) as unknown as PeerCertificate;

describe('subject patterns and SANs', () => {
  test('parse: pairs, spaces, escapes, case of attribute names', () => {
    assert.deepEqual(parseSubjectPattern('CN=client-a,O=acme'), [
      ['cn', 'client-a'],
      ['o', 'acme'],
    ]);
    assert.deepEqual(parseSubjectPattern(' cn = a\\,b , OU=x\\=y'), [
      ['cn', 'a,b'],
      ['ou', 'x=y'],
    ]);
    for (const bad of ['client-a', 'CN=', '=x', 'CN=a,,O=b', 'CN=a\\', 'C N=a']) assert.throws(() => parseSubjectPattern(bad), Error, bad);
  });

  test('match: every listed attribute, others ignored, multi-valued attributes', () => {
    const p = parseSubjectPattern('CN=client-a,O=acme');
    assert.equal(subjectMatches(p, { CN: 'client-a', O: 'acme', C: 'US' } as never), true);
    assert.equal(subjectMatches(p, { CN: 'client-a', O: 'Acme' } as never), false);
    assert.equal(subjectMatches(p, { CN: 'client-a' } as never), false);
    assert.equal(subjectMatches(parseSubjectPattern('OU=ml'), { CN: 'x', OU: ['web', 'ml'] } as never), true);
  });

  test("Node's subjectaltname string, quoted values included", () => {
    assert.deepEqual(parseSubjectAltNames('DNS:a.example, IP Address:127.0.0.1, URI:spiffe://acme/x'), [
      { type: 'DNS', value: 'a.example' },
      { type: 'IP Address', value: '127.0.0.1' },
      { type: 'URI', value: 'spiffe://acme/x' },
    ]);
    assert.deepEqual(parseSubjectAltNames('URI:"http://a/b,c", DNS:z'), [
      { type: 'URI', value: 'http://a/b,c' },
      { type: 'DNS', value: 'z' },
    ]);
    assert.deepEqual(parseSubjectAltNames(undefined), []);
  });

  test('allow-list: subjects or SANs (DNS any case, URI exact, IP any spelling)', () => {
    const list = new AllowList({ allowed_subjects: ['CN=client-a,O=acme'], allowed_sans: ['Client-S.internal', 'spiffe://acme/s', '::1'] });
    assert.equal(list.check(peer({ CN: 'client-a', O: 'acme' })).allowed, true);
    assert.equal(list.check(peer({ CN: 'b' }, 'DNS:client-s.INTERNAL')).allowed, true);
    assert.equal(list.check(peer({ CN: 'b' }, 'URI:spiffe://acme/s')).allowed, true);
    assert.equal(list.check(peer({ CN: 'b' }, 'URI:spiffe://ACME/s')).allowed, false);
    assert.equal(list.check(peer({ CN: 'b' }, 'IP Address:0:0:0:0:0:0:0:1')).allowed, true);
    const no = list.check(peer({ CN: 'client-b', O: 'other' }, 'DNS:client-b.internal'));
    assert.equal(no.allowed, false);
    assert.match(no.reason!, /CN=client-b,O=other.*DNS:client-b\.internal/);
    assert.equal(list.check(undefined).allowed, false);
    assert.equal(new AllowList({}).active, false);
    assert.throws(() => new AllowList({ allowed_subjects: ['CN=a', 'nonsense'] }, 'c.toml'), /c\.toml: auth\.mtls\.allowed_subjects\[1\]/);
  });
});

describe('API keys', () => {
  const keyConfig = (name: string, key: string, extra: Partial<ApiKeyConfig> = {}): ApiKeyConfig => ({ name, key_sha256: sha256Hex(key), ...extra });

  test('Bearer key matched by hash; missing, malformed and unknown keys are UNAUTHENTICATED', () => {
    const keys = new ApiKeys([keyConfig('a', 'secret-a'), keyConfig('b', 'secret-b', { instances: ['x'] })]);
    assert.equal(keys.authenticate('Bearer secret-a').name, 'a');
    assert.equal(keys.authenticate('bearer  secret-b').name, 'b');
    for (const [value, re] of [
      [undefined, /missing API key/],
      ['', /missing API key/],
      ['secret-a', /malformed/],
      ['Basic c2VjcmV0', /malformed/],
      ['Bearer secret-c', /unknown API key/],
      ['Bearer secret-a extra', /malformed/],
    ] as const) {
      assert.throws(
        () => keys.authenticate(value),
        (e: TeiplexError) => e.code === 'UNAUTHENTICATED' && re.test(e.message),
        String(value),
      );
    }
  });

  test('restrictions: instances and models; unrestricted keys go anywhere', () => {
    const keys = new ApiKeys([keyConfig('any', 'k0'), keyConfig('inst', 'k1', { instances: ['a'] }), keyConfig('model', 'k2', { models: ['org/m'] })]);
    const a = { name: 'a', spec: { model_id: 'org/other' } };
    const b = { name: 'b', spec: { model_id: 'org/m' } };
    const [any, inst, model] = ['k0', 'k1', 'k2'].map((k) => keys.authenticate(`Bearer ${k}`));
    assert.deepEqual([any.restricted, inst.restricted, model.restricted], [false, true, true]);
    assert.deepEqual([mayUse(any, a), mayUse(any, b), mayUse(undefined, a)], [true, true, true]);
    assert.deepEqual([mayUse(inst, a), mayUse(inst, b)], [true, false]);
    assert.deepEqual([mayUse(model, a), mayUse(model, b)], [false, true]);
  });
});

describe('config', () => {
  const hash = sha256Hex('k');
  const bad = (auth: unknown, re: RegExp) => assert.throws(() => resolveConfig({ auth }, {}, 'c.toml'), (e: Error) => e instanceof ConfigError && re.test(e.message), re.source);

  test('defaults, and errors naming the key', () => {
    assert.deepEqual(resolveConfig({}, {}).auth, DEFAULTS.auth);
    const c = resolveConfig({ auth: { open_metrics: false, api_keys: [{ name: 'a', key_sha256: hash, models: ['m'] }] } }, {});
    assert.equal(c.auth.open_metrics, false);
    assert.equal(c.auth.open_health, true);
    bad('x', /c\.toml: auth: expected a table/);
    bad({ api_keys: [{ name: 'a', key_sha256: 'abc' }] }, /auth\.api_keys\[0\]\.key_sha256/);
    bad({ api_keys: [{ name: 'a', key: 'plain' , key_sha256: hash }] }, /auth\.api_keys\[0\]/);
    bad({ api_keys: [{ name: 'a', key_sha256: hash }, { name: 'a', key_sha256: sha256Hex('j') }] }, /auth\.api_keys\[1\]\.name: 'a' appears twice/);
    bad({ api_keys: [{ name: 'a', key_sha256: hash }, { name: 'b', key_sha256: hash.toUpperCase() }] }, /auth\.api_keys\[1\]\.key_sha256: the same key/);
    bad({ api_keys: [{ name: 'a', key_sha256: hash, admin: true, instances: ['x'] }] }, /auth\.api_keys\[0\]: admin = true with instances/);
    bad({ mtls: { server_cert: 'a', server_key: 'b' } }, /auth\.mtls/);
    bad({ open_health: 'yes' }, /auth\.open_health/);
    bad({ mtls: { server_cert: 'a', server_key: 'b', client_ca: 'c', allowed_cns: [] } }, /auth\.mtls/);
  });

  test('cert files: unreadable, not PEM, key not matching: ConfigError naming the file', async () => {
    const mtls = { server_cert: pki.server.cert, server_key: pki.server.key, client_ca: pki.ca.cert };
    const auth = (m: Partial<typeof mtls>) => ({ ...DEFAULTS.auth, api_keys: [], mtls: { ...mtls, ...m } });
    const loaded = await loadAuth(auth({}), 'c.toml');
    assert.ok(loaded.mtls !== undefined && !loaded.perCall);
    const missing = path.join(dir, 'missing.pem');
    await assert.rejects(loadAuth(auth({ client_ca: missing }), 'c.toml'), (e: Error) => e instanceof ConfigError && e.message.includes(`auth.mtls.client_ca: cannot read '${missing}'`));
    const junk = path.join(dir, 'junk.pem');
    await writeFile(junk, 'not a certificate');
    await assert.rejects(loadAuth(auth({ server_cert: junk })), (e: Error) => e instanceof ConfigError && e.message.includes(`auth.mtls.server_cert: '${junk}' is not a PEM certificate`));
    await assert.rejects(loadAuth(auth({ server_key: path.join(dir, 'client-b.key') })), (e: Error) => e instanceof ConfigError && /auth\.mtls\.server_key: .* does not go with/.test(e.message));
  });
});

test('gRPC: health and reflection open per config, everything else checked', async () => {
  const open = await loadAuth({ ...DEFAULTS.auth, api_keys: [] });
  const closed = await loadAuth({ ...DEFAULTS.auth, api_keys: [], open_health: false, open_reflection: false });
  for (const p of ['/grpc.health.v1.Health/Check', '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo']) {
    assert.equal(grpcMethodIsOpen(open, p), true, p);
    assert.equal(grpcMethodIsOpen(closed, p), false, p);
  }
  assert.equal(grpcMethodIsOpen(open, '/tei_multiplexer.v1.TeiMultiplexer/ListInstances'), false);
});

describe('HTTP hook', () => {
  const keys = [
    { name: 'ops', key_sha256: sha256Hex('ops-key'), admin: true },
    { name: 'any', key_sha256: sha256Hex('any-key') },
    { name: 'team-a', key_sha256: sha256Hex('team-a-key'), instances: ['a'] },
  ];

  async function app(extra: Partial<AuthConfig> = {}) {
    const auth = await loadAuth({ ...DEFAULTS.auth, api_keys: keys, ...extra });
    const a = Fastify();
    installHttpAuth(a, auth);
    a.setErrorHandler(adminErrorHandler);
    a.get('/health', async () => ({ status: 'ok' }));
    a.get('/metrics', async () => 'metrics');
    a.get('/docs/json', async () => ({}));
    a.get('/instances', async () => []);
    a.get('/instances/:name', async () => ({}));
    a.post<{ Body: { model: string } }>('/v1/embeddings', async (req) => {
      const grant = requestGrant(req);
      return { key: grant?.name ?? null, allowed: mayUse(grant, { name: req.body.model, spec: { model_id: `org/${req.body.model}` } }) };
    });
    return a;
  }
  const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
  /** An injected answer's status and documented code (docs/errors.md: the admin body's `code`). */
  const refusal = (res: { statusCode: number; body: string }, status: number, code: string, what = '') =>
    assertErrorCode({ status: res.statusCode, body: JSON.parse(res.body) }, status, code, what);

  test('route kinds', () => {
    assert.equal(httpRouteKind('/health/all'), 'health');
    assert.equal(httpRouteKind('/docs/static/*'), 'docs');
    assert.equal(httpRouteKind('/instances/:name/logs'), 'admin');
    assert.equal(httpRouteKind('/gpus'), 'admin');
    for (const admin of ['/models', '/models/:name', '/models/:name/load', '/memory', '/config/reload']) assert.equal(httpRouteKind(admin), 'admin', admin);
    assert.equal(httpRouteKind('/events'), 'admin', 'the status page stream');
    for (const ui of ['/ui', '/ui/:file']) assert.equal(httpRouteKind(ui), 'ui', ui);
    assert.equal(httpRouteKind('/uix'), 'data');
    assert.equal(httpRouteKind('/v1/models'), 'data');
    assert.equal(httpRouteKind('/v1/embeddings'), 'data');
    assert.equal(httpRouteKind('/embed'), 'data');
  });

  test('defaults: open health/metrics/docs; admin needs an admin key; data plane needs a key and honours restrictions', async () => {
    const a = await app();
    for (const url of ['/health', '/metrics', '/docs/json']) assert.equal((await a.inject({ url })).statusCode, 200, url);
    const noKey = await a.inject({ url: '/instances' });
    refusal(noKey, 401, 'UNAUTHENTICATED');
    assert.equal(noKey.headers['www-authenticate'], 'Bearer realm="teiplex"');
    const wrong = await a.inject({ url: '/instances/x', headers: bearer('wrong') });
    refusal(wrong, 401, 'UNAUTHENTICATED');
    assert.match(wrong.json().error, /unknown API key/);
    const notAdmin = await a.inject({ url: '/instances', headers: bearer('any-key') });
    refusal(notAdmin, 403, 'PERMISSION_DENIED');
    assert.equal((await a.inject({ url: '/instances', headers: bearer('ops-key') })).statusCode, 200);

    const embed = (model: string, headers: Record<string, string> = {}) => a.inject({ method: 'POST', url: '/v1/embeddings', payload: { model }, headers });
    refusal(await embed('a'), 401, 'UNAUTHENTICATED');
    assert.deepEqual((await embed('b', bearer('any-key'))).json(), { key: 'any', allowed: true });
    assert.deepEqual((await embed('a', bearer('team-a-key'))).json(), { key: 'team-a', allowed: true });
    assert.deepEqual((await embed('b', bearer('team-a-key'))).json(), { key: 'team-a', allowed: false });
    refusal(await a.inject({ url: '/nowhere' }), 401, 'UNAUTHENTICATED', 'unknown paths are data plane: a key first');
    // With a key, the hook lets it through to routing (this small app's 404 is fastify's own).
    const nowhere = await a.inject({ url: '/nowhere', headers: bearer('any-key') });
    assert.equal(nowhere.statusCode, 404);
    assert.match(nowhere.json().message, /Route GET:\/nowhere not found/);
    await a.close();
  });

  test('closed health/metrics/docs need a key; admin_requires_key = false opens the admin API', async () => {
    const a = await app({ open_health: false, open_metrics: false, open_reflection: false, admin_requires_key: false });
    for (const url of ['/health', '/metrics', '/docs/json']) {
      refusal(await a.inject({ url }), 401, 'UNAUTHENTICATED', url);
      assert.equal((await a.inject({ url, headers: bearer('team-a-key') })).statusCode, 200, url);
    }
    assert.equal((await a.inject({ url: '/instances' })).statusCode, 200);
    await a.close();
  });
});
