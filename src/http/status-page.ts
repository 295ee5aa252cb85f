/**
 * The live status page (docs/status-page.md) on the manager's API listener:
 *
 * - `GET /ui`: the page (ui/index.html), and `GET /ui/{file}` its script (ui/app.ts) and style
 *   (ui/style.css), all three from dist/ui/ where `npm run build` compiles and copies them (the
 *   container image holds dist/, not ui/). The shell holds no server data:
 *   everything the page shows is read from `/events` with the admin key the user types in (kept in
 *   the tab's sessionStorage, sent as `Authorization: Bearer`, never in a URL), so the shell needs
 *   no key (http-auth.ts: kind `ui`; mTLS and the allow-list apply as to every route). Served with
 *   a Content-Security-Policy that allows only this origin's script, style and fetches (no inline
 *   script, no framing), nosniff, no referrer, no caching.
 * - `GET /events[?logs=NAME]`: the server-sent event stream for the page and for scripts (admin:
 *   with API keys, an admin key): status-feed.ts says what is sent, event-stream.ts how (stream
 *   cap, per-client buffer, keep-alive). An unknown `logs` instance is refused (404) before the
 *   stream opens.
 *
 * On shutdown `teiplex serve` ends every stream first (`EventStreams.closeAll`, before the front
 * ends drain): a clean end of each stream, new ones refused, so no stream holds the listener open;
 * `preClose` does the same for an app closed otherwise.
 */
import { readFile } from 'node:fs/promises';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { Catalog } from '../catalog/catalog.js';
import { TeiplexError } from '../common/errors.js';
import { projectPath } from '../common/paths.js';
import { INSTANCE_NAME_PATTERN } from '../config/instance-spec.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import { errors } from './error-body.js';
import type { EventStreams } from './event-stream.js';
import { StatusFeed } from './status-feed.js';

export interface StatusPageOptions {
  supervisor: Supervisor;
  catalog?: Catalog;
  /** The streams (their limits); the caller may end them all before closing the app (shutdown). */
  streams: EventStreams;
  /** How often shown fields are compared (status-feed.ts REFRESH_MS). */
  refreshMs?: number;
}

/** The page's files: URL name -> [path in the package, content type]. */
const FILES: Record<string, [string[], string]> = {
  'app.js': [['dist', 'ui', 'app.js'], 'text/javascript; charset=utf-8'],
  'style.css': [['dist', 'ui', 'style.css'], 'text/css; charset=utf-8'],
};
const PAGE: [string[], string] = [['dist', 'ui', 'index.html'], 'text/html; charset=utf-8'];

/** Only this origin's script, style and fetches; nothing inline, no plugins, no framing, no forms elsewhere. */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export const STATUS_PAGE_HEADERS: Record<string, string> = {
  'content-security-policy': STATUS_PAGE_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'cache-control': 'no-store',
};

const FileParams = Type.Object({ file: Type.String({ maxLength: 64 }) });
const EventsQuery = Type.Object(
  { logs: Type.Optional(Type.Union([Type.String({ pattern: INSTANCE_NAME_PATTERN }), Type.Integer({ minimum: 0 })], { description: 'follow this instance log' })) },
  { additionalProperties: false },
);

export const statusPage: FastifyPluginAsync<StatusPageOptions> = async (app, o) => {
  const streams = o.streams;
  const feed = new StatusFeed({ supervisor: o.supervisor, streams, ...(o.catalog ? { catalog: o.catalog } : {}), ...(o.refreshMs ? { refreshMs: o.refreshMs } : {}) });
  app.addHook('preClose', (done) => {
    streams.closeAll();
    feed.close();
    done();
  });

  const cache = new Map<string, Buffer>();
  const asset = async (parts: string[]): Promise<Buffer> => {
    const key = parts.join('/');
    let body = cache.get(key);
    if (body === undefined) {
      body = await readFile(projectPath(...parts)).catch(() => {
        throw new TeiplexError('NOT_FOUND', `the status page's ${key} is missing: run npm run build`);
      });
      cache.set(key, body);
    }
    return body;
  };
  const tags = ['status page'];

  app.get('/ui', { schema: { tags, response: errors(404) } }, async (_req, reply) => {
    const body = await asset(PAGE[0]);
    return reply.headers(STATUS_PAGE_HEADERS).type(PAGE[1]).send(body);
  });

  app.get<{ Params: Static<typeof FileParams> }>('/ui/:file', { schema: { tags, params: FileParams, response: errors(400, 404) } }, async (req, reply) => {
    const f = Object.hasOwn(FILES, req.params.file) ? FILES[req.params.file] : undefined;
    if (f === undefined) throw new TeiplexError('NOT_FOUND', `no status page file ${JSON.stringify(req.params.file)} (${Object.keys(FILES).join(', ')})`);
    const body = await asset(f[0]);
    return reply.headers(STATUS_PAGE_HEADERS).type(f[1]).send(body);
  });

  app.get<{ Querystring: Static<typeof EventsQuery> }>('/events', { schema: { tags, querystring: EventsQuery, response: errors(400, 404, 503) } }, async (req, reply) => {
    const logs = req.query.logs === undefined ? undefined : o.supervisor.get(String(req.query.logs));
    const stream = streams.start(reply.raw);
    reply.hijack();
    feed.attach(stream, logs);
  });
};
