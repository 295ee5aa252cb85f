/**
 * The admin API's limits with a real manager (docs/manager.md REST API, docs/errors.md): 422
 * MAX_INSTANCES_REACHED once `max_instances` exist, 409 PORT_CONFLICT for a port another instance,
 * the manager or a foreign process holds, and 413 PAYLOAD_TOO_LARGE for a body over 1 MiB (one
 * just under is read and judged on its content). Nothing refused is created or written.
 * Instances are created with ?start=false: no child is needed.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';

describe('admin API limits', () => {
  let dir: string;
  let m: ManagerProcess;
  let stateFile: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-limits-'));
    stateFile = path.join(dir, 'state.toml');
    const file = path.join(dir, 'config.toml');
    await writeFile(file, `${loopbackConfig(dir)}standby_children = 0\nmax_instances = 2\n`);
    m = await startManager(file, {}, 120_000);
  });
  after(async () => {
    await m?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const names = async () => (await m.api('GET', '/instances')).body.map((i: any) => i.name);

  test('PORT_CONFLICT: a port of another instance, of the manager, of a foreign process', async () => {
    const a = await m.api('POST', '/instances?start=false', { name: 'a', model_id: 'org/a' });
    assert.equal(a.status, 201, JSON.stringify(a.body));
    const foreign: Server = createServer();
    await new Promise<void>((r) => foreign.listen(0, '127.0.0.1', r));
    const foreignPort = (foreign.address() as { port: number }).port;
    try {
      const before = await readFile(stateFile, 'utf8');
      for (const [port, why] of [
        [a.body.port, /port \d+ is already used by another instance or the manager/],
        [m.apiPort, /port \d+ is in use by another process/],
        [foreignPort, /port \d+ is in use by another process/],
      ] as const) {
        const r = await m.api('POST', '/instances?start=false', { name: 'b', model_id: 'org/b', port });
        assert.equal(r.status, 409, `port ${port}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, 'PORT_CONFLICT');
        assert.match(r.body.error, why);
      }
      assert.deepEqual(await names(), ['a']);
      assert.equal(await readFile(stateFile, 'utf8'), before, 'nothing written');
    } finally {
      await new Promise((r) => foreign.close(r));
    }
  });

  test('MAX_INSTANCES_REACHED: 422 once max_instances exist; room again after a delete', async () => {
    assert.equal((await m.api('POST', '/instances?start=false', { name: 'b', model_id: 'org/b' })).status, 201);
    const before = await readFile(stateFile, 'utf8');
    const r = await m.api('POST', '/instances?start=false', { name: 'c', model_id: 'org/c' });
    assert.equal(r.status, 422, JSON.stringify(r.body));
    assert.equal(r.body.code, 'MAX_INSTANCES_REACHED');
    assert.match(r.body.error, /max_instances \(2\) reached/);
    assert.deepEqual(await names(), ['a', 'b']);
    assert.equal(await readFile(stateFile, 'utf8'), before, 'nothing written');
    assert.equal((await m.api('DELETE', '/instances/b')).status, 200);
    assert.equal((await m.api('POST', '/instances?start=false', { name: 'c', model_id: 'org/c' })).status, 201);
  });

  test('a body over 1 MiB: 413 PAYLOAD_TOO_LARGE; one just under is read (and judged on its content)', async () => {
    const MiB = 1024 * 1024;
    // {"name":"big","model_id":"xxx..."}: the JSON around model_id is 28 bytes.
    const body = (size: number) => JSON.stringify({ name: 'big', model_id: 'x'.repeat(size - 28) });
    assert.equal(body(MiB + 1).length, MiB + 1);
    const over = await m.api('POST', '/instances?start=false', body(MiB + 1));
    assert.equal(over.status, 413, JSON.stringify(over.body).slice(0, 300));
    assert.equal(over.body.code, 'PAYLOAD_TOO_LARGE');
    for (const path of ['/instances/c/start', '/instances/c/restart']) {
      const r = await m.api('POST', path, body(MiB + 1));
      assert.equal(r.status, 413, `${path}: ${JSON.stringify(r.body).slice(0, 300)}`);
      assert.equal(r.body.code, 'PAYLOAD_TOO_LARGE');
    }
    // Just under: read and refused for what it says (a model_id over 1024 characters), not for its size.
    const under = await m.api('POST', '/instances?start=false', body(MiB - 1));
    assert.equal(under.status, 400, JSON.stringify(under.body).slice(0, 300));
    assert.equal(under.body.code, 'BAD_REQUEST');
    assert.match(under.body.error, /model_id/);
    assert.deepEqual(await names(), ['a', 'c']);
  });
});
