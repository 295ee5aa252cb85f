/**
 * The texts a swap embeds with the old and the new version when the caller gives none: short and
 * long, several scripts, code, numbers, punctuation, so a tokenizer or pooling difference that
 * only some inputs show is caught. Long texts are truncated by the child (the probe asks for
 * truncation), so the set fits any model's max input length.
 */
export const DEFAULT_PROBE_TEXTS: readonly string[] = [
  'hello',
  'What is the capital of France?',
  'The quick brown fox jumps over the lazy dog.',
  'Embeddings map text to vectors so that similar meanings lie close together.',
  'Der schnelle braune Fuchs springt über den faulen Hund.',
  'Le cœur a ses raisons que la raison ne connaît point.',
  '東京は日本の首都であり、世界最大の都市圏の一つです。',
  'Москва — столица России.',
  '🙂 emoji, ünïcödé and mixed SCRIPTS: ελληνικά, עברית, العربية',
  'def add(a, b):\n    return a + b  # a tiny function',
  'SELECT name, count(*) FROM users WHERE age >= 21 GROUP BY name;',
  '3.14159 2.71828 1.41421 42 1e-9 -17 0x1F 1,000,000',
  'Order #55123 shipped on 2024-03-01 at 14:05 UTC; total $1,234.56.',
  'a',
  'A much longer passage follows. '.repeat(8) + 'Its meaning should survive the swap exactly as before, sentence after sentence.',
  'rolling swap; probe text sixteen: punctuation!? (brackets) [lists] {braces} <tags> "quotes" \'apostrophes\'',
];

/** Most probe texts one swap may carry (each text is embedded twice: old and new). */
export const MAX_PROBE_TEXTS = 256;
/** Longest probe text, in characters. */
export const MAX_PROBE_TEXT_CHARS = 32_768;
