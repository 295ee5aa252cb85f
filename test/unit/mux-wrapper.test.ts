/**
 * The multiplexer's wire reader (src/mux/wrapper.ts) against protobufjs's encoder: the target is
 * decoded, the inner request comes out byte for byte as tei.v1 encodes it, protobuf's merge rules
 * hold, and no byte sequence makes it throw.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { muxServiceDefinition } from '../../src/mux/protos.js';
import { describeTarget, sameTarget } from '../../src/routing/target.js';
import { parseWrapper } from '../../src/mux/wrapper.js';
import { serviceDefinition } from '../../src/tei/proto.js';

const mux = muxServiceDefinition();
const encodeWrapper = (v: unknown): Buffer => mux.Embed.requestSerialize(v);
const encodeInner = (v: unknown): Buffer => serviceDefinition('tei.v1.Embed').Embed.requestSerialize(v);

test('target kinds and the inner request bytes', () => {
  const inner = { inputs: 'héllo wörld', truncate: true, normalize: false, dimensions: 8, prompt_name: 'query' };
  for (const [target, want] of [
    [{ instance_name: 'bge-small' }, { kind: 'instance_name', value: 'bge-small' }],
    [{ model_id: 'BAAI/bge-small-en-v1.5' }, { kind: 'model_id', value: 'BAAI/bge-small-en-v1.5' }],
    [{ instance_index: 0 }, { kind: 'instance_index', value: 0 }],
    [{ instance_index: 4294967295 }, { kind: 'instance_index', value: 4294967295 }],
  ] as const) {
    const w = parseWrapper(encodeWrapper({ target, request: inner }));
    assert.deepEqual(w.target, want);
    assert.deepEqual(w.request, encodeInner(inner));
    assert.equal(w.error, undefined);
  }
});

test('absent target, empty target, absent request, empty request', () => {
  assert.deepEqual(parseWrapper(encodeWrapper({ request: { inputs: 'x' } })), { request: encodeInner({ inputs: 'x' }) });
  assert.deepEqual(parseWrapper(encodeWrapper({ target: {}, request: { inputs: 'x' } })), { request: encodeInner({ inputs: 'x' }) });
  assert.deepEqual(parseWrapper(encodeWrapper({ target: { instance_name: 'a' } })), { target: { kind: 'instance_name', value: 'a' } });
  const empty = parseWrapper(encodeWrapper({ target: { instance_name: 'a' }, request: {} }));
  assert.equal(empty.request?.length, 0, 'an empty request is present');
  assert.deepEqual(parseWrapper(Buffer.alloc(0)), {});
});

test('merge rules: repeated request concatenates, repeated target: last member wins; unknown fields skipped', () => {
  const a = encodeWrapper({ target: { instance_name: 'a' }, request: { inputs: 'x' } });
  const b = encodeWrapper({ target: { instance_index: 3 }, request: { truncate: true } });
  const unknown = Buffer.from([0x18, 0x96, 0x01, 0x25, 1, 2, 3, 4, 0x29, 1, 2, 3, 4, 5, 6, 7, 8, 0x22, 2, 0xaa, 0xbb]);
  const w = parseWrapper(Buffer.concat([a, unknown, b]));
  assert.deepEqual(w.target, { kind: 'instance_index', value: 3 });
  assert.deepEqual(w.request, Buffer.concat([encodeInner({ inputs: 'x' }), encodeInner({ truncate: true })]));
});

test('malformed bytes: an error naming the problem, never a throw', () => {
  assert.match(parseWrapper(Buffer.from([0x12, 0x05, 0x0a])).error!, /runs past the end/);
  assert.match(parseWrapper(Buffer.from([0x12])).error!, /truncated varint/);
  assert.match(parseWrapper(Buffer.from([0x10, 0x01])).error!, /field 2 \(request\) has wire type 0/);
  assert.match(parseWrapper(Buffer.from([0x0a, 0x02, 0x18, 0x80])).error!, /truncated varint/);
  assert.match(parseWrapper(Buffer.from([0x0a, 0x02, 0x1a, 0x00])).error!, /target.instance_index\) has wire type 2/);
  assert.match(parseWrapper(Buffer.from([0x00])).error!, /invalid field number 0/);
  assert.match(parseWrapper(Buffer.from([0x2b])).error!, /field 5 has unsupported wire type 3/);
  assert.match(parseWrapper(Buffer.alloc(11, 0xff)).error!, /varint longer than 10 bytes/);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const w = parseWrapper(Buffer.from(bytes));
      assert.ok(w.error !== undefined || w.target !== undefined || w.request !== undefined || bytes.length === 0 || Object.keys(w).length === 0);
    }),
    { numRuns: 2000 },
  );
});

test('any valid wrapper round-trips', () => {
  const target = fc.oneof(
    fc.record({ instance_name: fc.string() }),
    fc.record({ model_id: fc.string() }),
    fc.record({ instance_index: fc.nat({ max: 0xffffffff }) }),
  );
  fc.assert(
    fc.property(target, fc.string(), fc.boolean(), (t, inputs, truncate) => {
      const inner = { inputs, truncate };
      const w = parseWrapper(encodeWrapper({ target: t, request: inner }));
      const [kind, value] = Object.entries(t)[0];
      assert.deepEqual(w.target, { kind, value });
      assert.deepEqual(w.request, encodeInner(inner));
    }),
    { numRuns: 500 },
  );
});

test('sameTarget and describeTarget', () => {
  assert.ok(sameTarget({ kind: 'model_id', value: 'm' }, { kind: 'model_id', value: 'm' }));
  assert.ok(!sameTarget({ kind: 'model_id', value: 'm' }, { kind: 'instance_name', value: 'm' }));
  assert.ok(!sameTarget({ kind: 'instance_index', value: 0 }, { kind: 'instance_index', value: 1 }));
  assert.equal(describeTarget({ kind: 'instance_index', value: 2 }), 'instance_index 2');
  assert.equal(describeTarget({ kind: 'model_id', value: 'a/b' }), "model_id 'a/b'");
});
