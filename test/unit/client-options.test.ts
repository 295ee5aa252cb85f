/**
 * The client's options (src/client/options.ts): defaults, the environment, the gRPC address
 * derived from the URL, and a TypeError naming each bad option.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_RETRY, resolveOptions } from '../../src/client/options.js';

test('defaults: the local manager, port 9001 for gRPC, 30 s, the default retries', () => {
  const o = resolveOptions({}, {});
  assert.equal(o.url.href, 'http://127.0.0.1:9000/');
  assert.equal(o.grpcUrl.host, '127.0.0.1:9001');
  assert.equal(o.apiKey, undefined);
  assert.equal(o.timeoutMs, 30_000);
  assert.deepEqual(o.retry, DEFAULT_RETRY);
});

test('the environment: TEIPLEX_URL, TEIPLEX_GRPC_URL, TEIPLEX_API_KEY; options win', () => {
  const env = { TEIPLEX_URL: 'https://teiplex.internal:8443/prefix', TEIPLEX_GRPC_URL: 'teiplex.internal:9443', TEIPLEX_API_KEY: 'k1' };
  const o = resolveOptions({}, env);
  assert.equal(o.url.href, 'https://teiplex.internal:8443/prefix');
  assert.deepEqual([o.grpcUrl.protocol, o.grpcUrl.host], ['https:', 'teiplex.internal:9443'], 'a bare host:port is TLS when the URL is');
  assert.equal(o.apiKey, 'k1');
  const mine = resolveOptions({ url: 'http://a:1', grpcUrl: 'http://b:2', apiKey: 'k2' }, env);
  assert.deepEqual([mine.url.host, mine.grpcUrl.host, mine.apiKey], ['a:1', 'b:2', 'k2']);
  assert.equal(resolveOptions({ url: 'https://h:7' }, {}).grpcUrl.href, 'https://h:9001/', "the URL's host and scheme on 9001");
});

test('bad options: a TypeError naming the option', () => {
  const bad: Array<[object, RegExp]> = [
    [{ url: 'not a url' }, /^url: not a URL/],
    [{ url: 'ftp://h' }, /^url: scheme must be http or https/],
    [{ grpcUrl: 'http://h' }, /^grpcUrl: must name a port/],
    [{ apiKey: '' }, /^apiKey: must be a non-empty string/],
    [{ apiKey: 'a\nb' }, /^apiKey: must be a non-empty string on one line/],
    [{ tls: { cert: 'x' } }, /^tls: cert and key go together/],
    [{ timeoutMs: 0 }, /^timeoutMs: must be a finite number >= 1/],
    [{ timeoutMs: Number.NaN }, /^timeoutMs:/],
    [{ retry: { attempts: 0 } }, /^retry\.attempts:/],
    [{ retry: { attempts: 1.5 } }, /^retry\.attempts: must be an integer/],
    [{ retry: { baseDelayMs: -1 } }, /^retry\.baseDelayMs:/],
    [{ onRetry: 'log' }, /^onRetry: must be a function/],
  ];
  for (const [o, re] of bad) assert.throws(() => resolveOptions(o as never, {}), (e: Error) => e instanceof TypeError && re.test(e.message), JSON.stringify(o));
});
