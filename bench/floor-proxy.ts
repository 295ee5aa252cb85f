/**
 * The floor: the least a forwarding proxy written on Node's own `node:http2` costs per call, to
 * compare the manager's cost per forwarded call with (issue 12). No routing, no auth, no metrics,
 * no protobuf: each incoming stream is forwarded as it is on one pooled (reused) client session
 * to the upstream (a child's gRPC port):
 *
 *   - request headers, minus the pseudo-headers and the hop-by-hop headers a proxy must not copy
 *     (`:method`/`:path` are set again; `:authority` names the upstream), then the request DATA;
 *   - the response headers (a trailers-only answer, e.g. a gRPC error, ends there), the DATA and
 *     the trailers (`waitForTrailers` / `sendTrailers`);
 *   - a reset on either side resets the other (the client gone: CANCEL to the upstream; the
 *     upstream's RST_STREAM code passed on to the client).
 *
 * It runs as its own process so its CPU can be read from /proc/<pid>/stat:
 *
 *   node --import tsx bench/floor-proxy.ts --upstream 127.0.0.1:PORT [--port 0] [--host 127.0.0.1]
 *
 * and prints one JSON line, `{"msg":"ready","port":N,"pid":N,"upstream":"..."}`, once it listens.
 * SIGTERM / SIGINT close it.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_STATUS, NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_FLAG_END_STREAM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM } =
  http2.constants;

/** Headers a proxy must not forward on either side (RFC 9113 8.2.2, and HTTP/1 hop-by-hop ones). */
export const HOP_HEADERS: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);

/** Copy of `headers` without pseudo-headers and hop-by-hop headers. */
export function forwardable(headers: http2.IncomingHttpHeaders): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || k.startsWith(':') || HOP_HEADERS.has(k)) continue;
    out[k] = v;
  }
  return out;
}

export interface FloorProxy {
  port: number;
  close(): Promise<void>;
}

/** Start the proxy on `host:port` in front of `upstream` (`host:port`). */
export async function startFloorProxy(upstream: string, port = 0, host = '127.0.0.1'): Promise<FloorProxy> {
  const origin = `http://${upstream}`;
  let session: http2.ClientHttp2Session | undefined;
  const upstreamSession = (): http2.ClientHttp2Session => {
    if (session === undefined || session.closed || session.destroyed) {
      const s = http2.connect(origin);
      s.on('error', () => {}); // a failed connection shows up as a failed stream
      s.on('close', () => {
        if (session === s) session = undefined;
      });
      s.on('goaway', () => {
        if (session === s) session = undefined;
      });
      session = s;
    }
    return session;
  };

  const server = http2.createServer();
  server.on('stream', (down, headers) => {
    const reqHeaders = forwardable(headers);
    reqHeaders[HTTP2_HEADER_METHOD] = headers[HTTP2_HEADER_METHOD];
    reqHeaders[HTTP2_HEADER_PATH] = headers[HTTP2_HEADER_PATH];
    let up: http2.ClientHttp2Stream;
    try {
      up = upstreamSession().request(reqHeaders, { endStream: false });
    } catch {
      if (!down.destroyed) down.close(NGHTTP2_REFUSED_STREAM);
      return;
    }
    let trailers: http2.IncomingHttpHeaders | undefined;
    up.on('response', (resHeaders, flags) => {
      if (down.destroyed || down.closed) return;
      const out = forwardable(resHeaders);
      out[HTTP2_HEADER_STATUS] = resHeaders[HTTP2_HEADER_STATUS];
      if ((flags & NGHTTP2_FLAG_END_STREAM) !== 0) {
        down.respond(out, { endStream: true }); // trailers-only (a gRPC error)
        return;
      }
      down.respond(out, { waitForTrailers: true });
      up.pipe(down);
    });
    up.on('trailers', (t) => (trailers = t));
    down.on('wantTrailers', () => {
      // node:http2 ends a reset stream's readable side too: the reset, not an end, is passed on.
      if (up.rstCode !== undefined && up.rstCode !== NGHTTP2_NO_ERROR) down.close(up.rstCode);
      else down.sendTrailers(trailers === undefined ? {} : forwardable(trailers));
    });
    down.pipe(up);
    // Resets both ways: whichever side closes abnormally first closes the other.
    up.on('close', () => {
      if (down.destroyed || down.closed) return;
      if (up.rstCode !== undefined && up.rstCode !== NGHTTP2_NO_ERROR) down.close(up.rstCode);
      else if (!down.headersSent) down.close(NGHTTP2_INTERNAL_ERROR); // ended without an answer
    });
    up.on('error', () => {});
    down.on('error', () => {});
    down.on('close', () => {
      if (!up.closed && !up.destroyed && !up.readableEnded) up.close(down.rstCode !== undefined && down.rstCode !== NGHTTP2_NO_ERROR ? down.rstCode : NGHTTP2_CANCEL);
    });
  });
  server.on('sessionError', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      session?.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { upstream: { type: 'string' }, port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' } },
    strict: true,
  });
  if (values.upstream === undefined) {
    process.stderr.write('usage: floor-proxy.ts --upstream HOST:PORT [--port 0] [--host 127.0.0.1]\n');
    process.exit(2);
  }
  const proxy = await startFloorProxy(values.upstream, Number(values.port), values.host);
  process.stdout.write(`${JSON.stringify({ msg: 'ready', port: proxy.port, pid: process.pid, upstream: values.upstream })}\n`);
  const stop = (): void => {
    void proxy.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`floor-proxy failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
