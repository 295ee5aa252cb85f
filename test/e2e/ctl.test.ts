/**
 * `teiplex ctl` end to end: the built CLI (bin/teiplex.js, so `npm run build` first) against a
 * real manager with real `teiplex router` children and a catalog model. Every verb in table and
 * json output (the json parsed and compared with the manager's own answer; the tables split at
 * their header's column starts, each cell checked), the exit codes (0; 1 with the server's code
 * and message, never a stack trace: an unknown instance, a manager that is down, a wrong API key;
 * 2 for a usage error), `rm` of several names with one missing, `logs --tail` and `logs -f`
 * showing lines the child printed, the bash completion with names from the live manager, and the
 * mTLS flags against a manager that requires a client certificate and an admin key.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { projectPath } from '../../src/common/paths.js';
import { freePort, loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { type CliProcess, runCli, startCli } from '../helpers/router-process.js';
import { makeTestPki, type TestPki, mtlsToml } from '../helpers/test-certs.js';
import { until } from '../helpers/wait.js';

const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-ctl-'));
let m: ManagerProcess;
let url: string;
let emb: string;
let cfg: string;
let cfgText: string;

/** `teiplex ctl ARGS...` against the test manager (TEIPLEX_URL), no API key from the outer environment. */
const ctl = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(['ctl', ...args], { TEIPLEX_URL: url, TEIPLEX_API_KEY: '', ...env }, 180_000);

/** ctl must succeed; its stdout. */
async function ok(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await ctl(args, env);
  assert.equal(r.code, 0, `ctl ${args.join(' ')}: exit ${r.code}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** ctl must fail with `code`; its stderr, checked for the one-line shape and for no stack trace. */
async function fails(args: string[], code: 1 | 2, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await ctl(args, env);
  assert.equal(r.code, code, `ctl ${args.join(' ')}: exit ${r.code}\n${r.stderr}${r.stdout}`);
  assert.match(r.stderr, /^teiplex ctl: /);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  return r.stderr;
}

/**
 * An aligned table split into cells at its header's column starts; fails unless every column of
 * every row starts exactly there (a blank before it, not a blank at it, or an empty last cell).
 */
function table(text: string): Record<string, string>[] {
  const lines = text.trimEnd().split('\n');
  const head = lines[0];
  const starts = [...head.matchAll(/\S+/g)].map((x) => x.index!);
  const names = [...head.matchAll(/\S+/g)].map((x) => x[0]);
  return lines.slice(1).map((line) => {
    for (const s of starts.slice(1)) {
      if (line.length <= s) continue;
      assert.equal(line[s - 1], ' ', `a column ends before ${s}: ${JSON.stringify(line)}\n${text}`);
      assert.notEqual(line[s], ' ', `a column starts at ${s}: ${JSON.stringify(line)}\n${text}`);
    }
    return Object.fromEntries(names.map((n, c) => [n, line.slice(starts[c], starts[c + 1] ?? line.length).trim()]));
  });
}

interface Follower extends CliProcess {
  /** Resolves once it printed its first line (so it has asked the manager once). */
  first: Promise<unknown>;
}

/** `teiplex ctl logs NAME -f --tail 1`, running in the background. */
function follow(name: string): Follower {
  const c = startCli(['ctl', 'logs', name, '-f', '--tail', '1'], { TEIPLEX_URL: url, TEIPLEX_API_KEY: '' });
  return Object.assign(c, { first: until(`logs -f ${name}: its first line`, () => c.out.includes('\n'), { timeoutMs: 60_000, everyMs: 50, context: () => c.err }) });
}

const row = (rows: Record<string, string>[], name: string): Record<string, string> => {
  const r = rows.find((x) => x.NAME === name);
  assert.ok(r, `no row ${name} in ${JSON.stringify(rows)}`);
  return r;
};

before(async () => {
  emb = await testModel({ kind: 'embedding' });
  const rr = await testModel({ kind: 'reranker' });
  cfg = path.join(dir, 'teiplex.toml');
  cfgText = `${loopbackConfig(dir)}startup_timeout_secs = 120
health_check_interval_secs = 5

[[instances]]
name = "emb-a"
model_id = ${JSON.stringify(emb)}

[[instances]]
name = "emb-b"
model_id = ${JSON.stringify(emb)}

[[models]]
name = "rr"
model_id = ${JSON.stringify(rr)}
aliases = ["ranker"]
idle_timeout_secs = 600
max_replicas = 1
memory_mb = 700
`;
  await writeFile(cfg, cfgText);
  m = await startManager(cfg);
  url = `http://127.0.0.1:${m.apiPort}`;
  for (const n of ['emb-a', 'emb-b']) await m.waitFor(n, (i) => i.status === 'running', 180_000);
});

after(async () => {
  if (m) assert.equal(await m.stop(), 0);
  await rm(dir, { recursive: true, force: true });
});

describe('teiplex ctl against a real manager', () => {
  test('ls: an aligned table with every column; -o json is GET /instances; -o name the names', async () => {
    const api = (await m.api('GET', '/instances')).body as any[];
    const rows = table(await ok(['ls']));
    assert.deepEqual(Object.keys(rows[0]), ['NAME', 'MODEL', 'RUNTIME', 'STATUS', 'RESTARTS', 'UPTIME', 'PORT', 'GPU', 'MEMORY']);
    assert.deepEqual(
      rows.map((r) => r.NAME),
      ['emb-a', 'emb-b'],
    );
    for (const i of api) {
      const r = row(rows, i.name);
      assert.deepEqual([r.MODEL, r.RUNTIME, r.STATUS, r.RESTARTS, r.PORT, r.GPU, r.MEMORY], [emb, 'router', 'running', '0', String(i.port), '-', '-']);
      assert.match(r.UPTIME, /^\d+(s|m\d+s)$/);
    }
    const json = JSON.parse(await ok(['ls', '-o', 'json']));
    assert.deepEqual(
      json.map((i: any) => [i.name, i.model_id, i.port, i.pid, i.status]),
      api.map((i) => [i.name, i.model_id, i.port, i.pid, i.status]),
    );
    assert.equal(await ok(['ls', '-o', 'name']), 'emb-a\nemb-b\n');
    // --url over TEIPLEX_URL
    assert.equal(await ok(['--url', url, 'ls', '-o', 'name'], { TEIPLEX_URL: 'http://127.0.0.1:1' }), 'emb-a\nemb-b\n');
  });

  test('get: the instance field by field; -o json is GET /instances/{name}', async () => {
    const api = (await m.api('GET', '/instances/emb-a')).body;
    const text = await ok(['get', 'emb-a']);
    const fields = Object.fromEntries(
      text
        .trimEnd()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
    );
    assert.equal(fields.Name, 'emb-a');
    assert.equal(fields.Model, emb);
    assert.equal(fields.Status, 'running');
    assert.equal(fields['Desired state'], 'running');
    assert.equal(fields.PID, String(api.pid));
    assert.equal(fields.Port, String(api.port));
    assert.equal(fields['Catalog model'], '-');
    const json = JSON.parse(await ok(['get', 'emb-a', '-o', 'json']));
    assert.equal(json.name, 'emb-a');
    assert.equal(json.pid, api.pid);
    assert.equal(json.created_at, api.created_at);
  });

  test('create: --alias, extra args after -- reach the child, --wait returns once it runs; --no-start; a taken name', async () => {
    const out = await ok(['create', 'emb-c', '--model-id', emb, '--alias', 'see', '--wait', '--', '--max-client-batch-size', '8']);
    assert.deepEqual(
      table(out).map((r) => [r.NAME, r.STATUS]),
      [['emb-c', 'running']],
    );
    assert.equal((await m.api('GET', '/instances/emb-c')).body.status, 'running');
    // the extra args are in the child's argv (the spawn line of its log), the alias resolves on the data plane
    assert.match(await ok(['logs', 'emb-c']), /--max-client-batch-size 8/);
    const res = await fetch(`${url}/embed`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'see', inputs: ['hello'] }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(((await res.json()) as number[][]).length, 1);

    const stopped = JSON.parse(await ok(['create', 'emb-d', '--model-id', emb, '--no-start', '-o', 'json']));
    assert.equal(stopped.name, 'emb-d');
    assert.equal(stopped.status, 'stopped');
    assert.equal(stopped.desired_state, 'stopped');
    assert.equal((await m.api('GET', '/instances/emb-d')).body.pid, null);

    const err = await fails(['create', 'emb-d', '--model-id', emb], 1);
    assert.match(err, /^teiplex ctl: create emb-d: INSTANCE_EXISTS: .*emb-d/m);

    // --wait on a child that cannot start: exit 1 once it has failed, with its last error
    const broken = await fails(['create', 'emb-x', '--model-id', path.join(dir, 'no-such-model'), '--restart-policy', 'never', '--wait'], 1);
    assert.match(broken, /^teiplex ctl: create emb-x: instance 'emb-x' failed before it ran: .+/m);
    assert.equal((await m.api('GET', '/instances/emb-x')).body.status, 'failed');
    assert.equal(await ok(['rm', 'emb-x']), 'emb-x: deleted (status stopped)\n');
  });

  test('start, stop, restart: several names each; --wait; -o json an array for several', async () => {
    const started = await ok(['start', 'emb-d', '--wait']);
    assert.equal(started, 'emb-d: started (status running)\n');
    const stopped = await ok(['stop', 'emb-c', 'emb-d']);
    assert.equal(stopped, 'emb-c: stopped (status stopped)\nemb-d: stopped (status stopped)\n');
    for (const n of ['emb-c', 'emb-d']) assert.equal((await m.api('GET', `/instances/${n}`)).body.status, 'stopped');
    const both = JSON.parse(await ok(['start', 'emb-c', 'emb-d', '--wait', '-o', 'json']));
    assert.deepEqual(
      both.map((i: any) => [i.name, i.status]),
      [
        ['emb-c', 'running'],
        ['emb-d', 'running'],
      ],
    );
    const pid = (await m.api('GET', '/instances/emb-c')).body.pid;
    const restarted = JSON.parse(await ok(['restart', 'emb-c', '--wait', '-o', 'json']));
    assert.equal(restarted.status, 'running');
    assert.notEqual(restarted.pid, pid);
    assert.match(await fails(['stop', 'emb-c', 'emb-c'], 1), /^teiplex ctl: stop emb-c: NOT_RUNNING: /m);
  });

  test('rm of several names with one missing: each tried, the failure printed, exit 1; a follower of a deleted instance ends', async () => {
    const follower = follow('emb-d');
    await follower.first;
    const r = await ctl(['rm', 'emb-c', 'nope', 'emb-d']);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, 'emb-c: deleted (status stopped)\nemb-d: deleted (status stopped)\n');
    assert.equal(r.stderr, "teiplex ctl: rm nope: INSTANCE_NOT_FOUND: instance 'nope' not found\n");
    for (const n of ['emb-c', 'emb-d']) {
      const gone = await m.api('GET', `/instances/${n}`);
      assert.equal(gone.status, 404);
      assert.equal(gone.body.code, 'INSTANCE_NOT_FOUND');
    }
    assert.equal(await until('the follower of emb-d to exit', () => follower.proc.exitCode ?? false, { timeoutMs: 30_000 }), 1, follower.err);
    assert.equal(follower.err, "teiplex ctl: logs emb-d: INSTANCE_NOT_FOUND: instance 'emb-d' not found\n");
  });

  test("logs --tail shows a line the child printed; -o json the manager's range; logs -f picks up new lines", async () => {
    const all = (await ok(['logs', 'emb-a'])).trimEnd().split('\n');
    const childReady = all.filter((l) => !l.startsWith('[teiplex]') && /"msg":"ready"/.test(l));
    assert.equal(childReady.length, 1, `the child's ready line in:\n${all.join('\n')}`);
    assert.ok(
      all.some((l) => l.startsWith('[teiplex]')),
      "the manager's own lines are there too",
    );
    const last = await ok(['logs', 'emb-a', '--tail', '1']);
    assert.equal(last, `${all[all.length - 1]}\n`);
    const tail3 = (await ok(['logs', 'emb-a', '--tail', '3'])).trimEnd().split('\n');
    assert.deepEqual(tail3, all.slice(-3));
    const json = JSON.parse(await ok(['logs', 'emb-a', '--tail', '2', '-o', 'json']));
    assert.deepEqual(json.lines, all.slice(-2));
    assert.equal(json.end - json.start, 2);
    assert.equal(json.total_lines, json.end);

    // -f (--tail 1: its first line shows it has asked once), then a restart: the new child's
    // ready line arrives without a new call
    const follower = follow('emb-a');
    try {
      await follower.first;
      assert.equal(follower.out.split('\n').filter((l) => l !== '').length, 1, '--tail 1');
      await ok(['restart', 'emb-a', '--wait']);
      await until(
        "the new child's ready line in the follower's output",
        () => follower.out.split('\n').some((l) => !l.startsWith('[teiplex]') && /"msg":"ready"/.test(l) && l !== childReady[0]),
        { timeoutMs: 60_000, everyMs: 100, context: () => `followed:\n${follower.out}\nstderr:\n${follower.err}` },
      );
      assert.match(follower.out, /^\[teiplex\] .*/m, "the manager's lines about the restart too");
    } finally {
      follower.proc.kill('SIGINT');
    }
    assert.equal(await follower.exited, 0, `Ctrl-C ends logs -f cleanly: ${follower.err}`);
  });

  test('models, load, unload: the catalog; ls lists the loaded replica with its measured memory', async () => {
    const before = table(await ok(['models']));
    assert.deepEqual(Object.keys(before[0]), ['NAME', 'MODEL', 'RUNTIME', 'STATE', 'REPLICAS', 'MEMORY', 'IDLE-TIMEOUT', 'LAST-USED', 'ALIASES']);
    const rr = row(before, 'rr');
    assert.deepEqual([rr.STATE, rr.REPLICAS, rr.MEMORY, rr['IDLE-TIMEOUT'], rr.ALIASES], ['available', '0/1', '~700MiB', '10m0s', 'ranker']);
    assert.equal(await ok(['models', '-o', 'name']), 'rr\n');

    assert.equal(await ok(['load', 'ranker']), 'rr: loaded (state loaded, 1/1 replicas serving)\n');
    const model = (await m.api('GET', '/models/rr')).body;
    assert.equal(model.state, 'loaded');
    const replica = model.replicas[0].instance as string;
    await ok(['memory']); // samples the footprints now
    const rows = await until(
      'the replica in ls with its footprint',
      async () => {
        const t = table(await ok(['ls']));
        return t.some((r) => r.NAME === replica && r.MEMORY !== '-') && t;
      },
      { timeoutMs: 30_000, everyMs: 500 },
    );
    const r = row(rows, replica);
    assert.equal(r.STATUS, 'running');
    assert.match(r.MEMORY, /^\d+(\.\d)?(MiB|GiB)$/);
    const footprint = (await m.api('GET', '/models/rr')).body.replicas[0].footprint_mb as number;
    assert.ok(footprint > 0);
    assert.match(await ok(['get', replica]), /^Catalog model:\s+rr$/m);
    assert.match(await fails(['stop', replica], 1), /INSTANCE_MANAGED/);

    const json = JSON.parse(await ok(['models', 'rr', '-o', 'json']));
    assert.equal(json.length, 1);
    assert.equal(json[0].name, 'rr');
    assert.equal(json[0].replicas[0].instance, replica);
    assert.match(await fails(['models', 'rr', 'nope'], 1), /^teiplex ctl: models nope: MODEL_NOT_FOUND: /m);

    const unloaded = JSON.parse(await ok(['unload', 'rr', '-o', 'json']));
    assert.equal(unloaded.state, 'available');
    assert.deepEqual(unloaded.replicas, []);
    assert.match(await fails(['load', 'nope'], 1), /^teiplex ctl: load nope: MODEL_NOT_FOUND: /m);
  });

  test("memory, gpus: tables and the manager's answers", async () => {
    const mem = table(await ok(['memory']));
    assert.deepEqual(Object.keys(mem[0]), ['DEVICE', 'USED', 'BUDGET', 'USE', 'BUDGET-SOURCE', 'STANDBY']);
    const cpu = row(
      mem.map((d) => ({ ...d, NAME: d.DEVICE })),
      'cpu',
    );
    assert.match(cpu.BUDGET, /^\d+(\.\d)?(MiB|GiB)$/);
    const memJson = JSON.parse(await ok(['memory', '-o', 'json']));
    assert.ok(memJson.devices.some((d: any) => d.device === 'cpu' && typeof d.budget_mb === 'number'));

    const api = (await m.api('GET', '/gpus')).body;
    assert.deepEqual(JSON.parse(await ok(['gpus', '-o', 'json'])), api);
    const text = await ok(['gpus']);
    if (api.gpus.length === 0) assert.match(text, /^No GPUs\./);
    else
      assert.deepEqual(
        table(text).map((g) => g.INDEX),
        api.gpus.map((g: any) => String(g.index)),
      );
  });

  test('reload: what changed in the config file', async () => {
    assert.equal(await ok(['reload']), 'instances: no change (2 unchanged)\nmodels: no change (1 unchanged)\n');
    await writeFile(cfg, `${cfgText}\n[[instances]]\nname = "emb-r"\nmodel_id = ${JSON.stringify(emb)}\n`);
    assert.match(await ok(['reload']), /^instances: added emb-r \(2 unchanged\)$/m);
    const again = JSON.parse(await ok(['reload', '-o', 'json']));
    assert.ok(again.instances.unchanged.includes('emb-r'), JSON.stringify(again));
    await writeFile(cfg, `${cfgText}\n[[models]]\nmodel_id = ""\n`);
    assert.match(await fails(['reload'], 1), /^teiplex ctl: reload: CONFIG_INVALID: /m);
  });

  test('an unknown instance: exit 1 with INSTANCE_NOT_FOUND and its message, whatever the output format', async () => {
    for (const args of [
      ['get', 'nope'],
      ['get', 'nope', '-o', 'json'],
      ['logs', 'nope'],
      ['start', 'nope'],
    ]) {
      const r = await ctl(args);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, `teiplex ctl: ${args[0]} nope: INSTANCE_NOT_FOUND: instance 'nope' not found\n`);
    }
  });

  test('usage errors: exit 2, what is wrong, which help to read; nothing asked of the manager', async () => {
    const cases: [string[], RegExp][] = [
      [['ls', '--bogus'], /^teiplex ctl: unknown flag --bogus\nRun `teiplex ctl ls --help` for usage\.\n$/],
      [['frob'], /^teiplex ctl: unknown verb 'frob'/],
      [[], /^teiplex ctl: a verb is needed/],
      [['get'], /^teiplex ctl: 'ctl get' needs NAME\nRun `teiplex ctl get --help`/],
      [['logs', 'emb-a', '--tail', 'x'], /^teiplex ctl: --tail must be an integer >= 0, got 'x'/],
      [['create', 'x'], /^teiplex ctl: 'ctl create' needs --model-id/],
      [['ls', '-o', 'yaml'], /-o\/--output must be one of table, json, name/],
      [['ls', '--cacert', path.join(dir, 'missing.pem')], /^teiplex ctl: --cacert .*missing\.pem: ENOENT/],
    ];
    for (const [args, re] of cases) assert.match(await fails(args, 2), re, args.join(' '));
    // a usage error is found before any call: a manager that is not there does not matter
    assert.match(await fails(['ls', '--bogus'], 2, { TEIPLEX_URL: 'http://127.0.0.1:1' }), /unknown flag --bogus/);
    assert.match(await ok(['--help']), /^Usage: teiplex ctl /);
    assert.match(await ok(['logs', '--help']), /--follow/);
  });

  test('a manager that is down: exit 1 with a clear connection message', async () => {
    const port = await freePort();
    const err = await fails(['ls', '--url', `http://127.0.0.1:${port}`], 1);
    assert.match(err, new RegExp(`^teiplex ctl: ls: CONNECTION_FAILED: .*\\(is a manager .* running at http://127\\.0\\.0\\.1:${port}\\?`, 'm'));
    assert.equal(err.trimEnd().split('\n').length, 1, 'one line');
  });

  test('completion: verbs, flag values, and instance and model names from the live manager', async () => {
    const script = path.join(dir, 'completion.bash');
    await writeFile(script, await ok(['completion', 'bash']));
    // `teiplex` on PATH, as an installed one would be
    const bin = path.join(dir, 'bin');
    await rm(bin, { recursive: true, force: true });
    await mkdir(bin);
    await writeFile(
      path.join(bin, 'teiplex'),
      `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(projectPath('bin', 'teiplex.js'))} "$@"\n`,
    );
    await chmod(path.join(bin, 'teiplex'), 0o755);
    const complete = (line: string[]): string[] => {
      const words = line.map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ');
      const r = spawnSync(
        'bash',
        ['-c', `source ${JSON.stringify(script)}; COMP_WORDS=(${words}); COMP_CWORD=${line.length - 1}; _teiplex; printf '%s\\n' "\${COMPREPLY[@]}"`],
        {
          encoding: 'utf8',
          env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, TEIPLEX_URL: '', TEIPLEX_API_KEY: '' },
          timeout: 60_000,
        },
      );
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.split('\n').filter((w) => w !== '');
    };
    assert.deepEqual(complete(['teiplex', 'ctl', 'lo']).sort(), ['load', 'logs']);
    assert.deepEqual(complete(['teiplex', 'ctl', 'ls', '-o', '']).sort(), ['json', 'name', 'table']);
    assert.deepEqual(complete(['teiplex', 'ctl', 'logs', 'emb-a', '--f']), ['--follow']);
    assert.deepEqual(complete(['teiplex', 'ctl', '--url', url, 'get', 'emb-']).sort(), ['emb-a', 'emb-b', 'emb-r']);
    assert.deepEqual(complete(['teiplex', 'ctl', 'load', '--url', url, '']), ['rr']);
    assert.deepEqual(complete(['teiplex', 'ctl', '--url', 'http://127.0.0.1:1', 'get', '']), [], 'no manager: nothing');
  });
});

describe('teiplex ctl with mTLS and an admin API key', () => {
  let pki: TestPki;
  let secure: ManagerProcess;
  let surl: string;
  const KEY = 'ctl-test-admin-key-0123456789';
  let tls: string[];

  before(async () => {
    pki = makeTestPki(dir);
    const own = path.join(dir, 'secure');
    await mkdir(own);
    const file = path.join(own, 'teiplex.toml');
    await writeFile(
      file,
      `${loopbackConfig(own)}
[auth]
admin_requires_key = true

${mtlsToml(pki)}

[[auth.api_keys]]
name = "ops"
key_sha256 = "${sha256Hex(KEY)}"
admin = true

[[auth.api_keys]]
name = "user"
key_sha256 = "${sha256Hex('not-an-admin-key-0123456789')}"
`,
    );
    secure = await startManager(file);
    surl = `https://127.0.0.1:${secure.apiPort}`;
    tls = ['--url', surl, '--cacert', pki.ca.cert, '--cert', path.join(dir, 'client-a.crt'), '--key', path.join(dir, 'client-a.key')];
  });

  after(async () => {
    if (secure) assert.equal(await secure.stop(), 0);
  });

  test('the right certificate and key: served', async () => {
    assert.equal(await ok([...tls, 'ls'], { TEIPLEX_API_KEY: KEY }), 'No instances.\n');
    assert.equal(await ok([...tls, 'ls', '--api-key', KEY, '-o', 'json']), '[]\n');
  });

  test("no key, a wrong key, a key without admin: exit 1 with the server's code and message", async () => {
    assert.match(
      await fails([...tls, 'ls'], 1),
      /^teiplex ctl: ls: UNAUTHENTICATED: .*missing API key.*\(pass an admin API key with --api-key or TEIPLEX_API_KEY\)$/m,
    );
    assert.match(await fails([...tls, 'ls', '--api-key', 'wrong-key-0123456789'], 1), /^teiplex ctl: ls: UNAUTHENTICATED: /m);
    assert.match(await fails([...tls, 'memory'], 1, { TEIPLEX_API_KEY: 'not-an-admin-key-0123456789' }), /^teiplex ctl: memory: PERMISSION_DENIED: /m);
  });

  test("no client certificate, or the manager's CA not given: exit 1, one line naming the flag to add", async () => {
    const noCert = await fails(['ls', '--url', surl, '--cacert', pki.ca.cert], 1, { TEIPLEX_API_KEY: KEY });
    assert.match(
      noCert,
      /^teiplex ctl: ls: CONNECTION_FAILED: .*\(the manager closed the TLS connection: does it require a client certificate \(--cert and --key\)\?\)\n$/,
    );
    const noCa = await fails(['ls', '--url', surl, '--cert', path.join(dir, 'client-a.crt'), '--key', path.join(dir, 'client-a.key')], 1, {
      TEIPLEX_API_KEY: KEY,
    });
    assert.match(
      noCa,
      /^teiplex ctl: ls: CONNECTION_FAILED: .*certificate.*\(the manager's certificate was not accepted: give the CA that signed it with --cacert\)\n$/,
    );
    const plain = await fails(['ls', '--url', surl.replace('https:', 'http:')], 1, { TEIPLEX_API_KEY: KEY });
    assert.match(plain, /\(the manager closed the connection: does it serve https:\/\//);
  });
});

describe('teiplex ctl logs -f behind a fast child', () => {
  let chatty: ManagerProcess;
  let curl: string;

  before(async () => {
    // A child that prints 250 lines a second (runtime = command, from the config: trusted), and a
    // manager keeping 20 of them: between two polls of `logs -f` most lines leave the tail.
    const own = path.join(dir, 'chatty');
    await mkdir(own);
    const script = path.join(own, 'chatty.sh');
    await writeFile(script, '#!/bin/sh\ni=0\nwhile [ $i -lt 1000000 ]; do seq $i $((i + 49)) | sed "s/^/chatty line /"; i=$((i + 50)); sleep 0.2; done\n');
    await chmod(script, 0o755);
    const file = path.join(own, 'teiplex.toml');
    await writeFile(
      file,
      `${loopbackConfig(own)}log_tail_lines = 20\nstartup_timeout_secs = 600\n\n[[instances]]\nname = "chatty"\nmodel_id = "none"\nruntime = "command"\ncommand = ${JSON.stringify(script)}\n`,
    );
    chatty = await startManager(file);
    curl = `http://127.0.0.1:${chatty.apiPort}`;
    await until('chatty lines in the log', async () => (await chatty.api('GET', '/instances/chatty/logs')).body.total_lines > 40, {
      timeoutMs: 60_000,
      everyMs: 100,
    });
  });

  after(async () => {
    if (chatty) await chatty.stop();
  });

  test("lines that left the manager's tail between two polls are counted as missed; the rest printed in order", async () => {
    const c = startCli(['ctl', 'logs', 'chatty', '-f', '--tail', '5', '-o', 'json'], { TEIPLEX_URL: curl, TEIPLEX_API_KEY: '' });
    try {
      await until('three reports of missed lines', () => (c.err.match(/lines missed/g) ?? []).length >= 3, {
        timeoutMs: 60_000,
        everyMs: 100,
        context: () => `stderr:\n${c.err}`,
      });
    } finally {
      c.proc.kill('SIGINT');
    }
    assert.equal(await c.exited, 0, c.err);
    // -o json -f: one answer a line; each answer's lines are its range; the gaps between answers are what stderr reported missed
    const polls = c.out
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { lines: string[]; start: number; end: number; total_lines: number });
    assert.equal(polls[0].lines.length, 5, '--tail 5');
    for (const p of polls) assert.equal(p.lines.length, p.end - p.start);
    const gaps = polls
      .slice(1)
      .map((p, i) => p.start - polls[i].end)
      .filter((g) => g > 0);
    const reported = [...c.err.matchAll(/^teiplex ctl: logs chatty: (\d+) lines missed \(gone from the manager's tail between two polls\)$/gm)].map((x) =>
      Number(x[1]),
    );
    assert.deepEqual(reported.slice(0, gaps.length), gaps);
    assert.ok(gaps.length >= 2, `gaps ${JSON.stringify(gaps)}; stderr ${c.err}`);
    const numbers = polls.flatMap((p) => p.lines).flatMap((l) => (/^chatty line (\d+)$/.exec(l) ? [Number(/^chatty line (\d+)$/.exec(l)![1])] : []));
    for (let i = 1; i < numbers.length; i++) assert.ok(numbers[i] > numbers[i - 1], `in order: ${numbers[i - 1]} then ${numbers[i]}`);
  });
});
