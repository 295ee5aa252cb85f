/**
 * The quota limiter (src/auth/quotas.ts) on a manual clock: token buckets refilling continuously
 * per minute, admission while tokens > 0 and requests >= 1, the charge after the answer (one call
 * may overdraw), Retry-After and the `x-ratelimit-*` figures, per-model buckets, and a reload
 * that keeps what was spent. Config validation of the quota fields names the key.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { formatReset, quotaHeaders, Quotas, quotaStateOf } from '../../src/auth/quotas.js';
import { ManualClock } from '../../src/common/manual-clock.js';
import { TeiplexError } from '../../src/common/errors.js';
import { type ApiKeyConfig, loadConfig } from '../../src/config/config.js';

const HASH = 'a'.repeat(64);
const key = (k: Partial<ApiKeyConfig> & { name: string }): ApiKeyConfig => ({ key_sha256: HASH, ...k });

function refusal(fn: () => unknown): TeiplexError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof TeiplexError, String(err));
    assert.equal(err.code, 'RATE_LIMIT_EXCEEDED');
    assert.equal(err.httpStatus, 429);
    return err;
  }
  assert.fail('admitted');
}

describe('quota limiter', () => {
  test('a key without limits is not limited and gets no ticket', () => {
    const q = new Quotas([key({ name: 'free' })], new ManualClock());
    assert.equal(q.limited('free'), false);
    assert.equal(q.admit('free'), undefined);
    assert.equal(q.admit('unknown'), undefined);
  });

  test('requests: admitted while at least 1 remains, refused with the wait until 1 is back', () => {
    const clock = new ManualClock();
    const q = new Quotas([key({ name: 'k', requests_per_minute: 2 })], clock);
    const t1 = q.admit('k');
    assert.ok(t1);
    assert.deepEqual(t1.state().requests, { limit: 2, remaining: 1, resetMs: 30_000 });
    q.admit('k');
    const err = refusal(() => q.admit('k'));
    assert.equal(err.retryAfterSecs, 30, 'one request refills in 60 s / 2');
    assert.deepEqual(quotaStateOf(err)?.requests, { limit: 2, remaining: 0, resetMs: 60_000 });
    clock.advance(29_999);
    refusal(() => q.admit('k'));
    clock.advance(1);
    assert.ok(q.admit('k'), 'one request back after 30 s');
  });

  test('tokens: charged after the answer, one call may overdraw, the next waits until above 0', () => {
    const clock = new ManualClock();
    const q = new Quotas([key({ name: 'k', tokens_per_minute: 600 })], clock);
    const t = q.admit('k');
    assert.ok(t);
    t.charge(900);
    t.charge(900); // once per ticket
    assert.deepEqual(t.state().tokens, { limit: 600, remaining: 0, resetMs: 90_000 });
    const err = refusal(() => q.admit('k'));
    assert.match(err.message, /API key 'k' is over its tokens_per_minute \(600\)/);
    assert.equal(err.retryAfterSecs, 31, '300 tokens overdrawn at 10 per s: 30 s, then just above 0');
    clock.advance(30_000);
    refusal(() => q.admit('k'));
    clock.advance(1);
    const next = q.admit('k');
    assert.ok(next, 'admitted once above 0');
    assert.equal(next.state().tokens?.remaining, 0, 'a fraction of a token shows as 0');
    clock.advance(60_000);
    assert.deepEqual(next.state().tokens, { limit: 600, remaining: 600, resetMs: 0 }, 'full again, not beyond');
  });

  test('a longer text costs more: remaining drops by the tokens charged', () => {
    const q = new Quotas([key({ name: 'k', tokens_per_minute: 1000 })], new ManualClock());
    const a = q.admit('k');
    a?.charge(3);
    const afterShort = a?.state().tokens?.remaining ?? -1;
    const b = q.admit('k');
    b?.charge(40);
    assert.equal(afterShort, 997);
    assert.equal(b?.state().tokens?.remaining, 957);
  });

  test('per-model limits: own buckets, the key value for a field left out; other models share the key', () => {
    const clock = new ManualClock();
    const q = new Quotas([key({ name: 'k', tokens_per_minute: 100, requests_per_minute: 10, limits: [{ model: 'big', tokens_per_minute: 5 }] })], clock);
    const big = q.admit('k', ['alias-x', 'big']);
    assert.equal(big?.model, 'big');
    assert.deepEqual(big?.state().tokens, { limit: 5, remaining: 5, resetMs: 0 });
    assert.equal(big?.state().requests?.limit, 10, 'requests_per_minute from the key');
    big?.charge(5);
    const err = refusal(() => q.admit('k', ['big']));
    assert.match(err.message, /for model 'big'/);
    assert.equal(q.peek('k', ['big'])?.tokens?.remaining, 0, 'peek reads the model bucket');
    assert.equal(q.peek('k')?.requests?.remaining, 10, 'peek admits nothing');
    assert.equal(q.peek('free'), undefined);
    const other = q.admit('k', ['small']);
    assert.equal(other?.model, '');
    assert.equal(other?.state().tokens?.remaining, 100, "the key's own bucket is untouched");
  });

  test('a reload keeps what was spent, and a removed limit removes the key', () => {
    const clock = new ManualClock();
    const q = new Quotas([key({ name: 'k', tokens_per_minute: 100 })], clock);
    q.admit('k')?.charge(150);
    refusal(() => q.admit('k'));
    q.configure([key({ name: 'k', tokens_per_minute: 1000 })]);
    const t = q.admit('k');
    assert.equal(t?.state().tokens?.remaining, 850, 'the 150 spent stay spent: 1000 - 150');
    q.configure([key({ name: 'k' })]);
    assert.equal(q.limited('k'), false);
    assert.equal(q.admit('k'), undefined);
  });

  test('events: refusals by kind, tokens charged', () => {
    const seen: string[] = [];
    const q = new Quotas([key({ name: 'k', requests_per_minute: 1, tokens_per_minute: 10 })], new ManualClock(), {
      refused: (k, kind) => seen.push(`refused ${k} ${kind}`),
      charged: (k, n) => seen.push(`charged ${k} ${n}`),
    });
    q.admit('k')?.charge(4);
    refusal(() => q.admit('k'));
    assert.deepEqual(seen, ['charged k 4', 'refused k requests']);
  });
});

describe('quota headers', () => {
  test("OpenAI's duration format", () => {
    assert.equal(formatReset(0), '0ms');
    assert.equal(formatReset(120), '120ms');
    assert.equal(formatReset(1000), '1s');
    assert.equal(formatReset(1001), '2s');
    assert.equal(formatReset(360_000), '6m0s');
    assert.equal(formatReset(3_723_000), '1h2m3s');
  });

  test('limit, remaining and reset for each limited kind', () => {
    assert.deepEqual(quotaHeaders({ tokens: { limit: 600, remaining: 0, resetMs: 90_000 } }), [
      ['x-ratelimit-limit-tokens', '600'],
      ['x-ratelimit-remaining-tokens', '0'],
      ['x-ratelimit-reset-tokens', '1m30s'],
    ]);
    assert.deepEqual(quotaHeaders({}), []);
  });
});

describe('quota config', () => {
  const load = async (keys: string): Promise<unknown> => {
    const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-quota-config-'));
    try {
      const file = path.join(dir, 'c.toml');
      await writeFile(file, `[[auth.api_keys]]\nname = "team"\nkey_sha256 = "${HASH}"\n${keys}`);
      return await loadConfig(file, {});
    } catch (err) {
      return err;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  test('quota fields load', async () => {
    const c = (await load('tokens_per_minute = 1000\nrequests_per_minute = 60\n[[auth.api_keys.limits]]\nmodel = "minilm"\ntokens_per_minute = 10\n')) as {
      auth: { api_keys: ApiKeyConfig[] };
    };
    assert.deepEqual(c.auth.api_keys[0].limits, [{ model: 'minilm', tokens_per_minute: 10 }]);
    assert.equal(c.auth.api_keys[0].tokens_per_minute, 1000);
  });

  for (const [what, toml, re] of [
    ['zero', 'tokens_per_minute = 0\n', /tokens_per_minute/],
    ['not an integer', 'requests_per_minute = 1.5\n', /requests_per_minute/],
    ['a limit setting nothing', '[[auth.api_keys.limits]]\nmodel = "m"\n', /auth\.api_keys\[0\] \('team'\)\.limits\[0\] \(model 'm'\): set tokens_per_minute and\/or requests_per_minute/],
    ['a model twice', '[[auth.api_keys.limits]]\nmodel = "m"\ntokens_per_minute = 1\n[[auth.api_keys.limits]]\nmodel = "m"\nrequests_per_minute = 1\n', /\('team'\)\.limits\[1\]\.model: 'm' appears twice/],
  ] as const) {
    test(`refused: ${what}`, async () => {
      const err = await load(toml);
      assert.ok(err instanceof Error, `loaded: ${JSON.stringify(err)}`);
      assert.match(err.message, re);
      assert.match(err.message, /api_keys/);
    });
  }
});
