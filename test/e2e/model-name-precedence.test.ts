/**
 * Routing by name (docs/data-plane.md): a request's `model` resolves to the instance of that name
 * first; a catalog model of the same name (docs/on-demand.md) is not started for it. Real
 * manager; the instance is created stopped (no child), so the request must be answered 503 for
 * that instance, not by a cold start of the catalog model. Once the instance is deleted the same
 * name reaches the catalog model (its start begins). The catalog model's child is a real
 * `command` child (test/helpers/fake-child.ts).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { writeFakeChild, type FakeChild } from '../helpers/fake-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';

let dir: string;
let m: ManagerProcess | undefined;
let child: FakeChild;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-name-precedence-'));
  child = await writeFakeChild(dir, 'catalog-child');
});
after(async () => {
  await m?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function embeddings(model: string, noWait = false): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${m!.apiPort}/v1/embeddings`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(noWait ? { 'x-teiplex-no-wait': '1' } : {}) },
    body: JSON.stringify({ model, input: 'hello' }),
  });
  return { status: res.status, body: await res.json() };
}

test('an instance and a catalog model named alike: the instance answers for the name; the model is not started', async () => {
  const file = path.join(dir, 'config.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}standby_children = 0\nstartup_timeout_secs = 60\n[[models]]\nname = "dup"\nmodel_id = "org/catalog-dup"\nruntime = "command"\ncommand = ${JSON.stringify(child.command)}\n`,
  );
  m = await startManager(file, {}, 120_000);
  const created = await m.api('POST', '/instances?start=false', { name: 'dup', model_id: 'org/instance-dup' });
  assert.equal(created.status, 201, JSON.stringify(created.body));

  const r = await embeddings('dup');
  assert.equal(r.status, 503, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'instance_unavailable');
  assert.match(r.body.error.message, /instance 'dup' is stopped/);
  const cat = (await m.api('GET', '/models/dup')).body;
  assert.equal(cat.state, 'available', 'the catalog model was not started');
  assert.deepEqual(cat.replicas, []);
  assert.deepEqual(await child.events(), [], 'no catalog child spawned');

  // Without the instance, the name is the catalog model's: asked not to wait, its start begins.
  assert.equal((await m.api('DELETE', '/instances/dup')).status, 200);
  const cold = await embeddings('dup', true);
  assert.equal(cold.status, 503, JSON.stringify(cold.body));
  assert.equal(cold.body.error.code, 'model_loading');
  assert.ok(['loading', 'loaded'].includes((await m.api('GET', '/models/dup')).body.state));
});
