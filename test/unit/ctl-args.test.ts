/**
 * `teiplex ctl`'s command line (src/ctl/args.ts, create-spec.ts): verbs, names, global flags
 * anywhere, the environment's defaults, `--` for the child's arguments, and a UsageError naming
 * what is wrong for each bad input (exit 2 in the CLI).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseCtlArgs, UsageError, type CtlCommand } from '../../src/ctl/args.js';
import { batchRequestFields } from '../../src/ctl/batch-commands.js';
import { createSpec } from '../../src/ctl/create-spec.js';
import { DEFAULT_TIMEOUT_SECS, DEFAULT_URL } from '../../src/ctl/verbs.js';

const run = (argv: string[], env: NodeJS.ProcessEnv = {}): Extract<CtlCommand, { kind: 'run' }> => {
  const c = parseCtlArgs(argv, env);
  assert.equal(c.kind, 'run');
  return c as Extract<CtlCommand, { kind: 'run' }>;
};
const usage = (argv: string[], message: RegExp, env: NodeJS.ProcessEnv = {}): void => {
  assert.throws(
    () => parseCtlArgs(argv, env),
    (err: unknown) => err instanceof UsageError && message.test(err.message),
    `${argv.join(' ')} -> ${message}`,
  );
};

describe('ctl arguments', () => {
  test('a verb and its names; defaults: the local manager, table output, the default timeout', () => {
    const c = run(['stop', 'a', 'b']);
    assert.equal(c.verb.name, 'stop');
    assert.deepEqual(c.names, ['a', 'b']);
    assert.equal(c.global.url, DEFAULT_URL);
    assert.equal(c.global.output, 'table');
    assert.equal(c.global.timeoutMs, DEFAULT_TIMEOUT_SECS * 1000);
    assert.equal(c.global.apiKey, undefined);
  });

  test('global flags before or after the verb; flags over the environment; the environment over the default', () => {
    const env = { TEIPLEX_URL: 'http://env-host:1234', TEIPLEX_API_KEY: 'env-key' };
    const fromEnv = run(['ls'], env);
    assert.equal(fromEnv.global.url, 'http://env-host:1234');
    assert.equal(fromEnv.global.apiKey, 'env-key');
    for (const argv of [
      ['--url', 'https://m.example:9443/', '--api-key', 'k1', 'ls', '-o', 'json'],
      ['ls', '--url=https://m.example:9443', '-o', 'json', '--api-key', 'k1'],
    ]) {
      const c = run(argv, env);
      assert.equal(c.global.url, 'https://m.example:9443', argv.join(' '));
      assert.equal(c.global.apiKey, 'k1');
      assert.equal(c.global.output, 'json');
    }
    assert.equal(run(['ls'], { TEIPLEX_URL: '' }).global.url, DEFAULT_URL, 'an empty TEIPLEX_URL is unset');
    assert.equal(run(['ls', '--timeout', '2.5']).global.timeoutMs, 2500);
  });

  test('help: global, per verb, and -h anywhere', () => {
    assert.deepEqual(parseCtlArgs(['--help'], {}), { kind: 'help', verb: undefined });
    const h = parseCtlArgs(['logs', '-h'], {});
    assert.equal(h.kind, 'help');
    assert.equal(h.kind === 'help' && h.verb?.name, 'logs');
    // help wins over a missing NAME
    assert.equal(parseCtlArgs(['get', '--help'], {}).kind, 'help');
  });

  test('usage errors name the problem', () => {
    usage([], /a verb is needed/);
    usage(['frobnicate'], /unknown verb 'frobnicate' \(verbs: ls, get, create/);
    usage(['ls', '--bogus'], /unknown flag --bogus/);
    usage(['ls', '--model-id', 'x'], /flag --model-id is not taken by 'ctl ls'/);
    usage(['stop', '--follow', 'a'], /flag --follow is not taken by 'ctl stop'/);
    usage(['get'], /'ctl get' needs NAME/);
    usage(['get', 'a', 'b'], /'ctl get' takes one NAME, got 2: a b/);
    usage(['ls', 'a'], /'ctl ls' takes no names, got 1: a/);
    usage(['start'], /'ctl start' needs NAME\.\.\./);
    usage(['ls', '--', 'x'], /'ctl ls' takes no arguments after --/);
    usage(['ls', '-o', 'yaml'], /-o\/--output must be one of table, json, name, got 'yaml'/);
    usage(['get', 'a', '-o', 'name'], /-o name is for 'ctl ls' and 'ctl models'/);
    usage(['ls', '--url', 'ftp://x'], /--url must be an http:\/\/ or https:\/\/ URL, got 'ftp:\/\/x'/);
    usage(['ls', '--url', 'not a url'], /--url must be an http/);
    usage(['ls'], /--url must be an http/, { TEIPLEX_URL: 'localhost:9000' });
    usage(['ls', '--timeout', '0'], /--timeout must be a number of seconds > 0, got '0'/);
    usage(['ls', '--timeout', 'soon'], /--timeout must be a number/);
    usage(['ls', '--cert', 'c.pem'], /--cert and --key go together/);
    usage(['ls', '--url'], /flag --url needs a value/);
    usage(['create', 'a', '--model-id', '-m'], /flag --model-id needs a value \(one starting with a dash: --model-id=-VALUE\)/);
    usage(['create', 'a', '--model-id', 'm', '--runtime', 'docker'], /--runtime must be one of router, tei, command, got 'docker'/);
    usage(['completion', 'fish'], /'ctl completion' knows bash, got 'fish'/);
  });

  test('a usage error carries the verb for the help hint', () => {
    try {
      parseCtlArgs(['logs', 'a', '--tails', '3'], {});
      assert.fail('no error');
    } catch (err) {
      assert.ok(err instanceof UsageError);
      assert.equal(err.verb, 'logs');
    }
  });

  test('create: every flag into the spec; -- passes the rest to the child untouched', () => {
    const c = run([
      'create',
      'emb',
      '--model-id',
      'BAAI/bge-small-en-v1.5',
      '--runtime',
      'tei',
      '--gpu',
      '0,1',
      '--gpu',
      '1',
      '--port',
      '8081',
      '--alias',
      'small',
      '--alias',
      'bge',
      '--pooling',
      'cls',
      '--dtype',
      'float16',
      '--revision',
      'main',
      '--max-batch-tokens',
      '16384',
      '--max-concurrent-requests',
      '64',
      '--restart-policy',
      'on-failure',
      '--env',
      'RUST_LOG=info',
      '--env',
      'X=a=b',
      '--no-start',
      '--',
      '--max-client-batch-size',
      '32',
      '--',
      'x',
    ]);
    assert.equal(c.flags['no-start'], true);
    assert.deepEqual(createSpec(c.names[0], c.flags, c.extra), {
      name: 'emb',
      model_id: 'BAAI/bge-small-en-v1.5',
      runtime: 'tei',
      pooling: 'cls',
      dtype: 'float16',
      revision: 'main',
      restart_policy: 'on-failure',
      port: 8081,
      max_batch_tokens: 16384,
      max_concurrent_requests: 64,
      gpu_ids: [0, 1],
      aliases: ['small', 'bge'],
      env: { RUST_LOG: 'info', X: 'a=b' },
      extra_args: ['--max-client-batch-size', '32', '--', 'x'],
    });
    assert.deepEqual(createSpec('m', run(['create', 'm', '--model-id', '/models/x']).flags, []), { name: 'm', model_id: '/models/x' });
  });

  test('create: values of the wrong form', () => {
    const spec = (argv: string[]) => {
      const c = run(['create', 'a', ...argv]);
      return () => createSpec('a', c.flags, c.extra);
    };
    assert.throws(spec([]), /'ctl create' needs --model-id/);
    assert.throws(spec(['--model-id', '']), /needs --model-id/);
    assert.throws(spec(['--model-id', 'm', '--port', '70000']), /--port must be an integer from 1 to 65535, got '70000'/);
    assert.throws(spec(['--model-id', 'm', '--port', '80.5']), /--port must be an integer/);
    assert.throws(spec(['--model-id', 'm', '--gpu', 'zero']), /--gpu must be an integer >= 0, got 'zero'/);
    assert.throws(spec(['--model-id', 'm', '--gpu=-1']), /--gpu must be an integer >= 0, got '-1'/);
    assert.throws(spec(['--model-id', 'm', '--max-batch-tokens', '0']), /--max-batch-tokens must be an integer >= 1, got '0'/);
    assert.throws(spec(['--model-id', 'm', '--env', 'NOVALUE']), /--env must be NAME=VALUE, got 'NOVALUE'/);
    assert.throws(spec(['--model-id', 'm', '--env', '=x']), /--env must be NAME=VALUE, got '=x'/);
  });

  test('batch: a group of verbs, two words; names and flags after them', () => {
    const c = run(['batch', 'submit', 'rows.jsonl', '--model', 'm', '--wait']);
    assert.equal(c.verb.name, 'batch submit');
    assert.deepEqual(c.names, ['rows.jsonl']);
    assert.equal(c.flags.model, 'm');
    assert.equal(c.flags.wait, true);
    // global flags anywhere, before the group too
    const s = run(['--url', 'http://h:1', 'batch', '-o', 'json', 'status', 'batch_1']);
    assert.equal(s.verb.name, 'batch status');
    assert.deepEqual(s.names, ['batch_1']);
    assert.equal(s.global.url, 'http://h:1');
    assert.equal(s.global.output, 'json');
    assert.deepEqual(run(['batch', 'status']).names, []);
    assert.equal(run(['batch', 'status', '-o', 'name']).global.output, 'name');
    assert.equal(run(['batch', 'cancel', 'batch_1']).verb.name, 'batch cancel');
  });

  test("batch submit and download own --output; the format is -o there (and --output everywhere else)", () => {
    const sub = run(['batch', 'submit', 'f.parquet', '--output', 'sparse', '-o', 'json']);
    assert.equal(sub.flags.output, 'sparse');
    assert.equal(sub.global.output, 'json');
    const dl = run(['batch', 'download', 'batch_1', '--output', 'out.jsonl']);
    assert.equal(dl.flags.output, 'out.jsonl');
    assert.equal(dl.global.output, 'table', 'the path is not a format');
    const both = run(['batch', 'download', 'batch_1', '-ojson', '--output=x.arrow', '--errors', 'e.jsonl']);
    assert.equal(both.flags.output, 'x.arrow');
    assert.equal(both.flags.errors, 'e.jsonl');
    assert.equal(both.global.output, 'json');
    // a verb without its own --output: the long form is the format, as ever
    assert.equal(run(['batch', 'status', '--output', 'json']).global.output, 'json');
    assert.equal(run(['batch', 'status', '--output', 'json']).flags.output, 'json');
  });

  test('batch: help for the group and for each verb; usage errors name the problem', () => {
    assert.deepEqual(parseCtlArgs(['batch', '--help'], {}), { kind: 'help', verb: undefined, group: 'batch' });
    const h = parseCtlArgs(['batch', 'download', '-h'], {});
    assert.equal(h.kind === 'help' && h.verb?.name, 'batch download');
    usage(['batch'], /'ctl batch' needs a verb: submit, status, cancel, download/);
    usage(['batch', 'frob'], /unknown verb 'batch frob' \(batch verbs: submit, status, cancel, download\)/);
    usage(['frob'], /unknown verb 'frob' \(verbs: .*\bmemory, reload, gpus, batch, completion\)/);
    usage(['toString'], /unknown verb 'toString'/);
    usage(['batch', 'submit'], /'ctl batch submit' needs FILE/);
    usage(['batch', 'cancel'], /'ctl batch cancel' needs ID/);
    usage(['batch', 'status', 'a', 'b'], /'ctl batch status' takes one ID, got 2: a b/);
    usage(['batch', 'submit', 'f', '--output', 'wide'], /--output must be one of dense, sparse, multivector, got 'wide'/);
    usage(['batch', 'submit', 'f', '--embedding-type', 'fp8'], /--embedding-type must be one of float32, float16, int8, uint8, binary, ubinary, got 'fp8'/);
    usage(['batch', 'download', 'b', '-o', 'out.jsonl'], /-o must be one of table, json, name \(the output format; this verb's --output is its PATH\), got 'out.jsonl'/);
    usage(['batch', 'submit', 'f', '-o', 'dense'], /-o must be one of table, json, name \(the output format; this verb's --output is its KIND\), got 'dense'/);
    usage(['batch', 'cancel', 'b', '--wait'], /flag --wait is not taken by 'ctl batch cancel'/);
    usage(['batch', 'status', '--errors', 'e'], /flag --errors is not taken by 'ctl batch status'/);
    usage(['batch', 'cancel', 'b', '-o', 'name'], /-o name is for 'ctl ls' and 'ctl models' and 'ctl batch status'/);
    usage(['batch', 'submit', 'f', '--metadata'], /flag --metadata needs a value/);
    for (const [argv, verb] of [
      [['batch', 'submit', 'f', '--tails'], 'batch submit'],
      [['batch', 'frob'], 'batch'],
      [['batch'], 'batch'],
    ] as const) {
      try {
        parseCtlArgs(argv, {});
        assert.fail('no error');
      } catch (err) {
        assert.ok(err instanceof UsageError);
        assert.equal(err.verb, verb, argv.join(' '));
      }
    }
  });

  test('batch submit: the flags into the create body; values of the wrong form', () => {
    const c = run([
      'batch',
      'submit',
      't.arrow',
      '--model',
      'bge',
      '--text-column',
      'body',
      '--id-column',
      'doc_id',
      '--output',
      'dense',
      '--embedding-type',
      'int8',
      '--dimensions',
      '256',
      '--input-type',
      'document',
      '--completion-window',
      '90m',
      '--metadata',
      'team=search',
      '--metadata',
      'note=a=b',
    ]);
    assert.deepEqual(batchRequestFields(c.flags), {
      model: 'bge',
      text_column: 'body',
      id_column: 'doc_id',
      output: 'dense',
      embedding_type: 'int8',
      dimensions: 256,
      input_type: 'document',
      completion_window: '90m',
      metadata: { team: 'search', note: 'a=b' },
    });
    assert.deepEqual(batchRequestFields(run(['batch', 'submit', 'x.jsonl']).flags), {}, 'nothing asked: the server defaults');
    const fields = (argv: string[]) => () => batchRequestFields(run(['batch', 'submit', 'f', ...argv]).flags);
    assert.throws(fields(['--dimensions', '0']), /--dimensions must be an integer >= 1, got '0'/);
    assert.throws(fields(['--dimensions', '12.5']), /--dimensions must be an integer >= 1, got '12.5'/);
    assert.throws(fields(['--model', ' ']), /--model needs a value, got ''/);
    assert.throws(fields(['--completion-window', '24']), /--completion-window must be <n>h or <n>m \(e\.g\. 24h, 90m\), got '24'/);
    assert.throws(fields(['--completion-window', '0h']), /--completion-window must be <n>h or <n>m/);
    assert.throws(fields(['--metadata', 'novalue']), /--metadata must be KEY=VALUE, got 'novalue'/);
    assert.throws(fields(['--metadata', '=v']), /--metadata must be KEY=VALUE, got '=v'/);
    assert.throws(fields(['--metadata', 'k=1', '--metadata', 'k=2']), /--metadata k given twice/);
    assert.throws(fields(['--dimensions', '0']), (err: unknown) => err instanceof UsageError && err.verb === 'batch submit');
  });
});
