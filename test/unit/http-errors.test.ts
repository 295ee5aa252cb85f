/**
 * src/tei/http-errors.ts, the one place a failure becomes an HTTP answer, on a real fastify app
 * over loopback: fastify's own refusals (schema, bad JSON, empty body, content type, body size,
 * no route) become the same coded errors whatever the shape, and each shape (TEI, TEI's
 * OpenAI-compatible, OpenAI, admin) carries the table's status, types and Retry-After.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Type } from '@sinclair/typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import { TeiplexError } from '../../src/common/errors.js';
import { routeNotFound, toHttpError, type HttpErrorOptions, type HttpErrorShape } from '../../src/tei/http-errors.js';
import { typeboxValidator } from '../../src/tei/http-schemas.js';

const SHAPES: HttpErrorShape[] = ['tei', 'tei-openai', 'openai', 'admin'];

/** An app answering every failure in `shape` through toHttpError; `/throw/:code` throws that code. */
async function app(shape: HttpErrorShape, o: HttpErrorOptions, typebox: boolean): Promise<{ app: FastifyInstance; url: string }> {
  const a = Fastify({ logger: false, bodyLimit: 64 });
  if (typebox) a.setValidatorCompiler(typeboxValidator);
  a.setErrorHandler((err, _req, reply) => {
    const r = toHttpError(err, shape, o);
    return reply.status(r.status).headers(r.headers).send(r.body);
  });
  a.setNotFoundHandler((req, reply) => {
    const r = toHttpError(routeNotFound(req.method, req.url), shape, o);
    return reply.status(r.status).headers(r.headers).send(r.body);
  });
  a.post('/embed', { schema: { body: Type.Object({ inputs: Type.String() }, { additionalProperties: false }) } }, async () => ({ ok: true }));
  a.get('/throw/overloaded', async () => {
    throw new TeiplexError('MODEL_OVERLOADED', 'Model is overloaded');
  });
  a.get('/throw/loading', async () => {
    throw new TeiplexError('MODEL_LOADING', 'starting', { retryAfterSecs: 17 });
  });
  a.get('/throw/unknown', async () => {
    throw new Error('boom');
  });
  const url = await a.listen({ port: 0, host: '127.0.0.1' });
  return { app: a, url };
}

async function send(url: string, path: string, body?: string, contentType = 'application/json'): Promise<{ status: number; retry: string | null; body: any }> {
  const r = await fetch(url + path, body === undefined ? {} : { method: 'POST', body, headers: { 'content-type': contentType } });
  return { status: r.status, retry: r.headers.get('retry-after'), body: await r.json() };
}

/** Exactly the fields of each shape (docs/errors.md, "On the wire"). */
function fieldsOf(shape: HttpErrorShape, body: any): string[] {
  const keys = (o: object) => Object.keys(o).sort().join(',');
  return shape === 'openai' ? [keys(body), keys(body.error)] : [keys(body)];
}
const FIELDS: Record<HttpErrorShape, string[]> = {
  tei: ['error,error_type'],
  'tei-openai': ['code,message,type'],
  openai: ['error', 'code,message,param,type'],
  admin: ['code,error,timestamp'],
};

/** The code and type a body of `shape` names. */
function named(shape: HttpErrorShape, body: any): { message: string; type: string } {
  switch (shape) {
    case 'tei':
      return { message: body.error, type: body.error_type };
    case 'tei-openai':
      return { message: body.message, type: body.type };
    case 'openai':
      return { message: body.error.message, type: body.error.code };
    case 'admin':
      return { message: body.error, type: body.code };
  }
}

for (const shape of SHAPES) {
  describe(`fastify's refusals and thrown errors in the ${shape} shape`, () => {
    const schemaCode = shape === 'admin' ? 'BAD_REQUEST' : 'VALIDATION';
    let a: { app: FastifyInstance; url: string };
    before(async () => {
      a = await app(shape, { schemaCode, bodyTooLarge: 'the body is over 64 bytes' }, shape !== 'admin');
    });
    after(() => a.app.close());

    // [what, path, body, content type, status, TEI error_type, machine code]
    const cases: Array<[string, string, string | undefined, string, number, string, string]> = [
      ['schema failure', '/embed', '{}', 'application/json', schemaCode === 'VALIDATION' ? 422 : 400, 'validation', schemaCode],
      ['not JSON', '/embed', '{"inputs"', 'application/json', 400, 'validation', 'BAD_REQUEST'],
      ['an empty JSON body', '/embed', '', 'application/json', 400, 'validation', 'BAD_REQUEST'],
      ['a content type nobody parses', '/embed', '<x/>', 'application/xml', 415, 'validation', 'UNSUPPORTED_MEDIA_TYPE'],
      ['a body over the limit', '/embed', JSON.stringify({ inputs: 'x'.repeat(100) }), 'application/json', 413, 'payload_limit', 'PAYLOAD_TOO_LARGE'],
      ['no such route', '/nowhere', undefined, '', 404, 'not_found', 'NOT_FOUND'],
      ['an unknown thrown error', '/throw/unknown', undefined, '', 424, 'backend', 'BACKEND'],
      ['a coded error', '/throw/overloaded', undefined, '', 429, 'overloaded', 'MODEL_OVERLOADED'],
    ];
    for (const [what, path, body, type, status, teiType, code] of cases) {
      test(`${what}: ${status} ${code}`, async () => {
        const r = await send(a.url, path, body, type);
        assert.equal(r.status, status, JSON.stringify(r.body));
        assert.deepEqual(fieldsOf(shape, r.body), FIELDS[shape], JSON.stringify(r.body));
        const n = named(shape, r.body);
        assert.ok(n.message.length > 0, JSON.stringify(r.body));
        const expected = shape === 'tei' || shape === 'tei-openai' ? teiType : shape === 'openai' ? code.toLowerCase() : code;
        assert.equal(n.type, expected, JSON.stringify(r.body));
        if (shape === 'tei-openai') assert.equal(r.body.code, status);
        if (what === 'a body over the limit') assert.equal(n.message, 'the body is over 64 bytes');
        if (what === 'schema failure' && shape === 'openai') assert.equal(r.body.error.param, 'inputs');
      });
    }

    test("Retry-After: the code's default, or the error's own", async () => {
      assert.equal((await send(a.url, '/throw/overloaded')).retry, '1');
      assert.equal((await send(a.url, '/throw/loading')).retry, '17');
      assert.equal((await send(a.url, '/throw/unknown')).retry, null);
    });
  });
}

test("OpenAI's error type comes from the table", () => {
  const t = (code: ConstructorParameters<typeof TeiplexError>[0]) => (toHttpError(new TeiplexError(code, 'm'), 'openai').body as any).error.type;
  assert.deepEqual(
    ['MODEL_OVERLOADED', 'UNAUTHENTICATED', 'PERMISSION_DENIED', 'MODEL_NOT_FOUND', 'VALIDATION', 'BACKEND', 'INSTANCE_UNAVAILABLE'].map((c) => t(c as never)),
    ['rate_limit_error', 'authentication_error', 'permission_error', 'not_found_error', 'invalid_request_error', 'server_error', 'server_error'],
  );
});
