/**
 * The soak's mixed traffic: closed-loop workers, each sending one kind of request to a random
 * target (a static instance by name, or the catalog model, which cold-starts whenever its idle
 * timeout has stopped it), with a deadline on every request:
 *
 *   grpc-unary   TeiMultiplexer/Embed, one text
 *   grpc-stream  TeiMultiplexer/EmbedStream, STREAM_MESSAGES texts, one message each
 *   grpc-arrow   TeiMultiplexer/EmbedArrow, ARROW_ROWS rows (LZ4_FRAME)
 *   http-openai  POST /v1/embeddings, HTTP_INPUTS inputs
 *   http-embed   POST /embed (TEI), HTTP_INPUTS inputs
 *
 * Every answer is checked (one result per input: else `wrong`). gRPC clients reconnect by
 * themselves when the manager comes back (reconnect back-off capped at 1 s, so a restart is seen
 * within a second). A worker pauses ERROR_PAUSE_MS after an error (no hot loop while the manager
 * is down) and THINK_MS after an answer.
 */
import * as grpc from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeDense, encodeTexts } from '../../src/arrow/embedding-batch.js';
import { benchServiceDefinition, bidiCall, MUX_SERVICE, unaryCall, type AnyClient } from '../../src/bench/grpc-client.js';
import { errorCode, httpCall } from './http-call.js';
import type { Recorder, Result } from './recorder.js';

export const KINDS = ['grpc-unary', 'grpc-stream', 'grpc-arrow', 'http-openai', 'http-embed'] as const;
export type Kind = (typeof KINDS)[number];

const STREAM_MESSAGES = 8;
const ARROW_ROWS = 32;
const HTTP_INPUTS = 4;
const THINK_MS = 20;
const ERROR_PAUSE_MS = 250;

export interface Target {
  /** What a request names: an instance name, or the catalog model's name. */
  name: string;
  catalog: boolean;
}

export interface TrafficOptions {
  grpcAddress: string;
  httpBase: string;
  targets: Target[];
  texts: string[];
  /** Every request's deadline (ms). */
  deadlineMs: number;
  /** How long past the deadline a request may stay unsettled before it counts as never answered. */
  marginMs: number;
  /** Workers per kind. */
  perKind: number;
}

interface Settled {
  result: Result;
  code?: string;
}

class BadAnswer extends Error {}

function expectRows(what: string, got: number, want: number): void {
  if (got !== want) throw new BadAnswer(`${what}: ${got} results for ${want} inputs`);
}

/** A gRPC failure as the soak counts it; DEADLINE_EXCEEDED at the deadline means nothing answered in time. */
function grpcSettled(err: unknown, ms: number, deadlineMs: number): Settled {
  if (err instanceof BadAnswer) return { result: 'wrong', code: 'BAD_RESPONSE' };
  const e = err as grpc.ServiceError;
  if (typeof e.code !== 'number') return { result: 'error', code: `client:${(err as Error).message.slice(0, 60)}` };
  const name = grpc.status[e.code] ?? String(e.code);
  if (e.code === grpc.status.DEADLINE_EXCEEDED && ms >= deadlineMs - 1000) return { result: 'never', code: `grpc:${name}` };
  return { result: 'error', code: `grpc:${name}` };
}

function targetMessage(t: Target): Record<string, string> {
  return t.catalog ? { model_id: t.name } : { instance_name: t.name };
}

export class Traffic {
  private stopped = false;
  private readonly client: AnyClient;
  private readonly workers: Array<Promise<void>> = [];
  private seq = 0;

  constructor(
    private readonly o: TrafficOptions,
    private readonly rec: Recorder,
  ) {
    const Ctor = grpc.makeClientConstructor(benchServiceDefinition(MUX_SERVICE), MUX_SERVICE);
    this.client = new Ctor(o.grpcAddress, grpc.credentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 1000,
    }) as AnyClient;
  }

  start(): void {
    for (const kind of KINDS) for (let i = 0; i < this.o.perKind; i++) this.workers.push(this.loop(kind));
  }

  /** Stop starting requests; resolves when every request in flight has settled or been counted as never answered. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.workers);
    this.client.close();
  }

  private texts(n: number): string[] {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(this.o.texts[this.seq++ % this.o.texts.length]!);
    return out;
  }

  private async loop(kind: Kind): Promise<void> {
    while (!this.stopped) {
      const target = this.o.targets[Math.floor(Math.random() * this.o.targets.length)]!;
      const t0 = performance.now();
      const phase = this.rec.phaseToken();
      let watchdog: NodeJS.Timeout | undefined;
      const limit = new Promise<Settled>((resolve) => {
        watchdog = setTimeout(() => resolve({ result: 'never', code: 'no-answer' }), this.o.deadlineMs + this.o.marginMs);
      });
      const s = await Promise.race([this.send(kind, target, t0), limit]);
      clearTimeout(watchdog);
      this.rec.outcome({ phase: this.rec.phaseOf(phase), kind, target: target.name, result: s.result, code: s.code, ms: performance.now() - t0 });
      await sleep(s.result === 'ok' ? THINK_MS : ERROR_PAUSE_MS);
    }
  }

  private async send(kind: Kind, target: Target, t0: number): Promise<Settled> {
    const deadline = Date.now() + this.o.deadlineMs;
    const md = new grpc.Metadata();
    try {
      switch (kind) {
        case 'grpc-unary': {
          const res = await unaryCall<{ embeddings?: number[] }>(this.client, 'Embed', { target: targetMessage(target), request: { inputs: this.texts(1)[0], truncate: true } }, md, { deadline });
          expectRows('Embed', res.embeddings !== undefined && res.embeddings.length > 0 ? 1 : 0, 1);
          return { result: 'ok' };
        }
        case 'grpc-stream': {
          const msgs = this.texts(STREAM_MESSAGES).map((t) => ({ target: targetMessage(target), request: { inputs: t, truncate: true } }));
          expectRows('EmbedStream', await bidiCall(this.client, 'EmbedStream', msgs, md, { deadline }), msgs.length);
          return { result: 'ok' };
        }
        case 'grpc-arrow': {
          const arrow_ipc = Buffer.from(encodeTexts(this.texts(ARROW_ROWS), { compress: true }));
          const res = await unaryCall<{ arrow_ipc?: Buffer }>(this.client, 'EmbedArrow', { target: targetMessage(target), arrow_ipc, truncate: true }, md, { deadline });
          let rows: number;
          try {
            rows = decodeDense(res.arrow_ipc ?? Buffer.alloc(0)).rows;
          } catch (err) {
            throw new BadAnswer(`EmbedArrow: ${(err as Error).message}`);
          }
          expectRows('EmbedArrow', rows, ARROW_ROWS);
          return { result: 'ok' };
        }
        case 'http-openai':
        case 'http-embed': {
          const inputs = this.texts(HTTP_INPUTS);
          const [path, body] = kind === 'http-openai' ? ['/v1/embeddings', { model: target.name, input: inputs }] : ['/embed', { model: target.name, inputs, truncate: true }];
          const r = await httpCall(this.o.httpBase, 'POST', path, body, this.o.deadlineMs);
          if (r.kind === 'timeout') return { result: 'never', code: 'http:timeout' };
          if (r.kind === 'failed') return { result: 'error', code: `transport:${r.code}` };
          if (r.status >= 400) return { result: 'error', code: `http:${r.status}:${errorCode(r.body) ?? '?'}` };
          const rows = kind === 'http-openai' ? (r.body as { data?: unknown[] })?.data : r.body;
          if (!Array.isArray(rows) || rows.length !== inputs.length) return { result: 'wrong', code: 'BAD_RESPONSE' };
          return { result: 'ok' };
        }
      }
    } catch (err) {
      return grpcSettled(err, performance.now() - t0, this.o.deadlineMs);
    }
  }
}
