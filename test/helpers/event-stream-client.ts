/**
 * A plain HTTP client of the manager's event stream (GET /events), as a script would read it:
 * node:http, the `text/event-stream` blocks parsed as they arrive (events and comments kept in
 * order), and how the stream ended (a clean end from the server, or an error). A refused request
 * (not 200) is read whole and its JSON body kept.
 */
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as tlsRequest } from 'node:https';

/** HTTPS with a client certificate (mTLS listeners). */
export interface ClientTls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

export interface StreamEvent {
  event: string;
  data: any;
}

export interface EventStreamClient {
  status: number;
  headers: IncomingMessage['headers'];
  /** Events in arrival order. */
  events: StreamEvent[];
  /** Comment lines (`: keep-alive`) seen. */
  comments: string[];
  /** The refusal's body (status not 200). */
  body: any;
  /** 'end': the server ended the stream; 'error': the connection broke; undefined: still open. */
  ended: 'end' | 'error' | undefined;
  close(): void;
}

/** Opens `path` (e.g. `/events?logs=a`) with these headers (over HTTPS with `tls`); resolves once the status is known (a refusal's body read). */
export function openEventStream(port: number, path: string, headers: Record<string, string> = {}, tls?: ClientTls): Promise<EventStreamClient> {
  return new Promise((resolve, reject) => {
    let req: ClientRequest | undefined;
    const options = { host: '127.0.0.1', port, path, headers: { accept: 'text/event-stream', ...headers } };
    const send = tls === undefined ? request : tlsRequest;
    req = send(tls === undefined ? options : { ...options, ...tls }, (res) => {
      const client: EventStreamClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events: [],
        comments: [],
        body: undefined,
        ended: undefined,
        close: () => req?.destroy(),
      };
      res.setEncoding('utf8');
      if (client.status !== 200) {
        let text = '';
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          try {
            client.body = JSON.parse(text);
          } catch {
            client.body = text;
          }
          resolve(client);
        });
        return;
      }
      let buffer = '';
      res.on('data', (d: string) => {
        buffer += d;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) client.comments.push(line.slice(1).trim());
            else if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length > 0) client.events.push({ event, data: JSON.parse(data.join('\n')) });
        }
      });
      res.on('end', () => (client.ended ??= 'end'));
      res.on('error', () => (client.ended ??= 'error'));
      res.on('aborted', () => (client.ended ??= 'error'));
      resolve(client);
    });
    req.on('error', (err) => reject(err));
    req.end();
  });
}
