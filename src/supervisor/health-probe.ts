/**
 * Asks a child whether it is ready: `grpc.health.v1.Health/Check` for the overall service; a
 * child without the health service (UNIMPLEMENTED) is asked `tei.v1.Info/Info` instead, and that
 * is remembered. Both go over one ChildChannel (src/child/child-channel.ts: one HTTP/2 connection,
 * the same client the multiplexer and the data plane use), reused across probes.
 */
import * as grpc from '@grpc/grpc-js';
import { asTeiplexError, TeiplexError } from '../common/errors.js';
import { CallScope } from '../child/call-scope.js';
import { ChildChannel, statusObject } from '../child/child-channel.js';
import { childStatusOf } from '../child/child-status.js';
import { decodeAnswer, HEALTH, TEI, type ChildMethod } from '../child/codec.js';

export type ProbeResult = { ok: true } | { ok: false; reason: string };

/** Probes are tiny: a small message limit; each has its own timeout, so keepalive hardly matters. */
const PROBE_CHANNEL = { maxMessageBytes: 1024 * 1024, keepaliveMs: 30_000, keepaliveTimeoutMs: 10_000 };

type Answer<Res> = { ok: true; res: Res } | { ok: false; status: grpc.StatusObject };

export class HealthProbe {
  private readonly channel: ChildChannel;
  private useInfo = false;

  constructor(readonly port: number) {
    this.channel = new ChildChannel(port, PROBE_CHANNEL);
  }

  /** One unary call through a CallScope (the one unary call over a ChildChannel); a failure as its gRPC status. */
  private async call<Req, Res>(m: ChildMethod<Req, Res>, req: Req, timeoutMs: number): Promise<Answer<Res>> {
    const scope = new CallScope(Date.now() + timeoutMs, () => new TeiplexError('REQUEST_TIMEOUT', 'Deadline exceeded'));
    try {
      const who = `the child on port ${this.port}`;
      return { ok: true, res: decodeAnswer(m, await scope.unary(this.channel, m.path, m.encode(req), who), who) };
    } catch (err) {
      // The child's own status as it came; anything else (no answer in time, no message, an answer
      // that does not decode) as the status its error code means.
      const e = asTeiplexError(err);
      return { ok: false, status: childStatusOf(err) ?? statusObject(e.grpcStatus, e.message) };
    } finally {
      scope.finish();
    }
  }

  /** One probe, answered within `timeoutMs`. */
  async check(timeoutMs: number): Promise<ProbeResult> {
    if (!this.useInfo) {
      const a = await this.call(HEALTH.Check, { service: '' }, timeoutMs);
      if (a.ok) return a.res.status === 'SERVING' ? { ok: true } : { ok: false, reason: `health ${a.res.status || 'UNKNOWN'}` };
      if (a.status.code !== grpc.status.UNIMPLEMENTED) return { ok: false, reason: `health check: ${grpc.status[a.status.code]} ${a.status.details}` };
      this.useInfo = true;
    }
    const a = await this.call(TEI.Info, {}, timeoutMs);
    return a.ok ? { ok: true } : { ok: false, reason: `Info: ${grpc.status[a.status.code]} ${a.status.details}` };
  }

  close(): void {
    this.channel.close();
  }
}
