/**
 * Cross-check against an independent implementation: on a generated all-MiniLM-L6-v2-shaped model
 * with the real tokenizer files, `@huggingface/transformers` feature-extraction (its own
 * tokenizer, its own ONNX Runtime session, mean pooling, normalized) and the router's Engine agree
 * at cosine >= 0.99999 per row on a few hundred seeded, varied texts: mixed lengths, punctuation,
 * numbers, accents, CJK, emoji, and texts longer than the model's max input length (truncated).
 * Also against transformers.js: the token ids of our tokenize (and its offsets: each non-special
 * token's span of the text, normalized as BERT's tokenizer does, is the token transformers.js
 * produced), and the raw scores of a generated reranker and classifier (its
 * AutoModelForSequenceClassification on the same files).
 *
 * One difference between the two is not a bug of either and is bridged here: transformers.js
 * truncates by cutting the token list at `model_max_length` (512 from tokenizer_config.json), which
 * drops the final [SEP], while sentence-transformers and TEI truncate at `max_seq_length` (256 from
 * sentence_bert_config.json) and keep [CLS]/[SEP]. For texts longer than that, the reference is
 * computed with the pipeline's own tokenizer (untruncated), truncated the HF way (first 255 ids +
 * [SEP]), run through the pipeline's own model and `mean_pooling` + normalize.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  AutoModelForSequenceClassification,
  AutoTokenizer,
  env,
  mean_pooling,
  pipeline,
  Tensor,
  type FeatureExtractionPipeline,
} from '@huggingface/transformers';
import { createEngine, type RouterEngine } from '../../src/router/engine.js';
import type { RouterOptions } from '../../src/router/options.js';
import { testModel } from '../helpers/models.js';
import { cosine } from '../helpers/vectors.js';
import { seededUniform } from '../../src/testmodel/rng.js';

const COUNT = 300;
const MIN_COSINE = 0.99999;
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
const UNICODE = [
  '東京',
  '中文字符',
  '日本語のテキスト',
  '한국어',
  'привет',
  'мир',
  'αβγ',
  'Ελληνικά',
  'مرحبا',
  'שלום',
  'हिन्दी',
  '🙂',
  '🚀',
  '👍🏽',
  '∑',
  '≤',
  '→',
  '€',
  '£',
  '¥',
  '©',
  '™',
  '½',
  'ﬁ',
  'Ⅻ',
];
const PUNCT = [
  '.',
  ',',
  '!',
  '?',
  ';',
  ':',
  '...',
  '—',
  '–',
  '(',
  ')',
  '"',
  "'",
  '[',
  ']',
  '{',
  '}',
  '/',
  '\\',
  '@',
  '#',
  '%',
  '&',
  '*',
  '+',
  '=',
  '<',
  '>',
  '|',
  '~',
  '^',
  '`',
  '¿',
  '¡',
  '«',
  '»',
  '“',
  '”',
];

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
  return ['https://example.com/a?b=1&c=2', 'user@example.org', 'C++', 'e.g.', "don't", "l'été", '#hashtag', '@mention', '$3.50', '100%', '3×4', 'x²'][
    Math.floor(r() * 12)
  ];
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
    const out = await extractor(
      idx.map((k) => texts[k]),
      { pooling: 'mean', normalize: true },
    );
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
  assert.ok(
    fits.some((i) => lengths[i] > 100),
    'some texts of more than 100 tokens fit',
  );
  for (let i = 0; i < texts.length; i++) {
    assert.equal(ours[i].length, reference[i].length, `dimension of text ${i}`);
    assert.ok(cosines[i] >= MIN_COSINE, `text ${i} (${lengths[i]} tokens): cosine ${cosines[i]} < ${MIN_COSINE}: ${JSON.stringify(texts[i].slice(0, 120))}`);
  }
});

/** Harder texts for the tokenizer: long words, accents (composed and decomposed), emoji sequences, CJK, controls. */
const TOKEN_EXTRAS = [
  'Supercalifragilisticexpialidocious and pneumonoultramicroscopicsilicovolcanoconiosis',
  'e\u0301te\u0301 (decomposed) versus été (composed)',
  'ÀÉÎÕÜ àéîõü Çç Ññ Øø Åå Ææ ß ẞ',
  '👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs, 🇫🇷 France',
  '中文字符和日本語のテキストと한국어',
  'zero\u200bwidth\u200cjoiner\u200dtext and soft\u00adhyphen',
  'tabs\tand\r\nnewlines\u2028separator',
  'ﬁne ﬂow Ⅻ ½ ² ™ ©',
  'x'.repeat(300),
  'ab'.repeat(80) + ' ' + 'résumé'.repeat(20),
  "don't can't won't l'été aujourd'hui",
  'http://example.com/path?query=1&b=2#frag user@example.org',
  '3.14159 1,000,000 -42 +7 1e-9 0x1F',
  'Ελληνικά кириллица עברית العربية हिन्दी ไทย',
];

/** What BERT's normalizer does to a span (clean text, lowercase, strip accents), for the offset check. */
function bertNormalize(s: string): string {
  return s
    .replace(/\ufffd/g, '')
    .replace(/\p{Cc}|\p{Cf}/gu, (c) => (/\s/.test(c) ? ' ' : ''))
    .toLowerCase()
    .normalize('NFD')
    .replace(/\p{Mn}/gu, '');
}

function localTransformers(dir: string): void {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useFSCache = false;
  env.localModelPath = path.dirname(dir) + path.sep;
}

test('token ids: our tokenize and transformers.js agree on every text; offsets cut out each token as transformers.js spells it', async (t) => {
  const tinyDir = await testModel({ kind: 'embedding' });
  const texts = [...makeTexts(COUNT, 20240613), ...TOKEN_EXTRAS];
  const ours = await createEngine({ ...options, modelId: 'tokens-crosscheck' }, tinyDir);
  let tokens = 0;
  let unk = 0;
  try {
    localTransformers(tinyDir);
    const tok = await AutoTokenizer.from_pretrained(path.basename(tinyDir), { local_files_only: true });
    const unkId = tok.unk_token_id;
    // The token strings by id: vocab.txt's lines.
    const vocab = readFileSync(path.join(tinyDir, 'vocab.txt'), 'utf8').split('\n');
    for (let i = 0; i < texts.length; i += CLIENT_BATCH) {
      const batch = texts.slice(i, i + CLIENT_BATCH);
      const got = await ours.tokenize(batch, true);
      batch.forEach((text, k) => {
        const want = tok.encode(text) as number[];
        const label = `text ${i + k} ${JSON.stringify(text.slice(0, 80))}`;
        assert.deepEqual(
          got[k].map((x) => x.id),
          want,
          label,
        );
        const pieces = want.map((id) => vocab[id]);
        const scalars = [...text].length;
        let prevStop = 0;
        // Tokens of one character that normalizes to several (a Hangul syllable's jamo) share its span: their pieces together spell it.
        let group: { start: number; stop: number; spelled: string; pieces: string } | undefined;
        const close = () => {
          if (group !== undefined)
            assert.equal(bertNormalize(group.spelled), group.pieces, `${label}: tokens ${group.pieces} span ${JSON.stringify(group.spelled)}`);
          group = undefined;
        };
        got[k].forEach((x, j) => {
          tokens++;
          if (x.special) {
            assert.equal(x.start, undefined, `${label}: a special token has no offsets`);
            return;
          }
          assert.ok(
            x.start !== undefined && x.stop !== undefined && x.start < x.stop && x.stop <= scalars,
            `${label}: token ${j} span [${x.start}, ${x.stop})`,
          );
          const piece = pieces[j].replace(/^##/, '');
          if (group !== undefined && group.start === x.start && group.stop === x.stop) {
            group.pieces += piece;
            return;
          }
          close();
          assert.ok(x.start >= prevStop, `${label}: token ${j} starts before the previous one ended`);
          prevStop = x.stop;
          const spelled = [...text].slice(x.start, x.stop).join('');
          if (x.id === unkId) {
            unk++;
            assert.ok(spelled.trim().length > 0, `${label}: [UNK] covers text`);
          } else {
            group = { start: x.start, stop: x.stop, spelled, pieces: piece };
          }
        });
        close();
      });
    }
  } finally {
    await ours.close();
  }
  t.diagnostic(`${texts.length} texts, ${tokens} tokens: ids equal to transformers.js, offsets spell its tokens (${unk} [UNK] tokens, checked to cover text)`);
  assert.ok(tokens > 5000, `${tokens} tokens`);
});

/** Texts that fit the tiny models' 128 tokens (transformers.js truncates at 512: no truncation on either side). */
const shortTexts = (n: number, seed: number) =>
  makeTexts(n * 2, seed)
    .filter((s) => s.length < 80)
    .slice(0, n);

test('reranker and classifier: raw scores of the Engine and transformers.js AutoModelForSequenceClassification agree within 1% of how much the scores differ between texts', async (t) => {
  const figures: string[] = [];
  for (const spec of [{ kind: 'reranker' as const }, { kind: 'classifier' as const, numLabels: 3 }]) {
    const dir = await testModel(spec);
    const texts = shortTexts(64, spec.kind === 'reranker' ? 11 : 12);
    const query = 'which city is the capital of France?';
    const ours = await createEngine({ ...options, modelId: `${spec.kind}-crosscheck` }, dir);
    // Ours, as raw scores per text (label -> score for the classifier).
    const mine: number[][] = [];
    let labels: string[] = [];
    try {
      if (spec.kind === 'reranker') {
        const { ranks } = await ours.rerank(query, texts, { truncate: true, truncationDirection: 'right', rawScores: true, returnText: false });
        for (const r of ranks) mine[r.index] = [r.score];
      } else {
        const { results } = await ours.predict(texts, { truncate: true, truncationDirection: 'right', rawScores: true });
        labels = results[0].map((p) => p.label).sort();
        results.forEach((preds, i) => {
          mine[i] = labels.map((l) => preds.find((p) => p.label === l)!.score);
        });
      }
    } finally {
      await ours.close();
    }
    localTransformers(dir);
    const tok = await AutoTokenizer.from_pretrained(path.basename(dir), { local_files_only: true });
    const model = await AutoModelForSequenceClassification.from_pretrained(path.basename(dir), {
      dtype: 'fp32',
      device: 'cpu',
      local_files_only: true,
      session_options: { intraOpNumThreads: 2 },
    });
    try {
      const inputs =
        spec.kind === 'reranker'
          ? tok(new Array(texts.length).fill(query), { text_pair: texts, padding: true, truncation: true })
          : tok(texts, { padding: true, truncation: true });
      const { logits } = (await model(inputs)) as { logits: Tensor };
      const [rows, cols] = logits.dims;
      assert.equal(rows, texts.length);
      const data = logits.data as Float32Array;
      const id2label = (model.config as unknown as { id2label?: Record<string, string> }).id2label ?? {};
      const order = spec.kind === 'reranker' ? [0] : labels.map((l) => Number(Object.keys(id2label).find((k) => id2label[k] === l)));
      assert.equal(order.length, cols, 'one score per label');
      let maxDiff = 0;
      let spread = 0;
      for (let i = 0; i < rows; i++) {
        order.forEach((col, j) => {
          const ref = data[i * cols + col];
          maxDiff = Math.max(maxDiff, Math.abs(mine[i][j] - ref));
          spread = Math.max(spread, Math.abs(ref - data[col]));
        });
      }
      figures.push(
        `${spec.kind}: ${rows} texts x ${cols} scores, max |ours - transformers.js| ${maxDiff.toExponential(2)}, spread of the scores ${spread.toExponential(2)}`,
      );
      // Random weights give scores that differ little between texts: the tolerance is a small share
      // of that spread, so that a wrong score (another text's, a wrong label's) cannot pass.
      assert.ok(spread > 0, `${spec.kind}: every text scored the same`);
      assert.ok(maxDiff <= spread * 1e-2, figures[figures.length - 1]);
    } finally {
      await model.dispose();
    }
  }
  t.diagnostic(figures.join('; '));
});
