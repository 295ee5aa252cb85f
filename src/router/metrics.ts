/**
 * The router's Prometheus metrics, with text-embeddings-router's names (te_*), and `withMetrics`,
 * a decorator that records every Engine call so each front end (tei.v1 gRPC, teiplex.v1, HTTP)
 * gets metrics without knowing about them.
 *
 * - te_request_count{method} / te_request_success{method} / te_request_failure{err}: counters.
 *   `method` is the Engine call (embed, embed_sparse, embed_all, predict, rerank, tokenize,
 *   decode); `err` is TEI's error kind (validation, tokenizer, empty, overloaded, model_type,
 *   unhealthy, backend, batch_size, ...).
 * - te_request_duration, te_request_tokenization_duration, te_request_queue_duration,
 *   te_request_inference_duration: histograms in seconds, per request (per-input times averaged,
 *   as TEI does for batches), TEI's geometric buckets.
 * - te_request_input_length: histogram of tokens per input; te_request_inputs: inputs per request.
 * - teiplex_inputs_in_flight: inputs admitted and not yet answered (through this decorator).
 * - teiplex_batches_total, teiplex_batch_items_total, teiplex_batch_padded_tokens_total,
 *   teiplex_batch_real_tokens_total: the batching queue's own counts, read at scrape time.
 * - Node process metrics (process_*, nodejs_*) from prom-client.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { asTeiplexError, ERROR_CODES, type ErrorCode } from '../common/errors.js';
import type { RouterEngine } from './engine.js';
import type { Batched, Metadata } from '../tei/types.js';
import { aggregateMetadata } from '../tei/metadata.js';

/** TEI's duration buckets: 35 steps of x1.5 from 15 us. */
function durationBuckets(): number[] {
  const out: number[] = [];
  let v = 0.00001;
  for (let i = 0; i < 35; i++) {
    v *= 1.5;
    out.push(v);
  }
  return out;
}

const powersOfTwo = (n: number): number[] => Array.from({ length: n }, (_, i) => 2 ** i);

/** The `err` label for an error code: TEI's error type, except where TEI's label differs. */
const ERR_LABEL: Partial<Record<ErrorCode, string>> = { WRONG_MODEL_TYPE: 'model_type' };
const errLabel = (code: ErrorCode): string => ERR_LABEL[code] ?? ERROR_CODES[code].teiType;

export interface MetricsOptions {
  /** Add prom-client's process/Node.js metrics (default true). */
  processMetrics?: boolean;
  /** Highest input-length bucket (default 2^19, trimmed to the model's max input length by TEI). */
  maxInputLength?: number;
}

export class RouterMetrics {
  readonly registry = new Registry();
  readonly requestCount: Counter<'method'>;
  readonly requestSuccess: Counter<'method'>;
  readonly requestFailure: Counter<'err'>;
  readonly requestDuration: Histogram;
  readonly tokenizationDuration: Histogram;
  readonly queueDuration: Histogram;
  readonly inferenceDuration: Histogram;
  readonly inputLength: Histogram;
  readonly requestInputs: Histogram;
  readonly inFlight: Gauge;
  /** The teiplex_inputs_in_flight value, readable synchronously. */
  inputsInFlight = 0;
  private engine: RouterEngine | null = null;

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    const buckets = durationBuckets();
    this.requestCount = new Counter({ name: 'te_request_count', help: 'Requests received, by Engine method', labelNames: ['method'], registers });
    this.requestSuccess = new Counter({ name: 'te_request_success', help: 'Requests answered successfully, by Engine method', labelNames: ['method'], registers });
    this.requestFailure = new Counter({ name: 'te_request_failure', help: 'Requests failed, by error kind', labelNames: ['err'], registers });
    this.requestDuration = new Histogram({ name: 'te_request_duration', help: 'Request duration in seconds', buckets, registers });
    this.tokenizationDuration = new Histogram({ name: 'te_request_tokenization_duration', help: 'Tokenization time per request in seconds (mean over its inputs)', buckets, registers });
    this.queueDuration = new Histogram({ name: 'te_request_queue_duration', help: 'Time waiting for a batch per request in seconds (mean over its inputs)', buckets, registers });
    this.inferenceDuration = new Histogram({ name: 'te_request_inference_duration', help: 'Model time per request in seconds (mean over its inputs)', buckets, registers });
    const maxLen = opts.maxInputLength ?? 2 ** 19;
    this.inputLength = new Histogram({
      name: 'te_request_input_length',
      help: 'Tokens per input',
      buckets: powersOfTwo(20).filter((b) => b <= Math.max(1, maxLen)),
      registers,
    });
    this.requestInputs = new Histogram({ name: 'te_request_inputs', help: 'Inputs per request', buckets: powersOfTwo(13), registers });
    this.inFlight = new Gauge({ name: 'teiplex_inputs_in_flight', help: 'Inputs admitted and not yet answered', registers });

    // Counters read from the queue at scrape time: reset, then set to the running total.
    const stats = (): RouterEngine['queueStats'] | undefined => this.engine?.queueStats;
    const stat = (key: keyof RouterEngine['queueStats']) =>
      function (this: Counter) {
        this.reset();
        const s = stats();
        if (s) this.inc(s[key]);
      };
    new Counter({ name: 'teiplex_batches_total', help: 'Model batches run', registers, collect: stat('batches') });
    new Counter({ name: 'teiplex_batch_items_total', help: 'Inputs run in model batches', registers, collect: stat('items') });
    new Counter({ name: 'teiplex_batch_padded_tokens_total', help: 'Padded tokens computed (longest x count per batch)', registers, collect: stat('paddedTokens') });
    new Counter({ name: 'teiplex_batch_real_tokens_total', help: "Inputs' own tokens computed", registers, collect: stat('realTokens') });

    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** The engine whose queue counts the teiplex_batch_* metrics report. */
  observeEngine(engine: RouterEngine): void {
    this.engine = engine;
  }

  /** Count a failure decided outside the Engine (e.g. a front end's batch size check). */
  recordFailure(err: string): void {
    this.requestFailure.inc({ err });
  }

  /** The `err` label for a thrown value. */
  static errLabel(err: unknown): string {
    return errLabel(asTeiplexError(err).code);
  }

  /** Prometheus text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Record per-input Metadata; `lengths` false for an aggregate (rerank's one Metadata for all pairs). */
  recordMetadata(metadata: readonly Metadata[], lengths = true): void {
    if (metadata.length === 0) return;
    if (lengths) for (const m of metadata) this.inputLength.observe(m.computeTokens);
    const mean = aggregateMetadata(metadata);
    this.tokenizationDuration.observe(Number(mean.tokenizationTimeNs) / 1e9);
    this.queueDuration.observe(Number(mean.queueTimeNs) / 1e9);
    this.inferenceDuration.observe(Number(mean.inferenceTimeNs) / 1e9);
  }
}

/**
 * An Engine that records every call in `metrics` and otherwise behaves exactly like `engine`
 * (same results, same errors, same `model`/`info`/`queueStats`).
 */
export function withMetrics(engine: RouterEngine, metrics: RouterMetrics): RouterEngine {
  metrics.observeEngine(engine);

  async function timed<T>(method: string, inputs: number, call: () => Promise<T>, meta: (r: T) => readonly Metadata[], lengths = true): Promise<T> {
    const start = process.hrtime.bigint();
    metrics.requestCount.inc({ method });
    metrics.inFlight.inc(inputs);
    metrics.inputsInFlight += inputs;
    try {
      const result = await call();
      metrics.requestSuccess.inc({ method });
      metrics.requestInputs.observe(inputs);
      metrics.recordMetadata(meta(result), lengths);
      metrics.requestDuration.observe(Number(process.hrtime.bigint() - start) / 1e9);
      return result;
    } catch (err) {
      metrics.requestFailure.inc({ err: RouterMetrics.errLabel(err) });
      throw err;
    } finally {
      metrics.inFlight.dec(inputs);
      metrics.inputsInFlight -= inputs;
    }
  }
  const batched = <T>(r: Batched<T>): readonly Metadata[] => r.metadata;
  const none = (): readonly Metadata[] => [];

  return {
    get model() {
      return engine.model;
    },
    get info() {
      return engine.info;
    },
    get queueStats() {
      return engine.queueStats;
    },
    get batchOverheadTokens() {
      return engine.batchOverheadTokens;
    },
    whenCapacity: (inputs) => engine.whenCapacity(inputs),
    embed: (inputs, opts) => timed('embed', inputs.length, () => engine.embed(inputs, opts), batched),
    embedSparse: (inputs, opts) => timed('embed_sparse', inputs.length, () => engine.embedSparse(inputs, opts), batched),
    embedAll: (inputs, opts) => timed('embed_all', inputs.length, () => engine.embedAll(inputs, opts), batched),
    predict: (inputs, opts) => timed('predict', inputs.length, () => engine.predict(inputs, opts), batched),
    predictTokens: (inputs, opts) => timed('predict_tokens', inputs.length, () => engine.predictTokens(inputs, opts), batched),
    rerank: (query, texts, opts) => timed('rerank', texts.length, () => engine.rerank(query, texts, opts), (r) => [r.metadata], false),
    tokenize: (inputs, add, prompt) => timed('tokenize', inputs.length, () => engine.tokenize(inputs, add, prompt), none),
    decode: (ids, skip) => timed('decode', ids.length, () => engine.decode(ids, skip), none),
    close: () => engine.close(),
  };
}
