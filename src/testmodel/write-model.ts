/**
 * Writes a generated model directory in the HuggingFace layout: config.json, the tokenizer files,
 * the sentence-transformers files of an embedding model, and the ONNX graph (weights inline or in
 * `<onnx file>_data`).
 */
import { copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import path from 'node:path';
import { projectPath } from '../common/paths.js';
import { VERSION } from '../common/version.js';
import { buildBertGraph, type TestModelKind } from './bert-graph.js';
import { SHAPES, validateShape, type ModelShape, type ShapeName } from './shapes.js';

export interface TestModelOptions {
  out: string;
  kind: TestModelKind;
  shape: ShapeName;
  /** Overrides of the named shape's sizes. */
  sizes?: Partial<ModelShape>;
  /** Directory with tokenizer.json (+ tokenizer_config.json, special_tokens_map.json, vocab.txt). */
  tokenizerDir?: string;
  seed: number;
  /** Classifier labels (reranker: always 1). */
  numLabels?: number;
  /** Weights in `<onnx file>_data` instead of inside the graph file. */
  externalData: boolean;
  /** Where the graph goes inside the directory (default onnx/model.onnx, the hub's ONNX layout). */
  onnxPath?: string;
  /** Embedding models: also output a pooled `sentence_embedding`. */
  sentenceEmbedding?: boolean;
  /** Embedding models: list a Normalize module in modules.json (default true, as most real models). */
  normalizeModule?: boolean;
  /** Embedding models: prompts for config_sentence_transformers.json. */
  prompts?: Record<string, string>;
}

export interface WrittenModel {
  dir: string;
  onnxPath: string;
  parameters: number;
  bytes: number;
}

export const DEFAULT_TOKENIZER_DIR = projectPath('fixtures', 'all-MiniLM-L6-v2');
export const DEFAULT_ONNX_PATH = 'onnx/model.onnx';
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt'];
const OPSET = 17;

const ARCHITECTURES: Record<TestModelKind, string> = {
  embedding: 'BertModel',
  splade: 'BertForMaskedLM',
  reranker: 'BertForSequenceClassification',
  classifier: 'BertForSequenceClassification',
  'token-classifier': 'BertForTokenClassification',
};

/** A token classifier's labels: named-entity tags in BIO form, as CoNLL-2003 models name them. */
export const BIO_LABELS = ['O', 'B-PER', 'I-PER', 'B-ORG', 'I-ORG', 'B-LOC', 'I-LOC', 'B-MISC', 'I-MISC'];

async function vocabSizeOf(tokenizerJson: string): Promise<number> {
  const tok = JSON.parse(await readFile(tokenizerJson, 'utf8')) as { model?: { vocab?: Record<string, number> | unknown[] }; added_tokens?: Array<{ id: number }> };
  const vocab = tok.model?.vocab;
  let max = -1;
  if (Array.isArray(vocab)) max = vocab.length - 1;
  else if (vocab) for (const id of Object.values(vocab)) max = Math.max(max, id);
  for (const t of tok.added_tokens ?? []) max = Math.max(max, t.id);
  if (max < 0) throw new Error(`${tokenizerJson}: no vocabulary found`);
  return max + 1;
}

const json = (v: unknown): string => JSON.stringify(v, null, 2) + '\n';

export async function writeTestModel(o: TestModelOptions): Promise<WrittenModel> {
  if (endianness() !== 'LE') throw new Error('make-test-model writes little-endian weights and needs a little-endian machine');
  const shape: ModelShape = { ...SHAPES[o.shape], ...o.sizes };
  validateShape(shape);
  const tokenizerDir = o.tokenizerDir ?? DEFAULT_TOKENIZER_DIR;
  const vocabSize = await vocabSizeOf(path.join(tokenizerDir, 'tokenizer.json'));
  const numLabels = o.kind === 'reranker' ? 1 : o.kind === 'classifier' ? (o.numLabels ?? 2) : o.kind === 'token-classifier' ? (o.numLabels ?? BIO_LABELS.length) : 0;
  if ((o.kind === 'classifier' || o.kind === 'token-classifier') && (!Number.isInteger(numLabels) || numLabels < 2)) throw new Error(`a classifier needs at least 2 labels, got ${numLabels}`);
  const onnxPath = o.onnxPath ?? DEFAULT_ONNX_PATH;
  if (path.isAbsolute(onnxPath) || onnxPath.split(/[\\/]/).includes('..') || !onnxPath.endsWith('.onnx')) {
    throw new Error(`--onnx-path must be a relative path inside the model directory ending in .onnx, got '${onnxPath}'`);
  }
  const normalizeModule = o.normalizeModule ?? true;

  const graph = buildBertGraph({
    kind: o.kind,
    shape,
    vocabSize,
    typeVocabSize: 2,
    numLabels,
    sentenceEmbedding: o.kind === 'embedding' && (o.sentenceEmbedding ?? false),
    normalizeSentenceEmbedding: normalizeModule,
    seed: o.seed,
  });
  const dataFile = `${path.basename(onnxPath)}_data`;
  const serialized = graph.builder.serialize({
    inputs: graph.inputs,
    outputs: graph.outputs,
    opset: OPSET,
    producer: 'teiplex make-test-model',
    version: VERSION,
    externalDataFile: o.externalData ? dataFile : undefined,
    metadata: { kind: o.kind, seed: String(o.seed) },
  });

  // Write into a sibling temp directory, then move into place: readers never see half a model.
  const out = path.resolve(o.out);
  const tmp = `${out}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(path.dirname(path.join(tmp, onnxPath)), { recursive: true });
  await writeFile(path.join(tmp, onnxPath), serialized.onnx);
  if (serialized.externalData) await writeFile(path.join(path.dirname(path.join(tmp, onnxPath)), dataFile), serialized.externalData);

  // A token classifier with the default label count gets the BIO tags; otherwise LABEL_i.
  const labelName = (i: number): string => (o.kind === 'token-classifier' && numLabels === BIO_LABELS.length ? BIO_LABELS[i]! : `LABEL_${i}`);
  const labels = Object.fromEntries(Array.from({ length: numLabels }, (_, i) => [String(i), labelName(i)]));
  const config: Record<string, unknown> = {
    architectures: [ARCHITECTURES[o.kind]],
    model_type: 'bert',
    attention_probs_dropout_prob: 0.1,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0.1,
    hidden_size: shape.hidden,
    initializer_range: 0.02,
    intermediate_size: shape.intermediate,
    layer_norm_eps: 1e-12,
    max_position_embeddings: shape.maxPositions,
    num_attention_heads: shape.heads,
    num_hidden_layers: shape.layers,
    pad_token_id: 0,
    position_embedding_type: 'absolute',
    type_vocab_size: 2,
    vocab_size: vocabSize,
    torch_dtype: 'float32',
    teiplex_test_model: { kind: o.kind, shape: o.shape, seed: o.seed },
  };
  if (numLabels > 0) {
    config.id2label = labels;
    config.label2id = Object.fromEntries(Object.entries(labels).map(([i, l]) => [l, Number(i)]));
  }
  await writeFile(path.join(tmp, 'config.json'), json(config));
  for (const f of TOKENIZER_FILES) {
    await copyFile(path.join(tokenizerDir, f), path.join(tmp, f)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT' || f === 'tokenizer.json') throw err;
    });
  }

  if (o.kind === 'embedding') {
    const modules = [
      { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
      { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
    ];
    if (normalizeModule) modules.push({ idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' });
    await writeFile(path.join(tmp, 'modules.json'), json(modules));
    await mkdir(path.join(tmp, '1_Pooling'));
    await writeFile(
      path.join(tmp, '1_Pooling', 'config.json'),
      json({
        word_embedding_dimension: shape.hidden,
        pooling_mode_cls_token: false,
        pooling_mode_mean_tokens: true,
        pooling_mode_max_tokens: false,
        pooling_mode_mean_sqrt_len_tokens: false,
      }),
    );
    await writeFile(path.join(tmp, 'sentence_bert_config.json'), json({ max_seq_length: shape.maxSeqLength, do_lower_case: false }));
    await writeFile(
      path.join(tmp, 'config_sentence_transformers.json'),
      json({ __version__: { teiplex: VERSION }, prompts: o.prompts ?? {}, default_prompt_name: null, similarity_fn_name: 'cosine' }),
    );
  }

  await rm(out, { recursive: true, force: true });
  await rename(tmp, out);
  return {
    dir: out,
    onnxPath: path.join(out, onnxPath),
    parameters: graph.builder.parameterCount,
    bytes: serialized.onnx.byteLength + (serialized.externalData?.byteLength ?? 0),
  };
}

