/**
 * Tokenization, TEI's core/tokenization.rs: HF `tokenizers` (native, async encode on libuv's thread
 * pool), prompts, truncation, validation against the maximum input length, and the Tokenize and
 * Decode RPCs.
 *
 * The tokenizer file's own padding and truncation are switched off: batches are padded to their
 * longest row by the queue, and truncation happens here, at the model's maximum input length, only
 * when the request (or --auto-truncate) asks for it. Truncation settings live on a Tokenizer
 * object, so there is one object per truncation mode (none, left, right) and concurrent requests
 * never race on them.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Encoding as TkEncoding, Tokenizer as TkTokenizer } from 'tokenizers';
import { TeiplexError, type ErrorCode } from '../common/errors.js';
import type { PairInput, SimpleToken, TextInput, TruncationDirection } from '../tei/types.js';

/** TEI refuses (or cuts, when truncating) inputs longer than max input length x this, in characters. */
export const MAX_CHAR_MULTIPLIER = 250;

// `tokenizers` is a CommonJS native binding.
const { Tokenizer } = createRequire(import.meta.url)('tokenizers') as typeof import('tokenizers');

/** One input, ready for the model. */
export interface Encoded {
  ids: number[];
  /** Segment ids; null when every id is 0 (single sequences). */
  typeIds: number[] | null;
  /** Characters of the caller's input (prompt excluded), as TEI's compute_chars. */
  chars: number;
  tokenizationNs: bigint;
  /** With EncodeRequest.withOffsets: what token classification needs of each token. */
  spans?: TokenSpans;
}

/** Per token (same order as ids): its text, offsets into the caller's input, word and special mark. */
export interface TokenSpans {
  tokens: string[];
  /** Character offsets (Unicode code points) into the caller's input; [0, 0] for special tokens. */
  offsets: Array<[number, number]>;
  /** The word each token belongs to (the pre-tokenizer's words); null for special tokens. */
  wordIds: Array<number | null>;
  /** 1 for special tokens ([CLS], [SEP], ...). */
  special: number[];
}

export interface TokenizationOptions {
  maxInputLength: number;
  /** Truncate every input at maxInputLength even when the request does not ask for it. */
  autoTruncate: boolean;
  /** Prompts by name (config_sentence_transformers.json). */
  prompts: ReadonlyMap<string, string>;
  /** Applied when a request names no prompt: the prompt of this name... */
  defaultPromptName?: string;
  /** ...or this literal text. */
  defaultPrompt?: string;
  /**
   * Concurrent tokenizer calls allowed. Default: libuv's thread pool size (UV_THREADPOOL_SIZE, 4),
   * which bounds the binding's async calls anyway, so no extra limiter sits in the way.
   */
  workers?: number;
  /**
   * Rows of the model's token embedding table (config.json vocab_size). Token ids given as input
   * or to decode must be below both this and the tokenizer's vocabulary size.
   */
  vocabSize?: number;
}

export interface EncodeRequest {
  truncate: boolean;
  truncationDirection: TruncationDirection;
  promptName?: string;
  /** Keep each token's text, offsets, word id and special mark (Encoded.spans); text inputs only, no prompt. */
  withOffsets?: boolean;
}

/** A counting semaphore for async work. */
export class Limiter {
  private active = 0;
  private readonly waiters: Array<() => void> = [];
  constructor(readonly limit: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiters.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** Unicode scalar count (TEI counts chars, not UTF-16 units). */
export function countChars(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/** libuv's thread pool, where the binding's async encode/decode run: the real concurrency of tokenization. */
function uvPoolSize(): number {
  const n = Number(process.env.UV_THREADPOOL_SIZE);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 1024) : 4;
}

function rowPrefix(i: number, n: number): string {
  return n > 1 ? `input ${i}: ` : '';
}

/** A failure of input `i` of `n`: the message names the input when there are several, and `index` carries its position (gRPC trailer `teiplex-error-index`). */
function inputError(code: ErrorCode, i: number, n: number, message: string): TeiplexError {
  return new TeiplexError(code, `${rowPrefix(i, n)}${message}`, { index: i });
}

/**
 * The VALIDATION error for the first id of a token-id input (row `i` of `n`) that is not an
 * integer in 0 .. vocabSize - 1, naming the id, its position and the vocabulary size; undefined
 * when every id is in range. Ids past the vocabulary would index outside the model's embedding
 * table (an ONNX Runtime failure on CPU, garbage or a crash on GPU), so they never reach it.
 */
export function tokenIdsError(ids: readonly unknown[], vocabSize: number, i: number, n: number): TeiplexError | undefined {
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      return inputError(
        'VALIDATION',
        i, n, `token id ${String(id)} at position ${t} is not in the model's vocabulary: ids go from 0 to ${vocabSize - 1} (vocabulary size ${vocabSize})`,
      );
    }
  }
  return undefined;
}

export class Tokenization {
  readonly workers: number;
  /** Token ids accepted in inputs and by decode are 0 .. vocabSize - 1. */
  readonly vocabSize: number;
  readonly maxInputLength: number;
  /** The id of the tokenizer model's unknown token (tokenizer.json model.unk_token), when it has one. */
  readonly unkId: number | undefined;
  /** The tokenizer without truncation, and one per truncation direction: each parses tokenizer.json (~40 ms of CPU for MiniLM's), so all but `right` (the warm-up's, and auto-truncate's) are made at first use. */
  private readonly made: { plain?: TkTokenizer; left?: TkTokenizer; right?: TkTokenizer } = {};
  private readonly make: (direction?: TruncationDirection) => TkTokenizer;
  private readonly limiter: Limiter | null;

  private constructor(
    tokenizerPath: string,
    private readonly opts: TokenizationOptions,
  ) {
    this.make = (direction) => {
      const t = Tokenizer.fromFile(tokenizerPath);
      t.disablePadding();
      t.disableTruncation();
      if (direction !== undefined) t.setTruncation(opts.maxInputLength, { direction, strategy: 'LongestFirst' as never });
      return t;
    };
    const right = (this.made.right = this.make('right'));
    this.unkId = unkIdOf(tokenizerPath, right);
    this.maxInputLength = opts.maxInputLength;
    const tokenizerVocab = right.getVocabSize(true);
    this.vocabSize = opts.vocabSize !== undefined && opts.vocabSize > 0 ? Math.min(opts.vocabSize, tokenizerVocab) : tokenizerVocab;
    const pool = uvPoolSize();
    this.workers = Math.max(1, Math.floor(opts.workers ?? pool));
    this.limiter = this.workers < pool ? new Limiter(this.workers) : null;
  }

  private get plain(): TkTokenizer {
    this.made.plain ??= this.make();
    return this.made.plain;
  }

  private truncating(direction: TruncationDirection): TkTokenizer {
    this.made[direction] ??= this.make(direction);
    return this.made[direction];
  }

  private limit<T>(fn: () => Promise<T>): Promise<T> {
    return this.limiter ? this.limiter.run(fn) : fn();
  }

  /** Load tokenizer.json; throws when the file is not a tokenizer. */
  static load(tokenizerPath: string, opts: TokenizationOptions): Tokenization {
    try {
      return new Tokenization(tokenizerPath, opts);
    } catch (err) {
      throw new Error(`cannot load tokenizer ${tokenizerPath}: ${(err as Error).message}`);
    }
  }

  /** The prompt text a request gets: its prompt_name's, else the server's default, else none. */
  promptFor(promptName: string | undefined): string | undefined {
    if (promptName !== undefined && promptName !== '') {
      const prompt = this.opts.prompts.get(promptName);
      if (prompt === undefined) {
        const known = [...this.opts.prompts.keys()];
        throw new TeiplexError(
          'VALIDATION',
          `prompt_name \`${promptName}\` is not a prompt of this model. ${known.length ? `Available prompts: ${known.join(', ')}` : 'The model has no prompts (config_sentence_transformers.json)'}`,
        );
      }
      return prompt;
    }
    if (this.opts.defaultPromptName !== undefined) return this.opts.prompts.get(this.opts.defaultPromptName);
    return this.opts.defaultPrompt;
  }

  /**
   * Encode inputs for the model (special tokens added). Validation (empty input, too long without
   * truncation, unknown prompt, ids out of vocabulary) throws VALIDATION naming the input's row.
   */
  async encode(inputs: ReadonlyArray<TextInput | PairInput>, req: EncodeRequest): Promise<Encoded[]> {
    const truncate = req.truncate || this.opts.autoTruncate;
    const n = inputs.length;
    const explicitPrompt = req.promptName !== undefined && req.promptName !== '';
    // Token classification labels the caller's own text: no prompt (a default one included), so
    // every token and offset is the input's.
    const prompt = req.withOffsets ? undefined : this.promptFor(req.promptName);

    const out: Encoded[] = new Array(n);
    const shifts = new Map<number, number>();
    const texts: Array<string | [string, string]> = [];
    const textRows: number[] = [];
    for (let i = 0; i < n; i++) {
      const input = inputs[i];
      if (typeof input === 'string') {
        if (input.length === 0) throw inputError('VALIDATION', i, n, `\`inputs\` cannot be empty`);
        const text = this.charLimit(input, truncate, req.truncationDirection, i, n);
        // A left cut of a huge input drops its head: offsets then count from the cut.
        if (req.withOffsets && text.length !== input.length) shifts.set(i, countChars(input) - countChars(text));
        texts.push(prompt !== undefined ? prompt + text : text);
        textRows.push(i);
      } else if (req.withOffsets) {
        throw inputError('VALIDATION', i, n, 'input must be a string');
      } else if (Array.isArray(input) && input.length === 2 && typeof input[0] === 'string' && typeof input[1] === 'string') {
        const [a, b] = input as PairInput;
        if (a.length === 0 && b.length === 0) throw inputError('VALIDATION', i, n, `\`inputs\` cannot be empty`);
        if (explicitPrompt) throw inputError('VALIDATION', i, n, `\`prompt_name\` cannot be set with dual inputs`);
        texts.push([this.charLimit(a, truncate, 'right', i, n, 2), this.charLimit(b, truncate, 'right', i, n, 2)]);
        textRows.push(i);
      } else if (Array.isArray(input)) {
        if (explicitPrompt) throw inputError('VALIDATION', i, n, `\`prompt_name\` cannot be used with pre-tokenized (token id) inputs`);
        out[i] = this.encodeIds(input as number[], truncate, req.truncationDirection, i, n);
      } else {
        throw inputError('VALIDATION', i, n, `input must be a string or a list of token ids`);
      }
    }
    if (texts.length === 0) return out;

    const tokenizer = truncate ? this.truncating(req.truncationDirection) : this.plain;
    const { encodings, ns } = await this.limit(async () => {
      const t0 = process.hrtime.bigint();
      let encodings: TkEncoding[];
      try {
        const one = (t: string | [string, string]): Promise<TkEncoding> =>
          typeof t === 'string' ? tokenizer.encode(t, null, {}) : tokenizer.encode(t[0], t[1], {});
        if (texts.length === 1) encodings = [await one(texts[0])];
        else if (texts.every((t) => typeof t === 'string')) encodings = await tokenizer.encodeBatch(texts);
        else encodings = await Promise.all(texts.map(one)); // the binding's encodeBatch takes no pairs
      } catch (err) {
        throw new TeiplexError('TOKENIZER', (err as Error).message);
      }
      return { encodings, ns: process.hrtime.bigint() - t0 };
    });

    for (let k = 0; k < encodings.length; k++) {
      const i = textRows[k];
      const e = encodings[k];
      const ids = e.getIds();
      if (ids.length > this.maxInputLength) {
        throw inputError(
          'VALIDATION',
          i, n, `\`inputs\` must have less than ${this.maxInputLength} tokens. Given: ${ids.length}`,
        );
      }
      if (ids.length === 0) throw inputError('VALIDATION', i, n, `\`inputs\` cannot be empty`);
      const typeIds = e.getTypeIds();
      let anyType = false;
      for (let t = 0; t < typeIds.length; t++) if (typeIds[t] !== 0) {
        anyType = true;
        break;
      }
      const input = inputs[i];
      const chars = typeof input === 'string' ? countChars(input) : countChars((input as PairInput)[0]) + countChars((input as PairInput)[1]);
      out[i] = { ids, typeIds: anyType ? typeIds : null, chars, tokenizationNs: ns };
      if (req.withOffsets) out[i].spans = spansOf(e, ids.length, shifts.get(i) ?? 0);
    }
    return out;
  }

  /**
   * TEI's guard against tokenizing huge strings: more than maxInputLength x 250 characters is
   * VALIDATION, or, when truncating, the string is cut there first (on the side truncation drops).
   */
  private charLimit(s: string, truncate: boolean, direction: TruncationDirection, i: number, n: number, parts = 1): string {
    const limit = Math.floor((this.maxInputLength * MAX_CHAR_MULTIPLIER) / parts);
    if (s.length <= limit) return s; // UTF-16 units >= characters
    const chars = countChars(s);
    if (chars <= limit) return s;
    if (!truncate) {
      throw inputError('VALIDATION', i, n, `\`inputs\` must have less than ${limit * parts} characters. Given: ${chars}`);
    }
    const all = Array.from(s);
    return (direction === 'left' ? all.slice(all.length - limit) : all.slice(0, limit)).join('');
  }

  private encodeIds(ids: number[], truncate: boolean, direction: TruncationDirection, i: number, n: number): Encoded {
    const t0 = process.hrtime.bigint();
    if (ids.length === 0) throw inputError('VALIDATION', i, n, `\`inputs\` cannot be empty`);
    const bad = tokenIdsError(ids, this.vocabSize, i, n);
    if (bad) throw bad;
    let kept = ids;
    if (ids.length > this.maxInputLength) {
      if (!truncate) {
        throw inputError(
          'VALIDATION',
          i, n, `\`inputs\` must have less than ${this.maxInputLength} tokens. Given: ${ids.length}`,
        );
      }
      kept = direction === 'left' ? ids.slice(ids.length - this.maxInputLength) : ids.slice(0, this.maxInputLength);
    } else {
      kept = ids.slice();
    }
    return { ids: kept, typeIds: null, chars: 0, tokenizationNs: process.hrtime.bigint() - t0 };
  }

  /**
   * The Tokenize RPC: the tokens of each input (prompt included, like TEI), no truncation.
   * Special tokens carry their token text and no offsets; others carry the text they cover and its
   * character offsets (Unicode scalars) in the prompted input.
   */
  async tokenize(inputs: readonly string[], addSpecialTokens: boolean, promptName?: string): Promise<SimpleToken[][]> {
    const prompt = this.promptFor(promptName);
    inputs.forEach((s, i) => {
      if (typeof s !== 'string' || s.length === 0) throw inputError('VALIDATION', i, inputs.length, `\`inputs\` cannot be empty`);
    });
    const texts = inputs.map((s) => (prompt !== undefined ? prompt + s : s));
    const encodings = await this.limit(async () => {
      try {
        return await Promise.all(texts.map((t) => this.plain.encode(t, null, { addSpecialTokens })));
      } catch (err) {
        throw new TeiplexError('TOKENIZER', (err as Error).message);
      }
    });
    return encodings.map((e, k) => simpleTokens(e, texts[k]));
  }

  /**
   * Tokens (their strings, as in the vocabulary) joined into text by the tokenizer's decoder, as
   * transformers' convert_tokens_to_string does for a fast tokenizer (WordPiece: `##` pieces
   * glued to the token before); without a decoder, joined with spaces.
   */
  tokensToString(tokens: string[]): string {
    const decoder = this.made.right!.getDecoder();
    return decoder !== null ? decoder.decode(tokens) : tokens.join(' ');
  }

  /** The Decode RPC. */
  async decode(ids: ReadonlyArray<readonly number[]>, skipSpecialTokens: boolean): Promise<string[]> {
    for (let i = 0; i < ids.length; i++) {
      if (ids[i].length === 0) throw inputError('VALIDATION', i, ids.length, `\`input_ids\` cannot be empty`);
      const bad = tokenIdsError(ids[i], this.vocabSize, i, ids.length);
      if (bad) throw bad;
    }
    return this.limit(async () => {
      try {
        return await this.plain.decodeBatch(ids.map((x) => Array.from(x)), skipSpecialTokens);
      } catch (err) {
        throw new TeiplexError('TOKENIZER', (err as Error).message);
      }
    });
  }
}

/** tokenizer.json's model.unk_token as an id; undefined when there is none. */
function unkIdOf(tokenizerPath: string, t: TkTokenizer): number | undefined {
  try {
    const unk = (JSON.parse(readFileSync(tokenizerPath, 'utf8')) as { model?: { unk_token?: unknown } }).model?.unk_token;
    return typeof unk === 'string' ? (t.tokenToId(unk) ?? undefined) : undefined;
  } catch {
    return undefined;
  }
}

/** A token's spans from its encoding; offsets moved by `shift` code points (a left-cut input). */
function spansOf(e: TkEncoding, n: number, shift: number): TokenSpans {
  const special = e.getSpecialTokensMask();
  const offsets = e.getOffsets().map(([a, b], t): [number, number] => (special[t] === 1 ? [0, 0] : [a + shift, b + shift]));
  return { tokens: e.getTokens(), offsets: offsets.slice(0, n), wordIds: e.getWordIds().map((w, t) => (special[t] === 1 || w === undefined ? null : w)), special };
}

/** UTF-16 index of each Unicode scalar offset of `s` (identity when there are no surrogate pairs). */
function scalarToUtf16(s: string): ((offset: number) => number) {
  if (!/[\uD800-\uDFFF]/.test(s)) return (o) => o;
  const map: number[] = [];
  let u = 0;
  for (const ch of s) {
    map.push(u);
    u += ch.length;
  }
  map.push(u);
  return (o) => map[Math.min(o, map.length - 1)];
}

function simpleTokens(e: TkEncoding, text: string): SimpleToken[] {
  const ids = e.getIds();
  const tokens = e.getTokens();
  const offsets = e.getOffsets();
  const special = e.getSpecialTokensMask();
  const toUtf16 = scalarToUtf16(text);
  const out: SimpleToken[] = new Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    if (special[i] === 1) {
      out[i] = { id: ids[i], text: tokens[i], special: true };
    } else {
      const [start, stop] = offsets[i];
      out[i] = { id: ids[i], text: text.slice(toUtf16(start), toUtf16(stop)), special: false, start, stop };
    }
  }
  return out;
}
