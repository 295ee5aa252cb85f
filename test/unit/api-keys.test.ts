/**
 * src/auth/api-keys.ts in-process (docs/security.md, "API keys"): the presented key is hashed and
 * found among the configured SHA-256 hashes; what `authorization` values are taken (`Bearer`, any
 * case, spaces around the key) and refused (missing, malformed, unknown: UNAUTHENTICATED with the
 * reason); each key's grant (name, restrictions, admin); the admin API's check.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { ApiKeys, authorizeAdmin, sha256Hex } from '../../src/auth/api-keys.js';
import { TeiplexError } from '../../src/common/errors.js';

/** The hash computed here, independently of the module's. */
const hash = (key: string) => createHash('sha256').update(Buffer.from(key, 'utf8')).digest('hex');

const keys = new ApiKeys([
  { name: 'ops', key_sha256: hash('ops-secret'), admin: true },
  { name: 'app', key_sha256: hash('app-secret').toUpperCase() },
  { name: 'team', key_sha256: hash('team-secret'), instances: ['a', 'b'] },
  { name: 'ml', key_sha256: hash('ml-secret'), models: ['org/m'] },
  { name: 'dup', key_sha256: hash('app-secret') },
]);

function refused(authorization: string | undefined, message: string): void {
  assert.throws(
    () => keys.authenticate(authorization),
    (err: unknown) => err instanceof TeiplexError && err.code === 'UNAUTHENTICATED' && err.message === message,
    JSON.stringify(authorization),
  );
}

test('sha256Hex is the hex SHA-256 of the UTF-8 key', () => {
  assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(sha256Hex('clé'), hash('clé'));
  assert.equal(sha256Hex(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});

test('a configured key is found by its hash (hex in either case), with its grant', () => {
  assert.deepEqual(keys.authenticate('Bearer ops-secret'), { name: 'ops', instances: undefined, models: undefined, admin: true, restricted: false });
  const app = keys.authenticate('Bearer app-secret');
  assert.equal(app.name, 'app', 'the first entry that matches');
  assert.equal(app.admin, false);
  assert.equal(app.restricted, false);
  const team = keys.authenticate('Bearer team-secret');
  assert.deepEqual([...(team.instances ?? [])], ['a', 'b']);
  assert.equal(team.models, undefined);
  assert.equal(team.restricted, true);
  const ml = keys.authenticate('Bearer ml-secret');
  assert.deepEqual([...(ml.models ?? [])], ['org/m']);
  assert.equal(ml.instances, undefined);
  assert.equal(ml.restricted, true);
});

test("'Bearer' in any case, one or more spaces before the key, trailing spaces", () => {
  for (const v of ['bearer ops-secret', 'BEARER ops-secret', 'Bearer   ops-secret', 'Bearer ops-secret  ']) assert.equal(keys.authenticate(v).name, 'ops', v);
});

test('missing, malformed and unknown keys are refused, each with its reason', () => {
  const missing = "missing API key: send the header 'authorization: Bearer <key>'";
  refused(undefined, missing);
  refused('', missing);
  const malformed = "malformed authorization: expected 'Bearer <key>'";
  for (const v of ['ops-secret', 'Basic ops-secret', 'Bearer', 'Bearer ', 'Bearerops-secret', 'Bearer ops secret', ' Bearer ops-secret', 'xBearer ops-secret', 'Bearer\tops-secret']) {
    refused(v, malformed);
  }
  for (const v of ['Bearer ops-secre', 'Bearer OPS-SECRET', `Bearer ${hash('ops-secret')}`]) refused(v, 'unknown API key');
});

test('enabled and hasAdminKey', () => {
  assert.equal(keys.enabled, true);
  assert.equal(keys.hasAdminKey, true);
  const none = new ApiKeys([]);
  assert.equal(none.enabled, false);
  assert.equal(none.hasAdminKey, false);
  assert.throws(() => none.authenticate('Bearer x'), /unknown API key/);
  const noAdmin = new ApiKeys([{ name: 'app', key_sha256: hash('k'), admin: false }]);
  assert.equal(noAdmin.enabled, true);
  assert.equal(noAdmin.hasAdminKey, false);
});

test('authorizeAdmin: an admin key passes; any other is PERMISSION_DENIED naming the key', () => {
  authorizeAdmin(keys.authenticate('Bearer ops-secret'));
  assert.throws(
    () => authorizeAdmin(keys.authenticate('Bearer team-secret')),
    (err: unknown) => err instanceof TeiplexError && err.code === 'PERMISSION_DENIED' && err.message === "API key 'team' may not use the admin API (it lacks admin = true)",
  );
});
