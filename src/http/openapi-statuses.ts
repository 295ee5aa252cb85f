/**
 * Every status a route of the manager's listener can answer, declared in its OpenAPI document
 * (GET /docs/json): the route's own responses (its schema's `response`) plus the ones every route
 * of its kind shares, each with the machine codes behind it (docs/errors.md). Added to the
 * document only (fastify's swagger `transformObject`), never to the routes' response schemas,
 * which would change how error bodies are serialized.
 *
 * - every route: 401 UNAUTHENTICATED and 403 PERMISSION_DENIED (with [auth]; health, metrics and
 *   the document stay open unless auth.open_* says otherwise);
 * - a route with a body: 400 BAD_REQUEST (not JSON, empty), 408 (headers and body not received
 *   within http_request_timeout_secs), 413 PAYLOAD_TOO_LARGE, 415 UNSUPPORTED_MEDIA_TYPE;
 * - an admin route of /instances, /models or /config: 503 UNHEALTHY (the manager still restoring
 *   its instances, or shutting down); one that changes the desired state also 503
 *   STATE_WRITE_FAILED (the state file could not be written; nothing changed);
 * - a data-plane route (OpenAPI tag `data plane (...)`) with a body: the data plane's statuses
 *   (docs/data-plane.md's error table); GET /v1/models/{id}: 404 MODEL_NOT_FOUND.
 * A route whose own schema declares no success gets its 200.
 */

type Statuses = Record<number, string[]>;

export const EVERY_ROUTE: Statuses = { 401: ['UNAUTHENTICATED'], 403: ['PERMISSION_DENIED'] };
export const BODY_ROUTE: Statuses = { 400: ['BAD_REQUEST'], 408: ['REQUEST_TIMEOUT (http_request_timeout_secs: the connection is closed)'], 413: ['PAYLOAD_TOO_LARGE'], 415: ['UNSUPPORTED_MEDIA_TYPE'] };
export const ADMIN_ROUTE: Statuses = { 503: ['UNHEALTHY'] };
export const STATE_CHANGE: Statuses = { 503: ['STATE_WRITE_FAILED'] };
export const DATA_PLANE: Statuses = {
  400: ['WRONG_MODEL_TYPE', 'BAD_REQUEST'],
  404: ['MODEL_NOT_FOUND'],
  413: ['TOO_MANY_INPUTS', 'PAYLOAD_TOO_LARGE'],
  422: ['VALIDATION', 'EMPTY', 'TOKENIZER', 'OUTPUT_TYPE_UNSUPPORTED'],
  424: ['BACKEND'],
  429: ['MODEL_OVERLOADED', 'RATE_LIMIT_EXCEEDED'],
  503: ['INSTANCE_UNAVAILABLE', 'UNHEALTHY', 'MODEL_LOADING', 'COLD_START_QUEUE_FULL', 'MEMORY_BUDGET_EXCEEDED', 'MODEL_LOAD_FAILED'],
  504: ['REQUEST_TIMEOUT'],
};

const BODY_METHODS = new Set(['post', 'put', 'patch']);

function isAdminPath(path: string): boolean {
  return /^\/(instances|models|config)(\/|$)/.test(path);
}

/** The statuses a route shares with its kind (not its own responses). */
export function sharedStatuses(method: string, path: string, tags: readonly string[]): Statuses {
  const out: Statuses = {};
  const add = (s: Statuses) => {
    for (const [k, v] of Object.entries(s)) out[Number(k)] = [...new Set([...(out[Number(k)] ?? []), ...v])];
  };
  add(EVERY_ROUTE);
  const m = method.toLowerCase();
  if (BODY_METHODS.has(m)) add(BODY_ROUTE);
  if (tags.some((t) => t.startsWith('data plane'))) {
    if (m !== 'get') add(DATA_PLANE);
    else if (path.includes('{')) add({ 404: ['MODEL_NOT_FOUND'] });
  }
  else if (isAdminPath(path)) {
    add(ADMIN_ROUTE);
    if (m !== 'get') add(STATE_CHANGE);
  }
  return out;
}

interface Operation {
  tags?: string[];
  responses?: Record<string, { description?: string }>;
}

/** Adds each route's shared statuses to an OpenAPI document's operations (the route's own ones kept). */
export function declareStatuses<T extends { paths?: Record<string, Record<string, Operation>> }>(doc: T): T {
  for (const [path, ops] of Object.entries(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(ops)) {
      const responses = (op.responses ??= {});
      // A route whose success has no schema still answers one.
      if (!Object.keys(responses).some((s) => s.startsWith('2'))) responses['200'] = { description: 'OK' };
      for (const [status, codes] of Object.entries(sharedStatuses(method, path, op.tags ?? []))) {
        const have = responses[status];
        const text = codes.join(', ');
        if (have === undefined) responses[status] = { description: text };
        else if (!(have.description ?? '').includes(text)) have.description = have.description && have.description !== 'Default Response' ? `${have.description}; ${text}` : text;
      }
    }
  }
  return doc;
}
