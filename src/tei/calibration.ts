/**
 * int8/uint8 ranges, calibrated per model: the first request for one of those types embeds a fixed
 * set of CALIBRATION_TEXTS with the request's own options (normalize, dimensions, prompt by name
 * or the prompt put before the texts, truncation) and keeps each dimension's min and max (sentence-transformers'
 * `calibration_embeddings`). The ranges are kept per engine object, so a new child (a restart, a
 * swap to another revision) calibrates again; a failed calibration is not kept.
 *
 * The texts are generated from a fixed seed: every server, every run, the same 256 texts, of
 * 4 to 40 words from several registers (prose, questions, numbers, code, other scripts).
 */
import { rangesOf, type Int8Ranges } from './embedding-types.js';
import type { CallOptions, EmbedOptions, Engine } from './types.js';

const WORDS = (
  'the of and to in is was for on that with as by at from it an be this are or which his her their has have had ' +
  'not but one all were when there can more been if will would who so no out up into time about than them some ' +
  'city river market language music history science model vector search query document answer number system data ' +
  'energy water light health school money court state film game team world company garden winter summer engine ' +
  'research protein cell galaxy planet algorithm network server request memory storage price order invoice shipping ' +
  'quickly slowly carefully brown green blue ancient modern digital public private local global red small large'
).split(' ');
const EXTRA = ['東京', 'Москва', 'über', 'café', 'naïve', '😀', 'العربية', 'ελληνικά', 'SELECT * FROM t;', 'x = f(y) + 1', '2024-03-01', '$1,234.56', '42', '3.14159', '#55123', 'https://example.org/a?b=c'];

/** How many calibration texts. */
export const CALIBRATION_SIZE = 256;
/** Inputs per embed call while calibrating (within any server's max_client_batch_size default). */
const CALIBRATION_BATCH = 32;

function generate(): string[] {
  let s = 0x5eed1402;
  const next = (n: number): number => {
    // xorshift32: small, fixed, the same sequence everywhere
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
  const out: string[] = [];
  for (let i = 0; i < CALIBRATION_SIZE; i++) {
    const n = 4 + next(37);
    const words: string[] = [];
    for (let k = 0; k < n; k++) words.push(next(6) === 0 ? EXTRA[next(EXTRA.length)] : WORDS[next(WORDS.length)]);
    const text = words.join(' ');
    out.push(i % 5 === 0 ? `${text[0].toUpperCase()}${text.slice(1)}?` : `${text}.`);
  }
  return out;
}

export const CALIBRATION_TEXTS: readonly string[] = generate();

const cache = new WeakMap<Engine, Map<string, Promise<Int8Ranges>>>();

/**
 * An engine that wraps another per request (the manager's cache in front of a child) names the
 * long-lived engine under this key: the ranges are calibrated on it and kept with it.
 */
export const CALIBRATION_ENGINE = Symbol('teiplex.calibrationEngine');
type Wrapping = Engine & { [CALIBRATION_ENGINE]?: Engine };

/** What of the options changes a calibration vector (the cache key; the texts are too short to be truncated). */
const keyOf = (o: EmbedOptions): string => JSON.stringify([o.normalize, o.dimensions ?? null, o.promptName ?? null, o.textPrefix ?? '']);

/** The ranges of `engine`'s vectors under `opts`, calibrated once per engine and options. */
export function calibratedRanges(wrapper: Engine, opts: EmbedOptions, call?: CallOptions): Promise<Int8Ranges> {
  const engine = (wrapper as Wrapping)[CALIBRATION_ENGINE] ?? wrapper;
  let byKey = cache.get(engine);
  if (byKey === undefined) {
    byKey = new Map();
    cache.set(engine, byKey);
  }
  const key = keyOf(opts);
  const known = byKey.get(key);
  if (known !== undefined) return known;
  const made = calibrate(engine, { ...opts, truncate: true }, call);
  byKey.set(key, made);
  made.catch(() => {
    if (byKey.get(key) === made) byKey.delete(key);
  });
  return made;
}

async function calibrate(engine: Engine, opts: EmbedOptions, call?: CallOptions): Promise<Int8Ranges> {
  const rows: Float32Array[] = [];
  const prefix = opts.textPrefix ?? '';
  for (let i = 0; i < CALIBRATION_TEXTS.length; i += CALIBRATION_BATCH) {
    const out = await engine.embed(CALIBRATION_TEXTS.slice(i, i + CALIBRATION_BATCH).map((t) => prefix + t), opts, call);
    rows.push(...out.results);
  }
  return rangesOf(rows);
}
