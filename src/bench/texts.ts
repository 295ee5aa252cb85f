/**
 * The texts a benchmark sends: a seeded generator of mixed-length English-like texts (9 in 10 of
 * 1–40 words, 1 in 10 of 41–300 words, as real corpora have such tails), or the lines of a file.
 * Same seed, same texts, on every machine. The generator is the one of bench/workload.ts, so the
 * CLI and the benchmark scripts send the same workload for the same seed.
 */
import { readFile } from 'node:fs/promises';
import { seededUniform } from '../testmodel/rng.js';

/** The default seed (also bench/workload.ts's). */
export const DEFAULT_SEED = 20240611;

/** Common English words with a few longer and rarer ones, so word pieces vary as in real text. */
const WORDS = (
  'the of and to a in is it you that he was for on are with as his they be at one have this from or had by hot word but ' +
  'what some we can out other were all there when up use your how said an each she which do their time if will way about ' +
  'many then them write would like so these her long make thing see him two has look more day could go come did number ' +
  'sound no most people my over know water than call first who may down side been now find any new work part take get ' +
  'place made live where after back little only round man year came show every good me give our under name very through ' +
  'just form sentence great think say help low line differ turn cause much mean before move right boy old too same tell ' +
  'does set three want air well also play small end put home read hand port large spell add even land here must big high ' +
  'such follow act why ask men change went light kind off need house picture try us again animal point mother world near ' +
  'build self earth father embedding retrieval vector database latency throughput inference transformer tokenizer batch ' +
  'kubernetes deployment configuration observability distributed asynchronous serialization encyclopedia pharmaceutical ' +
  'photosynthesis constitutional infrastructure interoperability microservices reproducibility'
).split(' ');

const ENDINGS = ['.', '.', '.', '?', '!', ''];

/** One text of `n` words: sentences of 4–20 words, capitalized, with commas, numbers now and then. */
export function makeText(n: number, r: () => number): string {
  const out: string[] = [];
  let sentenceLeft = 0;
  for (let i = 0; i < n; i++) {
    let w = r() < 0.04 ? String(Math.floor(r() * 2000)) : WORDS[Math.floor(r() * WORDS.length)]!;
    if (sentenceLeft === 0) {
      sentenceLeft = 4 + Math.floor(r() * 17);
      w = w[0]!.toUpperCase() + w.slice(1);
    }
    sentenceLeft--;
    if (sentenceLeft === 0 || i === n - 1) w += ENDINGS[Math.floor(r() * ENDINGS.length)]!;
    else if (r() < 0.06) w += ',';
    out.push(w);
  }
  return out.join(' ');
}

export interface GenerateOptions {
  count: number;
  seed?: number;
  /** Share of long texts (default 0.1). */
  longShare?: number;
  /** Short texts: 1..shortMax words (default 40). */
  shortMax?: number;
  /** Long texts: shortMax+1..longMax words (default 300). */
  longMax?: number;
}

/** `count` seeded texts; about one in ten (by the seeded draw) is long. */
export function generateTexts(o: GenerateOptions): string[] {
  const r = seededUniform(o.seed ?? DEFAULT_SEED);
  const longShare = o.longShare ?? 0.1;
  const shortMax = o.shortMax ?? 40;
  const longMax = o.longMax ?? 300;
  const texts: string[] = [];
  for (let i = 0; i < o.count; i++) {
    const n = r() < longShare ? shortMax + 1 + Math.floor(r() * (longMax - shortMax)) : 1 + Math.floor(r() * shortMax);
    texts.push(makeText(n, r));
  }
  return texts;
}

/**
 * The texts of a file, one per line (LF or CRLF). Blank lines are skipped: an empty input is a
 * validation error on every server, and a trailing newline is not a text.
 */
export async function readTextsFile(file: string): Promise<string[]> {
  const content = await readFile(file, 'utf8');
  return content.split(/\r?\n/).filter((line) => line.trim() !== '');
}

/** `texts` repeated in order until there are `count` of them (or cut to `count`). */
export function cycleTo(texts: readonly string[], count: number): string[] {
  if (texts.length === 0) throw new RangeError('cycleTo: no texts to repeat');
  const out: string[] = new Array<string>(count);
  for (let i = 0; i < count; i++) out[i] = texts[i % texts.length]!;
  return out;
}
