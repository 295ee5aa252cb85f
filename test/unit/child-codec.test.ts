/**
 * tei.v1.Embed's hand-written codec (src/child/codec.ts) against protobufjs, the codec every other
 * message uses: requests byte for byte, answers value for value (packed and unpacked floats,
 * unknown fields, 64-bit times, repeated metadata), and random bytes alike (both decode to the
 * same, or both refuse).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MethodDefinition } from '@grpc/proto-loader';
import fc from 'fast-check';
import { decodeEmbedResponse, encodeEmbedRequest, fromPbMetadata, TEI, type EmbedFields } from '../../src/child/codec.js';
import { routerPackageDefinition, type PbEmbedResponse } from '../../src/tei/proto.js';
import type { Metadata } from '../../src/tei/types.js';

const embed = (routerPackageDefinition()['tei.v1.Embed'] as unknown as Record<string, MethodDefinition<unknown, PbEmbedResponse>>).Embed;
const encodeResponse = (r: { embeddings: number[]; metadata?: Record<string, unknown> | null }): Buffer => embed.responseSerialize(r as unknown as PbEmbedResponse);

/** What the protobufjs path gives for an answer, or the error it throws. */
function viaProtobufjs(bytes: Buffer): { embeddings: Float32Array; metadata: Metadata } | 'throws' {
  try {
    const res = TEI.Embed.decode(bytes);
    return { embeddings: Float32Array.from(res.embeddings), metadata: fromPbMetadata(res.metadata) };
  } catch {
    return 'throws';
  }
}

function byHand(bytes: Buffer): { embeddings: Float32Array; metadata: Metadata } | 'throws' {
  try {
    return decodeEmbedResponse(bytes);
  } catch {
    return 'throws';
  }
}

function sameAnswer(bytes: Buffer): void {
  const want = viaProtobufjs(bytes);
  const got = byHand(bytes);
  if (want === 'throws' || got === 'throws') {
    assert.equal(got, want, `bytes ${bytes.toString('hex')}`);
    return;
  }
  assert.deepEqual(Array.from(got.embeddings), Array.from(want.embeddings), `bytes ${bytes.toString('hex')}`);
  assert.deepEqual(got.metadata, want.metadata, `bytes ${bytes.toString('hex')}`);
}

const varint = (v: bigint): number[] => {
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
};

const fields: fc.Arbitrary<EmbedFields> = fc.record(
  {
    truncate: fc.boolean(),
    truncation_direction: fc.constantFrom('TRUNCATION_DIRECTION_RIGHT' as const, 'TRUNCATION_DIRECTION_LEFT' as const),
    normalize: fc.boolean(),
    prompt_name: fc.string({ unit: 'binary', maxLength: 40 }),
    dimensions: fc.integer({ min: 1, max: 0xffffffff }),
  },
  { requiredKeys: ['truncate'] },
);

describe('tei.v1.Embed by hand', () => {
  test('requests: the bytes protobufjs writes, for any text (lone surrogates too) and any set of fields', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ unit: 'grapheme', maxLength: 300 }), fc.string({ maxLength: 20000 })), fields, (text, o) => {
        assert.deepEqual(encodeEmbedRequest(text, o), TEI.Embed.encode({ inputs: text, ...o }));
      }),
      { numRuns: 2000 },
    );
  });

  test('answers: the values and metadata protobufjs gives, 64-bit times included', () => {
    const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String);
    const metadata = fc.option(
      fc.record({
        compute_chars: fc.nat(),
        compute_tokens: fc.nat(),
        total_time_ns: u64,
        tokenization_time_ns: u64,
        queue_time_ns: u64,
        inference_time_ns: u64,
      }),
    );
    fc.assert(
      fc.property(fc.array(fc.float({ noNaN: false }), { maxLength: 1100 }), metadata, (embeddings, md) => {
        const bytes = encodeResponse({ embeddings, metadata: md });
        sameAnswer(bytes);
        const got = decodeEmbedResponse(bytes);
        assert.deepEqual(Array.from(got.embeddings), Array.from(Float32Array.from(embeddings)));
      }),
      { numRuns: 500 },
    );
  });

  test('answers in the other forms the wire allows: unpacked floats, lists in pieces, unknown fields, metadata twice, long varints', () => {
    const f = (x: number): number[] => Array.from(new Uint8Array(Float32Array.of(x).buffer));
    const packed = (xs: number[]): number[] => {
      const body = xs.flatMap(f);
      return [0x0a, ...varint(BigInt(body.length)), ...body];
    };
    const md = (...b: number[]): number[] => [0x12, ...varint(BigInt(b.length)), ...b];
    const cases: number[][] = [
      [],
      [0x0d, ...f(1.5), 0x0d, ...f(-2)],
      [...packed([1, 2]), 0x0d, ...f(3), ...packed([4.25])],
      [0x18, 0x96, 0x01, ...packed([1]), 0x21, 1, 2, 3, 4, 5, 6, 7, 8, 0x2a, 2, 9, 9, 0x35, 1, 2, 3, 4],
      [...md(0x08, 5, 0x18, ...varint(123456789012345n)), ...md(0x10, 7)],
      [...md(0x08, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x18, ...varint((1n << 64n) - 1n))],
      [...md(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)],
      [...md(0x38, 1, 0x42, 1, 0, 0x4d, 1, 2, 3, 4)],
      [...md(0x0a, 1, 0)],
      [0x0b, 0x0c],
      [0x0a, 3, 1, 2, 3],
      [0x0a, 8, 1, 2, 3, 4],
      [0x12, 5, 0x08],
      [0x08, 0x80],
      [0x0e, 1],
    ];
    for (const c of cases) sameAnswer(Buffer.from(c));
  });

  test('a metadata field that runs past the end of its submessage is refused, as protobufjs refuses it', () => {
    // found by the random-bytes property: metadata of length 1 holding a tag whose value lies after it
    for (const hex of ['12010000', '120300000000', '120310ffff01']) {
      assert.equal(byHand(Buffer.from(hex, 'hex')), 'throws', hex);
      sameAnswer(Buffer.from(hex, 'hex'));
    }
  });

  test('random bytes: both decode to the same, or both refuse', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => sameAnswer(Buffer.from(bytes))),
      { numRuns: 20000 },
    );
  });
});
