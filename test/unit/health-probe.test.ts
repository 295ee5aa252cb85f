/**
 * The supervisor's readiness probe (src/supervisor/health-probe.ts) over the manager's own HTTP/2
 * child channel, against grpc-js servers on loopback: grpc.health.v1 SERVING and NOT_SERVING, a
 * child without the health service (UNIMPLEMENTED: asked tei.v1.Info instead, and remembered),
 * and a port nobody listens on.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { HealthProbe } from '../../src/supervisor/health-probe.js';
import { serviceDefinition } from '../../src/tei/proto.js';
import { freePort } from '../helpers/manager-process.js';

const servers: grpc.Server[] = [];
let infoCalls = 0;

async function serve(withHealth: HealthImplementation | undefined, withInfo: boolean): Promise<number> {
  const server = new grpc.Server();
  withHealth?.addToServer(server);
  if (withInfo) {
    server.addService(serviceDefinition('tei.v1.Info'), {
      Info: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
        infoCalls++;
        cb(null, { model_id: 'm', model_type: 'MODEL_TYPE_EMBEDDING', max_client_batch_size: 1 });
      },
    });
  }
  servers.push(server);
  return new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
}

let serving: number;
let notServing: number;
let infoOnly: number;
let nothing: number;

before(async () => {
  serving = await serve(new HealthImplementation({ '': 'SERVING' }), false);
  notServing = await serve(new HealthImplementation({ '': 'NOT_SERVING' }), false);
  infoOnly = await serve(undefined, true);
  nothing = await freePort();
});

after(() => {
  for (const s of servers) s.forceShutdown();
});

test('health SERVING is ready; NOT_SERVING is not, and says so', async () => {
  const a = new HealthProbe(serving);
  const b = new HealthProbe(notServing);
  try {
    assert.deepEqual(await a.check(2000), { ok: true });
    assert.deepEqual(await b.check(2000), { ok: false, reason: 'health NOT_SERVING' });
  } finally {
    a.close();
    b.close();
  }
});

test('a child without the health service is asked Info, from then on directly', async () => {
  const p = new HealthProbe(infoOnly);
  try {
    const before = infoCalls;
    assert.deepEqual(await p.check(2000), { ok: true });
    assert.deepEqual(await p.check(2000), { ok: true });
    assert.equal(infoCalls - before, 2);
  } finally {
    p.close();
  }
});

test('nobody listening: not ready, UNAVAILABLE named (the refusal, not the deadline running out)', async () => {
  const p = new HealthProbe(nothing);
  try {
    const r = await p.check(10_000);
    assert.equal(r.ok, false);
    assert.match((r as { reason: string }).reason, /^health check: UNAVAILABLE/);
  } finally {
    p.close();
  }
});
