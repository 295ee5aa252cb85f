/**
 * Small promise clients for the multiplexer tests: TeiMultiplexer (decoded messages), tei.v1
 * straight to a child's port (to compare), grpc.health.v1 and server reflection, and a raw
 * client that sends arbitrary bytes to a method.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { muxClient } from '../../src/mux/protos.js';
import { loadProtos, serviceClient, type RouterServiceName } from '../../src/tei/proto.js';

export type AnyClient = grpc.Client & Record<string, any>;

export interface Unary<T> {
  res: T;
  headers: grpc.Metadata;
}

export function unary<T = any>(client: AnyClient, method: string, req: unknown, options: grpc.CallOptions = {}, metadata = new grpc.Metadata()): Promise<Unary<T>> {
  return new Promise((resolve, reject) => {
    let headers = new grpc.Metadata();
    const call = client[method](req, metadata, options, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve({ res, headers })));
    call.on('metadata', (md: grpc.Metadata) => (headers = md));
  });
}

/** A bidirectional stream: writes every request, ends, collects answers and the final error. */
export function bidi<T = any>(
  client: AnyClient,
  method: string,
  reqs: unknown[],
  options: grpc.CallOptions = {},
  metadata = new grpc.Metadata(),
): Promise<{ responses: T[]; error?: grpc.ServiceError; headers: grpc.Metadata }> {
  return new Promise((resolve) => {
    const call = client[method](metadata, options) as grpc.ClientDuplexStream<unknown, T>;
    const responses: T[] = [];
    let headers = new grpc.Metadata();
    let error: grpc.ServiceError | undefined;
    call.on('metadata', (md: grpc.Metadata) => (headers = md));
    call.on('data', (d: T) => responses.push(d));
    call.on('error', (e: grpc.ServiceError) => (error = e));
    call.on('status', () => setImmediate(() => resolve({ responses, error, headers })));
    for (const r of reqs) call.write(r);
    call.end();
  });
}

export function clientStream<T = any>(client: AnyClient, method: string, reqs: unknown[], options: grpc.CallOptions = {}, metadata = new grpc.Metadata()): Promise<T> {
  return new Promise((resolve, reject) => {
    const call = client[method](metadata, options, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
    for (const r of reqs) call.write(r);
    call.end();
  });
}

export function mux(port: number): AnyClient {
  const Ctor = muxClient();
  return new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as AnyClient;
}

export function direct(port: number, service: RouterServiceName): AnyClient {
  const Ctor = serviceClient(service);
  return new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as AnyClient;
}

export function health(port: number): AnyClient {
  const Ctor = grpc.makeClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'grpc.health.v1.Health');
  return new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as AnyClient;
}

/** A client sending raw bytes to `path` and receiving raw bytes. */
export function rawUnary(port: number, path: string, bytes: Buffer): Promise<Buffer> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const id = (b: Buffer): Buffer => b;
  return new Promise<Buffer>((resolve, reject) => {
    client.makeUnaryRequest(path, id, id, bytes, (err, res) => (err ? reject(err) : resolve(res!)));
  }).finally(() => client.close());
}

/** Services listed through reflection (v1 or v1alpha), and the number of files describing `symbol`. */
export async function reflect(port: number, version: 'v1' | 'v1alpha', symbol: string): Promise<{ services: string[]; files: string[] }> {
  const def = loadProtos([`grpc/reflection/${version}/reflection.proto`]);
  const name = `grpc.reflection.${version}.ServerReflection`;
  const Ctor = grpc.makeClientConstructor(def[name] as grpc.ServiceDefinition, name);
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as AnyClient;
  try {
    const { responses, error } = await bidi(client, 'ServerReflectionInfo', [{ list_services: '' }, { file_containing_symbol: symbol }]);
    assert.equal(error, undefined);
    const files = (responses[1].file_descriptor_response?.file_descriptor_proto ?? []) as Buffer[];
    return {
      services: (responses[0].list_services_response.service as Array<{ name: string }>).map((s) => s.name),
      // The file name is the first field of a FileDescriptorProto (tag 0x0a, short length).
      files: files.map((b) => b.subarray(2, 2 + b[1]).toString('utf8')),
    };
  } finally {
    client.close();
  }
}

/** The machine code of a gRPC error (its `teiplex-error-code` trailer, docs/errors.md); undefined without one. */
export function errorCode(err: { metadata?: grpc.Metadata } | null | undefined): string | undefined {
  const v = err?.metadata?.get('teiplex-error-code')[0];
  return v === undefined ? undefined : String(v);
}

/**
 * assert.rejects matcher for a gRPC status, and optionally its machine code (the
 * `teiplex-error-code` trailer, docs/errors.md; `null`: the error carries none, e.g. a deadline the
 * client's own) and its message: `grpcError(status.NOT_FOUND, 'INSTANCE_NOT_FOUND', /nope/)`.
 * `grpcError(status.X, /message/)` checks the status and message only.
 */
export function grpcError(code: grpc.status, machineCodeOrMessage?: string | null | RegExp, message?: RegExp) {
  const re = machineCodeOrMessage instanceof RegExp ? machineCodeOrMessage : message;
  return (err: grpc.ServiceError): boolean => {
    assert.equal(err.code, code, `expected ${grpc.status[code]}, got ${grpc.status[err.code]}: ${err.details}`);
    if (typeof machineCodeOrMessage === 'string' || machineCodeOrMessage === null) {
      assert.equal(errorCode(err), machineCodeOrMessage ?? undefined, `teiplex-error-code ${errorCode(err)}, want ${machineCodeOrMessage}: ${err.details}`);
    }
    if (re) assert.match(err.details, re);
    return true;
  };
}

/** Drop timing fields (they differ between calls) from a response, deeply. */
export function withoutTimes<T>(v: T): T {
  if (Array.isArray(v)) return v.map(withoutTimes) as T;
  if (v !== null && typeof v === 'object' && !Buffer.isBuffer(v)) {
    return Object.fromEntries(Object.entries(v).filter(([k]) => !k.endsWith('_time_ns')).map(([k, x]) => [k, withoutTimes(x)])) as T;
  }
  return v;
}

/** Deep equality with a tolerance on numbers (float results of separate inference runs). */
export function assertClose(actual: unknown, expected: unknown, path = '$', tol = 1e-5): void {
  if (typeof expected === 'number' && typeof actual === 'number') {
    assert.ok(Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)), `${path}: ${actual} vs ${expected}`);
    return;
  }
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${path}: not an array`);
    assert.equal(actual.length, expected.length, `${path}: length`);
    expected.forEach((e, i) => assertClose((actual as unknown[])[i], e, `${path}[${i}]`, tol));
    return;
  }
  if (expected !== null && typeof expected === 'object' && !Buffer.isBuffer(expected)) {
    assert.ok(actual !== null && typeof actual === 'object', `${path}: not an object`);
    assert.deepEqual(Object.keys(actual as object).sort(), Object.keys(expected).sort(), `${path}: keys`);
    for (const [k, e] of Object.entries(expected)) assertClose((actual as Record<string, unknown>)[k], e, `${path}.${k}`, tol);
    return;
  }
  assert.deepEqual(actual, expected, path);
}
