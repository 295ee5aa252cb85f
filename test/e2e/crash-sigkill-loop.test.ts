/**
 * The manager killed with SIGKILL at random moments, many times over one state file: right after
 * it gets ready (children being spawned), within 50 ms of a create/start/stop/restart/delete
 * answer, or while a request is in flight. After every kill the state file parses and holds every
 * acknowledged change; after every boot the API shows them, and no child of a dead manager runs
 * beside the new ones. Children are small listeners on their port (a stand-in TEI binary, found
 * by its script path) and real `teiplex router` children (found by the marker environment); both
 * are counted through /proc, by what the test knows, never by process name.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { parseState } from '../../src/state/state-store.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { elapse, until } from '../helpers/wait.js';

const ROUNDS = 12;

let dir: string;
let childScript: string;
let stateFile: string;
let configFile: string;
let model: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-crash-loop-'));
  model = await testModel({ kind: 'embedding' });
  // A stand-in TEI binary: binds its --port (so a forgotten one makes the port taken) and waits.
  childScript = path.join(dir, 'listener-child.cjs');
  await writeFile(
    childScript,
    `#!${process.execPath}
const port = Number(process.argv[process.argv.indexOf('--port') + 1]);
require('node:net').createServer().listen(port, '127.0.0.1');
setInterval(() => {}, 1 << 30);
`,
  );
  await chmod(childScript, 0o755);
  stateFile = path.join(dir, 'state.toml');
  configFile = path.join(dir, 'manager.toml');
  await writeFile(
    configFile,
    `${loopbackConfig(dir)}tei_binary_path = ${JSON.stringify(childScript)}
graceful_shutdown_timeout_secs = 3
startup_timeout_secs = 600
health_check_timeout_secs = 1
[restart]
initial_backoff_ms = 100
max_backoff_ms = 500
max_restarts = 10000
window_secs = 60
`,
  );
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Proc {
  pid: number;
  ppid: number;
}

/** Live (not zombie) processes that are children the test knows: by script path or by the marker. */
function ourChildren(): Proc[] {
  const found: Proc[] = [];
  for (const p of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (f[0] === 'Z' || f[0] === 'X') continue;
      const cmdline = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      const environ = readFileSync(`/proc/${p}/environ`, 'utf8');
      if (cmdline.includes(childScript) || environ.split('\0').includes(`TEIPLEX_MANAGER_STATE=${stateFile}`)) found.push({ pid: Number(p), ppid: Number(f[1]) });
    } catch {
      /* gone, or not readable: not ours */
    }
  }
  return found;
}

type Desired = 'running' | 'stopped' | 'absent';
/** What the test knows each name's desired state to be (undefined: an unacknowledged change may or may not have landed). */
const known = new Map<string, Desired | undefined>();
const NAMES = ['c0', 'c1', 'c2', 'c3', 'r0'];
for (const n of NAMES) known.set(n, 'absent');

function pick<T>(xs: readonly T[]): T {
  return xs[Math.floor(Math.random() * xs.length)];
}

/**
 * One admin call; returns what it makes known (undefined: nothing certain). A call that fails to
 * reach the manager is an error unless it is `inFlight` (the manager may die under it).
 */
async function operate(m: ManagerProcess, name: string, inFlight = false): Promise<{ acked: boolean; effect: () => void }> {
  const state = known.get(name);
  // Known states get an operation that applies (so most are acknowledged); unknown ones anything.
  const op =
    state === 'absent' ? 'create' : state === 'running' ? pick(['stop', 'restart', 'delete']) : state === 'stopped' ? pick(['start', 'restart', 'delete']) : pick(['create', 'start', 'stop', 'restart', 'delete']);
  const start = Math.random() < 0.7;
  const spec = name.startsWith('r') ? { name, model_id: model } : { name, model_id: 'org/listener', runtime: 'tei' };
  const call =
    op === 'create' ? m.api('POST', `/instances?start=${start}`, spec) : op === 'delete' ? m.api('DELETE', `/instances/${name}`) : m.api('POST', `/instances/${name}/${op}`);
  const r = await call.catch((err: unknown) => {
    if (!inFlight) throw err;
    return undefined;
  });
  if (r === undefined) return { acked: false, effect: () => known.set(name, undefined) };
  const ok = r.status === 200 || r.status === 201;
  const next: Desired | undefined = !ok ? known.get(name) : op === 'create' ? (start ? 'running' : 'stopped') : op === 'delete' ? 'absent' : op === 'stop' ? 'stopped' : 'running';
  if (!ok && ![409, 404].includes(r.status)) throw new Error(`${op} ${name}: ${r.status} ${JSON.stringify(r.body)}`);
  return { acked: ok, effect: () => known.set(name, next) };
}

function checkStateFile(where: string): void {
  const state = parseState(readFileSync(stateFile, 'utf8'), stateFile); // parses, every time
  const stored = new Map(state.instances.map((i) => [i.name, i.desired_state]));
  for (const [name, want] of known) {
    if (want === undefined) continue;
    assert.equal(stored.get(name) ?? 'absent', want, `${where}: ${name} in the state file`);
  }
}

async function checkBooted(m: ManagerProcess, where: string): Promise<void> {
  const managerPid = m.proc.pid!;
  const strays = ourChildren().filter((p) => p.ppid !== managerPid);
  assert.deepEqual(strays, [], `${where}: children of a dead manager still run (manager ${managerPid})\n${m.output().slice(-3000)}`);
  const list = (await m.api('GET', '/instances')).body as Array<{ name: string; port: number; prometheus_port: number | null }>;
  const ports = list.flatMap((i) => [i.port, i.prometheus_port]).filter((p) => p !== null);
  assert.equal(new Set(ports).size, ports.length, `${where}: a port given twice: ${JSON.stringify(list)}`);
  for (const [name, want] of known) {
    const r = await m.api('GET', `/instances/${name}`);
    if (want === undefined) {
      known.set(name, r.status === 404 ? 'absent' : r.body.desired_state);
      continue;
    }
    assert.equal(r.status === 404 ? 'absent' : r.body.desired_state, want, `${where}: ${name} via the API\n${m.output().slice(-3000)}`);
  }
  checkStateFile(`${where}, after boot`);
}

test('SIGKILL at random moments: acknowledged changes survive, no child of a dead manager runs beside the new ones, the state always parses', { timeout: 600_000 }, async () => {
  let acked = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const m = await startManager(configFile);
    await checkBooted(m, `round ${round}`);
    const mode = (['ops', 'ops', 'in-flight', 'after-ready'] as const)[round % 4];
    if (mode === 'after-ready') {
      // Boot has just started the restored instances: their children are being spawned now.
      await elapse(Math.random() * 50, 'random kill instant (during boot)');
    } else {
      for (let i = Math.floor(Math.random() * 4); i > 0; i--) {
        const r = await operate(m, pick(NAMES));
        r.effect();
        if (r.acked) acked++;
      }
      const name = pick(NAMES);
      if (mode === 'ops') {
        const r = await operate(m, name);
        r.effect();
        if (r.acked) acked++;
        await elapse(Math.random() * 50, 'random kill instant');
      } else {
        known.set(name, undefined); // in flight when the manager dies: either outcome is fine
        void operate(m, name, true);
        await elapse(Math.random() * 40, 'random kill instant (a call in flight)');
      }
    }
    await m.stop('SIGKILL');
    checkStateFile(`round ${round}, after the kill`);
  }
  const m = await startManager(configFile);
  try {
    await checkBooted(m, 'final boot');
    assert.ok(acked >= ROUNDS / 2, `only ${acked} acknowledged changes`);
    // The final manager's children are exactly those its instances report (a child being spawned
    // shows in its instance's pid once spawned: polled, bounded).
    let seen = '';
    await until(
      'every child of the final manager known to an instance',
      async () => {
        const list = (await m.api('GET', '/instances')).body as Array<{ name: string; pid: number | null }>;
        const pids = new Set(list.map((i) => i.pid));
        const unknown = ourChildren().filter((p) => !pids.has(p.pid));
        seen = `children no instance knows: ${JSON.stringify(unknown)}; instances ${JSON.stringify(list)}`;
        return unknown.length === 0;
      },
      { context: () => seen },
    );
  } finally {
    assert.equal(await m.stop(), 0);
  }
  assert.deepEqual(ourChildren(), [], 'a clean stop leaves no child');
});
