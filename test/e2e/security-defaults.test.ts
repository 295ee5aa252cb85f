/**
 * Secure by default (docs/security.md) with real managers: the opt-in runs a `command` child with
 * the manager's HF_* withheld and no secret in spawn lines, logs or errors; specs in an old state
 * file kept but not started; a network listen address without credentials exits 2 naming the
 * opt-in. The parts that need no child: test/unit/security-policy.test.ts.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { spawn } from 'node:child_process';
import { projectPath } from '../../src/common/paths.js';
import { serializeState } from '../../src/state/state-store.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { client } from '../helpers/data-plane.js';
import { until } from '../helpers/wait.js';

describe('a real manager', () => {
  let dir: string;
  let script: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-secure-'));
    // A `command` child that prints what it was given and then idles (it never becomes ready).
    script = path.join(dir, 'printer');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell script; ${...} is the shell's expansion
    await writeFile(script, '#!/bin/sh\necho "args: $*"\necho "MY_SECRET_TOKEN=$MY_SECRET_TOKEN"\necho "hf:${HF_TOKEN:-unset} mine:${#MY_SECRET_TOKEN}"\nexec sleep 60\n');
    await chmod(script, 0o755);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function manager(name: string, extra: string, env: NodeJS.ProcessEnv = {}): Promise<ManagerProcess> {
    const sub = path.join(dir, name);
    const file = path.join(dir, `${name}.toml`);
    await mkdir(sub, { recursive: true });
    await writeFile(file, loopbackConfig(sub) + extra);
    return startManager(file, env);
  }

  test('opted in: the command runs, its HF_* withheld; spawn line, logs and errors carry no secret', async () => {
    const m = await manager('optin', `[security]\napi_commands = [${JSON.stringify(script)}]\napi_env = ["MY_SECRET_TOKEN"]\n`, { HF_TOKEN: 'hf_managers_own' });
    try {
      const r = await m.api('POST', '/instances', {
        name: 'p',
        model_id: 'org/m',
        runtime: 'command',
        command: script,
        restart_policy: 'never',
        env: { MY_SECRET_TOKEN: 'tok_env_value' },
        extra_args: ['--hf-token', 'hf_flag_value'],
      });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const lines = await until('the child\'s hf: line in its logs', async () => {
        const got: string[] = (await m.api('GET', '/instances/p/logs')).body.lines;
        return got.some((l) => l.startsWith('hf:')) ? got : undefined;
      }, { timeoutMs: 10_000, everyMs: 100 });
      const text = lines.join('\n');
      assert.match(text, /hf:unset mine:13/, text);
      assert.match(text, /^MY_SECRET_TOKEN=\*\*\*$/m, 'a NAME=value line of the child, redacted');
      assert.match(text, /spawn: .*--hf-token \*\*\* \(env: MY_SECRET_TOKEN=\*\*\*\)/);
      for (const secret of ['hf_flag_value', 'tok_env_value', 'hf_managers_own']) assert.ok(!text.includes(secret), `${secret} in the logs answer`);
      const onDisk = await readFile(path.join(dir, 'optin', 'logs', 'p.log'), 'utf8');
      const spawnOnDisk = onDisk.split('\n').find((l) => l.includes('spawn:')) ?? '';
      assert.ok(spawnOnDisk !== '' && !spawnOnDisk.includes('hf_flag_value') && !spawnOnDisk.includes('tok_env_value'), spawnOnDisk);
      assert.ok(!m.output().includes('hf_flag_value') && !m.output().includes('tok_env_value'), 'manager output');
      // Still refused: a name not listed, a command not listed.
      const otherEnv = await m.api('POST', '/instances', { name: 'q', model_id: 'm', env: { OTHER: '1' } });
      assert.equal(otherEnv.status, 403);
      assert.equal(otherEnv.body.code, 'FORBIDDEN_SETTING');
      assert.match(otherEnv.body.error, /security\.api_env/);
      const otherCommand = await m.api('POST', '/instances', { name: 'q', model_id: 'm', runtime: 'command', command: '/bin/sh' });
      assert.equal(otherCommand.status, 403);
      assert.equal(otherCommand.body.code, 'FORBIDDEN_SETTING');
      assert.match(otherCommand.body.error, /security\.api_commands/);
    } finally {
      await m.stop();
    }
  });

  test('a state file from a more permissive manager: the spec is kept and not started, start says why', async () => {
    const sub = path.join(dir, 'restore');
    const state = path.join(sub, 'state.toml');
    await mkdir(sub, { recursive: true });
    await writeFile(
      state,
      serializeState({
        version: 1,
        instances: [
          { name: 'old', model_id: 'org/m', runtime: 'command', command: script, env: { NODE_OPTIONS: '--import=/tmp/e.mjs' }, desired_state: 'running', created_at: new Date(0).toISOString(), source: 'api' },
        ],
        models: [
          { name: 'pinned', model_id: 'org/pinned', env: { NODE_OPTIONS: '--import=/tmp/e.mjs' }, min_replicas: 1, source: 'api', created_at: new Date(0).toISOString() },
          { name: 'lazy', model_id: 'org/lazy', env: { NODE_OPTIONS: '--import=/tmp/e.mjs' }, source: 'api', created_at: new Date(0).toISOString() },
        ],
      }),
    );
    const file = path.join(dir, 'restore.toml');
    await writeFile(file, loopbackConfig(sub));
    const m = await startManager(file);
    try {
      // The restore decided about the instance once it names why it was not started.
      const i = await until('the restored instance\'s verdict', async () => {
        const x = (await m.api('GET', '/instances/old')).body;
        return x.last_error ? x : undefined;
      }, { timeoutMs: 10_000 });
      assert.equal(i.status, 'stopped');
      assert.equal(i.pid, null);
      assert.equal(i.desired_state, 'running');
      assert.match(i.last_error, /not started: .*security\.api_env/);
      const start = await m.api('POST', '/instances/old/start');
      assert.equal(start.status, 403);
      assert.equal(start.body.code, 'FORBIDDEN_SETTING');
      assert.match(await readFile(state, 'utf8'), /name = "old"/, 'kept in the state');
      // Catalog models of the state file that the config no longer allows: nothing is placed or
      // started for them; a pinned one is marked failed once, naming the setting (not retried).
      const pinned = await until('the pinned model marked failed', async () => {
        const x = (await m.api('GET', '/models/pinned')).body;
        return x.failure ? x : undefined;
      }, { timeoutMs: 10_000 });
      assert.match(String(pinned.failure?.reason), /security\.api_env/, JSON.stringify(pinned));
      assert.deepEqual(pinned.replicas, []);
      const lazy = await client(m.apiPort).post('/v1/embeddings', { model: 'lazy', input: 'x' });
      assert.equal(lazy.status, 403, JSON.stringify(lazy.body));
      assert.equal(lazy.body.error.code, 'forbidden_setting');
      assert.match(JSON.stringify(lazy.body), /security\.api_env/);
      const names = (await m.api('GET', '/instances')).body.map((i: { name: string }) => i.name);
      assert.deepEqual(names, ['old'], 'no replica was created');
      assert.equal(m.output().split('not allowed by this config').length - 1, 2, 'one line for the instance, one for the pinned model');
    } finally {
      await m.stop();
    }
  });

  test('a network listen address without credentials: exit 2 naming the opt-in; with it, a warning at boot', async () => {
    const sub = path.join(dir, 'net');
    await mkdir(sub, { recursive: true });
    const file = path.join(dir, 'net.toml');
    await writeFile(file, loopbackConfig(sub).replace('listen_host = "127.0.0.1"', 'listen_host = "0.0.0.0"'));
    const proc = spawn(process.execPath, [projectPath('bin', 'teiplex.js'), 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => proc.once('exit', r));
    assert.equal(code, 2, err);
    assert.match(err, /security\.allow_remote_admin_without_auth/);
    await writeFile(file, `${loopbackConfig(sub).replace('listen_host = "127.0.0.1"', 'listen_host = "0.0.0.0"')}[security]\nallow_remote_admin_without_auth = true\n`);
    const m = await startManager(file);
    try {
      assert.match(m.output(), /"level":40.*the REST admin API on 0\.0\.0\.0 needs no credential/);
    } finally {
      await m.stop();
    }
  });
});
