/**
 * `teiplex make-test-model`: write a BERT-shaped ONNX model with seeded random weights in the
 * HuggingFace layout (see docs/make-test-model.md).
 */
import { FlagError, intFlag, parseFlags } from '../common/flags.js';
import { isShapeName, SHAPES } from '../testmodel/shapes.js';
import { DEFAULT_ONNX_PATH, writeTestModel } from '../testmodel/write-model.js';
import type { TestModelKind } from '../testmodel/bert-graph.js';

const KINDS: readonly TestModelKind[] = ['embedding', 'reranker', 'classifier', 'splade', 'token-classifier'];

const SPEC = {
  out: { type: 'string' },
  kind: { type: 'string', default: 'embedding' },
  shape: { type: 'string', default: 'tiny' },
  layers: { type: 'string' },
  hidden: { type: 'string' },
  heads: { type: 'string' },
  intermediate: { type: 'string' },
  'max-positions': { type: 'string' },
  'max-seq-length': { type: 'string' },
  'num-labels': { type: 'string' },
  tokenizer: { type: 'string' },
  seed: { type: 'string', default: '0' },
  'external-data': { type: 'boolean', default: false },
  'onnx-path': { type: 'string', default: DEFAULT_ONNX_PATH },
  'sentence-embedding': { type: 'boolean', default: false },
  'no-normalize-module': { type: 'boolean', default: false },
  prompt: { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export const USAGE = `Usage: teiplex make-test-model --out DIR [options]

Writes a BERT encoder as ONNX (seeded random weights) with config.json, tokenizer files and,
for embedding models, the sentence-transformers files (mean pooling, Normalize module).

  --out DIR                 output directory (replaced if it exists)
  --kind KIND               embedding | reranker | classifier | splade | token-classifier
                            (default embedding; token-classifier: BertForTokenClassification
                            with BIO named-entity labels O, B-PER, I-PER, ... B-MISC, I-MISC)
  --shape NAME              ${Object.entries(SHAPES)
    .map(([n, s]) => `${n} (${s.layers} layers, ${s.hidden} hidden, ${s.heads} heads, ${s.intermediate} intermediate)`)
    .join('\n                            | ')}
                            (default tiny)
  --layers N --hidden N --heads N --intermediate N --max-positions N --max-seq-length N
                            override the shape's sizes
  --num-labels N            classifier labels (default 2; a reranker has 1; a token classifier 9,
                            the BIO tags, other counts are named LABEL_0 ...)
  --tokenizer DIR           tokenizer files to copy (default: fixtures/all-MiniLM-L6-v2, the real
                            all-MiniLM-L6-v2 tokenizer); the vocabulary size follows it
  --seed N                  weight seed (default 0): same seed, same bytes
  --external-data           weights in <onnx file>_data next to the graph
  --onnx-path PATH          graph location inside DIR (default ${DEFAULT_ONNX_PATH})
  --sentence-embedding      embedding models: also output a pooled sentence_embedding
  --no-normalize-module     embedding models: no Normalize module in modules.json
  --prompt NAME=TEXT        embedding models: a prompt in config_sentence_transformers.json (repeatable)
`;

export async function run(argv: string[]): Promise<number> {
  try {
    const f = parseFlags(argv, SPEC);
    if (f.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (f.out === undefined) throw new FlagError('--out is required');
    if (!KINDS.includes(f.kind as TestModelKind)) throw new FlagError(`--kind must be one of ${KINDS.join(', ')}, got '${f.kind}'`);
    if (!isShapeName(f.shape)) throw new FlagError(`--shape must be one of ${Object.keys(SHAPES).join(', ')}, got '${f.shape}'`);
    const prompts: Record<string, string> = {};
    for (const p of f.prompt ?? []) {
      const eq = p.indexOf('=');
      if (eq < 1) throw new FlagError(`--prompt must be NAME=TEXT, got '${p}'`);
      prompts[p.slice(0, eq)] = p.slice(eq + 1);
    }
    const sizes = Object.fromEntries(
      (
        [
          ['layers', 'layers'],
          ['hidden', 'hidden'],
          ['heads', 'heads'],
          ['intermediate', 'intermediate'],
          ['maxPositions', 'max-positions'],
          ['maxSeqLength', 'max-seq-length'],
        ] as const
      )
        .map(([key, flag]) => [key, intFlag(flag, f[flag], 1)])
        .filter(([, v]) => v !== undefined),
    );
    const written = await writeTestModel({
      out: f.out,
      kind: f.kind as TestModelKind,
      shape: f.shape,
      sizes,
      tokenizerDir: f.tokenizer,
      seed: intFlag('seed', f.seed, 0)!,
      numLabels: intFlag('num-labels', f['num-labels'], 1),
      externalData: f['external-data'],
      onnxPath: f['onnx-path'],
      sentenceEmbedding: f['sentence-embedding'],
      normalizeModule: !f['no-normalize-module'],
      prompts,
    });
    process.stdout.write(
      `wrote ${f.kind} model (${f.shape}, ${(written.parameters / 1e6).toFixed(2)}M parameters, ${(written.bytes / 2 ** 20).toFixed(1)} MiB) to ${written.dir}\n`,
    );
    return 0;
  } catch (err) {
    process.stderr.write(`teiplex make-test-model: ${err instanceof Error ? err.message : String(err)}\n`);
    return err instanceof FlagError ? 2 : 1;
  }
}
