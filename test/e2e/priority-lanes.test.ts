/**
 * Priority lanes on a real `teiplex serve` (a router child, HTTP and gRPC over loopback): which
 * lane a call's child calls wait in, as teiplex_lane_wait_seconds counts them per lane (docs/tenancy.md).
 *
 * - A key with `priority = "bulk"` has its HTTP, EmbedTyped and forwarded calls counted in the
 *   bulk lane; `x-teiplex-priority: interactive` overrides it.
 * - A key without one: interactive, except the Arrow RPCs (bulk by default, interactive by header).
 * - A bad `x-teiplex-priority` is refused: HTTP 400 (`bad_request`, TEI's `validation`), gRPC
 *   INVALID_ARGUMENT with the BAD_REQUEST code, naming the allowed values, and nothing is counted.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { encodeTexts } from '../../src/arrow/embedding-batch.js';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { assertErrorCode, assertTeiError, client, instanceToml, writeConfig } from '../helpers/data-plane.js';
import { metricValue } from '../helpers/fake-child.js';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { errorCode, mux, unary, type AnyClient } from '../helpers/mux-client.js';

const KEYS = { bulk: 'lanes-bulk-key-1', plain: 'lanes-plain-key-2' } as const;
const TARGET = { instance_name: 'emb' };

function md(key: string, priority?: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${key}`);
  if (priority !== undefined) m.set('x-teiplex-priority', priority);
  return m;
}

describe('priority lanes', () => {
  let dir: string;
  let m: ManagerProcess;
  let c: AnyClient;
  let n = 0;
  /** A text no call sent before (the cache is off anyway). */
  const fresh = () => `lanes text ${n++}`;

  /** Child calls counted per lane since the manager started. */
  const counts = async (): Promise<{ interactive: number; bulk: number }> => {
    const text = await (await fetch(`http://127.0.0.1:${m.apiPort}/metrics`)).text();
    const of = (lane: string) => metricValue(text, 'teiplex_lane_wait_seconds_count', { instance: 'emb', lane }) ?? 0;
    return { interactive: of('interactive'), bulk: of('bulk') };
  };
  /** The lane counts `fn` added. */
  const added = async (fn: () => Promise<unknown>): Promise<{ interactive: number; bulk: number }> => {
    const before = await counts();
    await fn();
    const after = await counts();
    return { interactive: after.interactive - before.interactive, bulk: after.bulk - before.bulk };
  };
  const http = (key: string, priority?: string) => client(m.apiPort, { authorization: `Bearer ${key}`, ...(priority !== undefined ? { 'x-teiplex-priority': priority } : {}) });
  const deadline = () => ({ deadline: Date.now() + 60_000 });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-lanes-'));
    const model = await testModel({ kind: 'embedding', seed: 401 });
    const file = await writeConfig(
      dir,
      '',
      `${instanceToml('emb', model, 'embedding_cache = false')}
[auth]
admin_requires_key = false

[[auth.api_keys]]
name = "batch-jobs"
key_sha256 = "${sha256Hex(KEYS.bulk)}"
priority = "bulk"

[[auth.api_keys]]
name = "app"
key_sha256 = "${sha256Hex(KEYS.plain)}"
`,
    );
    m = await startManager(file);
    c = mux(Number(m.ready.grpc_port));
    await m.waitFor('emb', (i) => i.status === 'running', 120_000);
    // The child's Info is learned by the first call (its window is sized from it).
    const warm = await http(KEYS.plain).post('/embed', { inputs: fresh() });
    assert.equal(warm.status, 200, JSON.stringify(warm.body));
  });

  after(async () => {
    c?.close();
    await m?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("a key with priority = \"bulk\": its HTTP, EmbedTyped and forwarded calls go in the bulk lane", async () => {
    assert.deepEqual(
      await added(async () => {
        const a = await http(KEYS.bulk).post('/embed', { inputs: fresh() });
        assert.equal(a.status, 200, JSON.stringify(a.body));
      }),
      { interactive: 0, bulk: 1 },
    );
    assert.deepEqual(await added(() => unary(c, 'EmbedTyped', { target: TARGET, inputs: [fresh()] }, deadline(), md(KEYS.bulk))), { interactive: 0, bulk: 1 });
    assert.deepEqual(await added(() => unary(c, 'Embed', { target: TARGET, request: { inputs: fresh() } }, deadline(), md(KEYS.bulk))), { interactive: 0, bulk: 1 });
  });

  test('x-teiplex-priority overrides the key: interactive', async () => {
    assert.deepEqual(
      await added(async () => {
        const a = await http(KEYS.bulk, 'interactive').post('/v1/embeddings', { model: 'emb', input: fresh() });
        assert.equal(a.status, 200, JSON.stringify(a.body));
      }),
      { interactive: 1, bulk: 0 },
    );
    assert.deepEqual(await added(() => unary(c, 'Embed', { target: TARGET, request: { inputs: fresh() } }, deadline(), md(KEYS.bulk, 'interactive'))), { interactive: 1, bulk: 0 });
  });

  test('a key without priority: interactive, except the Arrow RPCs (bulk unless the header says interactive)', async () => {
    assert.deepEqual(
      await added(async () => {
        const a = await http(KEYS.plain).post('/embed', { inputs: fresh() });
        assert.equal(a.status, 200, JSON.stringify(a.body));
      }),
      { interactive: 1, bulk: 0 },
    );
    const arrow = () => ({ target: TARGET, arrow_ipc: Buffer.from(encodeTexts([fresh(), fresh(), fresh()])) });
    assert.deepEqual(await added(() => unary(c, 'EmbedArrow', arrow(), deadline(), md(KEYS.plain))), { interactive: 0, bulk: 1 });
    assert.deepEqual(await added(() => unary(c, 'EmbedArrow', arrow(), deadline(), md(KEYS.plain, 'interactive'))), { interactive: 1, bulk: 0 });
    assert.deepEqual(
      await added(async () => {
        const a = await http(KEYS.plain, 'bulk').post('/embed', { inputs: fresh() });
        assert.equal(a.status, 200, JSON.stringify(a.body));
      }),
      { interactive: 0, bulk: 1 },
    );
  });

  test('a bad x-teiplex-priority is refused naming the allowed values, and nothing reaches the child', async () => {
    const calls = await added(async () => {
      const openai = await http(KEYS.plain, 'urgent').post('/v1/embeddings', { model: 'emb', input: fresh() });
      assertErrorCode(openai, 400, 'BAD_REQUEST');
      assert.match(openai.body.error.message, /'interactive' or 'bulk'/);
      const tei = await http(KEYS.bulk, 'urgent').post('/embed', { inputs: fresh() });
      assertTeiError(tei, 400, 'validation');
      for (const [method, req] of [
        ['Embed', { target: TARGET, request: { inputs: fresh() } }],
        ['EmbedTyped', { target: TARGET, inputs: [fresh()] }],
        ['EmbedArrow', { target: TARGET, arrow_ipc: Buffer.from(encodeTexts([fresh()])) }],
      ] as const) {
        const err = await unary(c, method, req, deadline(), md(KEYS.plain, 'urgent')).then(
          () => assert.fail(`${method}: not refused`),
          (e: grpc.ServiceError) => e,
        );
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${method}: ${err.details}`);
        assert.equal(errorCode(err), 'BAD_REQUEST', `${method}: ${err.details}`);
        assert.match(err.details, /x-teiplex-priority: 'urgent' is not a priority; use 'interactive' or 'bulk'/, method);
      }
    });
    assert.deepEqual(calls, { interactive: 0, bulk: 0 });
  });
});
