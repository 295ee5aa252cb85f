/**
 * Bounds on how long one HTTP client may hold a connection (the admin API's listener and the data
 * plane's own alike), so a slow or silent client cannot keep sockets and request state forever:
 *
 * - `http_request_timeout_secs`: the request's headers and its whole body must have arrived within
 *   this (Node's headersTimeout and requestTimeout): else 408 and the connection is closed. A client
 *   that connects and sends nothing, or trickles its body, is cut off.
 * - `http_keep_alive_timeout_secs`: an idle keep-alive connection is closed.
 * - `http_send_timeout_secs`: once an answer is being sent, a client that reads nothing for this
 *   long is disconnected (the answer is abandoned).
 * - 401, 403 and 413 answers carry `Connection: close` and the socket is ended after them: a
 *   refused client does not keep its connection (nor its unread body) open.
 *
 * There is no socket inactivity timeout while a request is handled: waiting for a cold start
 * (cold_start_timeout_secs) or a child (grpc_request_timeout_secs) is legitimately silent.
 */
import type { ServerOptions } from 'node:https';
import type { FastifyInstance } from 'fastify';
import { DEFAULTS, type Config } from '../config/config.js';

export interface ConnectionLimits {
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  sendTimeoutMs: number;
}

export type ConnectionLimitKeys = 'http_request_timeout_secs' | 'http_keep_alive_timeout_secs' | 'http_send_timeout_secs';

export function connectionLimits(c: Pick<Config, ConnectionLimitKeys> = DEFAULTS): ConnectionLimits {
  return {
    requestTimeoutMs: Math.ceil(c.http_request_timeout_secs * 1000),
    keepAliveTimeoutMs: Math.ceil(c.http_keep_alive_timeout_secs * 1000),
    sendTimeoutMs: Math.ceil(c.http_send_timeout_secs * 1000),
  };
}

/** Statuses after which the connection is closed. */
const CLOSE_AFTER = new Set([401, 403, 413]);

/**
 * Fastify's server options for these limits (`https`: the TLS options, or none for plain HTTP).
 * Node checks request deadlines every `connectionsCheckingInterval`: a tenth of the timeout, at
 * most 1 s, so a timeout is enforced within a few percent.
 */
export function serverOptions(l: ConnectionLimits, https?: ServerOptions | null) {
  const checks = { connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(l.requestTimeoutMs / 10))) };
  return {
    https: https ? { ...https, ...checks } : null,
    http: checks,
    requestTimeout: l.requestTimeoutMs,
    keepAliveTimeout: l.keepAliveTimeoutMs,
    connectionTimeout: 0,
  };
}

/** The hooks and server settings fastify's options do not cover; call before `listen`. */
export function installConnectionLimits(app: FastifyInstance, l: ConnectionLimits): void {
  app.server.headersTimeout = l.requestTimeoutMs;
  // Callback style: no promise per request.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (CLOSE_AFTER.has(reply.statusCode)) {
      reply.header('connection', 'close');
      // Node ends the socket after an answer marked close, unread body or not.
      reply.raw.shouldKeepAlive = false;
    }
    // The callback ends the socket as Node does with no listener (and inject()'s response needs one).
    reply.raw.setTimeout(l.sendTimeoutMs, () => reply.raw.destroy());
    done(null, payload);
  });
}
