/** bench/lib/cpu-profile.ts: self and inclusive shares of a small hand-made V8 CPU profile. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sourceOf, summarize, type CpuProfile } from '../../bench/lib/cpu-profile.js';

const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0 });

test('sources: project files, packages (scoped too), Node modules, native', () => {
  assert.equal(sourceOf('file:///x/teiplex/dist/mux/unary-front.js'), 'dist/mux/unary-front.js');
  assert.equal(sourceOf('file:///x/node_modules/@grpc/grpc-js/build/src/server.js'), '@grpc/grpc-js');
  assert.equal(sourceOf('file:///x/node_modules/fastify/lib/route.js'), 'fastify');
  assert.equal(sourceOf('node:internal/http2/core'), 'node:http2/core');
  assert.equal(sourceOf(''), '(native)');
});

test('busy time leaves idle out; self and inclusive shares', () => {
  const p: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame('(root)', ''), children: [2, 3] },
      { id: 2, callFrame: frame('(idle)', '') },
      { id: 3, callFrame: frame('serve', 'file:///p/dist/mux/unary-front.js'), children: [4] },
      { id: 4, callFrame: frame('request', 'node:internal/http2/core') },
    ],
    samples: [2, 2, 3, 4, 4, 4],
    timeDeltas: [1000, 1000, 1000, 1000, 1000, 1000],
  };
  const s = summarize(p);
  assert.equal(s.busyMs, 4);
  assert.deepEqual(s.self, [
    ['request node:http2/core:1', 0.75],
    ['serve dist/mux/unary-front.js:1', 0.25],
  ]);
  assert.deepEqual(Object.fromEntries(s.inclusive), { 'dist/mux/unary-front.js': 1, 'node:http2/core': 0.75 });
});
