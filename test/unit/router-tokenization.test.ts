/** Tokenization on the real all-MiniLM-L6-v2 tokenizer files (fixed padding/truncation to 128 in the file). */
import assert from 'node:assert/strict';
import test from 'node:test';
import { TeiplexError } from '../../src/common/errors.js';
import { projectPath } from '../../src/common/paths.js';
import { countChars, Tokenization } from '../../src/router/tokenization.js';

const TOKENIZER = projectPath('fixtures', 'all-MiniLM-L6-v2', 'tokenizer.json');
const CLS = 101;
const SEP = 102;

function tk(extra: Partial<Parameters<typeof Tokenization.load>[1]> = {}): Tokenization {
  return Tokenization.load(TOKENIZER, { maxInputLength: 8, autoTruncate: false, prompts: new Map([['query', 'query: '], ['doc', 'passage: ']]), ...extra });
}

function isCode(code: string, re?: RegExp) {
  return (e: unknown) => e instanceof TeiplexError && e.code === code && (re === undefined || re.test(e.message));
}

const right = { truncate: false, truncationDirection: 'right' as const };

test("the file's own padding (fixed 128) and truncation (128) are off", async () => {
  const t = Tokenization.load(TOKENIZER, { maxInputLength: 512, autoTruncate: false, prompts: new Map() });
  const [short] = await t.encode(['hello world'], right);
  assert.deepEqual(short.ids, [CLS, 7592, 2088, SEP]);
  const long = 'word '.repeat(200);
  const [e] = await t.encode([long], right);
  assert.equal(e.ids.length, 202);
});

test('too long without truncation is VALIDATION naming the length and the limit', async () => {
  const t = tk();
  await assert.rejects(t.encode(['one two three four five six seven eight nine'], right), isCode('VALIDATION', /must have less than 8 tokens\. Given: 11/));
  await assert.rejects(t.encode(['ok', 'one two three four five six seven eight nine'], right), isCode('VALIDATION', /^input 1: /));
});

test('truncation keeps the right or the left end, special tokens included', async () => {
  const t = tk();
  const text = 'one two three four five six seven eight nine';
  const [r] = await t.encode([text], { truncate: true, truncationDirection: 'right' });
  const [l] = await t.encode([text], { truncate: true, truncationDirection: 'left' });
  assert.equal(r.ids.length, 8);
  assert.equal(l.ids.length, 8);
  const [toks] = await t.tokenize([text], false);
  const words = toks.map((x) => x.id);
  assert.deepEqual(r.ids, [CLS, ...words.slice(0, 6), SEP]);
  assert.deepEqual(l.ids, [CLS, ...words.slice(-6), SEP]);
});

test('inputs beyond max input length x 250 characters: VALIDATION, or cut before tokenizing when truncating', async () => {
  const t = tk();
  const huge = 'ab '.repeat(1000); // 3000 characters > 8 x 250
  await assert.rejects(t.encode([huge], right), isCode('VALIDATION', /less than 2000 characters\. Given: 3000/));
  const [e] = await t.encode([huge], { truncate: true, truncationDirection: 'left' });
  assert.equal(e.ids.length, 8);
});

test('--auto-truncate truncates even when the request does not ask', async () => {
  const t = tk({ autoTruncate: true });
  const [e] = await t.encode(['one two three four five six seven eight nine'], right);
  assert.equal(e.ids.length, 8);
});

test('empty input is VALIDATION "`inputs` cannot be empty"', async () => {
  const t = tk();
  await assert.rejects(t.encode([''], right), isCode('VALIDATION', /`inputs` cannot be empty/));
  await assert.rejects(t.encode([[]], right), isCode('VALIDATION', /cannot be empty/));
});

test('prompts by name, the default prompt, and unknown names listing the known ones', async () => {
  const t = tk({ maxInputLength: 64 });
  const [plain] = await t.encode(['hello'], right);
  const [q] = await t.encode(['hello'], { ...right, promptName: 'query' });
  const [qq] = await t.encode(['query: hello'], right);
  assert.deepEqual(q.ids, qq.ids);
  assert.notDeepEqual(q.ids, plain.ids);
  assert.equal(q.chars, 5, 'compute_chars counts the input, not the prompt');
  await assert.rejects(t.encode(['hello'], { ...right, promptName: 'nope' }), isCode('VALIDATION', /Available prompts: query, doc/));
  const withDefault = tk({ maxInputLength: 64, defaultPromptName: 'doc' });
  const [d] = await withDefault.encode(['hello'], right);
  const [dd] = await t.encode(['passage: hello'], right);
  assert.deepEqual(d.ids, dd.ids);
  const [explicit] = await withDefault.encode(['hello'], { ...right, promptName: 'query' });
  assert.deepEqual(explicit.ids, qq.ids, 'a request prompt wins over the default');
  const literal = tk({ maxInputLength: 64, defaultPrompt: 'query: ' });
  assert.deepEqual((await literal.encode(['hello'], right))[0].ids, qq.ids);
});

test('prompt_name is one of the model\'s own prompts: names every object inherits are unknown', async () => {
  const t = tk({ maxInputLength: 64 });
  for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
    await assert.rejects(t.encode(['hello'], { ...right, promptName: name }), isCode('VALIDATION', new RegExp(`prompt_name \`${name}\` is not a prompt of this model`)), name);
    await assert.rejects(t.tokenize(['hello'], true, name), isCode('VALIDATION', /is not a prompt of this model/), name);
  }
  const [q] = await t.encode(['hello'], { ...right, promptName: 'query' });
  const [qq] = await t.encode(['query: hello'], right);
  assert.deepEqual(q.ids, qq.ids);
});

test('pairs get segment ids; singles have none', async () => {
  const t = tk({ maxInputLength: 64 });
  const [single, pair] = await t.encode(['a question', ['a question', 'the answer']], right);
  assert.equal(single.typeIds, null);
  assert.deepEqual(pair.ids, [CLS, 1037, 3160, SEP, 1996, 3437, SEP]);
  assert.deepEqual(pair.typeIds, [0, 0, 0, 0, 1, 1, 1]);
});

test('pre-tokenized ids are taken as they are; out-of-vocabulary ids are VALIDATION', async () => {
  const t = tk();
  const [e] = await t.encode([[CLS, 7592, SEP]], right);
  assert.deepEqual(e.ids, [CLS, 7592, SEP]);
  await assert.rejects(t.encode([[CLS, 30522]], right), isCode('VALIDATION', /30522.*vocabulary/));
  await assert.rejects(t.encode([[1.5]], right), isCode('VALIDATION'));
  const long = Array.from({ length: 10 }, (_, i) => 1000 + i);
  await assert.rejects(t.encode([long], right), isCode('VALIDATION', /Given: 10/));
  assert.deepEqual((await t.encode([long], { truncate: true, truncationDirection: 'left' }))[0].ids, long.slice(2));
  assert.deepEqual((await t.encode([long], { truncate: true, truncationDirection: 'right' }))[0].ids, long.slice(0, 8));
  await assert.rejects(t.encode([[CLS]], { ...right, promptName: 'query' }), isCode('VALIDATION', /pre-tokenized/));
});

test('token ids past the vocabulary or negative are VALIDATION naming the id, its position and the vocabulary size', async () => {
  const t = tk();
  assert.equal(t.vocabSize, 30522);
  const outside = (id: number, at: number, row = '') =>
    isCode('VALIDATION', new RegExp(`^${row}token id ${id} at position ${at} is not in the model's vocabulary: ids go from 0 to 30521 \\(vocabulary size 30522\\)$`));
  await assert.rejects(t.encode([[CLS, 30522]], right), outside(30522, 1));
  await assert.rejects(t.encode([[CLS, 7592, -1]], right), outside(-1, 2));
  await assert.rejects(t.encode(['text', [CLS, 2 ** 32]], right), outside(2 ** 32, 1, 'input 1: '));
  await assert.rejects(t.decode([[CLS, 30522]], true), outside(30522, 1));
  await assert.rejects(t.decode([[CLS], [7592, -3]], true), outside(-3, 1, 'input 1: '));
  assert.deepEqual(await t.decode([[CLS, 7592, SEP]], true), ['hello']);
  // A model whose embedding table is smaller than the tokenizer (config.json vocab_size) bounds ids by the table.
  const small = tk({ vocabSize: 30000 });
  assert.equal(small.vocabSize, 30000);
  await assert.rejects(small.encode([[CLS, 30100]], right), isCode('VALIDATION', /token id 30100 at position 1 .*\(vocabulary size 30000\)/));
  await assert.rejects(small.decode([[30100]], true), isCode('VALIDATION', /vocabulary size 30000/));
  assert.equal(tk({ vocabSize: 40000 }).vocabSize, 30522, 'never past the tokenizer');
});

test('tokenize: special flags, text and character offsets; decode', async () => {
  const t = tk({ maxInputLength: 64 });
  const [toks] = await t.tokenize(['héllo wörld 🙂 ok'], true);
  assert.deepEqual(toks[0], { id: CLS, text: '[CLS]', special: true });
  assert.deepEqual(toks[toks.length - 1], { id: SEP, text: '[SEP]', special: true });
  const words = toks.filter((x) => !x.special);
  assert.equal(words[0].text, 'héllo');
  assert.deepEqual([words[0].start, words[0].stop], [0, 5]);
  assert.equal(words[1].text, 'wörld');
  assert.equal(words[words.length - 1].text, 'ok');
  const [noSpecial] = await t.tokenize(['hello'], false);
  assert.deepEqual(noSpecial.map((x) => x.id), [7592]);
  const [prompted] = await t.tokenize(['hello'], false, 'query');
  assert.deepEqual(prompted.map((x) => x.text), ['query', ':', 'hello']);
  assert.deepEqual(await t.decode([[CLS, 7592, 2088, SEP]], true), ['hello world']);
  assert.deepEqual(await t.decode([[CLS, 7592, SEP]], false), ['[CLS] hello [SEP]']);
  await assert.rejects(t.decode([[-1]], true), isCode('VALIDATION'));
  await assert.rejects(t.decode([[]], true), isCode('VALIDATION', /`input_ids` cannot be empty/));
  await assert.rejects(t.tokenize([''], true), isCode('VALIDATION', /`inputs` cannot be empty/));
});

test('countChars counts Unicode scalars', () => {
  assert.equal(countChars('abc'), 3);
  assert.equal(countChars('🙂a'), 2);
  assert.equal(countChars('é'), 1);
});

test('tokenization is concurrent and bounded by its workers', async () => {
  const t = tk({ maxInputLength: 64, workers: 2 });
  assert.equal(t.workers, 2);
  const texts = Array.from({ length: 200 }, (_, i) => `sentence number ${i}`);
  const out = await Promise.all(texts.map((s) => t.encode([s], right)));
  assert.equal(out.length, 200);
  const [again] = await t.encode([texts[17]], right);
  assert.deepEqual(out[17][0].ids, again.ids);
});

test('spans for token classification: code-point offsets into the input, no prompt, special tokens marked; a left-cut huge input keeps offsets into the whole of it', async () => {
  const t = tk({ defaultPromptName: 'query' });
  const text = 'Zürich 🙂 Paris';
  const [e] = await t.encode([text], { ...right, withOffsets: true });
  const s = e.spans!;
  // No prompt: [CLS] zurich [UNK] paris [SEP].
  assert.deepEqual(s.tokens, ['[CLS]', 'zurich', '[UNK]', 'paris', '[SEP]']);
  assert.deepEqual(s.offsets, [[0, 0], [0, 6], [7, 8], [9, 14], [0, 0]]);
  assert.deepEqual(s.wordIds, [null, 0, 1, 2, null]);
  assert.deepEqual(s.special, [1, 0, 0, 0, 1]);
  assert.equal(t.unkId, 100);
  assert.equal(t.tokensToString(['wash', '##ing', '##ton', 'paris']), 'washington paris');
  // Over maxInputLength x 250 characters (8 x 250): cut from the left before tokenizing; the
  // offsets still count from the start of the whole input.
  const huge = `${'x '.repeat(1500)}end of it`;
  const [h] = await t.encode([huge], { truncate: true, truncationDirection: 'left', withOffsets: true });
  const hs = h.spans!;
  assert.equal(h.ids.length, 8);
  const last = hs.offsets[hs.offsets.length - 2]!;
  assert.deepEqual([hs.tokens[hs.tokens.length - 2], last], ['it', [countChars(huge) - 2, countChars(huge)]]);
  // Token-id inputs have no text to point into.
  await assert.rejects(t.encode([[1, 2, 3]], { ...right, withOffsets: true }), isCode('VALIDATION', /input must be a string/));
});
