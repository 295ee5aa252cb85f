/**
 * The seeded mixed-length text workload of the router benchmark: 9 texts in 10 of 1–40 words,
 * 1 in 10 of 41–300 words (real corpora have such tails). The generator is `teiplex bench`'s own
 * (src/bench/texts.ts), so the CLI and the bench scripts measure the same texts.
 */
export { DEFAULT_SEED, generateTexts as makeWorkload } from '../src/bench/texts.js';
