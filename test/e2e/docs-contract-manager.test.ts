/**
 * What a running manager and router show against what the docs promise, both directions:
 * - the Prometheus metrics of a live manager with an instance that served a gRPC and an HTTP
 *   call (names, types, labels) against the metric tables of docs/manager.md, multiplexer.md,
 *   on-demand.md, data-plane.md, tenancy.md and batch.md, and a live router's /metrics against docs/router.md;
 * - the ready lines of `teiplex serve` and `teiplex router` against the lines the docs show;
 * - the data plane's bodies: unknown fields refused with 422 naming them, TEI's /similarity.
 * Each checker also runs once on a doctored copy of a doc and reports the drift.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { childHttpPort, client, instanceToml, writeConfig } from '../helpers/data-plane.js';
import { drift, exposition, metricDrift, metricTable, readDoc, type DocMetric } from '../helpers/docs-contract.js';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { mux, unary } from '../helpers/mux-client.js';
import { startRouterProcess, type RouterProcess } from '../helpers/router-process.js';
import { cosine } from '../helpers/vectors.js';

const MANAGER_METRIC_DOCS = ['docs/manager.md', 'docs/multiplexer.md', 'docs/on-demand.md', 'docs/data-plane.md', 'docs/tenancy.md', 'docs/batch.md'];

/** The documented manager metrics: the union of the pages' tables (a name documented twice fails). */
export function managerDocMetrics(pages: Record<string, string>): Map<string, DocMetric> {
  const out = new Map<string, DocMetric>();
  for (const [page, text] of Object.entries(pages)) {
    for (const [name, m] of metricTable(text)) {
      assert.ok(!out.has(name), `${name} is documented twice (again in ${page})`);
      out.set(name, m);
    }
  }
  return out;
}

/** docs/router.md's Metrics section: `name` or `name{label,...}` in backticks. */
export function routerDocMetrics(markdown: string): Map<string, string[]> {
  const start = markdown.indexOf('## Metrics');
  const text = markdown.slice(start, markdown.indexOf('\n## ', start + 1));
  const out = new Map<string, string[]>();
  for (const m of text.matchAll(/`((?:te|teiplex)_[a-z_]+)(?:\{([a-z_,]+)\})?`/g)) out.set(m[1], (m[2] ?? '').split(',').filter(Boolean).sort());
  return out;
}

export function routerMetricDrift(markdown: string, scraped: Map<string, DocMetric>): string[] {
  const doc = routerDocMetrics(markdown);
  const out = drift(
    [...scraped.keys()].filter((n) => /^(te|teiplex)_/.test(n)),
    doc.keys(),
    'docs/router.md',
  );
  for (const [name, labels] of doc) {
    const s = scraped.get(name);
    if (s !== undefined && s.labels.length > 0 && s.labels.join(',') !== labels.join(',')) out.push(`${name}: labels ${s.labels.join(',')}, docs/router.md says ${labels.join(',') || 'none'}`);
  }
  return out;
}

/** The JSON object of the first `{"msg":"ready"...}` example in a page's text after `after`. */
export function documentedReadyLine(markdown: string, after: string): Record<string, unknown> {
  const from = markdown.indexOf(after);
  assert.ok(from >= 0, `no "${after}" in the page`);
  const m = /`(\{[^`]*"msg":"ready"[^`]*\})`/.exec(markdown.slice(from));
  assert.ok(m !== null, `no ready line example after "${after}"`);
  return JSON.parse(m[1].replace(/\.\.\./g, '')) as Record<string, unknown>;
}

/** Keys of a ready line against a documented one (pino's own keys left out). */
export function readyDrift(line: Record<string, unknown>, doc: Record<string, unknown>, where: string, optional: string[] = []): string[] {
  const pino = ['level', 'time', 'pid', 'hostname', 'component'];
  const keys = (o: Record<string, unknown>) => Object.keys(o).filter((k) => !pino.includes(k) && !optional.includes(k));
  return drift(keys(line), keys(doc), where);
}

let dir: string;
let m: ManagerProcess;
let router: RouterProcess;
let modelDir: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-contract-'));
  modelDir = await testModel({ kind: 'embedding' });
  const file = await writeConfig(dir, '', instanceToml('emb', modelDir, 'extra_args = ["--http-port", "0"]'));
  m = await startManager(file);
  await m.waitFor('emb', (i) => i.status === 'running', 120_000);
  router = await startRouterProcess(['--model-id', modelDir, '--http-port', '0', '--prometheus-port', '0']);
});

after(async () => {
  if (router) await router.stop();
  if (m) await m.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('metrics: docs and a live /metrics', () => {
  let scraped: Map<string, DocMetric>;
  const pages = Object.fromEntries(MANAGER_METRIC_DOCS.map((p) => [p, readDoc(p)]));

  before(async () => {
    // A call on each front end, so that the request metrics have samples (and labels to compare).
    const grpc = await unary(mux(Number(m.ready.grpc_port)), 'Embed', { target: { instance_name: 'emb' }, request: { inputs: 'hello' } });
    assert.equal(grpc.res.embeddings.length > 0, true);
    const http = await client(m.apiPort).post('/embed', { model: 'emb', inputs: 'hello' });
    assert.equal(http.status, 200, JSON.stringify(http.body));
    const res = await fetch(`http://127.0.0.1:${m.apiPort}/metrics`);
    assert.equal(res.status, 200);
    scraped = exposition(await res.text());
  });

  test("the manager's teiplex_* metrics are the docs' tables: names, types, labels", () => {
    const doc = managerDocMetrics(pages);
    assert.ok(doc.size >= 20, `the tables were read (${doc.size} metrics)`);
    assert.ok(scraped.get('teiplex_requests_total')?.labels.length === 4, 'the gRPC call left a sample');
    assert.deepEqual(metricDrift(doc, scraped, /^teiplex_/, 'the docs'), []);
  });

  test("prom-client's process_* and nodejs_* metrics are there, as docs/manager.md says", () => {
    assert.match(pages['docs/manager.md'], /\| `process_\*`, `nodejs_\*` \|/);
    assert.ok([...scraped.keys()].some((n) => n.startsWith('process_')));
    assert.ok([...scraped.keys()].some((n) => n.startsWith('nodejs_')));
  });

  test("the router's /metrics is docs/router.md's list", async () => {
    const res = await fetch(`http://127.0.0.1:${router.prometheusPort}/metrics`);
    assert.equal(res.status, 200);
    const routerScrape = exposition(await res.text());
    assert.deepEqual(routerMetricDrift(readDoc('docs/router.md'), routerScrape), []);
  });

  test('the checkers see a drift: a metric renamed, a label dropped, a type changed, a router metric missing', () => {
    const renamed = { ...pages, 'docs/manager.md': pages['docs/manager.md'].replace('| `teiplex_state_writes_total` |', '| `teiplex_state_write_total` |') };
    assert.deepEqual(metricDrift(managerDocMetrics(renamed), scraped, /^teiplex_/, 'the docs'), [
      'teiplex_state_write_total: in the docs, not in the code',
      'teiplex_state_writes_total: in the code, not in the docs',
    ]);
    const label = { ...pages, 'docs/multiplexer.md': pages['docs/multiplexer.md'].replace('| `teiplex_requests_total` | counter | `instance`, `model`,', '| `teiplex_requests_total` | counter | `instance`,') };
    assert.deepEqual(metricDrift(managerDocMetrics(label), scraped, /^teiplex_/, 'the docs'), ['teiplex_requests_total: labels code,instance,method,model, the docs says code,instance,method']);
    const type = { ...pages, 'docs/data-plane.md': pages['docs/data-plane.md'].replace('| `teiplex_http_requests_total` | counter |', '| `teiplex_http_requests_total` | gauge |') };
    assert.deepEqual(metricDrift(managerDocMetrics(type), scraped, /^teiplex_/, 'the docs'), ['teiplex_http_requests_total: type counter, the docs says gauge']);
    const routerDoc = readDoc('docs/router.md').replace('`teiplex_batches_total`, ', '');
    const fake = new Map([...routerDocMetrics(readDoc('docs/router.md')).keys()].map((n) => [n, { type: 'counter', labels: [] as string[] }]));
    assert.deepEqual(routerMetricDrift(routerDoc, fake), ['teiplex_batches_total: in the code, not in docs/router.md']);
  });
});

describe('ready lines: docs and the processes', () => {
  test("teiplex serve's ready line has the keys docs/manager.md shows", () => {
    const doc = documentedReadyLine(readDoc('docs/manager.md'), '### Ready line');
    assert.deepEqual(readyDrift(m.ready, doc, 'docs/manager.md', ['corruptStateMovedTo', 'corruptReason']), []);
  });

  test("teiplex router's ready line has the keys docs/router.md shows", () => {
    const doc = documentedReadyLine(readDoc('docs/router.md'), '## Startup, ready line, shutdown');
    assert.deepEqual(readyDrift(router.ready, doc, 'docs/router.md'), []);
    assert.equal(router.ready.msg, 'ready');
  });

  test('the checker sees a drift: a key the doc lacks, a key the line lacks', () => {
    assert.deepEqual(readyDrift({ msg: 'ready', grpc_port: 1, extra: 2 }, { msg: 'ready', grpc_port: 3, http_port: 4 }, 'x.md'), ['extra: in the code, not in x.md', 'http_port: in x.md, not in the code']);
  });
});

describe('data plane bodies: strict, and /similarity', () => {
  test('an unknown field is refused with 422 naming it, in the route shape (TEI, OpenAI)', async () => {
    const api = client(m.apiPort);
    const tei = await api.post('/embed', { model: 'emb', inputs: 'hello', normalise: false });
    assert.equal(tei.status, 422, JSON.stringify(tei.body));
    assert.deepEqual(tei.body, { error: '`normalise` is not a known field', error_type: 'validation' });
    const openai = await api.post('/v1/embeddings', { model: 'emb', input: 'hello', encodingFormat: 'float' });
    assert.equal(openai.status, 422, JSON.stringify(openai.body));
    assert.deepEqual(openai.body.error, { message: '`encodingFormat` is not a known field', type: 'invalid_request_error', param: 'encodingFormat', code: 'validation' });
    const rerank = await api.post('/v1/rerank', { model: 'emb', query: 'q', documents: ['a'], top_k: 1 });
    assert.equal(rerank.status, 422, JSON.stringify(rerank.body));
    assert.equal(rerank.body.error.code, 'validation');
    assert.equal(rerank.body.error.param, 'top_k');
    const ok = await api.post('/v1/embeddings', { model: 'emb', input: 'hello', encoding_format: 'float', user: 'u', dimensions: 4 });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });

  test("/similarity with `model`: the child's cosines, as the router answers them", async () => {
    const api = client(m.apiPort);
    const body = { inputs: { source_sentence: 'a dog sat', sentences: ['a cat sat', 'stocks fell'] } };
    const via = await api.post('/similarity', { model: 'emb', ...body });
    assert.equal(via.status, 200, JSON.stringify(via.body));
    assert.equal(via.headers.get('x-teiplex-instance'), 'emb');
    const vectors = await client(await childHttpPort(m, 'emb')).post('/embed', { inputs: ['a dog sat', 'a cat sat', 'stocks fell'], normalize: false });
    assert.equal(vectors.status, 200);
    assert.equal(via.body.length, 2);
    for (let i = 0; i < 2; i++) assert.ok(Math.abs(via.body[i] - cosine(vectors.body[0], vectors.body[i + 1])) < 1e-5, `sentence ${i}: ${via.body[i]}`);
  });
});
