/**
 * Config loading: defaults, TOML file, TEIPLEX_* and tei-manager environment names, errors that
 * name the key.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DEFAULTS, loadConfig, resolveConfig } from '../../src/config/config.js';
import { projectPath } from '../../src/common/paths.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function tomlFile(text: string): Promise<string> {
  const f = path.join(dir, `c-${Math.random().toString(36).slice(2)}.toml`);
  await writeFile(f, text);
  return f;
}

test('defaults without a file', async () => {
  const c = await loadConfig(undefined, {});
  assert.equal(c.api_port, 9000);
  assert.equal(c.grpc_port, 9001);
  assert.equal(c.health_check_interval_secs, 10);
  assert.equal(c.max_failures_before_restart, 3);
  assert.equal(c.instance_port_start, 8080);
  assert.equal(c.instance_port_end, 8180);
  assert.equal(c.tei_binary_path, 'text-embeddings-router');
  assert.equal(c.auto_restore, true);
  assert.deepEqual(c.restart, DEFAULTS.restart);
  assert.deepEqual(c.instances, []);
});

test('file values, restart table merged with defaults, instances seeded', async () => {
  const f = await tomlFile(`
api_port = 9100
health_check_interval_secs = 0.5
[restart]
max_backoff_ms = 5000
[[instances]]
name = "bge-small"
model_id = "BAAI/bge-small-en-v1.5"
gpu_id = 0
extra_args = ["--auto-truncate"]
env = { RUST_LOG = "info" }
`);
  const c = await loadConfig(f, {});
  assert.equal(c.api_port, 9100);
  assert.equal(c.health_check_interval_secs, 0.5);
  assert.equal(c.restart.max_backoff_ms, 5000);
  assert.equal(c.restart.initial_backoff_ms, DEFAULTS.restart.initial_backoff_ms);
  assert.equal(c.instances.length, 1);
  assert.deepEqual(c.instances[0].extra_args, ['--auto-truncate']);
  assert.deepEqual(c.instances[0].env, { RUST_LOG: 'info' });
});

test('environment: TEIPLEX_* beats TEI_MANAGER_* beats the file', async () => {
  const f = await tomlFile('api_port = 9100\nstate_file = "from-file.toml"\nauto_restore = true\n');
  let c = await loadConfig(f, { TEI_MANAGER_API_PORT: '9200', TEI_MANAGER_STATE_FILE: '/x/state.toml', TEI_BINARY_PATH: '/opt/tei', TEIPLEX_AUTO_RESTORE: 'false' });
  assert.equal(c.api_port, 9200);
  assert.equal(c.state_file, '/x/state.toml');
  assert.equal(c.tei_binary_path, '/opt/tei');
  assert.equal(c.auto_restore, false);
  c = await loadConfig(f, { TEI_MANAGER_API_PORT: '9200', TEIPLEX_API_PORT: '9300', TEI_MANAGER_HEALTH_CHECK_INTERVAL: '7' });
  assert.equal(c.api_port, 9300);
  assert.equal(c.health_check_interval_secs, 7);
});

test('errors name the key and what was expected', async () => {
  const cases: Array<[string, RegExp]> = [
    ['api_port = "x"', /api_port: Expected integer/],
    ['api_port = 70000', /api_port: Expected integer to be less or equal to 65535/],
    ['bogus = 1', /bogus|additional/i],
    ['[[instances]]\nname = "Bad Name"\nmodel_id = "m"', /instances\[0\]\.name/],
    ['[[instances]]\nname = "a"', /instances\[0\]\.model_id|model_id/],
    ['[[instances]]\nname = "a"\nmodel_id = "m"\nruntime = "docker"', /instances\[0\]\.runtime/],
    ['[[instances]]\nname = "a"\nmodel_id = "m"\n[[instances]]\nname = "a"\nmodel_id = "n"', /instances\[1\]\.name: 'a' appears twice/],
    ['instance_port_start = 9000\ninstance_port_end = 8000', /instance_port_start \(9000\) must not exceed instance_port_end/],
    ['api_port = ', /invalid TOML/],
  ];
  for (const [text, re] of cases) {
    const f = await tomlFile(text);
    await assert.rejects(loadConfig(f, {}), (e: Error) => {
      assert.match(e.message, re, text);
      assert.ok(e.message.startsWith(f), 'names the file');
      return true;
    });
  }
  assert.throws(() => resolveConfig({}, { TEIPLEX_API_PORT: 'abc' }), /TEIPLEX_API_PORT: expected a number for api_port/);
  assert.throws(() => resolveConfig({}, { TEIPLEX_AUTO_RESTORE: 'maybe' }), /expected true or false/);
  await assert.rejects(loadConfig(path.join(dir, 'absent.toml'), {}), /cannot read config/);
});

test('config.example.toml is valid', async () => {
  const c = await loadConfig(projectPath('config.example.toml'), {});
  assert.ok(c.instances.length >= 1);
});

test('the container config is valid and the Dockerfile copies paths that exist', async () => {
  const { readFile: read } = await import('node:fs/promises');
  const { existsSync } = await import('node:fs');
  const c = await loadConfig(projectPath('docker', 'config.toml'), {});
  assert.equal(c.state_file, '/data/state.toml');
  const dockerfile = await read(projectPath('Dockerfile'), 'utf8');
  for (const m of dockerfile.matchAll(/^COPY (?!--from)(\S+) /gm)) {
    if (m[1] !== '.') assert.ok(existsSync(projectPath(m[1])), `COPY ${m[1]}`);
  }
  // Everything the runtime stages copy from the build stage is produced by `npm ci` or tracked.
  for (const m of dockerfile.matchAll(/^COPY --from=build(?:-gpu)? \/app\/(\S+)/gm)) {
    assert.ok(['package.json', 'node_modules', 'dist', 'bin', 'proto', 'fixtures'].includes(m[1]), m[1]);
    if (!['node_modules', 'dist'].includes(m[1])) assert.ok(existsSync(projectPath(m[1])), m[1]);
  }
  assert.match(dockerfile, /CMD \["serve", "--config", "\/etc\/teiplex\/config.toml"\]/);
});
