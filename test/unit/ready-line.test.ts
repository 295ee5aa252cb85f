/**
 * The manager wakes its readiness probe when a router child prints its ready line: both of the
 * router's output formats (plain, and `--json-output`, which the manager runs routers with) are
 * recognized, other lines are not. The lines come from the router's own logger.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRouterLog } from '../../src/router/router-log.js';
import { hasReadyLine } from '../../src/supervisor/instance.js';

function lines(json: boolean): string[] {
  const out: string[] = [];
  const log = createRouterLog({ json, base: { model_id: 'm' }, write: (l) => out.push(l) });
  log.info('loading model', { dir: '/models/m' });
  log.info('model ready: /models/m (embedding model, max input length 256)');
  log.ready({ grpc_port: 3000, model_id: 'm', pid: 42 });
  return out;
}

for (const json of [false, true]) {
  test(`${json ? '--json-output' : 'plain'}: the ready line is seen, the lines before it are not`, () => {
    const [loading, modelReady, ready] = lines(json);
    assert.equal(hasReadyLine(Buffer.from(loading)), false);
    assert.equal(hasReadyLine(Buffer.from(modelReady)), false);
    assert.equal(hasReadyLine(Buffer.from(ready)), true, ready);
    assert.equal(hasReadyLine(Buffer.from(loading + ready)), true);
  });
}
