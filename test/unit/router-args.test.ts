/**
 * `teiplex router` flags: TEI's names and defaults, environment variables, flags over
 * environment, unknown and bad values.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FlagError } from '../../src/common/flags.js';
import { parseRouterArgs, routerUsage, type RouterArgs } from '../../src/router/args.js';

function parse(argv: string[], env: Record<string, string> = {}): RouterArgs {
  const r = parseRouterArgs(argv, env);
  assert.ok(!('help' in r), 'expected options, got help');
  return r as RouterArgs;
}

function fails(argv: string[], env: Record<string, string>, re: RegExp): void {
  assert.throws(() => parseRouterArgs(argv, env), (e: unknown) => e instanceof FlagError && re.test(e.message));
}

describe('teiplex router arguments', () => {
  test("defaults are text-embeddings-router's", () => {
    assert.deepEqual(parse(['--model-id', 'BAAI/bge-small-en-v1.5']), {
      modelId: 'BAAI/bge-small-en-v1.5',
      port: 3000,
      hostname: '0.0.0.0',
      maxConcurrentRequests: 512,
      maxBatchTokens: 16384,
      maxClientBatchSize: 32,
      autoTruncate: false,
      jsonOutput: false,
      payloadLimit: 2_000_000,
      device: 'cpu',
      warnings: [],
    });
  });

  test('every flag', () => {
    const o = parse([
      '--model-id=/models/x',
      '--revision', 'refs/pr/2',
      '--port', '0',
      '--hostname', '127.0.0.1',
      '--max-concurrent-requests', '8',
      '--max-batch-tokens', '2048',
      '--max-batch-requests', '16',
      '--max-client-batch-size', '4',
      '--auto-truncate',
      '--pooling', 'last-token',
      '--dtype', 'float16',
      '--default-prompt-name', 'query',
      '--served-model-name', 'small',
      '--api-key', 'k',
      '--json-output', 'true',
      '--prometheus-port', '0',
      '--huggingface-hub-cache', '/cache',
      '--payload-limit', '1000',
      '--tokenization-workers', '2',
      '--device', 'cuda',
      '--threads', '3',
      '--http-port', '0',
      '--onnx-file', 'onnx/model_quantized.onnx',
      '--hf-token', 'hf_x',
      '--dense-path', '2_Dense',
      '--disable-spans',
    ]);
    assert.deepEqual(o, {
      modelId: '/models/x',
      revision: 'refs/pr/2',
      port: 0,
      hostname: '127.0.0.1',
      maxConcurrentRequests: 8,
      maxBatchTokens: 2048,
      maxBatchRequests: 16,
      maxClientBatchSize: 4,
      autoTruncate: true,
      pooling: 'last-token',
      dtype: 'float16',
      defaultPromptName: 'query',
      servedModelName: 'small',
      apiKey: 'k',
      jsonOutput: true,
      prometheusPort: 0,
      huggingfaceHubCache: '/cache',
      payloadLimit: 1000,
      tokenizationWorkers: 2,
      device: 'cuda',
      threads: 3,
      httpPort: 0,
      onnxFile: 'onnx/model_quantized.onnx',
      hfToken: 'hf_x',
      densePath: '2_Dense',
      warnings: [],
    });
  });

  test('environment variables, TEI names and ours', () => {
    const o = parse([], {
      MODEL_ID: 'org/model',
      REVISION: 'v1',
      PORT: '8080',
      HOSTNAME: '::1',
      MAX_CONCURRENT_REQUESTS: '7',
      MAX_BATCH_TOKENS: '512',
      MAX_BATCH_REQUESTS: '3',
      MAX_CLIENT_BATCH_SIZE: '2',
      AUTO_TRUNCATE: 'true',
      POOLING: 'mean',
      DTYPE: 'float32',
      DEFAULT_PROMPT: 'query: ',
      SERVED_MODEL_NAME: 'm',
      API_KEY: 'secret',
      JSON_OUTPUT: '1',
      PROMETHEUS_PORT: '9100',
      HUGGINGFACE_HUB_CACHE: '/hf',
      PAYLOAD_LIMIT: '123',
      TEIPLEX_DEVICE: 'cpu',
      TEIPLEX_THREADS: '2',
      TEIPLEX_HTTP_PORT: '8081',
      TEIPLEX_ONNX_FILE: 'model.onnx',
    });
    assert.equal(o.modelId, 'org/model');
    assert.equal(o.revision, 'v1');
    assert.equal(o.port, 8080);
    assert.equal(o.hostname, '::1');
    assert.equal(o.maxConcurrentRequests, 7);
    assert.equal(o.maxBatchTokens, 512);
    assert.equal(o.maxBatchRequests, 3);
    assert.equal(o.maxClientBatchSize, 2);
    assert.equal(o.autoTruncate, true);
    assert.equal(o.pooling, 'mean');
    assert.equal(o.dtype, 'float32');
    assert.equal(o.defaultPrompt, 'query: ');
    assert.equal(o.servedModelName, 'm');
    assert.equal(o.apiKey, 'secret');
    assert.equal(o.jsonOutput, true);
    assert.equal(o.prometheusPort, 9100);
    assert.equal(o.huggingfaceHubCache, '/hf');
    assert.equal(o.payloadLimit, 123);
    assert.equal(o.threads, 2);
    assert.equal(o.httpPort, 8081);
    assert.equal(o.onnxFile, 'model.onnx');
  });

  test('flags win over environment variables', () => {
    const env = { MODEL_ID: 'env/model', PORT: '1', AUTO_TRUNCATE: 'true', TEIPLEX_DEVICE: 'cuda', DEFAULT_PROMPT_NAME: 'doc' };
    const o = parse(['--model-id', 'flag/model', '--port', '2', '--auto-truncate=false', '--device', 'cpu', '--default-prompt', 'q: '], env);
    assert.equal(o.modelId, 'flag/model');
    assert.equal(o.port, 2);
    assert.equal(o.autoTruncate, false);
    assert.equal(o.device, 'cpu');
    assert.equal(o.defaultPrompt, 'q: ');
    assert.equal(o.defaultPromptName, undefined, 'a --default-prompt flag hides DEFAULT_PROMPT_NAME');
  });

  test('HOSTNAME that is a machine name (containers) is skipped with a warning, like TEI', () => {
    const o = parse(['--model-id', 'm'], { HOSTNAME: 'a1b2c3d4' });
    assert.equal(o.hostname, '0.0.0.0');
    assert.match(o.warnings.join('\n'), /HOSTNAME='a1b2c3d4'/);
  });

  test('TEI flags without an effect here are accepted and reported', () => {
    const o = parse(['--model-id', 'm', '--uds-path', '/tmp/x', '--otlp-endpoint', 'http://x:4317']);
    assert.deepEqual(o.warnings, ['--uds-path is accepted for TEI compatibility and ignored', '--otlp-endpoint is accepted for TEI compatibility and ignored']);
  });

  test("TEI's --dense-path and --disable-spans are accepted, as flags and as DENSE_PATH / DISABLE_SPANS", () => {
    const o = parse(['--model-id', 'm', '--dense-path', '2_Dense_1024', '--disable-spans']);
    assert.equal(o.densePath, '2_Dense_1024');
    assert.deepEqual(o.warnings, [], 'no spans exist here: disabling them needs no warning');
    assert.equal(parse(['--model-id', 'm', '--disable-spans', 'false']).modelId, 'm');
    const e = parse([], { MODEL_ID: 'm', DENSE_PATH: '2_Dense', DISABLE_SPANS: 'true' });
    assert.equal(e.densePath, '2_Dense');
    assert.equal(parse(['--model-id', 'm', '--dense-path', 'flag'], { DENSE_PATH: 'env' }).densePath, 'flag');
    fails(['--model-id', 'm'], { DISABLE_SPANS: 'maybe' }, /DISABLE_SPANS must be true or false, got 'maybe'/);
    const usage = routerUsage();
    for (const s of ['--dense-path', 'DENSE_PATH', '--disable-spans', 'DISABLE_SPANS']) assert.ok(usage.includes(s), s);
  });

  test('--help', () => {
    assert.deepEqual(parseRouterArgs(['--help'], {}), { help: true });
    assert.deepEqual(parseRouterArgs(['-h'], {}), { help: true });
    const usage = routerUsage();
    for (const flag of ['--model-id', '--max-batch-tokens', '--http-port', '--onnx-file', 'MAX_CLIENT_BATCH_SIZE', 'TEIPLEX_DEVICE']) assert.ok(usage.includes(flag), flag);
  });

  test('an unknown flag is an error that lists the known ones', () => {
    fails(['--model-id', 'm', '--max-batch-size', '4'], {}, /max-batch-size[\s\S]*Known flags:.*--model-id.*--max-batch-tokens.*--http-port/);
  });

  test('bad values name the flag or variable', () => {
    fails([], {}, /--model-id is required \(or set MODEL_ID\)/);
    fails(['--model-id', 'm', '--port', '70000'], {}, /--port must be an integer from 0 to 65535, got '70000'/);
    fails(['--model-id', 'm', '--max-batch-tokens', 'many'], {}, /--max-batch-tokens must be an integer >= 1, got 'many'/);
    fails(['--model-id', 'm', '--max-client-batch-size', '0'], {}, /--max-client-batch-size must be an integer >= 1/);
    fails(['--model-id', 'm'], { MAX_CONCURRENT_REQUESTS: '-1' }, /MAX_CONCURRENT_REQUESTS must be an integer >= 1, got '-1'/);
    fails(['--model-id', 'm', '--pooling', 'max'], {}, /--pooling must be one of cls, mean, splade, last-token, got 'max'/);
    fails(['--model-id', 'm', '--dtype', 'bfloat16'], {}, /--dtype must be one of float32, float16/);
    fails(['--model-id', 'm', '--device', 'tpu'], {}, /--device must be one of cpu, cuda/);
    fails(['--model-id', 'm'], { AUTO_TRUNCATE: 'maybe' }, /AUTO_TRUNCATE must be true or false, got 'maybe'/);
    fails(['--model-id', 'm', '--json-output=sure'], {}, /--json-output must be true or false/);
    fails(['--model-id', 'm', '--default-prompt-name', 'q', '--default-prompt', 'q: '], {}, /--default-prompt-name cannot be used with --default-prompt/);
    fails(['--model-id', 'm'], { DEFAULT_PROMPT_NAME: 'q', DEFAULT_PROMPT: 'q: ' }, /DEFAULT_PROMPT_NAME cannot be used with DEFAULT_PROMPT/);
    fails(['--model-id', 'm', 'stray'], {}, /stray/);
  });
});
