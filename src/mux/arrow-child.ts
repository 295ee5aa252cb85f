/**
 * What the Arrow RPCs know about one child, learned once per child (per channel, which is rebuilt
 * for every spawnGeneration or port, so a restarted child is asked again):
 *
 * - whether it serves `teiplex.v1.Batch` (a `teiplex router` does, a real TEI does not): unknown
 *   until a Batch call is answered; UNIMPLEMENTED means no, any other answer from the child
 *   means yes;
 * - its `max_concurrent_requests` (tei.v1.Info), which bounds the inputs of one Batch call and,
 *   as an input budget shared by every Arrow call to that child, how many inputs the multiplexer
 *   has in Batch calls to it at once (the child refuses more as overloaded);
 * - its embedding dimension (dense, and per token), learned from any answer or from a probe of
 *   one short text, for `noop` and empty requests, which do not otherwise call the child.
 */
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition, type PbEmbedAllResponse, type PbEmbedResponse, type PbInfoResponse } from '../tei/proto.js';
import { ChildStatusError, type ArrowCall } from './arrow-call.js';
import { Budget } from './arrow-budget.js';
import type { ChildChannel } from '../child/child-channel.js';

/** TEI's default max_concurrent_requests, for a child whose Info does not say. */
export const DEFAULT_MAX_CONCURRENT = 512;

const PROBE_TEXT = 'dimension probe';

const info = serviceDefinition('tei.v1.Info').Info!;
const embed = serviceDefinition('tei.v1.Embed');

export type BatchSupport = 'unknown' | 'yes' | 'no';

export class ArrowChild {
  batch: BatchSupport = 'unknown';
  denseDim: number | undefined;
  tokenDim: number | undefined;
  private budget: Promise<Budget> | undefined;

  constructor(readonly channel: ChildChannel) {}

  /**
   * The child's input budget, from its Info: asked once, by the first call that needs it; asked
   * again if that failed. A call waiting on another call's Info that was cut short (that call's
   * client went away) asks itself; a status from the child fails every call waiting.
   */
  async inputBudget(call: ArrowCall): Promise<Budget> {
    for (;;) {
      this.budget ??= call.unary(this.channel, '/tei.v1.Info/Info', Buffer.alloc(0)).then(
        (bytes) => {
          let res: PbInfoResponse;
          try {
            res = info.responseDeserialize(bytes) as PbInfoResponse;
          } catch (err) {
            throw new ChildStatusError({ code: grpc.status.INTERNAL, details: `the child's Info answer is not a tei.v1.InfoResponse: ${(err as Error).message}`, metadata: new grpc.Metadata() });
          }
          return new Budget(res.max_concurrent_requests > 0 ? res.max_concurrent_requests : DEFAULT_MAX_CONCURRENT);
        },
        (err: unknown) => {
          this.budget = undefined;
          throw err;
        },
      );
      try {
        return await this.budget;
      } catch (err) {
        call.check();
        if (err instanceof ChildStatusError) throw err;
      }
    }
  }

  /** The dense embedding dimension: known, or from one probe (tei.v1.Embed/Embed of a short text). */
  async dense(call: ArrowCall): Promise<number> {
    if (this.denseDim !== undefined) return this.denseDim;
    const req = embed.Embed!.requestSerialize({ inputs: PROBE_TEXT, truncate: true });
    const res = embed.Embed!.responseDeserialize(await call.unary(this.channel, '/tei.v1.Embed/Embed', req)) as PbEmbedResponse;
    this.denseDim = res.embeddings.length;
    return this.denseDim;
  }

  /** The per-token dimension: known, or from one probe (tei.v1.Embed/EmbedAll of a short text). */
  async token(call: ArrowCall): Promise<number> {
    if (this.tokenDim !== undefined) return this.tokenDim;
    const req = embed.EmbedAll!.requestSerialize({ inputs: PROBE_TEXT, truncate: true });
    const res = embed.EmbedAll!.responseDeserialize(await call.unary(this.channel, '/tei.v1.Embed/EmbedAll', req)) as PbEmbedAllResponse;
    this.tokenDim = res.token_embeddings[0]?.embeddings.length ?? 0;
    return this.tokenDim;
  }
}

/** One ArrowChild per channel, forgotten with the channel. */
export class ArrowChildren {
  private readonly known = new WeakMap<ChildChannel, ArrowChild>();

  get(channel: ChildChannel): ArrowChild {
    let c = this.known.get(channel);
    if (c === undefined) {
      c = new ArrowChild(channel);
      this.known.set(channel, c);
    }
    return c;
  }
}
