/**
 * `teiplex make-test-model`: the real CLI writes the HuggingFace layout; ONNX Runtime loads every
 * kind; the graph computes what an independent BERT implementation computes from the same
 * weights, honouring attention_mask; seeds are deterministic; external data is equivalent.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { projectPath } from '../../src/common/paths.js';
import { decodeModel } from '../../src/testmodel/onnx-proto.js';
import { BertReference, readWeights } from '../helpers/bert-reference.js';

const run = promisify(execFile);
const CLI = projectPath('bin', 'teiplex.js');

async function makeModel(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [CLI, 'make-test-model', ...args]);
}

async function makeModelFails(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await makeModel(args);
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
  throw new Error(`make-test-model ${args.join(' ')} succeeded`);
}

function feeds(rows: number[][]): Record<string, ort.Tensor> {
  const B = rows.length;
  const T = Math.max(...rows.map((r) => r.length));
  const ids = new BigInt64Array(B * T);
  const mask = new BigInt64Array(B * T);
  rows.forEach((r, b) =>
    r.forEach((id, t) => {
      ids[b * T + t] = BigInt(id);
      mask[b * T + t] = 1n;
    }),
  );
  return {
    input_ids: new ort.Tensor('int64', ids, [B, T]),
    attention_mask: new ort.Tensor('int64', mask, [B, T]),
    token_type_ids: new ort.Tensor('int64', new BigInt64Array(B * T), [B, T]),
  };
}

async function runOnnx(file: string, rows: number[][]): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
  try {
    return (await s.run(feeds(rows))) as Record<string, ort.Tensor>;
  } finally {
    await s.release();
  }
}

const readJson = async (f: string): Promise<Record<string, unknown>> => JSON.parse(await readFile(f, 'utf8')) as Record<string, unknown>;

describe('teiplex make-test-model', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'teiplex-make-model-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('minilm-l6 has the real all-MiniLM-L6-v2 shapes and the HuggingFace layout', async () => {
    const out = path.join(tmp, 'minilm');
    const { stdout } = await makeModel(['--out', out, '--shape', 'minilm-l6']);
    assert.match(stdout, /22\.\d\dM parameters/);
    const config = await readJson(path.join(out, 'config.json'));
    assert.deepEqual(
      [config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size, config.vocab_size, config.max_position_embeddings],
      [6, 384, 12, 1536, 30522, 512],
    );
    assert.deepEqual(config.architectures, ['BertModel']);
    const files = (await readdir(out, { recursive: true })).map(String).sort();
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt', 'modules.json', 'sentence_bert_config.json', 'config_sentence_transformers.json', path.join('1_Pooling', 'config.json'), path.join('onnx', 'model.onnx')]) {
      assert.ok(files.includes(f), `${f} in ${files.join(', ')}`);
    }
    assert.deepEqual(await readFile(path.join(out, 'tokenizer.json')), await readFile(projectPath('fixtures', 'all-MiniLM-L6-v2', 'tokenizer.json')));
    assert.equal((await readJson(path.join(out, 'sentence_bert_config.json'))).max_seq_length, 256);
    assert.equal((await readJson(path.join(out, '1_Pooling', 'config.json'))).pooling_mode_mean_tokens, true);
    const modules = (await readJson(path.join(out, 'modules.json'))) as unknown as Array<{ type: string }>;
    assert.deepEqual(modules.map((m) => m.type.split('.').pop()), ['Transformer', 'Pooling', 'Normalize']);

    const model = decodeModel(await readFile(path.join(out, 'onnx', 'model.onnx')));
    assert.deepEqual(model.opsetImport.map((o) => Number(o.version)), [17]);
    const init = new Map(model.graph.initializer.map((t) => [t.name, t.dims.map(Number)]));
    assert.deepEqual(init.get('embeddings.word_embeddings.weight'), [30522, 384]);
    assert.deepEqual(init.get('encoder.layer.5.intermediate.dense.weight'), [384, 1536]);
    assert.equal(init.has('encoder.layer.6.attention.self.query.weight'), false);
    const ops = new Set(model.graph.node.map((n) => n.opType));
    for (const op of ['Softmax', 'Erf', 'LayerNormalization', 'MatMul']) assert.ok(ops.has(op), op);
  });

  test('the graph is a BERT encoder: matches an independent implementation, padded or not', async () => {
    const out = path.join(tmp, 'tiny');
    await makeModel(['--out', out, '--seed', '7']);
    const file = path.join(out, 'onnx', 'model.onnx');
    const ref = new BertReference(readWeights(file), 4);
    const short = [101, 7592, 2088, 102];
    const long = [101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 102];
    const out1 = await runOnnx(file, [short, long]);
    const hidden = out1.last_hidden_state;
    const [B, T, H] = hidden.dims;
    assert.deepEqual([B, T, H], [2, long.length, 32]);
    const data = hidden.data as Float32Array;
    for (const [row, ids] of [short, long].entries()) {
      const expected = ref.hidden(ids);
      for (let t = 0; t < ids.length; t++) {
        for (let h = 0; h < H; h++) {
          const got = data[(row * T + t) * H + h];
          assert.ok(Math.abs(got - expected[t][h]) < 1e-4, `row ${row} token ${t} dim ${h}: ${got} vs ${expected[t][h]}`);
        }
      }
    }
    // Attention honours the mask: the padded short row equals the short row alone.
    const alone = (await runOnnx(file, [short])).last_hidden_state.data as Float32Array;
    for (let i = 0; i < short.length * H; i++) assert.ok(Math.abs(alone[i] - data[i]) < 1e-5);
    // Position matters (not a bag of words): reversing the inner tokens changes the first token.
    const swapped = ref.hidden([101, 2088, 7592, 102]);
    assert.ok(Math.abs(swapped[0][0] - ref.hidden(short)[0][0]) > 1e-6);
  });

  test('every kind loads in ONNX Runtime with the documented outputs and config', async () => {
    const cases = [
      { kind: 'reranker', output: 'logits', dims: (_T: number) => [2, 1], arch: 'BertForSequenceClassification', labels: 1 },
      { kind: 'classifier', output: 'logits', dims: (_T: number) => [2, 3], arch: 'BertForSequenceClassification', labels: 3 },
      { kind: 'splade', output: 'logits', dims: (T: number) => [2, T, 30522], arch: 'BertForMaskedLM', labels: 0 },
      { kind: 'token-classifier', output: 'logits', dims: (T: number) => [2, T, 3], arch: 'BertForTokenClassification', labels: 3 },
    ];
    for (const c of cases) {
      const out = path.join(tmp, c.kind);
      await makeModel(['--out', out, '--kind', c.kind, '--num-labels', '3']);
      const config = await readJson(path.join(out, 'config.json'));
      assert.deepEqual(config.architectures, [c.arch]);
      assert.equal(Object.keys((config.id2label as object) ?? {}).length, c.labels, c.kind);
      const rows = [[101, 7592, 102], [101, 7592, 2088, 2003, 102]];
      const res = await runOnnx(path.join(out, 'onnx', 'model.onnx'), rows);
      assert.deepEqual(res[c.output].dims, c.dims(5), c.kind);
      await assert.rejects(stat(path.join(out, 'modules.json')), { code: 'ENOENT' });
      if (c.kind === 'token-classifier') {
        // Per token: the classifier on each hidden state (row 1 has all 5 tokens, no padding).
        const ref = new BertReference(readWeights(path.join(out, 'onnx', 'model.onnx')), 4);
        const expected = ref.classifyTokens(rows[1]).flat();
        const got = Array.from(res.logits.data as Float32Array).slice(5 * c.labels, 10 * c.labels);
        got.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-4, `token logit ${i}: ${v} vs ${expected[i]}`));
      } else if (c.kind !== 'splade') {
        const ref = new BertReference(readWeights(path.join(out, 'onnx', 'model.onnx')), 4);
        const expected = ref.classify(rows[1]);
        const got = Array.from(res.logits.data as Float32Array).slice(c.labels, 2 * c.labels);
        got.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-4, `${c.kind} logit ${i}: ${v} vs ${expected[i]}`));
      } else {
        // Sparse like a trained SPLADE model: few positive logits per token.
        const logits = res.logits.data as Float32Array;
        const positive = logits.filter((v) => v > 0).length;
        assert.ok(positive > 0 && positive < 0.01 * logits.length, `${positive} positive of ${logits.length}`);
      }
    }
  });

  test('a token classifier has BIO labels by default, and a mix of them over a text', async () => {
    const out = path.join(tmp, 'ner');
    await makeModel(['--out', out, '--kind', 'token-classifier']);
    const config = await readJson(path.join(out, 'config.json'));
    assert.deepEqual(Object.values(config.id2label as object), ['O', 'B-PER', 'I-PER', 'B-ORG', 'I-ORG', 'B-LOC', 'I-LOC', 'B-MISC', 'I-MISC']);
    assert.equal((config.label2id as Record<string, number>)['I-MISC'], 8);
    // "[CLS] hello world is the quick brown fox [SEP]": argmax labels of the real tokens.
    const ids = [101, 7592, 2088, 2003, 1996, 4248, 2829, 4419, 102];
    const logits = (await runOnnx(path.join(out, 'onnx', 'model.onnx'), [ids])).logits.data as Float32Array;
    const labels = new Set<number>();
    for (let t = 1; t < ids.length - 1; t++) {
      const row = Array.from(logits.subarray(t * 9, (t + 1) * 9));
      labels.add(row.indexOf(Math.max(...row)));
    }
    assert.ok(labels.size >= 3, `labels over 7 tokens: ${[...labels].join(', ')}`);
  });

  test('same seed, same bytes; another seed, other weights; external data is equivalent', async () => {
    const a = path.join(tmp, 'seed-a');
    const b = path.join(tmp, 'seed-b');
    const c = path.join(tmp, 'seed-c');
    const ext = path.join(tmp, 'ext');
    await makeModel(['--out', a, '--seed', '3']);
    await makeModel(['--out', b, '--seed', '3']);
    await makeModel(['--out', c, '--seed', '4']);
    await makeModel(['--out', ext, '--seed', '3', '--external-data', '--onnx-path', 'model.onnx', '--sentence-embedding', '--prompt', 'query=query: ']);
    const onnx = (d: string) => readFile(path.join(d, 'onnx', 'model.onnx'));
    assert.deepEqual(await onnx(a), await onnx(b));
    assert.notDeepEqual(await onnx(a), await onnx(c));
    const graphSize = (await stat(path.join(ext, 'model.onnx'))).size;
    const dataSize = (await stat(path.join(ext, 'model.onnx_data'))).size;
    assert.ok(graphSize < 100_000 && dataSize > 3_000_000, `graph ${graphSize} B, data ${dataSize} B`);
    const rows = [[101, 7592, 2088, 102]];
    const x = (await runOnnx(path.join(a, 'onnx', 'model.onnx'), rows)).last_hidden_state.data as Float32Array;
    const res = await runOnnx(path.join(ext, 'model.onnx'), rows);
    const y = res.last_hidden_state.data as Float32Array;
    assert.deepEqual(Array.from(x), Array.from(y));
    // sentence_embedding = normalized mean of the token states (the Normalize module is listed).
    const H = 32;
    const mean = Array.from({ length: H }, (_, h) => (y[h] + y[H + h] + y[2 * H + h] + y[3 * H + h]) / 4);
    const n = Math.hypot(...mean);
    const se = res.sentence_embedding.data as Float32Array;
    mean.forEach((v, h) => assert.ok(Math.abs(v / n - se[h]) < 1e-5));
    assert.deepEqual((await readJson(path.join(ext, 'config_sentence_transformers.json'))).prompts, { query: 'query: ' });
  });

  test('bad flags exit 2 with a clear message', async () => {
    let r = await makeModelFails(['--kind', 'embedding']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--out is required/);
    r = await makeModelFails(['--out', path.join(tmp, 'x'), '--kind', 'decoder']);
    assert.match(r.stderr, /--kind must be one of embedding, reranker, classifier, splade/);
    r = await makeModelFails(['--out', path.join(tmp, 'x'), '--hidden', '30', '--heads', '4']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /hidden size 30 is not divisible by 4 heads/);
    r = await makeModelFails(['--out', path.join(tmp, 'x'), '--bogus']);
    assert.match(r.stderr, /Known flags: --out, --kind/);
    r = await makeModelFails(['--out', path.join(tmp, 'x'), '--onnx-path', '../escape.onnx']);
    assert.match(r.stderr, /relative path inside the model directory/);
  });
});
