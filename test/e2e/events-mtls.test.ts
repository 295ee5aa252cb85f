/**
 * The status page under [auth.mtls] with an allow-list and API keys (the manager's app in this
 * process, listening on loopback over HTTPS): /events needs an allow-listed client certificate
 * and an admin key like every admin route; the page's shell (/ui) needs no key but the same
 * allow-listed certificate; without a certificate the handshake fails.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { openEventStream, type ClientTls } from '../helpers/event-stream-client.js';
import { managerApp, type ManagerApp } from '../helpers/manager-app.js';
import { makeTestPki, mtlsToml, type TestPki } from '../helpers/test-certs.js';
import { until } from '../helpers/wait.js';

const ADMIN_KEY = 'mtls-events-admin-key';
let dir: string;
let pki: TestPki;
let m: ManagerApp;
let port: number;
const tls = (who: 'clientA' | 'clientB'): ClientTls => ({ ...pki[who], ca: pki.caPem });

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-events-mtls-'));
  pki = makeTestPki(dir);
  m = await managerApp(
    `${mtlsToml(pki, `allowed_subjects = ["CN=client-a,O=acme"]
`)}

[[auth.api_keys]]
name = "ops"
key_sha256 = "${createHash('sha256').update(ADMIN_KEY).digest('hex')}"
admin = true
`,
    { listen: true },
  );
  port = (m.app.server.address() as { port: number }).port;
});

after(async () => {
  await m?.close();
  await rm(dir, { recursive: true, force: true });
});

test('/events: an allow-listed certificate and an admin key; /ui: the certificate alone', { timeout: 60_000 }, async () => {
  const ok = await openEventStream(port, '/events', { authorization: `Bearer ${ADMIN_KEY}` }, tls('clientA'));
  assert.equal(ok.status, 200);
  await until('the snapshot', () => ok.events[0]?.event === 'snapshot');
  ok.close();

  const noKey = await openEventStream(port, '/events', {}, tls('clientA'));
  assert.equal(noKey.status, 401);
  assert.equal(noKey.body.code, 'UNAUTHENTICATED');
  const outside = await openEventStream(port, '/events', { authorization: `Bearer ${ADMIN_KEY}` }, tls('clientB'));
  assert.equal(outside.status, 401);
  assert.equal(outside.body.code, 'UNAUTHENTICATED');
  assert.match(outside.body.error, /CN=client-b/);

  const shell = await openEventStream(port, '/ui', {}, tls('clientA'));
  assert.equal(shell.status, 200);
  assert.match(String(shell.headers['content-security-policy']), /default-src 'none'/);
  shell.close();
  const shellOutside = await openEventStream(port, '/ui', {}, tls('clientB'));
  assert.equal(shellOutside.status, 401);
  assert.equal(shellOutside.body.code, 'UNAUTHENTICATED');
  await assert.rejects(openEventStream(port, '/ui', {}, { ca: pki.caPem } as ClientTls), 'no client certificate: the handshake fails');
});
