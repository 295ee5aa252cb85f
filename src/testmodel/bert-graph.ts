/**
 * A BERT encoder as an ONNX graph, with seeded random weights: word + position + token type
 * embeddings and LayerNorm; per layer multi-head self-attention that honours attention_mask,
 * GELU feed-forward, residuals and LayerNorm; then the head of the model kind. Weight names and
 * shapes follow HuggingFace's BERT (MatMul weights stored [in, out]).
 */
import { GraphBuilder, type GraphIo } from './graph-builder.js';
import { Rng } from './rng.js';
import type { ModelShape } from './shapes.js';

export type TestModelKind = 'embedding' | 'reranker' | 'classifier' | 'splade' | 'token-classifier';

export interface BertGraphSpec {
  kind: TestModelKind;
  shape: ModelShape;
  vocabSize: number;
  typeVocabSize: number;
  /** Classifier outputs (1 for a reranker); per token for a token classifier. */
  numLabels: number;
  /** Embedding models: also output a mean-pooled `sentence_embedding`. */
  sentenceEmbedding: boolean;
  /** With sentenceEmbedding: L2-normalize it (a sentence-transformers Normalize module). */
  normalizeSentenceEmbedding: boolean;
  seed: number;
}

export interface BertGraph {
  builder: GraphBuilder;
  inputs: GraphIo[];
  outputs: GraphIo[];
}

const INITIALIZER_RANGE = 0.02;
const LAYER_NORM_EPS = 1e-12;
/** Added to attention scores at masked positions (torch.finfo(float32).min, as HF does). */
const MASK_VALUE = -3.4028234663852886e38;

class Weights {
  constructor(
    private readonly g: GraphBuilder,
    private readonly rng: Rng,
  ) {}
  matrix(name: string, rows: number, cols: number): string {
    return this.g.weight(name, [rows, cols], this.rng.normals(rows * cols, INITIALIZER_RANGE));
  }
  bias(name: string, n: number, mean = 0): string {
    return this.g.weight(name, [n], this.rng.normals(n, INITIALIZER_RANGE, mean));
  }
  layerNorm(prefix: string, x: string, n: number): string {
    const gamma = this.g.weight(`${prefix}.weight`, [n], this.rng.normals(n, INITIALIZER_RANGE, 1));
    const beta = this.bias(`${prefix}.bias`, n);
    return this.g.op('LayerNormalization', [x, gamma, beta], { axis: -1, epsilon: { float: LAYER_NORM_EPS } });
  }
  dense(prefix: string, x: string, nIn: number, nOut: number, output?: string): string {
    const w = this.matrix(`${prefix}.weight`, nIn, nOut);
    const b = this.bias(`${prefix}.bias`, nOut);
    return this.g.op('Add', [this.g.op('MatMul', [x, w]), b], {}, output);
  }
}

/** gelu(x) = 0.5 x (1 + erf(x / sqrt 2)), BERT's exact GELU. */
function gelu(g: GraphBuilder, x: string): string {
  const erf = g.op('Erf', [g.op('Div', [x, g.scalar('sqrt2', Math.SQRT2)])]);
  return g.op('Mul', [g.op('Mul', [x, g.scalar('half', 0.5)]), g.op('Add', [erf, g.scalar('one', 1)])]);
}

export function buildBertGraph(spec: BertGraphSpec): BertGraph {
  const { shape, vocabSize } = spec;
  const H = shape.hidden;
  const headDim = H / shape.heads;
  const g = new GraphBuilder();
  const w = new Weights(g, new Rng(spec.seed));

  // Embeddings.
  const wordTable = w.matrix('embeddings.word_embeddings.weight', vocabSize, H);
  const positionTable = w.matrix('embeddings.position_embeddings.weight', shape.maxPositions, H);
  const typeTable = w.matrix('embeddings.token_type_embeddings.weight', spec.typeVocabSize, H);
  const words = g.op('Gather', [wordTable, 'input_ids'], { axis: 0 });
  const seqLen = g.op('Gather', [g.op('Shape', ['input_ids']), g.int64('one_index', [1], [])], { axis: 0 });
  const positions = g.op('Range', [g.int64('zero_i64', [0], []), seqLen, g.int64('one_i64', [1], [])]);
  const positionEmb = g.op('Gather', [positionTable, positions], { axis: 0 });
  const typeEmb = g.op('Gather', [typeTable, 'token_type_ids'], { axis: 0 });
  let x = w.layerNorm('embeddings.LayerNorm', g.op('Add', [g.op('Add', [words, typeEmb]), positionEmb]), H);

  // Additive attention mask [B, 1, 1, T]: 0 where attended, MASK_VALUE at padding.
  const maskF = g.op('Cast', ['attention_mask'], { to: 1 });
  const mask4 = g.op('Unsqueeze', [maskF, g.int64('axes_1_2', [1, 2])]);
  const additiveMask = g.op('Mul', [g.op('Sub', [g.scalar('one_f', 1), mask4]), g.scalar('mask_value', MASK_VALUE)]);
  const headsShape = g.int64('heads_shape', [0, 0, shape.heads, headDim]);
  const hiddenShape = g.int64('hidden_shape', [0, 0, H]);
  const scale = g.scalar('attention_scale', 1 / Math.sqrt(headDim));

  for (let l = 0; l < shape.layers; l++) {
    const p = `encoder.layer.${l}`;
    const split = (name: string, perm: number[]): string =>
      g.op('Transpose', [g.op('Reshape', [w.dense(`${p}.attention.self.${name}`, x, H, H), headsShape])], { perm });
    const q = split('query', [0, 2, 1, 3]); // [B, heads, T, d]
    const k = split('key', [0, 2, 3, 1]); // [B, heads, d, T]
    const v = split('value', [0, 2, 1, 3]);
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, k]), scale]), additiveMask]);
    const probs = g.op('Softmax', [scores], { axis: -1 });
    const context = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, v])], { perm: [0, 2, 1, 3] }), hiddenShape]);
    const attended = w.dense(`${p}.attention.output.dense`, context, H, H);
    const x1 = w.layerNorm(`${p}.attention.output.LayerNorm`, g.op('Add', [attended, x]), H);
    const inner = gelu(g, w.dense(`${p}.intermediate.dense`, x1, H, shape.intermediate));
    const out = w.dense(`${p}.output.dense`, inner, shape.intermediate, H);
    x = w.layerNorm(`${p}.output.LayerNorm`, g.op('Add', [out, x1]), H);
  }

  const inputs: GraphIo[] = ['input_ids', 'attention_mask', 'token_type_ids'].map((name) => ({
    name,
    elemType: 'int64',
    shape: ['batch_size', 'sequence_length'],
  }));
  const outputs: GraphIo[] = [];

  if (spec.kind === 'embedding') {
    g.op('Identity', [x], {}, 'last_hidden_state');
    outputs.push({ name: 'last_hidden_state', elemType: 'float32', shape: ['batch_size', 'sequence_length', H] });
    if (spec.sentenceEmbedding) {
      // Mean over attended tokens, like sentence-transformers' Pooling module.
      const mask3 = g.op('Unsqueeze', [maskF, g.int64('axes_2', [2])]);
      const axis1 = g.int64('axes_1', [1]);
      const summed = g.op('ReduceSum', [g.op('Mul', [x, mask3]), axis1], { keepdims: 0 });
      const counts = g.op('Max', [g.op('ReduceSum', [mask3, axis1], { keepdims: 0 }), g.scalar('min_count', 1e-9)]);
      const mean = g.op('Div', [summed, counts]);
      if (spec.normalizeSentenceEmbedding) {
        const norm = g.op('Max', [g.op('ReduceL2', [mean], { axes: [1], keepdims: 1 }), g.scalar('min_norm', 1e-12)]);
        g.op('Div', [mean, norm], {}, 'sentence_embedding');
      } else {
        g.op('Identity', [mean], {}, 'sentence_embedding');
      }
      outputs.push({ name: 'sentence_embedding', elemType: 'float32', shape: ['batch_size', H] });
    }
  } else if (spec.kind === 'splade') {
    // BertForMaskedLM's head; the decoder is tied to the word embeddings, as in BERT.
    const t = w.layerNorm('cls.predictions.transform.LayerNorm', gelu(g, w.dense('cls.predictions.transform.dense', x, H, H)), H);
    const decoder = g.op('Transpose', [wordTable], { perm: [1, 0] });
    // A negative bias keeps log(1 + relu(logits)) sparse, as in trained SPLADE models
    // (logits of random weights have a standard deviation of about 0.02 * sqrt(H)).
    const bias = w.bias('cls.predictions.bias', vocabSize, -3.5 * INITIALIZER_RANGE * Math.sqrt(H));
    g.op('Add', [g.op('MatMul', [t, decoder]), bias], {}, 'logits');
    outputs.push({ name: 'logits', elemType: 'float32', shape: ['batch_size', 'sequence_length', vocabSize] });
  } else if (spec.kind === 'token-classifier') {
    // *ForTokenClassification: the classifier on every token's hidden state, logits [B, T, labels].
    // Its weights are drawn wider than BERT's initializer (std 1 / sqrt(H) instead of 0.02), so
    // the seeded model gives distinct labels from token to token rather than near-uniform scores.
    const weight = g.weight('classifier.weight', [H, spec.numLabels], new Rng(spec.seed + 1).normals(H * spec.numLabels, 1 / Math.sqrt(H)));
    const bias = w.bias('classifier.bias', spec.numLabels);
    g.op('Add', [g.op('MatMul', [x, weight]), bias], {}, 'logits');
    outputs.push({ name: 'logits', elemType: 'float32', shape: ['batch_size', 'sequence_length', spec.numLabels] });
  } else {
    // *ForSequenceClassification: tanh pooler on [CLS], then the classifier.
    const cls = g.op('Gather', [x, g.int64('cls_index', [0], [])], { axis: 1 });
    const pooled = g.op('Tanh', [w.dense('bert.pooler.dense', cls, H, H)]);
    w.dense('classifier', pooled, H, spec.numLabels, 'logits');
    outputs.push({ name: 'logits', elemType: 'float32', shape: ['batch_size', spec.numLabels] });
  }
  return { builder: g, inputs, outputs };
}
