/**
 * TeiMultiplexer/EmbedTyped (a teiplex RPC): dense embeddings of many texts in any output type
 * (the output matrix, src/tei/embedding-output.ts), with prompts by `input_type`
 * (src/tei/input-types.ts) and through the manager's embedding cache and dedup
 * (src/routing/cached-engine.ts), as the HTTP data plane's /embed does. The target resolves like
 * any call (the API key's decision, a cold start); the child call runs under
 * min(client's deadline, grpc_request_timeout_secs) and is cancelled with the client's call.
 * Response metadata: `teiplex-instance`, `teiplex-cache: hits=N misses=M`, and for an asymmetric
 * model called without a type `teiplex-warning`.
 */
import { laneOf, PRIORITY_HEADER, type Lane } from '../child/lane.js';
import * as grpc from '@grpc/grpc-js';
import { grantOf } from '../auth/grpc-auth.js';
import { modelPrompts } from '../child/model-prompts.js';
import { TeiplexError } from '../common/errors.js';
import { CachedEngine, cacheHeader } from '../routing/cached-engine.js';
import type { EmbeddingCache } from '../routing/embedding-cache.js';
import { typedRows } from '../tei/embedding-output.js';
import { type OutputType, parseEmbeddingType, rowBytes } from '../tei/embedding-types.js';
import { toServiceError } from '../tei/grpc-status.js';
import { applyInputType, type InputType, parseInputType } from '../tei/input-types.js';
import { tokenCount } from '../tei/metadata.js';
import type { EncodeOptions } from '../tei/types.js';
import { CACHE_TRAILER, WARNING_METADATA } from './arrow-service.js';
import { callWaiter, deadlineMs, noWaitOf, relayMetadata, type Forwarder, type Leg } from './forward.js';
import { type PbTarget, toTarget } from './protos.js';

const METHOD = 'EmbedTyped';

interface EmbedTypedRequest {
  target?: PbTarget | null;
  inputs?: string[];
  truncate?: boolean;
  normalize?: boolean;
  dimensions?: number;
  embedding_type?: string;
  input_type?: string;
  prompt_name?: string;
}

interface EmbedTypedResponse {
  embedding_type: string;
  dimensions: number;
  embeddings: Buffer[];
  prompt_tokens: number;
}

export function embedTypedHandler(f: Forwarder, cache: EmbeddingCache): grpc.handleUnaryCall<EmbedTypedRequest, EmbedTypedResponse> {
  return (call, callback) => {
    const started = performance.now();
    const req = call.request;
    let leg: Leg | undefined;
    let done = false;
    const fail = (err: unknown): void => {
      if (done) return;
      done = true;
      const e = toServiceError(err);
      if (leg !== undefined) e.metadata = relayMetadata(e.metadata, leg.instance.name);
      f.close(METHOD, leg, e.code ?? grpc.status.INTERNAL, started);
      callback(e);
    };
    let parsed: { target: ReturnType<typeof toTarget>; type: OutputType; inputType: InputType | undefined; inputs: string[]; lane: Lane };
    try {
      const inputs = req.inputs ?? [];
      if (inputs.length === 0) throw new TeiplexError('EMPTY', '`inputs` cannot be empty');
      const lane = laneOf(call.metadata.get(PRIORITY_HEADER), grantOf(req)?.priority ?? 'interactive');
      parsed = { target: toTarget(req.target), type: parseEmbeddingType(req.embedding_type), inputType: parseInputType(req.input_type), inputs, lane };
    } catch (err) {
      fail(err);
      return;
    }
    const ac = new AbortController();
    call.on('cancelled', () => {
      ac.abort();
      if (!done) {
        done = true;
        f.close(METHOD, leg, grpc.status.CANCELLED, started);
      }
    });
    const callOpts = { deadlineMs: Math.min(Date.now() + f.timeoutMs, deadlineMs(call.getDeadline())), signal: ac.signal, lane: parsed.lane };
    Promise.resolve()
      .then(() => f.open(parsed.target, noWaitOf(call.metadata), grantOf(req), () => callWaiter(call, parsed.inputs.reduce((n, t) => n + t.length, 0))))
      .then(async (l) => {
        leg = l;
        const spec = l.instance.spec;
        const engine = new CachedEngine(l.client, spec, cache, spec.embedding_cache !== false);
        const base: EncodeOptions = { truncate: req.truncate === true, truncationDirection: 'right', ...(req.prompt_name ? { promptName: req.prompt_name } : {}) };
        const prompted = applyInputType(parsed.inputs, base, parsed.inputType, modelPrompts(spec), spec.model_id);
        const opts = { ...prompted.e, normalize: req.normalize ?? true, ...(req.dimensions ? { dimensions: req.dimensions } : {}) };
        const out = await engine.embed(prompted.inputs, opts, callOpts);
        const rows = await typedRows(engine, out.results, parsed.type, opts, callOpts);
        if (done) return;
        done = true;
        const md = relayMetadata(undefined, l.instance.name);
        md.set(CACHE_TRAILER, cacheHeader(engine.stats));
        if (prompted.warning !== undefined) md.set(WARNING_METADATA, prompted.warning);
        f.close(METHOD, l, grpc.status.OK, started);
        call.sendMetadata(md);
        callback(
          null,
          { embedding_type: parsed.type, dimensions: out.results[0]?.length ?? 0, embeddings: rows.map((r) => rowBytes(r)), prompt_tokens: tokenCount(out.metadata) },
          md.clone(),
        );
      })
      .catch(fail);
  };
}
