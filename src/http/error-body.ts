/**
 * The admin API's error answers: `{"error", "code", "timestamp"}` with the status from the one
 * error table (src/common/errors.ts), rendered by src/tei/http-errors.ts. Schema failures become
 * BAD_REQUEST naming the field; nothing unexpected leaks as a 5xx without a code.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { routeNotFound, toHttpError } from '../tei/http-errors.js';

/** The error answer's schema (OpenAPI). */
export const ErrorSchema = Type.Object({ error: Type.String(), code: Type.String(), timestamp: Type.String() });

/** Response schemas for these error statuses. */
export const errors = (...codes: number[]): Record<number, typeof ErrorSchema> => Object.fromEntries(codes.map((c) => [c, ErrorSchema]));

function sendAdminError(err: unknown, reply: FastifyReply): void {
  const a = toHttpError(err, 'admin', { schemaCode: 'BAD_REQUEST' });
  void reply.status(a.status).headers(a.headers).send(a.body);
}

export function adminErrorHandler(error: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  sendAdminError(error, reply);
}

export function adminNotFoundHandler(req: FastifyRequest, reply: FastifyReply): void {
  sendAdminError(routeNotFound(req.method, req.url), reply);
}
