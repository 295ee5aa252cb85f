/**
 * REST routes and their statuses: the manager's OpenAPI document (the app built as `teiplex serve`
 * builds it, in this process, no child) against the route tables of docs/manager.md,
 * docs/on-demand.md and docs/data-plane.md, both directions: every registered route is in a
 * table and every table row is a route; every status a table names for a route is declared for it;
 * every status the document declares for a route is in its row, in the shared statuses of
 * docs/manager.md, or (data plane) in docs/data-plane.md's error table. Each checker also runs on
 * a doctored copy and reports the drift.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { drift, readDoc, section, tableRows } from '../helpers/docs-contract.js';
import { managerApp, type ManagerApp } from '../helpers/manager-app.js';

/** `METHOD /path` with every `{param}` as `{}` and the query left out. */
const key = (method: string, path: string): string => `${method.toUpperCase()} ${path.replace(/\[?\?.*$/, '').replace(/\{[^}]*\}/g, '{}')}`;

/** The `| Method | Path | Success | Errors |` rows of a page: route -> the statuses its Errors cell names. */
export function adminRouteTable(markdown: string): Map<string, Set<number>> {
  const out = new Map<string, Set<number>>();
  let inTable = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('| Method | Path |')) inTable = true;
    else if (!line.startsWith('|')) inTable = false;
    if (!inTable) continue;
    const [method, path, , errors] = tableRows(line)[0] ?? [];
    if (!/^(GET|POST|DELETE|PUT|PATCH)$/.test(method ?? '')) continue;
    out.set(key(method, path), new Set([...(errors ?? '').matchAll(/\b([45]\d\d)\b/g)].map((m) => Number(m[1]))));
  }
  return out;
}

/** docs/data-plane.md's Routes table: `POST /a`, `/b` (the method carried over), `GET /v1/models/{id}`. */
export function dataPlaneRoutes(markdown: string): string[] {
  const start = markdown.indexOf('## Routes');
  const table = markdown.slice(start, markdown.indexOf('\n## ', start + 1));
  const out: string[] = [];
  for (const row of tableRows(table).slice(1)) {
    let method = '';
    for (const m of (row[0] ?? '').matchAll(/`(?:(GET|POST|DELETE) )?(\/[^`]*)`/g)) {
      method = m[1] ?? method;
      out.push(key(method, m[2]));
    }
  }
  return out;
}

/** The statuses of docs/data-plane.md's error table. */
export function dataPlaneStatuses(markdown: string): Set<number> {
  const start = markdown.indexOf('## Errors');
  const table = markdown.slice(start, markdown.indexOf('\n## ', start + 1));
  return new Set(tableRows(table).map((r) => Number(r[1])).filter((n) => n >= 400));
}

interface OpenApi {
  paths: Record<string, Record<string, { tags?: string[]; responses?: Record<string, unknown> }>>;
}

/** The document's routes: route -> declared error statuses (and whether it is a data-plane route). */
export function declaredRoutes(doc: OpenApi): Map<string, { statuses: Set<number>; dataPlane: boolean }> {
  const out = new Map<string, { statuses: Set<number>; dataPlane: boolean }>();
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const statuses = new Set(Object.keys(op.responses ?? {}).map(Number).filter((n) => n >= 400));
      out.set(key(method, path), { statuses, dataPlane: (op.tags ?? []).some((t) => t.startsWith('data plane')) });
    }
  }
  return out;
}

export function routeDrift(doc: OpenApi, pages: { manager: string; onDemand: string; dataPlane: string }): string[] {
  const declared = declaredRoutes(doc);
  const admin = new Map([...adminRouteTable(pages.manager), ...adminRouteTable(pages.onDemand)]);
  const dataPlane = dataPlaneRoutes(pages.dataPlane);
  const out = drift(declared.keys(), [...admin.keys(), ...dataPlane], 'the docs');
  const shared = new Set([...section(pages.manager, 'shared-statuses').matchAll(/\b([45]\d\d)\b/g)].map((m) => Number(m[1])));
  const dpStatuses = dataPlaneStatuses(pages.dataPlane);
  for (const [route, { statuses, dataPlane: dp }] of declared) {
    const documented = admin.get(route);
    for (const s of documented ?? []) if (!statuses.has(s)) out.push(`${route}: the docs name ${s}, the OpenAPI document does not declare it`);
    for (const s of statuses) {
      if (documented?.has(s) || shared.has(s) || (dp && dpStatuses.has(s))) continue;
      out.push(`${route}: declares ${s}, the docs do not name it`);
    }
  }
  return out;
}

describe('REST routes: the OpenAPI document and the docs', () => {
  let m: ManagerApp;
  let doc: OpenApi;
  const pages = { manager: readDoc('docs/manager.md'), onDemand: readDoc('docs/on-demand.md'), dataPlane: readDoc('docs/data-plane.md') };

  before(async () => {
    m = await managerApp();
    const res = await m.api('GET', '/docs/json');
    assert.equal(res.status, 200);
    doc = res.body as OpenApi;
  });
  after(async () => {
    await m?.close();
  });

  test('every route is in a table, every row a route, and their statuses agree', () => {
    assert.ok(declaredRoutes(doc).size >= 30, 'the document was read');
    assert.deepEqual(routeDrift(doc, pages), []);
  });

  test('the shared statuses are declared: STATE_WRITE_FAILED and UNHEALTHY on changes, 413 and 415 on bodies, 401/403 everywhere', () => {
    const create = doc.paths['/instances'].post.responses as Record<string, { description: string }>;
    assert.match(create['503'].description, /STATE_WRITE_FAILED/);
    assert.match(create['503'].description, /UNHEALTHY/);
    assert.match(create['413'].description, /PAYLOAD_TOO_LARGE/);
    const embed = doc.paths['/embed'].post.responses as Record<string, { description: string }>;
    assert.match(embed['429'].description, /MODEL_OVERLOADED/);
    assert.match(embed['503'].description, /MODEL_LOADING/);
    for (const ops of Object.values(doc.paths)) for (const op of Object.values(ops)) assert.ok(op.responses?.['401'] !== undefined && op.responses['403'] !== undefined);
    assert.equal((doc.paths['/health'].get.responses as Record<string, unknown>)['503'], undefined, 'health answers no 503');
  });

  test('the checker sees a drift: a row dropped, a status not declared, a declared status not documented', () => {
    assert.deepEqual(routeDrift(doc, { ...pages, manager: pages.manager.replace(/^\| GET \| \/gpus \|.*\n/m, '') }), ['GET /gpus: in the code, not in the docs']);
    assert.deepEqual(routeDrift(doc, { ...pages, manager: pages.manager.replace('| POST | /instances/{name}/stop | 200 | 404, 409 NOT_RUNNING |', '| POST | /instances/{name}/stop | 200 | 404, 409 NOT_RUNNING, 410 GONE |') }), [
      'POST /instances/{}/stop: the docs name 410, the OpenAPI document does not declare it',
    ]);
    const noShared415 = pages.manager.replace('415 `UNSUPPORTED_MEDIA_TYPE`', '`UNSUPPORTED_MEDIA_TYPE`');
    const found = routeDrift(doc, { ...pages, manager: noShared415 });
    assert.ok(found.includes('POST /instances: declares 415, the docs do not name it'), found.join('\n'));
    assert.deepEqual(routeDrift(doc, { ...pages, dataPlane: pages.dataPlane.replace('`/similarity`, ', '') }), ['POST /similarity: in the code, not in the docs']);
  });
});
