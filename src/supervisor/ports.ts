/**
 * Port allocation for children: the first port of the instance range that no instance holds
 * and that passes a bind probe (something outside teiplex may hold it).
 */
import { createServer } from 'node:net';

/** True when `port` can be bound on `host` right now. */
export function portIsFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

export class PortRangeExhausted extends Error {
  constructor(start: number, end: number) {
    super(`no free port left in ${start}-${end}`);
    this.name = 'PortRangeExhausted';
  }
}

export async function allocatePort(start: number, end: number, held: ReadonlySet<number>, probe: (port: number) => Promise<boolean> = portIsFree): Promise<number> {
  for (let p = start; p <= end; p++) {
    if (held.has(p)) continue;
    if (await probe(p)) return p;
  }
  throw new PortRangeExhausted(start, end);
}
