/**
 * gRPC RPCs and fields: the docs (docs/multiplexer.md's RPC table, Target, ListInstances and the
 * Arrow requests; docs/arrow.md's RPCs; docs/router.md's services and teiplex.v1.Batch RPCs)
 * against the protos in proto/, as @grpc/proto-loader reads them, both directions. Each checker
 * also runs on a doctored copy and reports the drift.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { muxPackageDefinition, routerPackageDefinition, TEI_SERVICES } from '../../src/tei/proto.js';
import { drift, readDoc, tableRows } from '../helpers/docs-contract.js';

interface Method {
  requestType: { type: { name: string } };
  responseType: { type: { name: string } };
}
const mux = muxPackageDefinition() as unknown as Record<string, Record<string, Method> & { type?: { field: Array<{ name: string }> } }>;
const router = routerPackageDefinition() as unknown as Record<string, Record<string, Method>>;
const MUX = mux['tei_multiplexer.v1.TeiMultiplexer'];
const fields = (message: string): string[] => (mux[message].type as { field: Array<{ name: string }> }).field.map((f) => f.name);

/** docs/multiplexer.md's RPC table: RPC -> [request, response] (as the doc writes them, `tei.v1.` dropped). */
export function rpcTable(markdown: string): Map<string, [string, string]> {
  const start = markdown.indexOf('| RPC | request | response |');
  const table = markdown.slice(start, markdown.indexOf('\n\n', start));
  const out = new Map<string, [string, string]>();
  for (const row of tableRows(table).slice(1)) {
    const rpcs = row[0].replace(/\([^)]*\)/g, '').split(',').map((s) => s.trim()).filter(Boolean);
    const requests = [...row[1].matchAll(/`([A-Za-z0-9.…]+)`/g)].map((m) => m[1]);
    const response = /`([A-Za-z0-9.…]+)`/.exec(row[2])?.[1] ?? '';
    rpcs.forEach((rpc, i) => out.set(rpc, [requests[Math.min(i, requests.length - 1)] ?? '', response.replace(/^tei\.v1\./, '')]));
  }
  return out;
}

export function rpcDrift(markdown: string): string[] {
  const doc = rpcTable(markdown);
  const out = drift(Object.keys(MUX), doc.keys(), 'docs/multiplexer.md');
  for (const [rpc, [req, res]] of doc) {
    const m = MUX[rpc];
    if (m === undefined) continue;
    if (req !== m.requestType.type.name) out.push(`${rpc}: request ${m.requestType.type.name}, docs/multiplexer.md says ${req}`);
    // `…ArrowResponse` stands for each RPC's own `<RPC>Response`.
    if (!res.startsWith('…') && res !== m.responseType.type.name) out.push(`${rpc}: response ${m.responseType.type.name}, docs/multiplexer.md says ${res}`);
    if (res.startsWith('…') && !m.responseType.type.name.endsWith(res.slice(1))) out.push(`${rpc}: response ${m.responseType.type.name}, docs/multiplexer.md says ${res}`);
  }
  return out;
}

/** The backticked names of the sentence that starts with `from` and ends before `until`. */
export function namesBetween(markdown: string, from: string, until: string): string[] {
  const start = markdown.indexOf(from);
  assert.ok(start >= 0, `no "${from}"`);
  const end = markdown.indexOf(until, start);
  assert.ok(end > start, `no "${until}" after "${from}"`);
  // Asides in parentheses name other things (e.g. `serving` (running)).
  return [...markdown.slice(start + from.length, end).replace(/\([^)]*\)/g, '').matchAll(/`([a-z_]+)`/g)].map((m) => m[1]);
}

describe('gRPC: docs and the protos', () => {
  const mx = readDoc('docs/multiplexer.md');

  test("docs/multiplexer.md's RPC table is TeiMultiplexer's RPCs, with their request and response types", () => {
    assert.ok(rpcTable(mx).size >= 20, 'the table was read');
    assert.deepEqual(rpcDrift(mx), []);
  });

  test('Target, ListInstances and the Arrow request fields are the protos', () => {
    assert.deepEqual(drift(fields('tei_multiplexer.v1.Target'), namesBetween(mx, '`Target` is a oneof:', 'If none is running'), 'docs/multiplexer.md Target'), []);
    assert.deepEqual(drift(fields('tei_multiplexer.v1.InstanceSummary'), namesBetween(mx, 'in name order (the order `instance_index` refers to) with', 'A restricted API key'), 'docs/multiplexer.md ListInstances'), []);
    const inline = /a teiplex RPC, `\{([^}]*)\}`/.exec(mx.replace(/\n/g, ' '))?.[1] ?? '';
    assert.deepEqual(drift(fields('tei_multiplexer.v1.EmbedAllArrowRequest'), [...inline.matchAll(/(\w+) = \d+/g)].map((m) => m[1]), 'docs/multiplexer.md EmbedAllArrow'), []);
    const arrowFields = namesBetween(mx, '**Fields**:', 'otherwise any client');
    for (const rpc of ['EmbedArrowRequest', 'EmbedSparseArrowRequest', 'EmbedAllArrowRequest']) {
      const missing = fields(`tei_multiplexer.v1.${rpc}`).filter((f) => f !== 'target' && f !== 'arrow_ipc' && !arrowFields.includes(f));
      assert.deepEqual(missing, [], `${rpc}: fields the Arrow **Fields** paragraph does not describe`);
    }
    assert.deepEqual(arrowFields.filter((f) => !fields('tei_multiplexer.v1.EmbedArrowRequest').includes(f)), [], 'fields described that EmbedArrowRequest lacks');
  });

  test("docs/arrow.md's RPCs are TeiMultiplexer's Arrow RPCs", () => {
    const named = new Set([...readDoc('docs/arrow.md').matchAll(/`(Embed[A-Za-z]*Arrow)`/g)].map((m) => m[1]));
    assert.deepEqual(drift(Object.keys(MUX).filter((r) => r.endsWith('Arrow')), named, 'docs/arrow.md'), []);
  });

  test("docs/router.md's services and teiplex.v1.Batch RPCs are the router's protos", () => {
    const rt = readDoc('docs/router.md');
    const services = new Set([...rt.matchAll(/`(tei\.v1\.[A-Z][a-z]+)`/g)].map((m) => m[1]));
    assert.deepEqual(drift(TEI_SERVICES, services, 'docs/router.md'), []);
    const batch = namesBetween(rt, '(`proto/teiplex/v1/batch.proto`):', 'take many inputs').concat([...rt.slice(rt.indexOf('`teiplex.v1.Batch` (`proto')).matchAll(/\b(Embed[A-Za-z]*Batch)\b/g)].map((m) => m[1]).slice(0, 3));
    assert.deepEqual(drift(Object.keys(router['teiplex.v1.Batch']), new Set(batch), 'docs/router.md'), []);
  });

  test('the checkers see a drift: an RPC dropped, a request type wrong, a field renamed', () => {
    assert.deepEqual(rpcDrift(mx.replace('| Rerank | `RerankRequest` |', '| Rerank | `RerankRequests` |')), ['Rerank: request RerankRequest, docs/multiplexer.md says RerankRequests']);
    assert.deepEqual(rpcDrift(mx.replace(/^\| ListInstances .*\n/m, '')), ['ListInstances: in the code, not in docs/multiplexer.md']);
    assert.deepEqual(rpcDrift(mx.replace('| Decode, DecodeStream |', '| Decode, DecodeStream, DecodeAll |')), ['DecodeAll: in docs/multiplexer.md, not in the code']);
    const renamed = mx.replace('`name`, `model_id`, `instance_index`, `status`, `serving`', '`name`, `model`, `instance_index`, `status`, `serving`');
    assert.deepEqual(drift(fields('tei_multiplexer.v1.InstanceSummary'), namesBetween(renamed, 'in name order (the order `instance_index` refers to) with', 'A restricted API key'), 'd'), ['model: in d, not in the code', 'model_id: in the code, not in d']);
  });
});
