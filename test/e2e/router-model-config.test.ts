/** TEI's model rules on hand-written configs, reading a model directory, and the real `teiplex router` refusing a hostile id2label (needs `npm run build`). */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'node:test';
import { projectPath } from '../../src/common/paths.js';
import { describeModel, labelsOf, MAX_LABELS, maxInputLength, ModelConfigError, poolingFromConfig } from '../../src/router/model-config.js';
import { hasNormalizeModule, readModelFiles } from '../../src/router/model-files.js';
import { testModel } from '../helpers/models.js';
import { runCli } from '../helpers/router-process.js';

const bert = { architectures: ['BertModel'], model_type: 'bert', hidden_size: 384, max_position_embeddings: 512, vocab_size: 30522 };
const opts = { modelId: 'org/model' };

test('embedding model: pooling from --pooling, else 1_Pooling (cls > mean > lasttoken)', () => {
  const mean = { pooling_mode_mean_tokens: true };
  assert.equal(describeModel({ config: bert, poolingConfig: mean }, opts).model.pooling, 'mean');
  assert.equal(describeModel({ config: bert, poolingConfig: mean }, { ...opts, pooling: 'cls' }).model.pooling, 'cls');
  assert.equal(poolingFromConfig({ pooling_mode_cls_token: true, pooling_mode_mean_tokens: true }), 'cls');
  assert.equal(poolingFromConfig({ pooling_mode_mean_tokens: true, pooling_mode_lasttoken: true }), 'mean');
  assert.equal(poolingFromConfig({ pooling_mode_lasttoken: true }), 'last-token');
  assert.throws(() => poolingFromConfig({ pooling_mode_max_tokens: true }), /pooling_mode_max_tokens/);
  const r = describeModel({ config: bert, poolingConfig: mean }, opts);
  assert.equal(r.model.kind, 'embedding');
  assert.equal(r.configPooling, 'mean');
  assert.equal(r.model.hiddenSize, 384);
  assert.deepEqual(r.model.id2label, []);
  assert.equal(r.model.modelId, 'org/model');
  assert.equal(r.model.dtype, 'float32');
});

test('no pooling config: CLS with a warning for BERT variants, a startup error otherwise', () => {
  const r = describeModel({ config: bert }, opts);
  assert.equal(r.model.pooling, 'cls');
  assert.equal(r.warnings.length, 1);
  assert.match(r.warnings[0], /CLS/);
  assert.throws(
    () => describeModel({ config: { ...bert, model_type: 'llama', architectures: ['LlamaModel'] } }, opts),
    (e: unknown) => e instanceof ModelConfigError && /--pooling/.test(e.message),
  );
});

test('classifier and reranker from *ForSequenceClassification and id2label', () => {
  const cls = { ...bert, architectures: ['BertForSequenceClassification'], id2label: { '0': 'NEG', '1': 'POS', '2': 'NEU' } };
  const r = describeModel({ config: cls }, opts);
  assert.equal(r.model.kind, 'classifier');
  assert.deepEqual(r.model.id2label, ['NEG', 'POS', 'NEU']);
  assert.equal(r.model.pooling, undefined);
  const rr = describeModel({ config: { ...cls, id2label: { '0': 'LABEL_0' } } }, opts);
  assert.equal(rr.model.kind, 'reranker');
  assert.deepEqual(labelsOf({ num_labels: 2 }), ['LABEL_0', 'LABEL_1']);
  const withPooling = describeModel({ config: cls }, { ...opts, pooling: 'mean' });
  assert.match(withPooling.warnings.join(' '), /ignored/);
});

test('token classifier from *ForTokenClassification: its labels, at least 2; --pooling ignored', () => {
  const ner = { ...bert, architectures: ['XLMRobertaForTokenClassification'], id2label: { '0': 'O', '1': 'B-PER', '2': 'I-PER' } };
  const r = describeModel({ config: ner }, opts);
  assert.equal(r.model.kind, 'token-classifier');
  assert.deepEqual(r.model.id2label, ['O', 'B-PER', 'I-PER']);
  assert.equal(r.model.pooling, undefined);
  assert.equal(r.model.hiddenSize, undefined);
  assert.equal(describeModel({ config: { ...ner, id2label: undefined, num_labels: 5 } }, opts).model.id2label.length, 5);
  assert.match(describeModel({ config: ner }, { ...opts, pooling: 'cls' }).warnings.join(' '), /--pooling cls is ignored for a token classification model/);
  for (const one of [{ ...ner, id2label: { '0': 'O' } }, { ...ner, id2label: undefined }]) {
    assert.throws(
      () => describeModel({ config: one }, opts),
      (e: unknown) => e instanceof ModelConfigError && /XLMRobertaForTokenClassification needs at least 2 labels in config\.json/.test(e.message),
    );
  }
  // Sequence classification wins when a config names both heads.
  assert.equal(describeModel({ config: { ...ner, architectures: ['BertForTokenClassification', 'BertForSequenceClassification'] } }, opts).model.kind, 'classifier');
});

test('id2label: keys are canonical ids 0..n-1, labels strings, at most MAX_LABELS; anything else is refused naming config.json and the key', () => {
  const refused = (config: Record<string, unknown>, ...parts: Array<RegExp | string>) =>
    assert.throws(
      () => labelsOf(config),
      (e: unknown) =>
        e instanceof ModelConfigError && e.message.includes('config.json') && parts.every((p) => (typeof p === 'string' ? e.message.includes(p) : p.test(e.message))),
      JSON.stringify(config),
    );
  // A huge id would have sized the label table by it (a billion LABEL_i strings at startup).
  refused({ id2label: { '1000000000': 'x' } }, 'key "1000000000"', 'must be 0..0', `at most ${MAX_LABELS} labels`);
  refused({ id2label: { '0': 'a', '5': 'b' } }, 'key "5"', 'must be 0..1');
  for (const key of ['01', '-1', '1e9', '1.0', '1.5', ' 1', '+1', '0x1', '', 'NaN', '__proto__', '１']) {
    refused({ id2label: { [key]: 'x' } }, `key ${JSON.stringify(key)}`, /canonical non-negative integers/);
  }
  refused({ id2label: { '0': 'a', '1': 7 } }, /"1"/, /strings/);
  refused({ id2label: ['a', 'b'] }, /id2label must be an object/);
  const tooMany = Object.fromEntries(Array.from({ length: MAX_LABELS + 1 }, (_, i) => [String(i), `L${i}`]));
  refused({ id2label: tooMany }, `${MAX_LABELS + 1} entries`, `at most ${MAX_LABELS}`);
  for (const n of [1e9, MAX_LABELS + 1, 2.5, -1, 0, '3']) refused({ num_labels: n }, 'num_labels', `1..${MAX_LABELS}`);
  // Accepted: any key order, exactly MAX_LABELS labels, labels that are names every object inherits.
  assert.deepEqual(labelsOf({ id2label: { '2': 'c', '0': 'a', '1': 'b' } }), ['a', 'b', 'c']);
  assert.equal(labelsOf({ id2label: Object.fromEntries(Array.from({ length: MAX_LABELS }, (_, i) => [String(i), `L${i}`])) }).length, MAX_LABELS);
  assert.deepEqual(labelsOf(JSON.parse('{"id2label": {"0": "__proto__", "1": "constructor"}}')), ['__proto__', 'constructor']);
  assert.deepEqual(labelsOf({ id2label: {}, num_labels: 2 }), ['LABEL_0', 'LABEL_1']);
  assert.deepEqual(labelsOf({}), []);
});

test('teiplex router refuses a classifier whose id2label has key "1000000000" at once, naming config.json, the key and the limit', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-labels-'));
  try {
    await cp(await testModel({ kind: 'classifier', numLabels: 3 }), dir, { recursive: true });
    const configPath = path.join(dir, 'config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8'));
    const args = ['router', '--model-id', dir, '--port', '0', '--hostname', '127.0.0.1'];
    // The old code built a table of a billion labels here: out of memory, or minutes.
    await writeFile(configPath, JSON.stringify({ ...config, id2label: { '1000000000': 'x' }, label2id: { x: 1000000000 } }));
    // runCli's own bound (30 s) fails a start that hangs building the table.
    let r = await runCli(args, {}, 30_000);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /config\.json id2label key "1000000000" is out of range/);
    assert.match(r.stderr, new RegExp(`at most ${MAX_LABELS} labels`));
    await writeFile(configPath, JSON.stringify({ ...config, id2label: { '0': 'a', '01': 'b', '2': 'c' } }));
    r = await runCli(args, {}, 30_000);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /config\.json id2label key "01" is not a label id/);
    // Dense, canonical, but not what the graph's classifier head gives (3 logits).
    await writeFile(configPath, JSON.stringify({ ...config, id2label: { '0': 'a', '1': 'b' } }));
    r = await runCli(args, {}, 30_000);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /config\.json names 2 labels .* gives 3 logits/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('SPLADE needs --pooling splade and a *ForMaskedLM architecture', () => {
  const mlm = { ...bert, architectures: ['BertForMaskedLM'] };
  const r = describeModel({ config: mlm }, { ...opts, pooling: 'splade' });
  assert.equal(r.model.kind, 'splade');
  assert.equal(r.model.pooling, 'splade');
  assert.equal(r.model.vocabSize, 30522);
  assert.throws(() => describeModel({ config: bert }, { ...opts, pooling: 'splade' }), (e: unknown) => e instanceof ModelConfigError && /ForMaskedLM/.test(e.message));
});

test('max input length: max_seq_length, else positions (less pad_token_id + 1 for roberta), capped by positions', () => {
  assert.equal(maxInputLength({ config: bert }), 512);
  assert.equal(maxInputLength({ config: bert, sentenceBertConfig: { max_seq_length: 256 } }), 256);
  assert.equal(maxInputLength({ config: bert, sentenceBertConfig: { max_seq_length: 4096 } }), 512);
  assert.equal(maxInputLength({ config: { model_type: 'xlm-roberta', max_position_embeddings: 514, pad_token_id: 1 } }), 512);
  assert.equal(maxInputLength({ config: { model_type: 'camembert', max_position_embeddings: 514, pad_token_id: 1 } }), 512);
  assert.equal(maxInputLength({ config: { model_type: 'roberta', max_position_embeddings: 514, pad_token_id: 1 }, sentenceBertConfig: { max_seq_length: 128 } }), 128);
  assert.throws(() => maxInputLength({ config: {} }), ModelConfigError);
});

test('prompts, default prompt name and served model name', () => {
  const st = { prompts: { query: 'query: ', passage: 'passage: ' } };
  const r = describeModel({ config: bert, sentenceTransformersConfig: st }, { ...opts, servedModelName: 'served', defaultPromptName: 'query', dtype: 'float16' });
  assert.deepEqual(Object.fromEntries(r.model.prompts), st.prompts);
  assert.equal(r.model.modelId, 'served');
  assert.equal(r.model.dtype, 'float16');
  assert.throws(() => describeModel({ config: bert, sentenceTransformersConfig: st }, { ...opts, defaultPromptName: 'nope' }), /known: query, passage/);
  assert.throws(() => describeModel({ config: bert }, { ...opts, defaultPromptName: 'q', defaultPrompt: 'x' }), /cannot both/);
});

test('prompts are the model\'s own names only: inherited names are not prompts, and any JSON key is one', () => {
  const st = { prompts: { query: 'query: ' } };
  for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
    assert.throws(
      () => describeModel({ config: bert, sentenceTransformersConfig: st }, { ...opts, defaultPromptName: name }),
      new RegExp(`--default-prompt-name ${name} is not a prompt of this model \\(known: query\\)`),
    );
    assert.equal(describeModel({ config: bert, sentenceTransformersConfig: st }, opts).model.prompts.has(name), false, name);
  }
  // JSON.parse makes "__proto__" an own key: a model may really name a prompt so.
  const odd = JSON.parse('{"prompts": {"__proto__": "odd: ", "constructor": "c: "}}') as { prompts: Record<string, string> };
  const r = describeModel({ config: bert, sentenceTransformersConfig: odd }, { ...opts, defaultPromptName: '__proto__' });
  assert.equal(r.model.prompts.get('__proto__'), 'odd: ');
  assert.equal(r.model.prompts.get('constructor'), 'c: ');
});

test('readModelFiles: the fixture layout, onnx file choice, and missing files named', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-files-'));
  try {
    await cp(projectPath('fixtures', 'all-MiniLM-L6-v2'), dir, { recursive: true });
    await assert.rejects(readModelFiles(dir), /has no ONNX model: looked for onnx\/model.onnx and model.onnx/);
    await writeFile(path.join(dir, 'model.onnx'), 'x');
    let f = await readModelFiles(dir);
    assert.equal(f.onnxPath, path.join(dir, 'model.onnx'));
    assert.equal(f.poolingConfig?.pooling_mode_mean_tokens, true);
    assert.equal(f.sentenceBertConfig?.max_seq_length, 256);
    assert.ok(hasNormalizeModule(f));
    assert.equal(f.modelSha, undefined);
    await mkdir(path.join(dir, 'onnx'));
    await writeFile(path.join(dir, 'onnx', 'model.onnx'), 'x');
    await writeFile(path.join(dir, 'onnx', 'model_quantized.onnx'), 'x');
    f = await readModelFiles(dir);
    assert.equal(f.onnxPath, path.join(dir, 'onnx', 'model.onnx'));
    f = await readModelFiles(dir, { onnxFile: 'onnx/model_quantized.onnx' });
    assert.equal(f.onnxPath, path.join(dir, 'onnx', 'model_quantized.onnx'));
    await assert.rejects(readModelFiles(dir, { onnxFile: 'onnx/nope.onnx' }), /onnx\/nope.onnx \(--onnx-file\)/);
    await rm(path.join(dir, 'tokenizer.json'));
    await assert.rejects(readModelFiles(dir), /has no tokenizer.json/);
    await rm(path.join(dir, 'config.json'));
    await assert.rejects(readModelFiles(dir), /has no config.json/);
    await assert.rejects(readModelFiles(path.join(dir, 'absent')), /does not exist/);
    // A hub cache snapshot reports its revision.
    const snap = path.join(dir, 'models--org--m', 'snapshots', 'a'.repeat(40));
    await mkdir(snap, { recursive: true });
    await cp(projectPath('fixtures', 'all-MiniLM-L6-v2'), snap, { recursive: true });
    await writeFile(path.join(snap, 'model.onnx'), 'x');
    assert.equal((await readModelFiles(snap)).modelSha, 'a'.repeat(40));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
