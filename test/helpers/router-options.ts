/** RouterOptions for in-process engines and servers in tests: loopback, ephemeral ports, 1 thread. */
import type { RouterOptions } from '../../src/router/options.js';

export function testRouterOptions(over: Partial<RouterOptions> = {}): RouterOptions {
  return {
    modelId: 'test-model',
    port: 0,
    hostname: '127.0.0.1',
    maxConcurrentRequests: 512,
    maxBatchTokens: 16384,
    maxClientBatchSize: 32,
    autoTruncate: false,
    jsonOutput: false,
    payloadLimit: 2_000_000,
    device: 'cpu',
    threads: 1,
    ...over,
  };
}
