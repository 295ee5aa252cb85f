/**
 * The multiplexer's calls in flight, and the switch that refuses new ones during shutdown. Every
 * HTTP/2 stream on the multiplexer's port passes here first (unary-front.ts's dispatcher), so one
 * count covers the forwarded unary RPCs, the forwarded streams, the Arrow RPCs and ListInstances
 * alike. grpc.health.v1 and server reflection are not counted and never refused: health must
 * answer NOT_SERVING for the whole shutdown window (a Kubernetes probe, a load balancer), and a
 * health Watch stream is not work that shutdown waits for.
 *
 * Once `close` is called a new call is answered at once, trailers-only, UNAVAILABLE with
 * `teiplex-error-code: UNHEALTHY` ("the manager is shutting down", retry-after), the code the
 * HTTP data plane answers 503 with; calls already open (an open bidirectional stream included)
 * go on until they end or the window runs out.
 */
import http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';
import { HEALTH_SERVICE, REFLECTION_SERVICES } from '../auth/grpc-auth.js';
import { TeiplexError } from '../common/errors.js';
import { toGrpcStatus } from '../tei/grpc-status.js';

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP_STATUS_OK, NGHTTP2_NO_ERROR } = http2.constants;

const UNTRACKED = [HEALTH_SERVICE, ...REFLECTION_SERVICES].map((s) => `/${s}/`);

export class CallGate {
  private active = 0;
  private closing = false;
  private idle: (() => void) | undefined;

  /** Calls in flight (health and reflection not counted). */
  get inFlight(): number {
    return this.active;
  }

  /**
   * A new stream for `path`: false when it may go on (and it is counted until it closes); true
   * when it was refused (shutting down) and answered here.
   */
  refuse(path: string | undefined, stream: http2.ServerHttp2Stream): boolean {
    if (path !== undefined && UNTRACKED.some((p) => path.startsWith(p))) return false;
    if (this.closing) {
      answerShuttingDown(stream);
      return true;
    }
    this.active++;
    stream.once('close', () => {
      if (--this.active === 0) this.idle?.();
    });
    return false;
  }

  /** Refuse new calls from now on; resolves when none is in flight, or after `graceMs`. True: all finished. */
  close(graceMs: number): Promise<boolean> {
    this.closing = true;
    if (this.active === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), graceMs);
      this.idle = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }
}

function answerShuttingDown(stream: http2.ServerHttp2Stream): void {
  stream.on('error', () => undefined);
  if (stream.destroyed || stream.closed) return;
  const s = toGrpcStatus(new TeiplexError('UNHEALTHY', 'the manager is shutting down'));
  const trailers: http2.OutgoingHttpHeaders = {
    ...s.metadata.toHttp2Headers(),
    [HTTP2_HEADER_STATUS]: HTTP_STATUS_OK,
    [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc+proto',
    'grpc-status': String(s.code),
    'grpc-message': encodeURI(s.details),
  };
  stream.respond(trailers, { endStream: true });
  if (stream.readableEnded) return;
  // The request's body is not read: the stream is told to stop (RST_STREAM NO_ERROR after the answer).
  stream.resume();
  stream.close(NGHTTP2_NO_ERROR);
}

/**
 * Closes the server and cuts every connection it still has. grpc-js's own `forceShutdown` destroys
 * only the sessions it tracks for channelz, none when channelz is off (as here): a client's
 * connection, and any call left on it, would keep the process alive. The sessions are taken
 * from the same private map the unary front uses (a version without it fails loudly there first).
 */
export function closeAndCut(server: grpc.Server): void {
  const servers = (server as unknown as { http2Servers?: Map<unknown, { sessions?: Set<http2.ServerHttp2Session> }> }).http2Servers;
  const sessions = [...(servers?.values() ?? [])].flatMap((entry) => [...(entry.sessions ?? [])]);
  server.forceShutdown();
  for (const session of sessions) if (!session.destroyed) session.destroy();
}
