/**
 * OpenAI's batch output and error file lines: one JSON object per request, `{id, custom_id,
 * response: {status_code, request_id, body}, error}`. A request that ran has a response (its
 * answer, or its error body in OpenAI's shape with the status it would have had); one that never
 * ran (the job expired or was cancelled first) has `response: null` and an `error`.
 */
import { randomBytes } from 'node:crypto';
import { toHttpError } from '../tei/http-errors.js';
import { newId } from './batch-ids.js';

const requestId = (): string => `req_${randomBytes(16).toString('hex')}`;

/** A success line around `body`, already JSON text. */
export function successLine(customId: string, body: string): string {
  return `{"id":"${newId('batch_req_')}","custom_id":${JSON.stringify(customId)},"response":{"status_code":200,"request_id":"${requestId()}","body":${body}},"error":null}\n`;
}

/** A failed request's line: the status and OpenAI error body `err` has on /v1/embeddings. */
export function failureLine(customId: string, err: unknown): string {
  const e = toHttpError(err, 'openai');
  return `${JSON.stringify({ id: newId('batch_req_'), custom_id: customId, response: { status_code: e.status, request_id: requestId(), body: e.body }, error: null })}\n`;
}

/** A request that never ran: `code` (batch_expired, batch_cancelled) says why. */
export function notRunLine(customId: string, code: string, message: string): string {
  return `${JSON.stringify({ id: newId('batch_req_'), custom_id: customId, response: null, error: { code, message } })}\n`;
}
