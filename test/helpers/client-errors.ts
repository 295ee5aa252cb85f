/**
 * Assertions on the client's typed errors (src/client/errors.ts): the promise rejects with an
 * instance of the family class (and of TeiplexClientError), carrying the documented machine code
 * (docs/errors.md) and, where given, the HTTP status or gRPC code.
 */
import assert from 'node:assert/strict';
import { TeiplexClientError } from '../../src/client/errors.js';

export interface ExpectedError {
  code: string;
  status?: number;
  grpcCode?: number;
  /** A pattern the message must match. */
  message?: RegExp;
}

/** Awaits `p`, asserts it rejected with `Cls` and `want`, and returns the error. */
export async function expectClientError<E extends TeiplexClientError>(p: Promise<unknown>, Cls: abstract new (...args: never[]) => E, want: ExpectedError): Promise<E> {
  let err: unknown;
  try {
    const v = await p;
    assert.fail(`expected ${Cls.name} ${want.code}, got an answer: ${JSON.stringify(v)?.slice(0, 300)}`);
  } catch (e) {
    err = e;
  }
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  assert.ok(err instanceof TeiplexClientError, `not a TeiplexClientError: ${text}`);
  assert.ok(err instanceof Cls, `not a ${Cls.name}: ${text}`);
  assert.equal(err.code, want.code, text);
  if (want.status !== undefined) assert.equal(err.status, want.status, `HTTP status of ${want.code}: ${text}`);
  if (want.grpcCode !== undefined) assert.equal(err.grpcCode, want.grpcCode, `gRPC code of ${want.code}: ${text}`);
  if (want.message !== undefined) assert.match(err.message, want.message);
  return err as E;
}
