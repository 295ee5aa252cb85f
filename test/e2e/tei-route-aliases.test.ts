/**
 * TEI's route aliases on the router's HTTP front (docs/router.md: "`/v1/embeddings` (and TEI's
 * aliases `/embeddings`, `/`, `/ping`, `/invocations`)"): a real `teiplex router --http-port 0`
 * on the generated embedding test model. Each alias answers what the route it stands for
 * answers: POST /embeddings as /v1/embeddings, POST /invocations and POST / as /embed (the
 * model's own route), GET /ping and GET / as /health.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { client } from '../helpers/data-plane.js';
import { testModel } from '../helpers/models.js';
import { startRouterProcess, type RouterProcess } from '../helpers/router-process.js';

let r: RouterProcess;
let api: ReturnType<typeof client>;

before(async () => {
  r = await startRouterProcess(['--model-id', await testModel({ kind: 'embedding' }), '--http-port', '0']);
  api = client(r.httpPort!);
});

after(async () => {
  if (r) assert.equal(await r.stop(), 0, 'the router stops cleanly');
});

describe("TEI's route aliases (teiplex router, embedding test model)", () => {
  test('POST /embeddings answers as /v1/embeddings', async () => {
    const body = { input: ['hello world', 'x'], model: 'any' };
    const want = await api.post('/v1/embeddings', body);
    const got = await api.post('/embeddings', body);
    assert.equal(want.status, 200, JSON.stringify(want.body));
    assert.equal(got.status, 200, JSON.stringify(got.body));
    assert.equal(got.body.object, 'list');
    assert.deepEqual(
      got.body.data.map((d: { embedding: number[] }) => d.embedding),
      want.body.data.map((d: { embedding: number[] }) => d.embedding),
    );
  });

  test('POST /invocations and POST / answer as /embed (the model\'s own route)', async () => {
    const body = { inputs: ['hello world', 'x'] };
    const want = await api.post('/embed', body);
    assert.equal(want.status, 200, JSON.stringify(want.body));
    for (const route of ['/invocations', '/']) {
      const got = await api.post(route, body);
      assert.equal(got.status, 200, `${route}: ${JSON.stringify(got.body)}`);
      assert.deepEqual(got.body, want.body, route);
    }
  });

  test('GET /ping and GET / answer as /health', async () => {
    const want = await api.get('/health');
    assert.equal(want.status, 200);
    for (const route of ['/ping', '/']) {
      const got = await api.get(route);
      assert.equal(got.status, 200, `${route}: ${JSON.stringify(got.body)}`);
      assert.deepEqual(got.body, want.body, route);
    }
  });

  test('an alias that is not one answers 404 (the aliases above are real routes)', async () => {
    const got = await api.post('/embedding', { input: 'x' });
    assert.equal(got.status, 404);
    assert.equal(got.body.error_type, 'not_found', JSON.stringify(got.body));
  });
});
