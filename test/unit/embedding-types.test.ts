/**
 * The output types against references written from their published definitions
 * (test/helpers/quantize-reference.ts).
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import fc from 'fast-check';
import {
  float16Bits,
  float16Value,
  type Int8Ranges,
  jsonValues,
  OUTPUT_TYPES,
  quantize,
  rangesOf,
  rowBytes,
  typedLength,
} from '../../src/tei/embedding-types.js';
import { refHalf, refInt8, refPack, refToHalf } from '../helpers/quantize-reference.js';

const SEED = 1402;

test('float16: every binary16 bit pattern decodes to its value and encodes back to itself', () => {
  for (let b = 0; b < 0x10000; b++) {
    const v = refHalf(b);
    if (Number.isNaN(v)) {
      assert.ok(Number.isNaN(float16Value(b)), `bits ${b}`);
      continue;
    }
    assert.equal(float16Value(b), v, `value of bits ${b.toString(16)}`);
    assert.equal(float16Bits(v), b, `bits of ${v}`);
  }
});

test('float16: float32 values round to the nearest binary16, ties to even (seeded)', () => {
  const f32 = (x: number) => Math.fround(x);
  fc.assert(
    fc.property(fc.float({ noNaN: true }), (x) => {
      assert.equal(float16Bits(x), refToHalf(f32(x)), `x = ${x}`);
    }),
    { seed: SEED, numRuns: 20000 },
  );
  // the exact midpoints between neighbours, where only the tie rule decides
  for (let b = 0; b < 0x7bff; b += 7) {
    const mid = (refHalf(b) + refHalf(b + 1)) / 2;
    if (Math.fround(mid) !== mid) continue;
    assert.equal(float16Bits(mid), refToHalf(mid), `midpoint after bits ${b}`);
    assert.equal(float16Bits(mid) & 1, 0, 'a tie goes to the even pattern');
  }
  assert.equal(float16Bits(1e6), 0x7c00);
  assert.equal(float16Bits(-1e6), 0xfc00);
  assert.equal(float16Bits(1e-9), 0);
});

const vectors = (dims: number) => fc.array(fc.array(fc.float({ min: -1, max: 1, noNaN: true, noDefaultInfinity: true }), { minLength: dims, maxLength: dims }), { minLength: 1, maxLength: 12 });

test('int8 and uint8 match quantize_embeddings with ranges from the same vectors (seeded)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 40 }).chain(vectors), (rows) => {
      const f = rows.map((r) => Float32Array.from(r));
      const ranges = rangesOf(f);
      const plain = { min: Array.from(ranges.min), max: Array.from(ranges.max) };
      for (const precision of ['int8', 'uint8'] as const) {
        for (const r of f) {
          const want = refInt8(Array.from(r), plain, precision);
          assert.deepEqual(Array.from(quantize(r, precision, ranges)), want);
        }
      }
    }),
    { seed: SEED, numRuns: 300 },
  );
});

test('int8 and uint8 clamp values outside the calibrated range (numpy would wrap them)', () => {
  const ranges: Int8Ranges = { min: Float32Array.from([0, 0]), max: Float32Array.from([1, 1]) };
  assert.deepEqual(Array.from(quantize(Float32Array.from([-5, 7]), 'uint8', ranges)), [0, 255]);
  assert.deepEqual(Array.from(quantize(Float32Array.from([-5, 7]), 'int8', ranges)), [-128, 127]);
  // the range's ends: in float32, 1 / fround(1 / 255) is just under 255, so the max lands on 126 as in numpy
  assert.deepEqual(Array.from(quantize(Float32Array.from([0, 1]), 'int8', ranges)), [-128, 126]);
  assert.throws(() => quantize(Float32Array.from([1, 2, 3]), 'int8', ranges), /needs ranges for 3 dimensions/);
  assert.throws(() => quantize(Float32Array.from([1]), 'uint8'), /needs ranges/);
});

test('binary and ubinary match numpy packbits of v > 0, padding the last byte (seeded)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 70 }).chain(vectors), (rows) => {
      for (const r of rows) {
        const f = Float32Array.from(r);
        for (const precision of ['binary', 'ubinary'] as const) {
          const got = quantize(f, precision);
          assert.equal(got.length, typedLength(precision, f.length));
          assert.deepEqual(Array.from(got), refPack(Array.from(f), precision));
        }
      }
    }),
    { seed: SEED, numRuns: 300 },
  );
  // zero is not positive: its bit is 0
  assert.deepEqual(Array.from(quantize(Float32Array.from([0, -0, 1e-30, -1]), 'ubinary')), [0b00100000]);
});

test("each type's bytes are its values little-endian, and JSON shows float16 as its value", () => {
  const v = Float32Array.from([0.5, -1.25, 3.0e-3]);
  const ranges = rangesOf([v, Float32Array.from([-1, 1, 1])]);
  for (const t of OUTPUT_TYPES) {
    const row = quantize(v, t, ranges);
    const bytes = rowBytes(row);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const json = Array.from(jsonValues(row, t));
    for (let i = 0; i < row.length; i++) {
      const fromBytes =
        t === 'float32' ? dv.getFloat32(i * 4, true) : t === 'float16' ? refHalf(dv.getUint16(i * 2, true)) : t === 'int8' || t === 'binary' ? dv.getInt8(i) : dv.getUint8(i);
      assert.equal(fromBytes, json[i], `${t}[${i}]`);
    }
  }
  assert.deepEqual(Array.from(jsonValues(quantize(v, 'float16'), 'float16')), [0.5, -1.25, refHalf(float16Bits(3.0e-3))]);
});

test('rangesOf refuses no vectors and vectors of different lengths', () => {
  assert.throws(() => rangesOf([]), /at least one vector/);
  assert.throws(() => rangesOf([new Float32Array(2), new Float32Array(3)]), /differ in length/);
});
