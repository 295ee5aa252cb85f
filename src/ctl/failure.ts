/**
 * A failed call as the one line `teiplex ctl` prints on stderr: the server's machine code and
 * message (`INSTANCE_NOT_FOUND: instance 'x' not found`), the client's own code for a manager
 * that could not be reached or did not answer in time, and a hint where the failure has an
 * obvious next step (a manager to start or another --url; the TLS flags; an admin key; the data
 * plane's port for a batch verb). Never a stack trace.
 */
import { TeiplexClientError } from '../client/errors.js';

/** The manager's certificate was refused by this side. */
const SERVER_CERT = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT|certificate/i;
/** The connection was dropped during the handshake or the first request. */
const CLOSED = /other side closed|ECONNRESET|EPROTO|socket hang up/i;

function connectionHint(message: string, url: string): string {
  const https = url.startsWith('https:');
  if (https && SERVER_CERT.test(message)) return "the manager's certificate was not accepted: give the CA that signed it with --cacert";
  if (https && CLOSED.test(message)) return 'the manager closed the TLS connection: does it require a client certificate (--cert and --key)?';
  if (!https && CLOSED.test(message)) return `the manager closed the connection: does it serve https:// (${url.replace(/^http:/, 'https:')})?`;
  return `is a manager (\`teiplex serve\`) running at ${url}? --url or TEIPLEX_URL name another`;
}

const HINTS: Record<string, (message: string, url: string, key: KeyKind) => string> = {
  CONNECTION_FAILED: connectionHint,
  TIMEOUT: (_, url) => `the manager at ${url} did not answer within --timeout`,
  UNAUTHENTICATED: (_, __, key) => `pass ${key === 'admin' ? 'an admin API key' : 'an API key'} with --api-key or TEIPLEX_API_KEY`,
  // A batch verb sent to a listener without the data plane (the admin port, when data_port is set).
  NOT_FOUND: (message, url, key) => (key === 'data' && /^no route /.test(message) ? `the batch routes are on the data plane: with data_port set, --url names that port, not ${url}` : ''),
};

/** What key the call needed: an admin key (the admin API), or any key the data plane takes (batch verbs). */
export type KeyKind = 'admin' | 'data';

/** `CODE: message (hint)` for a client error; the message alone for anything else. */
export function describeFailure(err: unknown, url: string, key: KeyKind = 'admin'): string {
  if (err instanceof TeiplexClientError) {
    // The client's message leads with what was called and the status (`GET /instances/x: 404 CODE: `): the server's own words follow the code.
    const at = err.message.indexOf(`${err.code}: `);
    const message = at >= 0 ? err.message.slice(at + err.code.length + 2) : err.message;
    const hint = HINTS[err.code]?.(message, url, key) || undefined;
    return `${err.code}: ${message}${hint ? ` (${hint})` : ''}`;
  }
  return err instanceof Error ? err.message : String(err);
}
