/**
 * The swap's comparison (src/swap/compare.ts) and its new spec (src/swap/swap.ts swappedSpec) on
 * their own: cosine of dense and sparse vectors (zero vectors, rounding past 1), each check with
 * its figures, which check refuses first, min_cosine against the mean and the minimum; the new
 * spec's ports, the changed fields (a change, or a whole spec replacing the old one), a rename or
 * a change that changes nothing refused.
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import { TeiplexError } from '../../src/common/errors.js';
import { compareAnswers, cosine, type ProbeAnswer, type ProbeVector } from '../../src/swap/compare.js';
import { DEFAULT_PROBE_TEXTS, MAX_PROBE_TEXT_CHARS } from '../../src/swap/probe-set.js';
import { swappedSpec } from '../../src/swap/swap.js';

const dense = (vectors: number[][], over: Partial<ProbeAnswer> = {}): ProbeAnswer => ({ kind: 'embedding/dense', pooling: 'model default', dims: vectors[0]!.length, vectors, ...over });

test('cosine: dense, sparse (indices merged), zero vectors, different lengths, never past 1', () => {
  assert.equal(cosine([1, 0], [1, 0]), 1);
  assert.equal(cosine([1, 0], [0, 1]), 0);
  assert.equal(cosine([1, 0], [-2, 0]), -1);
  assert.ok(Math.abs(cosine([1, 1], [1, 0]) - Math.SQRT1_2) < 1e-12);
  assert.equal(cosine([0, 0], [0, 0]), 1, 'two zero vectors are the same');
  assert.equal(cosine([0, 0], [1, 0]), 0, 'a zero vector is not like a non-zero one');
  assert.ok(Number.isNaN(cosine([1, 0], [1, 0, 0])), 'different lengths: no figure');
  const third = 1 / 3;
  assert.ok(cosine([third, third, third], [third, third, third]) <= 1);
  const a: ProbeVector = { indices: Uint32Array.from([1, 5, 9]), values: Float32Array.from([1, 2, 3]) };
  const b: ProbeVector = { indices: Uint32Array.from([5, 9, 12]), values: Float32Array.from([2, 3, 4]) };
  const expected = (2 * 2 + 3 * 3) / Math.sqrt((1 + 4 + 9) * (4 + 9 + 16));
  assert.ok(Math.abs(cosine(a, b) - expected) < 1e-6);
  assert.ok(Number.isNaN(cosine(a, [1, 2])), 'sparse against dense: no figure');
});

test('identical answers pass every check; the figures are reported', () => {
  const v = [
    [1, 2, 3],
    [0, 1, 0],
  ];
  const c = compareAnswers(dense(v), dense(v), 0.999);
  assert.equal(c.passed, true);
  assert.equal(c.reason, undefined);
  assert.deepEqual(
    c.checks.map((x) => [x.check, x.passed]),
    [
      ['output_kind', true],
      ['pooling', true],
      ['dimensions', true],
      ['cosine', true],
    ],
  );
  assert.deepEqual(c.cosine, { mean: 1, min: 1, min_index: 0, per_text: [1, 1], min_cosine: 0.999 });
});

test('min_cosine: the mean and the minimum must both reach it; the lowest text is named', () => {
  const oldA = dense([
    [1, 0],
    [1, 0],
    [1, 0],
  ]);
  const newA = dense([
    [1, 0],
    [1, 0],
    [1, 1],
  ]);
  // per text 1, 1, 0.7071: mean 0.9024, min 0.7071
  const low = compareAnswers(oldA, newA, 0.9);
  assert.equal(low.passed, false, 'the mean reaches 0.9, the minimum does not');
  assert.equal(low.cosine!.min_index, 2);
  assert.match(low.reason!, /^cosine below min_cosine 0\.9: mean 0\.902369, min 0\.707107 \(probe text 2\), min_cosine 0\.9$/);
  assert.equal(compareAnswers(oldA, newA, 0.95).passed, false, 'neither reaches 0.95');
  assert.equal(compareAnswers(oldA, newA, 0.7).passed, true, 'both reach 0.7');
  assert.equal(compareAnswers(oldA, newA, low.cosine!.min).passed, true, 'exactly the minimum reaches it');
  const none = compareAnswers(oldA, newA);
  assert.equal(none.passed, true, 'without min_cosine the figures do not refuse');
  assert.equal(none.cosine!.min_cosine, null);
  assert.match(none.checks[3]!.detail!, /no min_cosine asked/);
});

test('kind, pooling and dimension refuse before any cosine, with old and new named', () => {
  const v = [[1, 0]];
  const kind = compareAnswers(dense(v), dense(v, { kind: 'embedding/sparse', dims: undefined }), 0.5);
  assert.equal(kind.passed, false);
  assert.equal(kind.cosine, null, 'no cosine across kinds');
  assert.equal(kind.reason, 'output kind differs: old embedding/dense, new embedding/sparse');
  const pooling = compareAnswers(dense(v), dense(v, { pooling: 'cls' }));
  assert.equal(pooling.passed, false);
  assert.equal(pooling.reason, 'pooling differs: old model default, new cls');
  assert.notEqual(pooling.cosine, null, 'the figures are still computed when only the pooling differs');
  const dims = compareAnswers(dense(v), dense([[1, 0, 0]]));
  assert.equal(dims.passed, false);
  assert.equal(dims.cosine, null);
  assert.equal(dims.reason, 'dimensions differs: old 2, new 3');
  assert.deepEqual(dims.checks[2], { check: 'dimensions', passed: false, old: 2, new: 3 });
});

test('sparse answers: no dimension (null on both sides), cosine over the shared indices', () => {
  const s = (indices: number[], values: number[]): ProbeVector => ({ indices: Uint32Array.from(indices), values: Float32Array.from(values) });
  const sparse = (vectors: ProbeVector[]): ProbeAnswer => ({ kind: 'embedding/sparse', pooling: 'splade', dims: undefined, vectors });
  const c = compareAnswers(sparse([s([1, 2], [1, 1])]), sparse([s([2, 3], [1, 1])]), 0.4);
  assert.equal(c.passed, true);
  assert.deepEqual(c.checks[2], { check: 'dimensions', passed: true, old: null, new: null });
  assert.ok(Math.abs(c.cosine!.mean - 0.5) < 1e-9);
});

test('answers of different lengths are a programming error, not a verdict', () => {
  assert.throws(() => compareAnswers(dense([[1]]), dense([[1], [1]])), /differ in length/);
});

test('the built-in probe set: 16 varied texts within the limits', () => {
  assert.equal(DEFAULT_PROBE_TEXTS.length, 16);
  assert.equal(new Set(DEFAULT_PROBE_TEXTS).size, 16);
  for (const t of DEFAULT_PROBE_TEXTS) assert.ok(t.length > 0 && t.length <= MAX_PROBE_TEXT_CHARS);
  assert.ok(DEFAULT_PROBE_TEXTS.some((t) => t.length > 200), 'a long text');
  assert.ok(DEFAULT_PROBE_TEXTS.some((t) => [...t].some((c) => c.codePointAt(0)! > 127)), 'non-ASCII text');
});

test('swappedSpec: the change applied, ports left to allocation unless named, changed fields listed', () => {
  const old = { name: 'a', model_id: 'org/m', port: 9001, prometheus_port: 9002, pooling: 'mean' as const, extra_args: ['--x'] };
  const { spec, changed } = swappedSpec(old, { model_id: 'org/m2', extra_args: ['--x'], revision: 'r2' });
  assert.deepEqual(spec, { name: 'a', model_id: 'org/m2', pooling: 'mean', extra_args: ['--x'], revision: 'r2' });
  assert.deepEqual(changed, { model_id: { old: 'org/m', new: 'org/m2' }, revision: { old: null, new: 'r2' } }, 'an equal value is no change');
  assert.equal(swappedSpec(old, { model_id: 'org/m2', port: 9100 }).spec.port, 9100);
  assert.deepEqual(swappedSpec(old, { name: 'a', dtype: 'float16' }).changed, { dtype: { old: null, new: 'float16' } }, 'the same name may be given');
});

test('swappedSpec replacing (a config reload): fields the new spec drops are gone and listed', () => {
  const old = { name: 'a', model_id: 'org/m', port: 9001, revision: 'r1', pooling: 'mean' as const };
  const { spec, changed } = swappedSpec(old, { name: 'a', model_id: 'org/m', pooling: 'cls' }, true);
  assert.deepEqual(spec, { name: 'a', model_id: 'org/m', pooling: 'cls' });
  assert.deepEqual(changed, { revision: { old: 'r1', new: null }, pooling: { old: 'mean', new: 'cls' } }, 'the port is not a change');
});

test('swappedSpec refuses a rename and a change that changes nothing (BAD_REQUEST naming the field)', () => {
  const old = { name: 'a', model_id: 'org/m' };
  const refused = (change: object, re: RegExp, param: string) =>
    assert.throws(
      () => swappedSpec(old, change),
      (err: unknown) => err instanceof TeiplexError && err.code === 'BAD_REQUEST' && err.param === param && re.test(err.message),
    );
  refused({ name: 'b', model_id: 'org/x' }, /cannot rename instance 'a'/, 'spec.name');
  refused({ model_id: 'org/m' }, /changes nothing/, 'spec');
  refused({}, /changes nothing/, 'spec');
});
