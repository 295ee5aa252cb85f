/**
 * Token classification against an independent implementation: the router's Engine and
 * `@huggingface/transformers`' token-classification pipeline (its own tokenizer, its own ONNX
 * Runtime session, its own softmax) on the same generated BertForTokenClassification model agree,
 * on seeded texts with accents, CJK and emoji, on every token's label and score, and on the
 * `simple` entities. The router runs with a default prompt, which token classification does not apply.
 *
 * transformers.js differs from the Python pipeline (which teiplex follows) in ways bridged here,
 * not bugs of either: it answers no offsets; it drops `ignore_labels` tokens before grouping
 * (Python groups first, then drops `O` groups), so it is called with `ignore_labels: []` and its
 * `O` groups are dropped here; its `word` decodes ids (an unknown token decodes to nothing), so
 * words are compared on groups without one.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { env, pipeline, type TokenClassificationPipeline } from '@huggingface/transformers';
import { createEngine } from '../../src/router/engine.js';
import type { RouterOptions } from '../../src/router/options.js';
import { seededUniform } from '../../src/testmodel/rng.js';
import type { TokenPredictions } from '../../src/tei/types.js';
import { testModel } from '../helpers/models.js';

const options: RouterOptions = {
  modelId: 'ner-crosscheck',
  port: 3000,
  hostname: '127.0.0.1',
  maxConcurrentRequests: 512,
  maxBatchTokens: 16384,
  maxClientBatchSize: 64,
  autoTruncate: false,
  jsonOutput: false,
  payloadLimit: 2_000_000,
  device: 'cpu',
  threads: 2,
  // A default prompt is not applied to token classification (it labels the caller's own text):
  // were it applied, every token and score below would differ from transformers.js's.
  defaultPrompt: 'query: ',
};

const WORDS = 'the of and in Paris London Tokyo Zürich São Paulo Kraków Reykjavík naïve café Straße Angela Merkel Barack Obama Microsoft GitHub Washingtonian electroencephalography 東京 中文 🙂 🚀 , . ; !'.split(' ');

function texts(n: number, seed: number): string[] {
  const r = seededUniform(seed);
  const out = ['Zürich 東京 🙂 Paris', 'Angela Merkel met Barack Obama in New York.'];
  for (let k = 0; out.length < n && k < 10 * n; k++) {
    const len = 1 + Math.floor(r() * 20);
    out.push(Array.from({ length: len }, () => WORDS[Math.floor(r() * WORDS.length)]!).join(' '));
  }
  return out;
}

interface TheirToken {
  entity: string;
  score: number;
  index: number;
  word: string;
}
interface TheirGroup {
  entity_group: string;
  score: number;
  word: string;
}

test('per-token labels and scores, and simple entities: the Engine and transformers.js agree', async () => {
  const dir = await testModel({ kind: 'token-classifier' });
  const inputs = texts(48, 20261203);
  const engine = await createEngine(options, dir);
  let none: TokenPredictions[];
  let simple: TokenPredictions[];
  try {
    const base = { truncate: false, truncationDirection: 'right' as const, rawScores: false };
    none = (await engine.predictTokens(inputs, { ...base, aggregation: 'none' })).results;
    simple = (await engine.predictTokens(inputs, { ...base, aggregation: 'simple' })).results;
  } finally {
    await engine.close();
  }

  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useFSCache = false;
  env.localModelPath = path.dirname(dir) + path.sep;
  const ner = (await pipeline('token-classification', path.basename(dir), { dtype: 'fp32', device: 'cpu', local_files_only: true, session_options: { intraOpNumThreads: 2 } })) as TokenClassificationPipeline;
  try {
    let tokens = 0;
    let groups = 0;
    for (let i = 0; i < inputs.length; i++) {
      const mine = none[i]!;
      assert.ok('tokens' in mine);
      const theirs = (await ner(inputs[i]!, { ignore_labels: [] })) as unknown as TheirToken[];
      // Theirs skips special tokens by their decoded text being empty; [UNK] decodes to nothing too.
      const mineKept = mine.tokens.filter((t) => t.token !== '[UNK]');
      assert.equal(theirs.length, mineKept.length, `text ${i}: ${JSON.stringify(inputs[i])}`);
      theirs.forEach((t, k) => {
        const m = mineKept[k]!;
        assert.equal(m.label, t.entity, `text ${i} token ${k} (${m.token})`);
        assert.ok(Math.abs(m.score - t.score) < 1e-4, `text ${i} token ${k}: ${m.score} vs ${t.score}`);
        tokens++;
      });

      const mineGroups = simple[i]!;
      assert.ok('entities' in mineGroups);
      if (mine.tokens.some((t) => t.token === '[UNK]')) continue; // its entity words differ (see above)
      const theirGroups = ((await ner(inputs[i]!, { ignore_labels: [], aggregation_strategy: 'simple' })) as unknown as TheirGroup[]).filter((g) => g.entity_group !== 'O');
      assert.deepEqual(
        mineGroups.entities.map((e) => [e.entityGroup, e.word]),
        theirGroups.map((g) => [g.entity_group, g.word]),
        `text ${i}: ${JSON.stringify(inputs[i])}`,
      );
      mineGroups.entities.forEach((e, k) => assert.ok(Math.abs(e.score - theirGroups[k]!.score) < 1e-4, `text ${i} entity ${k}`));
      groups += mineGroups.entities.length;
    }
    assert.ok(tokens > 200 && groups > 50, `compared ${tokens} tokens and ${groups} entities`);
  } finally {
    await ner.dispose();
  }
});
