/**
 * An independent BERT forward pass in plain TypeScript, reading the weights back out of a
 * generated ONNX file: the yardstick that the generated graph computes a real BERT encoder.
 * One unpadded sequence, float64 arithmetic.
 */
import { readFileSync } from 'node:fs';
import { decodeModel } from '../../src/testmodel/onnx-proto.js';

type Weights = Map<string, { dims: number[]; data: Float32Array }>;

export function readWeights(onnxFile: string): Weights {
  const model = decodeModel(readFileSync(onnxFile));
  const out: Weights = new Map();
  for (const t of model.graph.initializer) {
    if (t.dataType !== 1 || !t.rawData) continue;
    const bytes = Uint8Array.from(t.rawData);
    out.set(t.name, { dims: t.dims.map(Number), data: new Float32Array(bytes.buffer) });
  }
  return out;
}

/** erf with |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit). */
function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - r : r - 1;
}

type Mat = number[][];

export class BertReference {
  constructor(
    private readonly w: Weights,
    private readonly heads: number,
  ) {}

  private get(name: string): { dims: number[]; data: Float32Array } {
    const t = this.w.get(name);
    if (!t) throw new Error(`no weight ${name}`);
    return t;
  }

  private dense(x: Mat, prefix: string): Mat {
    const W = this.get(`${prefix}.weight`);
    const b = this.get(`${prefix}.bias`).data;
    const [nIn, nOut] = W.dims;
    return x.map((row) => {
      const out = Array.from(b, Number);
      for (let i = 0; i < nIn; i++) for (let j = 0; j < nOut; j++) out[j] += row[i] * W.data[i * nOut + j];
      return out;
    });
  }

  private layerNorm(x: Mat, prefix: string): Mat {
    const g = this.get(`${prefix}.weight`).data;
    const b = this.get(`${prefix}.bias`).data;
    return x.map((row) => {
      const mean = row.reduce((a, v) => a + v, 0) / row.length;
      const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / row.length;
      const inv = 1 / Math.sqrt(variance + 1e-12);
      return row.map((v, i) => (v - mean) * inv * g[i] + b[i]);
    });
  }

  /** Hidden states [T][H] of one sequence of token ids (token type 0). */
  hidden(ids: number[], typeIds: number[] = ids.map(() => 0)): Mat {
    const word = this.get('embeddings.word_embeddings.weight');
    const pos = this.get('embeddings.position_embeddings.weight').data;
    const type = this.get('embeddings.token_type_embeddings.weight').data;
    const H = word.dims[1];
    let x: Mat = ids.map((id, t) => Array.from({ length: H }, (_, h) => word.data[id * H + h] + pos[t * H + h] + type[typeIds[t] * H + h]));
    x = this.layerNorm(x, 'embeddings.LayerNorm');
    const d = H / this.heads;
    for (let l = 0; this.w.has(`encoder.layer.${l}.attention.self.query.weight`); l++) {
      const p = `encoder.layer.${l}`;
      const q = this.dense(x, `${p}.attention.self.query`);
      const k = this.dense(x, `${p}.attention.self.key`);
      const v = this.dense(x, `${p}.attention.self.value`);
      const ctx: Mat = x.map(() => new Array<number>(H).fill(0));
      for (let h = 0; h < this.heads; h++) {
        for (let i = 0; i < x.length; i++) {
          const s = x.map((_, j) => {
            let dot = 0;
            for (let c = h * d; c < (h + 1) * d; c++) dot += q[i][c] * k[j][c];
            return dot / Math.sqrt(d);
          });
          const m = Math.max(...s);
          const e = s.map((z) => Math.exp(z - m));
          const sum = e.reduce((a, z) => a + z, 0);
          for (let j = 0; j < x.length; j++) for (let c = h * d; c < (h + 1) * d; c++) ctx[i][c] += (e[j] / sum) * v[j][c];
        }
      }
      const attended = this.dense(ctx, `${p}.attention.output.dense`);
      const x1 = this.layerNorm(attended.map((r, i) => r.map((z, c) => z + x[i][c])), `${p}.attention.output.LayerNorm`);
      const inner = this.dense(x1, `${p}.intermediate.dense`).map((r) => r.map((z) => 0.5 * z * (1 + erf(z / Math.SQRT2))));
      const out = this.dense(inner, `${p}.output.dense`);
      x = this.layerNorm(out.map((r, i) => r.map((z, c) => z + x1[i][c])), `${p}.output.LayerNorm`);
    }
    return x;
  }

  /** Token-classification logits [T][labels]: the classifier on every token's hidden state. */
  classifyTokens(ids: number[], typeIds?: number[]): Mat {
    return this.dense(this.hidden(ids, typeIds), 'classifier');
  }

  /** Sequence-classification logits: classifier(tanh(pooler([CLS]))). */
  classify(ids: number[], typeIds?: number[]): number[] {
    const cls = this.hidden(ids, typeIds)[0];
    const pooled = this.dense([cls], 'bert.pooler.dense')[0].map(Math.tanh);
    return this.dense([pooled], 'classifier')[0];
  }
}
