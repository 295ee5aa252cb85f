/**
 * The config's checks beyond single values (src/config/config.ts): environment values and how
 * they are read, max_instances against the seeded instances, the catalog's models (replica bounds,
 * a command model without its command, names shared by two models), API keys (names and hashes
 * unique, hashes compared without case, admin keys unrestricted), `[security]` (absolute
 * executables, no manager-reserved environment name), and the fields of [auth.mtls] and
 * [[auth.api_keys]], and the text of a schema refusal (the key path and the value got). Each refusal is checked by its message (the key it names); each accepted
 * neighbour shows the check is not stricter than documented.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { envOverrides, resolveConfig } from '../../src/config/config.js';
import { Type } from '@sinclair/typebox';
import { ConfigError, check, keyPath } from '../../src/config/validate.js';

const HASH_A = 'a'.repeat(64);
const HASH_B = 'b'.repeat(64);

function refusal(file: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): string {
  try {
    resolveConfig(file, env, 'c.toml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail(`taken: ${JSON.stringify(file)} ${JSON.stringify(env)}`);
}

describe('environment overrides', () => {
  test('numbers: a blank or non-numeric value is refused naming the variable and the key; a number is taken', () => {
    assert.deepEqual(envOverrides({ TEIPLEX_API_PORT: '9100' }), { api_port: 9100 });
    assert.deepEqual(envOverrides({ TEIPLEX_MAX_INSTANCES: '4' }), { max_instances: 4 }, 'an optional number key');
    for (const raw of ['', '  ', 'ten', 'Infinity', 'NaN']) {
      assert.throws(
        () => envOverrides({ TEIPLEX_API_PORT: raw }),
        (err: Error) => err instanceof ConfigError && err.message === `TEIPLEX_API_PORT: expected a number for api_port, got '${raw}'`,
        JSON.stringify(raw),
      );
    }
  });
  test('booleans: 1/true/yes/on and 0/false/no/off in any case, nothing else', () => {
    for (const raw of ['1', 'true', 'TRUE', 'yes', 'On']) assert.deepEqual(envOverrides({ TEIPLEX_AUTO_RESTORE: raw }), { auto_restore: true }, raw);
    for (const raw of ['0', 'false', 'No', 'OFF']) assert.deepEqual(envOverrides({ TEIPLEX_AUTO_RESTORE: raw }), { auto_restore: false }, raw);
    for (const raw of ['', 'maybe', 'yess', 'xtrue', 'true1', '01', 'offf', 'xoff', '10']) {
      assert.throws(
        () => envOverrides({ TEIPLEX_AUTO_RESTORE: raw }),
        (err: Error) => err instanceof ConfigError && err.message === `TEIPLEX_AUTO_RESTORE: expected true or false for auto_restore, got '${raw}'`,
        JSON.stringify(raw),
      );
    }
  });
  test('strings are taken as they are; tei-manager names too', () => {
    assert.deepEqual(envOverrides({ TEIPLEX_LISTEN_HOST: ' ::1 ' }), { listen_host: ' ::1 ' });
    assert.deepEqual(envOverrides({ TEI_BINARY_PATH: '/opt/tei' }), { tei_binary_path: '/opt/tei' });
    assert.deepEqual(envOverrides({ TEI_MANAGER_HEALTH_CHECK_INTERVAL: '3' }), { health_check_interval_secs: 3 });
  });
  test('an environment value is validated like the file', () => {
    assert.match(refusal({}, { TEIPLEX_API_PORT: '70000' }), /^c\.toml: api_port: /);
  });
  test('without a name, errors say "config"', () => {
    assert.throws(() => resolveConfig({ api_port: -1 }, {}), /^ConfigError: config: api_port: /);
  });
});

describe('max_instances and the seeded instances', () => {
  const inst = (name: string) => ({ name, model_id: 'm' });
  test('as many instances as max_instances: taken; one more: refused with both counts', () => {
    assert.equal(resolveConfig({ max_instances: 2, instances: [inst('a'), inst('b')] }, {}).instances.length, 2);
    assert.equal(refusal({ max_instances: 1, instances: [inst('a'), inst('b')] }), 'c.toml: 2 instances exceed max_instances (1)');
  });
  test('a name twice is refused naming the second place', () => {
    assert.equal(refusal({ instances: [inst('a'), inst('b'), inst('a')] }), "c.toml: instances[2].name: 'a' appears twice");
  });
  test('instance_port_start above instance_port_end is refused; equal is one port', () => {
    assert.equal(refusal({ instance_port_start: 9000, instance_port_end: 8999 }), 'c.toml: instance_port_start (9000) must not exceed instance_port_end (8999)');
    assert.equal(resolveConfig({ instance_port_start: 9000, instance_port_end: 9000 }, {}).instance_port_end, 9000);
  });
});

describe('catalog models', () => {
  test('min_replicas above max_replicas is refused; equal, and min_replicas alone, are taken', () => {
    assert.equal(refusal({ models: [{ model_id: 'm', min_replicas: 3, max_replicas: 2 }] }), 'c.toml: models[0]: min_replicas (3) exceeds max_replicas (2)');
    assert.equal(resolveConfig({ models: [{ model_id: 'm', min_replicas: 2, max_replicas: 2 }] }, {}).models.length, 1);
    assert.equal(resolveConfig({ models: [{ model_id: 'm', min_replicas: 3 }] }, {}).models.length, 1, 'max_replicas defaults to at least min_replicas');
    assert.equal(resolveConfig({ models: [{ model_id: 'm', min_replicas: 1 }] }, {}).models.length, 1);
  });
  test("runtime 'command' needs its command", () => {
    assert.equal(refusal({ models: [{ model_id: 'm', runtime: 'command' }] }), "c.toml: models[0]: runtime 'command' needs the field 'command'");
    assert.equal(resolveConfig({ models: [{ model_id: 'm', runtime: 'command', command: '/bin/x' }] }, {}).models.length, 1);
  });
  test('a name (catalog name, model_id or alias) shared by two models is refused, naming both', () => {
    assert.equal(
      refusal({
        models: [
          { name: 'one', model_id: 'm1' },
          { name: 'two', model_id: 'm2', aliases: ['m1'] },
        ],
      }),
      "c.toml: models[1]: 'm1' already names models[0] ('one')",
    );
    assert.equal(
      resolveConfig(
        {
          models: [
            { name: 'one', model_id: 'm1', aliases: ['one'] },
            { name: 'two', model_id: 'm2' },
          ],
        },
        {},
      ).models.length,
      2,
      'a model may repeat its own name',
    );
  });
});

describe('API keys', () => {
  const key = (name: string, hash: string, more: Record<string, unknown> = {}) => ({ name, key_sha256: hash, ...more });
  test('names and hashes are unique; hashes compared without case', () => {
    assert.equal(refusal({ auth: { api_keys: [key('a', HASH_A), key('a', HASH_B)] } }), "c.toml: auth.api_keys[1].name: 'a' appears twice (also auth.api_keys[0])");
    assert.equal(refusal({ auth: { api_keys: [key('a', HASH_A), key('b', HASH_A.toUpperCase())] } }), 'c.toml: auth.api_keys[1].key_sha256: the same key as auth.api_keys[0]');
    assert.equal(resolveConfig({ auth: { api_keys: [key('a', HASH_A), key('b', HASH_B)] } }, {}).auth.api_keys.length, 2);
  });
  test('an admin key with instances or models restrictions is refused; either alone is fine', () => {
    const message = 'c.toml: auth.api_keys[0]: admin = true with instances/models restrictions: the admin API manages every instance; use a separate key for the admin API';
    assert.equal(refusal({ auth: { api_keys: [key('a', HASH_A, { admin: true, instances: ['x'] })] } }), message);
    assert.equal(refusal({ auth: { api_keys: [key('a', HASH_A, { admin: true, models: ['m'] })] } }), message);
    for (const more of [{ admin: true }, { admin: false, instances: ['x'] }, { models: ['m'] }]) {
      assert.equal(resolveConfig({ auth: { api_keys: [key('a', HASH_A, more)] } }, {}).auth.api_keys.length, 1, JSON.stringify(more));
    }
  });
  test('fields: a name, a 64-hex-digit hash, non-empty restriction names, nothing else', () => {
    assert.match(refusal({ auth: { api_keys: [key('', HASH_A)] } }), /^c\.toml: auth\.api_keys\[0\]\.name: /);
    for (const bad of ['a'.repeat(63), `${'a'.repeat(63)}g`, `${'a'.repeat(64)}0`]) {
      assert.match(refusal({ auth: { api_keys: [key('a', bad)] } }), /^c\.toml: auth\.api_keys\[0\]\.key_sha256: /, bad);
    }
    assert.match(refusal({ auth: { api_keys: [key('a', HASH_A, { instances: [''] })] } }), /^c\.toml: auth\.api_keys\[0\]\.instances\[0\]: /);
    assert.match(refusal({ auth: { api_keys: [key('a', HASH_A, { models: [''] })] } }), /^c\.toml: auth\.api_keys\[0\]\.models\[0\]: /);
    assert.match(refusal({ auth: { api_keys: [key('a', HASH_A, { key: 'plain' })] } }), /^c\.toml: auth\.api_keys\[0\].*Unexpected property/);
  });
});

describe('[auth.mtls] and [auth]', () => {
  const mtls = { server_cert: 'c.pem', server_key: 'k.pem', client_ca: 'ca.pem' };
  test('every file named, non-empty; allow-lists of non-empty entries; nothing else', () => {
    assert.deepEqual(resolveConfig({ auth: { mtls } }, {}).auth.mtls, mtls);
    for (const field of ['server_cert', 'server_key', 'client_ca']) {
      assert.match(refusal({ auth: { mtls: { ...mtls, [field]: '' } } }), new RegExp(`^c\\.toml: auth\\.mtls\\.${field}: `));
    }
    assert.match(refusal({ auth: { mtls: { ...mtls, allowed_subjects: [''] } } }), /^c\.toml: auth\.mtls\.allowed_subjects\[0\]: /);
    assert.match(refusal({ auth: { mtls: { ...mtls, allowed_sans: [''] } } }), /^c\.toml: auth\.mtls\.allowed_sans\[0\]: /);
    assert.match(refusal({ auth: { mtls: { ...mtls, ca: 'x' } } }), /^c\.toml: auth\.mtls.*Unexpected property/);
    assert.match(refusal({ auth: { open_metric: true } }), /^c\.toml: auth.*Unexpected property/);
  });
});

describe('[security]', () => {
  test('api_commands: absolute paths only, naming the entry', () => {
    assert.deepEqual(resolveConfig({ security: { api_commands: ['/usr/bin/tei'] } }, {}).security.api_commands, ['/usr/bin/tei']);
    assert.equal(refusal({ security: { api_commands: ['/usr/bin/tei', 'bin/tei'] } }), "c.toml: security.api_commands[1]: 'bin/tei' is not an absolute path");
    assert.match(refusal({ security: { api_commands: [''] } }), /^c\.toml: security\.api_commands\[0\]: /);
  });
  test("api_env: variable names, none of the manager's own", () => {
    assert.deepEqual(resolveConfig({ security: { api_env: ['HF_HOME', 'RUST_LOG'] } }, {}).security.api_env, ['HF_HOME', 'RUST_LOG']);
    assert.equal(refusal({ security: { api_env: ['HF_HOME', 'PORT'] } }), 'c.toml: security.api_env[1]: PORT is read by TEI as --port; no spec may set it');
    assert.match(refusal({ security: { api_env: ['1BAD'] } }), /^c\.toml: security\.api_env\[0\]: /);
    assert.match(refusal({ security: { api_env: ['A-B'] } }), /^c\.toml: security\.api_env\[0\]: /);
  });
  test('unknown keys are refused', () => {
    assert.match(refusal({ security: { api_command: [] } }), /^c\.toml: security.*Unexpected property/);
  });
});

describe('the text of a schema refusal', () => {
  test('keyPath: array indexes in brackets, keys joined by dots, the root named, a prefix kept', () => {
    assert.equal(keyPath('/instances/0/port'), 'instances[0].port');
    assert.equal(keyPath('/0/name'), '[0].name');
    assert.equal(keyPath('/models/12'), 'models[12]');
    assert.equal(keyPath('/a1/b'), 'a1.b');
    assert.equal(keyPath(''), '(root)');
    assert.equal(keyPath('/port', 'instances[3]'), 'instances[3].port');
    assert.equal(keyPath('', 'instances[3]'), 'instances[3]');
  });

  test('check: each problem once, with the value got (none for a missing key), at most 5', () => {
    const schema = Type.Object({ a: Type.Integer({ minimum: 1 }), b: Type.String() }, { additionalProperties: false });
    assert.deepEqual(check(schema, { a: 2, b: 'x' }, 'w'), { a: 2, b: 'x' });
    const message = (value: unknown): string => {
      try {
        check(schema, value, 'file.toml', 'instances[1]');
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.message;
      }
      return 'accepted';
    };
    const zero = message({ a: 0, b: 'x' });
    assert.match(zero, /^file\.toml: instances\[1\]\.a: .* \(got 0\)$/);
    const missing = message({ a: 1 });
    // a missing key: TypeBox's two problems (required, then the type), neither with a value
    assert.match(missing, /^file\.toml: instances\[1\]\.b: [A-Za-z ]+; instances\[1\]\.b: [A-Za-z ]+$/);
    const many = message({ a: 'x', b: 1, c: 1, d: 1, e: 1, f: 1, g: 1 });
    const parts = many.slice('file.toml: '.length).split('; ');
    assert.equal(parts.length, 5);
    assert.equal(new Set(parts).size, 5, many);
  });
});
