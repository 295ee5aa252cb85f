/**
 * A failed call as the one line `teiplex ctl` prints on stderr: the server's machine code and
 * message (`INSTANCE_NOT_FOUND: instance 'x' not found`), the client's own code for a manager
 * that could not be reached or did not answer in time, and a hint where the code has an obvious
 * next step (start a manager or point --url at one; pass an admin key). Never a stack trace.
 */
import { TeiplexClientError } from '../client/errors.js';

const HINTS: Record<string, (url: string) => string> = {
  CONNECTION_FAILED: (url) => `is a manager (\`teiplex serve\`) running at ${url}? --url or TEIPLEX_URL name another`,
  TIMEOUT: (url) => `the manager at ${url} did not answer within --timeout`,
  UNAUTHENTICATED: () => 'pass an admin API key with --api-key or TEIPLEX_API_KEY',
  PERMISSION_DENIED: () => 'the admin API needs a key with admin = true',
};

/** `CODE: message (hint)` for a client error; the message alone for anything else. */
export function describeFailure(err: unknown, url: string): string {
  if (err instanceof TeiplexClientError) {
    const hint = HINTS[err.code]?.(url);
    // The client's message leads with what was called and the status (`GET /instances/x: 404 CODE: `): the server's own words follow the code.
    const at = err.message.indexOf(`${err.code}: `);
    const message = at >= 0 ? err.message.slice(at + err.code.length + 2) : err.message;
    return `${err.code}: ${message}${hint ? ` (${hint})` : ''}`;
  }
  return err instanceof Error ? err.message : String(err);
}
