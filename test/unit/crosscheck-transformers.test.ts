/**
 * Cross-check against an independent implementation: on a generated all-MiniLM-L6-v2-shaped model
 * with the real tokenizer files, `@huggingface/transformers` feature-extraction (its own
 * tokenizer, its own ONNX Runtime session, mean pooling, normalized) and the router's Engine agree
 * at cosine >= 0.9999 on a few hundred seeded, varied texts: mixed lengths, punctuation, numbers,
 * accents, CJK, emoji, and texts longer than the model's max input length (truncated).
 *
 * One difference between the two is not a bug of either and is bridged here: transformers.js
 * truncates by cutting the token list at `model_max_length` (512 from tokenizer_config.json), which
 * drops the final [SEP], while sentence-transformers and TEI truncate at `max_seq_length` (256 from
 * sentence_bert_config.json) and keep [CLS]/[SEP]. For texts longer than that, the reference is
 * computed with the pipeline's own tokenizer (untruncated), truncated the HF way (first 255 ids +
 * [SEP]), run through the pipeline's own model and `mean_pooling` + normalize.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { env, mean_pooling, pipeline, Tensor, type FeatureExtractionPipeline } from '@huggingface/transformers';
import { createEngine, type RouterEngine } from '../../src/router/engine.js';
import type { RouterOptions } from '../../src/router/options.js';
import { testModel } from '../helpers/models.js';
import { cosine } from '../helpers/vectors.js';
import { seededUniform } from '../../src/testmodel/rng.js';

const COUNT = 300;
const MIN_COSINE = 0.9999;
const CLIENT_BATCH = 32;

const options: RouterOptions = {
  modelId: 'minilm-l6-crosscheck',
  port: 3000,
  hostname: '127.0.0.1',
  maxConcurrentRequests: 512,
  maxBatchTokens: 16384,
  maxClientBatchSize: CLIENT_BATCH,
  autoTruncate: true,
  jsonOutput: false,
  payloadLimit: 2_000_000,
  device: 'cpu',
  threads: 2,
};


const WORDS = (
  'the of and to in is was for on that with as by at from it an be this which or are have not has but were had their ' +
  'model embedding vector search retrieval query passage document token batch latency throughput server router GPU ' +
  'Paris London Tokyo Zürich São Paulo Kraków Montréal Reykjavík naïve café résumé coöperate façade jalapeño ' +
  'Straße über größer Ångström déjà vu piñata crème brûlée mañana ' +
  'ONNX BERT MiniLM HuggingFace TypeScript JavaScript PyTorch tensorflow CamelCaseWord snake_case_word kebab-case-word ' +
  'unbelievable antidisestablishmentarianism internationalization electroencephalography pneumonoultramicroscopic'
).split(' ');
const UNICODE = ['東京', '中文字符', '日本語のテキスト', '한국어', 'привет', 'мир', 'αβγ', 'Ελληνικά', 'مرحبا', 'שלום', 'हिन्दी', '🙂', '🚀', '👍🏽', '∑', '≤', '→', '€', '£', '¥', '©', '™', '½', 'ﬁ', 'Ⅻ'];
const PUNCT = ['.', ',', '!', '?', ';', ':', '...', '—', '–', '(', ')', '"', "'", '[', ']', '{', '}', '/', '\\', '@', '#', '%', '&', '*', '+', '=', '<', '>', '|', '~', '^', '`', '¿', '¡', '«', '»', '“', '”'];

function word(r: () => number): string {
  const x = r();
  if (x < 0.72) {
    const w = WORDS[Math.floor(r() * WORDS.length)];
    const c = r();
    return c < 0.1 ? w.toUpperCase() : c < 0.25 ? w[0].toUpperCase() + w.slice(1) : w;
  }
  if (x < 0.82) {
    const n = r();
    if (n < 0.3) return String(Math.floor(r() * 100));
    if (n < 0.5) return (r() * 1000).toFixed(2);
    if (n < 0.65) return Math.floor(r() * 1e7).toLocaleString('en-US');
    if (n < 0.8) return `${2000 + Math.floor(r() * 30)}-0${1 + Math.floor(r() * 9)}-1${Math.floor(r() * 10)}`;
    return `v${Math.floor(r() * 10)}.${Math.floor(r() * 20)}.${Math.floor(r() * 100)}`;
  }
  if (x < 0.92) return UNICODE[Math.floor(r() * UNICODE.length)];
  if (x < 0.97) return PUNCT[Math.floor(r() * PUNCT.length)];
  return ['https://example.com/a?b=1&c=2', 'user@example.org', 'C++', 'e.g.', "don't", "l'été", '#hashtag', '@mention', '$3.50', '100%', '3×4', 'x²'][Math.floor(r() * 12)];
}

/** Seeded, varied texts: 8 in 10 of 1-40 words, some of 41-150, about 1 in 12 of 200-420 (truncated). */
function makeTexts(n: number, seed: number): string[] {
  const r = seededUniform(seed);
  const fixed = ['a', '42', '!!!', 'Hello, world!', '   leading and trailing spaces   ', 'UPPER lower MiXeD', 'tab\tand\nnewline', '東京', '🙂', 'naïve café'];
  const out = [...fixed];
  while (out.length < n) {
    const x = r();
    const len = x < 0.8 ? 1 + Math.floor(r() * 40) : x < 0.92 ? 41 + Math.floor(r() * 110) : 200 + Math.floor(r() * 221);
    const words: string[] = [];
    for (let i = 0; i < len; i++) words.push(word(r));
    let t = words.join(r() < 0.1 ? '  ' : ' ');
    if (r() < 0.5) t += PUNCT[Math.floor(r() * 4)];
    out.push(t);
  }
  return out;
}


let dir: string;
let engine: RouterEngine | undefined;
let extractor: FeatureExtractionPipeline | undefined;

before(async () => {
  dir = await testModel({ kind: 'embedding', shape: 'minilm-l6' });
});

after(async () => {
  await engine?.close();
  await extractor?.dispose();
});

test(`@huggingface/transformers feature-extraction and the Engine agree at cosine >= ${MIN_COSINE} on ${COUNT} texts`, async (t) => {
  const texts = makeTexts(COUNT, 20240611);

  // Ours: the router's Engine, in client batches of 32 sent concurrently (dynamic batching inside).
  engine = await createEngine(options, dir);
  const maxLen = engine.model.maxInputLength;
  assert.equal(maxLen, 256);
  const t0 = performance.now();
  const chunks: Promise<Float32Array[]>[] = [];
  for (let i = 0; i < texts.length; i += CLIENT_BATCH) {
    chunks.push(engine.embed(texts.slice(i, i + CLIENT_BATCH), { truncate: true, truncationDirection: 'right', normalize: true }).then((r) => r.results));
  }
  const ours = (await Promise.all(chunks)).flat();
  const oursMs = performance.now() - t0;
  await engine.close();
  engine = undefined;
  assert.equal(ours.length, texts.length);

  // Reference: transformers.js on the same directory, local files only.
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useFSCache = false;
  env.localModelPath = path.dirname(dir) + path.sep;
  extractor = (await pipeline('feature-extraction', path.basename(dir), {
    dtype: 'fp32',
    device: 'cpu',
    local_files_only: true,
    session_options: { intraOpNumThreads: 2 },
  })) as FeatureExtractionPipeline;
  const tok = extractor.tokenizer;
  const sepId = tok.sep_token_id;
  assert.equal(typeof sepId, 'number');

  const t1 = performance.now();
  const reference: Float32Array[] = new Array(texts.length);
  const lengths = texts.map((text) => (tok(text, { truncation: false }).input_ids as Tensor).dims[1]);
  const fits = texts.map((_, i) => i).filter((i) => lengths[i] <= maxLen);
  const long = texts.map((_, i) => i).filter((i) => lengths[i] > maxLen);
  // Texts that fit: the pipeline as is, in batches of 32 of similar length (less padding, same results).
  fits.sort((a, b) => lengths[a] - lengths[b]);
  for (let i = 0; i < fits.length; i += CLIENT_BATCH) {
    const idx = fits.slice(i, i + CLIENT_BATCH);
    const out = await extractor(idx.map((k) => texts[k]), { pooling: 'mean', normalize: true });
    const H = out.dims[1];
    const data = out.data as Float32Array;
    idx.forEach((k, r) => (reference[k] = data.slice(r * H, (r + 1) * H)));
  }
  // Longer texts: the pipeline's tokenizer and model, truncated keeping [SEP] (see the header).
  for (const k of long) {
    const enc = tok(texts[k], { truncation: false }) as Record<string, Tensor>;
    const cut = (name: string, last: bigint) => {
      const src = enc[name].data as BigInt64Array;
      const ids = new BigInt64Array(maxLen);
      ids.set(src.subarray(0, maxLen - 1));
      ids[maxLen - 1] = last;
      return new Tensor('int64', ids, [1, maxLen]);
    };
    const inputs: Record<string, Tensor> = { input_ids: cut('input_ids', BigInt(sepId!)), attention_mask: cut('attention_mask', 1n) };
    if (enc.token_type_ids) inputs.token_type_ids = cut('token_type_ids', (enc.token_type_ids.data as BigInt64Array)[maxLen - 1]);
    const outputs = (await extractor.model(inputs)) as Record<string, Tensor>;
    const pooled = mean_pooling(outputs.last_hidden_state, inputs.attention_mask).normalize(2, -1);
    reference[k] = (pooled.data as Float32Array).slice();
  }
  const refMs = performance.now() - t1;

  let min = Infinity;
  let worst = -1;
  const cosines = texts.map((_, i) => cosine(ours[i], reference[i]));
  cosines.forEach((c, i) => {
    if (c < min) {
      min = c;
      worst = i;
    }
  });
  const sorted = [...cosines].sort((a, b) => a - b);
  t.diagnostic(
    `min cosine ${min.toFixed(9)} (1 - min = ${(1 - min).toExponential(2)}; text ${worst}, ${lengths[worst]} tokens), median ${sorted[sorted.length >> 1].toFixed(9)}; ` +
      `${texts.length} texts, ${long.length} over ${maxLen} tokens (truncated), ${lengths.reduce((a, b) => a + Math.min(b, maxLen), 0)} tokens; ` +
      `engine ${oursMs.toFixed(0)} ms, transformers.js ${refMs.toFixed(0)} ms`,
  );
  // The comparison discriminates: neighbouring texts are far apart.
  assert.ok(cosine(ours[10], reference[11]) < 0.999, `texts 10 and 11 too close: ${cosine(ours[10], reference[11])}`);
  assert.ok(long.length >= 10, `only ${long.length} texts exceed the max input length`);
  assert.ok(fits.some((i) => lengths[i] > 100), 'some texts of more than 100 tokens fit');
  for (let i = 0; i < texts.length; i++) {
    assert.equal(ours[i].length, reference[i].length, `dimension of text ${i}`);
    assert.ok(cosines[i] >= MIN_COSINE, `text ${i} (${lengths[i]} tokens): cosine ${cosines[i]} < ${MIN_COSINE}: ${JSON.stringify(texts[i].slice(0, 120))}`);
  }
});
