/**
 * The admin API's error answers: `{"error", "code", "timestamp"}` with the status from the one
 * error table (src/common/errors.ts). Schema failures become BAD_REQUEST naming the field;
 * nothing unexpected leaks as a 5xx without a code.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { asTeiplexError, TeiplexError } from '../common/errors.js';

/** The error answer's schema (OpenAPI). */
export const ErrorSchema = Type.Object({ error: Type.String(), code: Type.String(), timestamp: Type.String() });

/** Response schemas for these error statuses. */
export const errors = (...codes: number[]): Record<number, typeof ErrorSchema> => Object.fromEntries(codes.map((c) => [c, ErrorSchema]));

export function errorBody(err: TeiplexError): { error: string; code: string; timestamp: string } {
  return { error: err.message, code: err.code, timestamp: new Date().toISOString() };
}

export function adminErrorHandler(error: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  let e: TeiplexError;
  if (error.validation) {
    const first = error.validation[0];
    const where = `${error.validationContext ?? 'request'}${first?.instancePath ?? ''}`.replace(/\//g, '.');
    e = new TeiplexError('BAD_REQUEST', `${where}: ${first?.message ?? error.message}`);
  } else if (error instanceof TeiplexError) {
    e = error;
  } else if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
    // fastify's own client errors: bad JSON, wrong content type, body too large.
    e = new TeiplexError(error.statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST', error.message);
    void reply.status(error.statusCode).send(errorBody(e));
    return;
  } else {
    e = asTeiplexError(error);
  }
  void reply.status(e.httpStatus).send(errorBody(e));
}
