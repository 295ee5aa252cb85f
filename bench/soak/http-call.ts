/**
 * One HTTP call of the soak with a deadline, reduced to what the soak counts: an answer (status
 * and parsed body), or no answer, with whether the request may have reached the server. A
 * refused connection never reached it (nothing changed); a reset or a timeout may have (an admin
 * change is then ambiguous).
 */

export type HttpResult =
  | { kind: 'answer'; status: number; body: unknown }
  | { kind: 'failed'; code: string; reached: 'no' | 'maybe' }
  | { kind: 'timeout' };

/** The errno-like code of a fetch failure (its cause's code), e.g. ECONNREFUSED, UND_ERR_SOCKET. */
function failureCode(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; name?: unknown } }).cause;
  if (cause !== undefined && typeof cause.code === 'string') return cause.code;
  if (cause !== undefined && typeof cause.name === 'string') return cause.name;
  return (err as Error).name ?? 'Error';
}

export async function httpCall(base: string, method: string, path: string, body: unknown, timeoutMs: number): Promise<HttpResult> {
  try {
    const res = await fetch(base + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { kind: 'answer', status: res.status, body: parsed };
  } catch (err) {
    if ((err as Error).name === 'TimeoutError') return { kind: 'timeout' };
    const code = failureCode(err);
    return { kind: 'failed', code, reached: code === 'ECONNREFUSED' ? 'no' : 'maybe' };
  }
}

/** The machine code of an error body: the admin API's `code`, OpenAI's `error.code`/`error.type`, TEI's `error_type`. */
export function errorCode(body: unknown): string | undefined {
  if (body === null || typeof body !== 'object') return undefined;
  const b = body as { code?: unknown; error?: unknown; error_type?: unknown };
  if (typeof b.code === 'string') return b.code;
  if (b.error !== null && typeof b.error === 'object') {
    const e = b.error as { code?: unknown; type?: unknown };
    if (typeof e.code === 'string') return e.code;
    if (typeof e.type === 'string') return e.type;
  }
  if (typeof b.error_type === 'string') return b.error_type;
  return undefined;
}
