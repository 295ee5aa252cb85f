/**
 * The authorization decision in-process (src/auth/access.ts) and the two front ends' resolution
 * around it (src/mux/target.ts, src/http/data-plane/model-directory.ts), on plain objects:
 * - what a grant may use (instances, models, a catalog model as its first replica);
 * - `decide` keeps only what the grant may use and refuses a restricted key with the same words
 *   whether the target is forbidden or missing, naming nothing outside the grant (property test);
 * - resolution: model_id balancing and HTTP aliases pick only allowed instances; instance_index
 *   counts in the key's own list; refusal texts list only what the key may use;
 * - a catalog model is started only after the decision allows it (gRPC forwarder, HTTP directory).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { FastifyRequest } from 'fastify';
import fc from 'fast-check';
import { decide, mayStart, mayUse } from '../../src/auth/access.js';
import type { ApiKeyGrant, AuthTarget } from '../../src/auth/api-keys.js';
import type { Catalog } from '../../src/catalog/catalog.js';
import type { CatalogModel } from '../../src/catalog/catalog-model.js';
import { TeiplexError } from '../../src/common/errors.js';
import { ModelDirectory } from '../../src/http/data-plane/model-directory.js';
import { Inflight } from '../../src/routing/inflight.js';
import type { MuxMetrics } from '../../src/mux/metrics.js';
import { forwarder, summaries } from '../../src/mux/service.js';
import { TargetResolver } from '../../src/routing/target.js';
import type { ChannelPool } from '../../src/routing/channels.js';
import type { Instance } from '../../src/supervisor/instance.js';

function grant(name: string, r: { instances?: string[]; models?: string[] }): ApiKeyGrant {
  return {
    name,
    instances: r.instances && new Set(r.instances),
    models: r.models && new Set(r.models),
    admin: false,
    restricted: r.instances !== undefined || r.models !== undefined,
  };
}

function inst(name: string, model_id: string, extra: { status?: string; aliases?: string[] } = {}): Instance {
  return { name, spec: { name, model_id, aliases: extra.aliases }, status: extra.status ?? 'running' } as unknown as Instance;
}

function directory(list: Instance[]) {
  const sorted = [...list].sort((a, b) => (a.name < b.name ? -1 : 1));
  return { list: () => sorted, find: (n: string) => sorted.find((i) => i.name === n) };
}

function catalogModel(name: string, model_id: string, aliases: string[] = []): CatalogModel {
  return { name, spec: { name, model_id, aliases } } as unknown as CatalogModel;
}

/** A catalog that records starts instead of making them. */
function fakeCatalog(models: CatalogModel[]) {
  const started: string[] = [];
  const byName = new Map<string, CatalogModel>();
  for (const m of models) for (const n of [m.name, m.spec.model_id, ...(m.spec.aliases ?? [])]) byName.set(n, m);
  const catalog = {
    lookup: (n: string) => byName.get(n),
    list: () => models,
    ensureServing: async (m: CatalogModel) => {
      started.push(m.name);
    },
  } as unknown as Catalog;
  return { catalog, started };
}

const refusedWith = (code: string, re?: RegExp) => (e: TeiplexError) => {
  assert.equal(e.code, code, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('no refusal');
}

describe('what a grant may use', () => {
  test('instances, models, both; a catalog model as its first replica', () => {
    const a = { name: 'a', spec: { model_id: 'org/x' } };
    const b = { name: 'b', spec: { model_id: 'org/y' } };
    const byName = grant('n', { instances: ['a', 'cat-1'] });
    const byModel = grant('m', { models: ['org/y'] });
    const both = grant('nm', { instances: ['a', 'b'], models: ['org/x'] });
    assert.deepEqual([mayUse(byName, a), mayUse(byName, b)], [true, false]);
    assert.deepEqual([mayUse(byModel, a), mayUse(byModel, b)], [false, true]);
    assert.deepEqual([mayUse(both, a), mayUse(both, b)], [true, false]);
    assert.deepEqual([mayUse(undefined, b), mayUse(grant('open', {}), b)], [true, true]);
    assert.equal(mayStart(byName, { name: 'cat', spec: { model_id: 'org/z' } }), true);
    assert.equal(mayStart(byName, { name: 'other', spec: { model_id: 'org/z' } }), false);
    assert.equal(mayStart(byModel, { name: 'cat', spec: { model_id: 'org/y' } }), true);
  });

  test('decide: only the allowed; a restricted refusal is the same for forbidden and missing and names nothing outside the grant', () => {
    const names = ['i0', 'i1', 'i2', 'i3', 'i4', 'i5'];
    const models = ['m0', 'm1', 'm2'];
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...names), fc.constantFrom(...models)), { maxLength: 6 }),
        fc.option(fc.subarray(names), { nil: undefined }),
        fc.option(fc.subarray(models), { nil: undefined }),
        fc.array(fc.nat(5), { maxLength: 4 }),
        (pairs, gi, gm, pickIdx) => {
          const all: AuthTarget[] = [...new Map(pairs.map(([n, m]) => [n, { name: n, spec: { model_id: m } }])).values()];
          const g = grant('k', { instances: gi, models: gm });
          const reached = [...new Set(pickIdx.map((k) => all[k]).filter((x) => x !== undefined))];
          const refusal = {
            notFound: () => new TeiplexError('MODEL_NOT_FOUND', 'nothing'),
            hints: (visible: (t: AuthTarget) => boolean) => all.filter(visible).map((i) => `'${i.name}' (${i.spec.model_id})`).join(', '),
          };
          const allowed = reached.filter((i) => mayUse(g, i));
          if (allowed.length > 0) {
            const r = decide(g, { asked: 'X', instances: reached }, refusal);
            assert.deepEqual(r.instances, g.restricted ? allowed : reached);
            return;
          }
          if (!g.restricted) {
            assert.throws(() => decide(g, { asked: 'X', instances: reached }, refusal), refusedWith('MODEL_NOT_FOUND'));
            return;
          }
          const forbidden = messageOf(() => decide(g, { asked: 'X', instances: reached }, refusal));
          const missing = messageOf(() => decide(g, { asked: 'X', instances: [] }, refusal));
          assert.equal(forbidden, missing);
          for (const i of all) if (!mayUse(g, i)) assert.ok(!forbidden.includes(`'${i.name}'`), `${forbidden} names ${i.name}`);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('gRPC resolution', () => {
  const all = [inst('a1', 'org/a'), inst('a2', 'org/a'), inst('a3', 'org/a'), inst('b', 'org/b'), inst('zz-mine', 'org/z')];
  const dir = directory(all);
  const teamA = grant('team-a', { instances: ['a2', 'zz-mine'] });

  test('model_id balancing picks only among the instances the key may use', () => {
    const resolver = new TargetResolver(dir, new Inflight());
    const seen = new Map<string, number>();
    for (let k = 0; k < 30; k++) {
      const r = resolver.reach({ kind: 'model_id', value: 'org/a' }, teamA);
      const i = resolver.choose(r)!;
      seen.set(i.name, (seen.get(i.name) ?? 0) + 1);
    }
    assert.deepEqual([...seen], [['a2', 30]]);
    const open = new Set<string>();
    for (let k = 0; k < 6; k++) open.add(resolver.choose(resolver.reach({ kind: 'model_id', value: 'org/a' }, undefined))!.name);
    assert.deepEqual([...open].sort(), ['a1', 'a2', 'a3']);
  });

  test('instance_index counts in the key\'s own list; probes and names read the same whether forbidden or missing', () => {
    const resolver = new TargetResolver(dir, new Inflight());
    const ask = (t: Parameters<TargetResolver['reach']>[0]) => () => resolver.reach(t, teamA);
    assert.equal(resolver.choose(resolver.reach({ kind: 'instance_index', value: 1 }, teamA))!.name, 'zz-mine');
    assert.deepEqual(
      summaries(dir.list(), new Inflight(), (i) => mayUse(teamA, i)).instances.map((i) => [i.name, i.instance_index]),
      [
        ['a2', 0],
        ['zz-mine', 1],
      ],
    );
    const probes = [2, 3, 4, 99].map((n) => messageOf(ask({ kind: 'instance_index', value: n })).replace(String(n), 'N'));
    assert.equal(new Set(probes).size, 1, probes.join('\n'));
    const named = [
      messageOf(ask({ kind: 'instance_name', value: 'b' })).replace("'b'", "'?'"),
      messageOf(ask({ kind: 'instance_name', value: 'nope' })).replace("'nope'", "'?'"),
    ];
    assert.equal(named[0], named[1]);
    for (const text of [...probes, ...named, messageOf(ask({ kind: 'model_id', value: 'org/b' }))]) {
      for (const secret of ["'a1'", "'a3'", "'b'", 'org/b']) assert.ok(!text.replace("model_id 'org/b'", '').includes(secret), `${text} names ${secret}`);
      assert.match(text, /it may use instances 'a2', 'zz-mine'/);
    }
    // An unrestricted caller gets NOT_FOUND with the count.
    assert.throws(() => resolver.reach({ kind: 'instance_index', value: 9 }, undefined), refusedWith('INSTANCE_NOT_FOUND', /there are 5 instances/));
  });

  test('a catalog model is started only after the key is allowed it', async () => {
    const { catalog, started } = fakeCatalog([catalogModel('cold', 'org/cold', ['cold-alias'])]);
    const resolver = new TargetResolver(dir, new Inflight());
    const f = forwarder({
      instances: dir,
      resolver,
      channels: {} as ChannelPool,
      inflight: new Inflight(),
      metrics: { observe: () => undefined } as unknown as MuxMetrics,
      timeoutMs: 1000,
      catalog,
    });
    for (const value of ['cold', 'cold-alias', 'org/cold']) {
      assert.throws(() => f.open({ kind: 'model_id', value }, false, teamA), refusedWith('PERMISSION_DENIED'));
    }
    assert.deepEqual(started, []);
    // Allowed (as its first replica): started; no replica appears in this fake, so then unavailable.
    await assert.rejects(Promise.resolve(f.open({ kind: 'model_id', value: 'cold-alias' }, false, grant('cat', { instances: ['cold-1'] }))), refusedWith('INSTANCE_UNAVAILABLE'));
    assert.deepEqual(started, ['cold']);
  });
});

describe('HTTP resolution', () => {
  const all = [inst('mine', 'org/a', { aliases: ['shared'] }), inst('theirs', 'org/b', { aliases: ['shared'] }), inst('theirs-2', 'org/a')];
  const teamA = grant('team-a', { instances: ['mine'] });

  test('an alias or model_id spanning allowed and forbidden instances: only the allowed ones', () => {
    const d = new ModelDirectory(directory(all), new TargetResolver(directory(all), new Inflight()));
    for (const name of ['shared', 'org/a']) {
      const m = d.match(name, 'model', teamA);
      assert.deepEqual(m.candidates.map((i) => i.name), ['mine'], name);
      for (let k = 0; k < 5; k++) assert.equal(d.pick(m).name, 'mine');
    }
    assert.deepEqual(d.match('shared', 'model', undefined).candidates.map((i) => i.name).sort(), ['mine', 'theirs']);
  });

  test('refusals, the 400 without a model and the model list name only what the key may use', () => {
    const { catalog } = fakeCatalog([catalogModel('their-cat', 'org/c'), catalogModel('mine-cat', 'org/m')]);
    const d = new ModelDirectory(directory(all), new TargetResolver(directory(all), new Inflight()), catalog);
    const g = grant('team-a', { instances: ['mine', 'mine-cat-1'] });
    const texts = ['theirs', 'org/b', 'their-cat', 'no-such'].map((n) => messageOf(() => d.match(n, 'model', g)).replace(`'${n}'`, "'?'"));
    assert.equal(new Set(texts).size, 1, texts.join('\n'));
    assert.match(texts[0], /^API key 'team-a' cannot use model '\?': it does not exist or is not one this key may use; it may use instances 'mine'; models /);
    for (const secret of ['theirs', 'org/b', 'their-cat', 'org/c']) assert.ok(!texts[0].includes(secret), `${texts[0]} names ${secret}`);
    assert.deepEqual(d.models(g).map((m) => m.id).sort(), ['mine-cat', 'org/a', 'org/m', 'shared']);
    // Two instances it may use, no model: 400 naming those.
    const two = grant('two', { models: ['org/a'] });
    const none = messageOf(() => d.match(undefined, 'model', two));
    assert.match(none, /is required when several instances serve: .* instances 'mine', 'theirs-2'; models /);
    assert.ok(!none.includes('theirs\'') && !none.includes('org/b') && !none.includes('their-cat'), none);
    // One: that one serves.
    assert.equal(d.match(undefined, 'model', teamA).candidates[0].name, 'mine');
  });

  test('a catalog model is started only after the key is allowed it', async () => {
    const { catalog, started } = fakeCatalog([catalogModel('cold', 'org/cold', ['cold-alias'])]);
    const grants = new Map<FastifyRequest, ApiKeyGrant>();
    const d = new ModelDirectory(directory(all), new TargetResolver(directory(all), new Inflight()), catalog, (r) => grants.get(r));
    const denied = { headers: {}, raw: {} } as FastifyRequest;
    grants.set(denied, teamA);
    for (const name of ['cold', 'cold-alias', 'org/cold']) await assert.rejects(d.matchReady(denied, name), refusedWith('PERMISSION_DENIED'));
    assert.deepEqual(started, []);
    const allowed = { headers: {}, raw: {} } as FastifyRequest;
    grants.set(allowed, grant('cat', { instances: ['cold-1'] }));
    const m = await d.matchReady(allowed, 'cold-alias');
    assert.equal(m.catalog?.name, 'cold');
    assert.deepEqual(started, ['cold']);
  });
});
