/**
 * The desired state when the machine misbehaves, against a real manager: a state write that fails
 * answers 503 STATE_WRITE_FAILED naming the reason, changes nothing in memory, and leaves the
 * previous file intact; at boot, temp files of killed writes are removed, and an instance whose
 * port is taken by a foreign process stays in the desired state with its reason, backs off, and
 * starts once the port is free; a create that arrives while boot still stops the orphans of the
 * previous manager waits for boot, and loses nothing; a second manager on the same state file
 * refuses to boot and touches nothing. State files are private (0600).
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { parseState } from '../../src/state/state-store.js';
import { assertErrorCode } from '../helpers/data-plane.js';
import { freePort, loopbackConfig, startManager } from '../helpers/manager-process.js';
import { mux } from '../helpers/mux-client.js';
import { until } from '../helpers/wait.js';

let dir: string;
let sleeper: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-crash-state-'));
  // A stand-in TEI binary that never gets ready: the instance stays 'starting' with a live child.
  sleeper = path.join(dir, 'sleeper');
  await writeFile(sleeper, '#!/bin/sh\nexec sleep 600\n');
  await chmod(sleeper, 0o755);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function config(name: string, stateFile: string): Promise<string> {
  const file = path.join(dir, `${name}.toml`);
  const top = loopbackConfig(path.join(dir, name)).replace(/^state_file = .*$/m, `state_file = ${JSON.stringify(stateFile)}`);
  await writeFile(
    file,
    `${top}tei_binary_path = ${JSON.stringify(sleeper)}
graceful_shutdown_timeout_secs = 2
startup_timeout_secs = 600
[restart]
initial_backoff_ms = 100
max_backoff_ms = 300
max_restarts = 10000
window_secs = 60
`,
  );
  return file;
}

test('a failing state write: 503 STATE_WRITE_FAILED with the reason, the change rolled back, the old file intact', async () => {
  const stateDir = path.join(dir, 'wstate');
  const stateFile = path.join(stateDir, 'state.toml');
  const m = await startManager(await config('w', stateFile));
  try {
    assert.equal((await m.api('POST', '/instances', { name: 'up', model_id: 'org/a', runtime: 'tei' })).status, 201);
    assert.equal((await m.api('POST', '/instances?start=false', { name: 'down', model_id: 'org/b', runtime: 'tei' })).status, 201);
    assert.equal((await m.api('POST', '/models', { name: 'cat', model_id: 'org/cat', runtime: 'tei' })).status, 201);
    const before = await readFile(stateFile, 'utf8');
    assert.equal((await stat(stateFile)).mode & 0o777, 0o600, 'the state file is private');
    const listBefore = (await m.api('GET', '/instances')).body.map((i: any) => [i.name, i.desired_state]);

    // The disk goes away under the manager: its state directory is now a file.
    await rename(stateDir, `${stateDir}.moved`);
    await writeFile(stateDir, 'not a directory');
    const attempts: Array<[string, string, unknown?]> = [
      ['POST', '/instances', { name: 'new', model_id: 'org/c', runtime: 'tei' }],
      ['POST', '/instances/down/start'],
      ['POST', '/instances/up/stop'],
      ['POST', '/instances/down/restart'],
      ['DELETE', '/instances/up'],
      ['POST', '/models', { name: 'cat2', model_id: 'org/cat2', runtime: 'tei' }],
      ['DELETE', '/models/cat'],
    ];
    for (const [method, url, body] of attempts) {
      const r = await m.api(method, url, body);
      assert.equal(r.status, 503, `${method} ${url}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'STATE_WRITE_FAILED');
      assert.match(r.body.error, /could not save state to .*ENOTDIR/, 'the reason is named');
    }
    const listDuring = (await m.api('GET', '/instances')).body.map((i: any) => [i.name, i.desired_state]);
    assert.deepEqual(listDuring, listBefore, 'nothing changed in memory');
    assert.deepEqual((await m.api('GET', '/models')).body.map((x: any) => x.name), ['cat'], 'the catalog unchanged too');
    assert.equal((await m.api('GET', '/models/cat')).status, 200);
    assert.equal((await m.api('GET', '/instances/down')).body.status, 'stopped', 'no child started for an unsaved start');
    assert.notEqual((await m.api('GET', '/instances/up')).body.pid, null, 'no child stopped for an unsaved stop or delete');

    await rm(stateDir);
    await rename(`${stateDir}.moved`, stateDir);
    assert.equal(await readFile(stateFile, 'utf8'), before, 'the previous file is intact');
    assert.equal((await m.api('DELETE', '/instances/up')).status, 200, 'works again once the disk is back');
    assert.deepEqual(parseState(await readFile(stateFile, 'utf8'), stateFile).instances.map((i) => i.name), ['down']);
  } finally {
    await rm(stateDir, { recursive: true, force: true }).catch(() => undefined);
    await m.stop();
  }
});

test('boot: temp files of killed writes removed; an instance whose port is taken is kept, backs off with the reason, and starts once the port is free', async () => {
  const stateDir = path.join(dir, 'bstate');
  const stateFile = path.join(stateDir, 'state.toml');
  await mkdir(stateDir);
  const blocker: Server = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as { port: number }).port;
  await writeFile(
    stateFile,
    `version = 1\nmodels = []\n[[instances]]\nname = "blocked"\nmodel_id = "org/x"\nruntime = "tei"\nport = ${port}\ndesired_state = "running"\ncreated_at = "2026-01-01T00:00:00.000Z"\nsource = "api"\n`,
  );
  await writeFile(path.join(stateDir, '.state.toml.tmp-999999-3'), 'half a write');
  await writeFile(path.join(stateDir, 'unrelated.txt'), 'kept');
  const m = await startManager(await config('b', stateFile));
  try {
    assert.deepEqual(await readdir(stateDir).then((n) => n.sort()), ['state.toml', 'state.toml.lock', 'unrelated.txt'], 'temp file removed, nothing else');
    assert.equal(m.ready.staleTempsRemoved, 1);
    assert.deepEqual((m.ready.retrying as Array<{ name: string }>).map((r) => r.name), ['blocked']);
    const waiting = await m.waitFor('blocked', (i) => i.status === 'backoff' || i.status === 'starting', 10_000);
    assert.equal(waiting.pid, null, 'no child while the port is taken');
    const info = (await m.api('GET', '/instances/blocked')).body;
    assert.match(info.last_error, new RegExp(`port ${port}`), JSON.stringify(info));
    assert.equal(info.port, port, 'its port is kept');
    assert.ok(info.prometheus_port !== null && info.prometheus_port !== port, 'a tei child still gets its own Prometheus port');
    assert.deepEqual(parseState(await readFile(stateFile, 'utf8'), stateFile).instances.map((i) => i.name), ['blocked'], 'still in the desired state');
    await new Promise((r) => blocker.close(r));
    const started = await m.waitFor('blocked', (i) => i.pid !== null, 15_000);
    assert.equal(started.status, 'starting');
  } finally {
    blocker.close();
    await m.stop();
  }
});

/** POST JSON to 127.0.0.1:port; undefined while nothing listens. */
function post(port: number, url: string, body: unknown): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: url, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', () => resolve(undefined));
    req.end(JSON.stringify(body));
  });
}

test('a create that arrives while boot is still stopping orphans waits for boot: the restored instances are kept', async () => {
  const stateFile = path.join(dir, 'ostate', 'state.toml');
  // A child that ignores SIGTERM: stopping it at the next boot takes the whole grace period.
  const stubborn = path.join(dir, 'stubborn');
  await writeFile(stubborn, "#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.2; done\n");
  await chmod(stubborn, 0o755);
  const [apiPort, grpcPort] = [await freePort(), await freePort()];
  const file = (await config('o', stateFile)).replace(/\.toml$/, '-fixed.toml');
  await writeFile(
    file,
    (await readFile(await config('o', stateFile), 'utf8'))
      .replace('api_port = 0', `api_port = ${apiPort}`)
      .replace('grpc_port = 0', `grpc_port = ${grpcPort}`)
      .replace(JSON.stringify(sleeper), JSON.stringify(stubborn)),
  );
  let m = await startManager(file);
  assert.equal((await m.api('POST', '/instances', { name: 'old', model_id: 'org/old', runtime: 'tei' })).status, 201);
  await m.waitFor('old', (i) => i.pid !== null, 10_000);
  await m.stop('SIGKILL');
  const booting = startManager(file);
  // Each call is retried until the booting manager listens (bounded).
  const retry = <T>(what: string, attempt: () => Promise<T | undefined>): Promise<T> => until(what, attempt, { timeoutMs: 60_000 });
  // While boot stops the orphan: an admin create, and data-plane calls (HTTP, gRPC) naming the
  // restored instance, which must not be told it does not exist.
  const created = retry('an admin create accepted', () => post(apiPort, '/instances', { name: 'new', model_id: 'org/new', runtime: 'tei' }));
  const http = retry('an HTTP answer', () =>
    fetch(`http://127.0.0.1:${apiPort}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'old', input: 'x' }) }).then(
      async (r) => ({ status: r.status, body: await r.text() }),
      () => undefined,
    ),
  );
  const c = mux(grpcPort);
  const grpcCall = retry('a gRPC answer', () =>
    new Promise<grpc.ServiceError | null | undefined>((resolve) =>
      c.Embed({ target: { instance_name: 'old' }, request: { inputs: 'x' } }, { deadline: Date.now() + 30_000 }, (err: grpc.ServiceError | null) =>
        resolve(err?.code === grpc.status.UNAVAILABLE && /connect|ECONNREFUSED|No connection/i.test(err.details) ? undefined : err),
      ),
    ),
  );
  const [status, answer, grpcErr] = await Promise.all([created, http, grpcCall]);
  c.close();
  m = await booting;
  try {
    assert.equal(status, 201);
    assert.deepEqual(m.ready.orphansStopped, ['old'], 'the calls came in while boot was stopping the orphan');
    // Restored but not ready (its child never answers): 503, never 404.
    assertErrorCode({ status: answer.status, body: JSON.parse(answer.body) }, 503, 'INSTANCE_UNAVAILABLE');
    assert.match(answer.body, /old/);
    assert.doesNotMatch(answer.body, /not_found|not served/);
    assert.equal(grpcErr?.code, grpc.status.UNAVAILABLE, grpcErr?.details);
    assert.deepEqual(grpcErr.metadata.get('teiplex-error-code'), ['INSTANCE_UNAVAILABLE']);
    assert.match(grpcErr!.details, /instance 'old' is starting/);
    const names = (await m.api('GET', '/instances')).body.map((i: any) => i.name).sort();
    assert.deepEqual(names, ['new', 'old']);
    assert.deepEqual(parseState(await readFile(stateFile, 'utf8'), stateFile).instances.map((i) => i.name).sort(), ['new', 'old']);
  } finally {
    await m.stop();
  }
});

test('a second manager on the same state file refuses to boot, naming the first; the first and its children are untouched', async () => {
  const stateFile = path.join(dir, 'lstate', 'state.toml');
  const file = await config('l', stateFile);
  const first = await startManager(file);
  try {
    assert.equal((await first.api('POST', '/instances', { name: 'mine', model_id: 'org/x', runtime: 'tei' })).status, 201);
    const { pid } = await first.waitFor('mine', (i) => i.pid !== null, 10_000);
    const before = await readFile(stateFile, 'utf8');
    await assert.rejects(startManager(file), new RegExp(`state file .* is in use by another manager \\(pid ${first.proc.pid}\\)`));
    assert.equal((await first.api('GET', '/instances/mine')).body.pid, pid, 'its child was not stopped');
    assert.equal(await readFile(stateFile, 'utf8'), before, 'its state was not rewritten');
    assert.equal((await stat(`${stateFile}.lock`)).mode & 0o777, 0o600);
  } finally {
    assert.equal(await first.stop(), 0);
  }
  await assert.rejects(stat(`${stateFile}.lock`), /ENOENT/, 'released at a clean stop');
  const again = await startManager(file); // and a SIGKILLed owner does not block the next manager
  await again.stop('SIGKILL');
  const third = await startManager(file);
  assert.deepEqual(third.ready.orphansStopped, ['mine']);
  await third.stop();
});

