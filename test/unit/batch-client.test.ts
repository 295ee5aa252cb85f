/**
 * The client's BatchClient (src/client/batches.ts) over loopback HTTP servers that answer as the
 * manager does, and as a broken network does, which a real manager cannot be made to: the
 * multipart upload (purpose, file name, the bytes), the create body's defaults, paging through
 * the batches, and the download's promise: the destination is the whole file or what it held
 * before, never a part, and no temporary file stays behind (a transfer cut short, a server that
 * stops sending past the deadline or never answers, an error answer).
 * The end-to-end behaviour against a real manager is test/e2e/ctl-batch.test.ts's.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BatchClient, fileExtension } from '../../src/client/batches.js';
import { ConnectionError, NotFoundError, TimeoutError } from '../../src/client/errors.js';

type Handler = (req: IncomingMessage, body: Buffer, res: ServerResponse) => void;

let server: Server;
let url: string;
let handler: Handler = (_req, _body, res) => res.end();
let dir: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-batch-client-'));
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(req, Buffer.concat(chunks), res));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

const json = (res: ServerResponse, status: number, body: unknown): void => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

/** The files in `dir` (a temporary file left behind would show here). */
const files = async (): Promise<string[]> => (await readdir(dir)).sort();

describe('BatchClient', () => {
  test('uploadFile: multipart with purpose batch and the file under its name (a path streamed from disk, or bytes and a name)', async () => {
    const seen: Array<{ type: string; body: string; auth: string | undefined }> = [];
    handler = (req, body, res) => {
      seen.push({ type: String(req.headers['content-type']), body: body.toString('latin1'), auth: req.headers.authorization });
      json(res, 200, { id: 'file-1', object: 'file', bytes: 3, created_at: 1, expires_at: null, filename: 'x', purpose: 'batch', status: 'processed', status_details: null });
    };
    const c = new BatchClient({ url, apiKey: 'k1' });
    const p = path.join(dir, 'in.jsonl');
    await writeFile(p, '{"custom_id":"a"}\n');
    assert.equal((await c.uploadFile(p)).id, 'file-1');
    await c.uploadFile(new Uint8Array([0x50, 0x41, 0x52, 0x31]), 'table.parquet');
    await c.close();
    await rm(p);
    for (const s of seen) {
      assert.match(s.type, /^multipart\/form-data; boundary=/);
      assert.equal(s.auth, 'Bearer k1');
      assert.match(s.body, /name="purpose"\r\n\r\nbatch\r\n/);
    }
    assert.match(seen[0].body, /name="file"; filename="in\.jsonl"\r\n[\s\S]*?\r\n\r\n\{"custom_id":"a"\}\n\r\n/);
    assert.match(seen[1].body, /name="file"; filename="table\.parquet"\r\n[\s\S]*?\r\n\r\nPAR1\r\n/);
  });

  test('uploadFile: bad arguments are refused before any call', async () => {
    const c = new BatchClient({ url });
    await assert.rejects(c.uploadFile(new Uint8Array([1])), /filename: needed when uploading bytes/);
    await assert.rejects(c.uploadFile(''), /source: must be a path or bytes/);
    await assert.rejects(c.uploadFile(new Uint8Array([1]), 'a\nb'), /filename: must be a non-empty name on one line/);
    await assert.rejects(c.uploadFile(path.join(dir, 'missing.jsonl')), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.message.includes('missing.jsonl'));
    await assert.rejects(c.uploadFile(dir), /source: .* is not a file/);
    await c.close();
  });

  test('createBatch: endpoint and completion window by default, the given fields kept; a refusal is a typed error with the code', async () => {
    const bodies: unknown[] = [];
    handler = (_req, body, res) => {
      bodies.push(JSON.parse(body.toString()));
      if (bodies.length === 2) json(res, 404, { error: { message: "no file 'file-x'", type: 'invalid_request_error', param: 'input_file_id', code: 'not_found' } });
      else json(res, 200, { id: 'batch_1', status: 'validating' });
    };
    const c = new BatchClient({ url });
    await c.createBatch({ input_file_id: 'file-1', model: 'm', dimensions: 8 });
    await assert.rejects(c.createBatch({ input_file_id: 'file-x', completion_window: '2h' }), (e: unknown) => e instanceof NotFoundError && e.code === 'NOT_FOUND' && e.status === 404);
    assert.throws(() => c.createBatch({ input_file_id: '' }), /input_file_id: must be a non-empty string/);
    await c.close();
    assert.deepEqual(bodies, [
      { endpoint: '/v1/embeddings', completion_window: '24h', input_file_id: 'file-1', model: 'm', dimensions: 8 },
      { endpoint: '/v1/embeddings', completion_window: '2h', input_file_id: 'file-x' },
    ]);
  });

  test('allBatches: page after page by `after` until has_more is false; a page that ends where it began stops the paging', async () => {
    const asked: string[] = [];
    const ids = ['batch_5', 'batch_4', 'batch_3', 'batch_2', 'batch_1'];
    handler = (req, _body, res) => {
      const q = new URL(req.url ?? '/', url).searchParams;
      asked.push(q.toString());
      const from = q.get('after') === null ? 0 : ids.indexOf(q.get('after') as string) + 1;
      const page = ids.slice(from, from + Number(q.get('limit')));
      json(res, 200, { object: 'list', data: page.map((id) => ({ id })), first_id: page[0] ?? null, last_id: page.at(-1) ?? null, has_more: from + page.length < ids.length });
    };
    const c = new BatchClient({ url });
    assert.deepEqual((await c.allBatches({ pageSize: 2 })).map((b) => b.id), ids);
    assert.deepEqual(asked, ['limit=2', 'limit=2&after=batch_4', 'limit=2&after=batch_2']);
    // A server that says has_more but repeats its page: the client stops instead of asking forever.
    asked.length = 0;
    handler = (req, _body, res) => {
      asked.push(String(req.url));
      json(res, 200, { object: 'list', data: [{ id: 'batch_9' }], first_id: 'batch_9', last_id: 'batch_9', has_more: true });
    };
    assert.equal((await c.allBatches({ pageSize: 1 })).length, 2);
    assert.equal(asked.length, 2);
    await c.close();
  });

  test('fileContent: streamed to the destination (a path, or named from the content type), replacing what was there', async () => {
    const payload = Buffer.from('{"custom_id":"a"}\n'.repeat(10_000));
    handler = (_req, _body, res) => {
      res.writeHead(200, { 'content-type': 'application/vnd.apache.parquet', 'content-length': payload.length });
      res.end(payload);
    };
    const c = new BatchClient({ url });
    const dest = path.join(dir, 'out.parquet');
    await writeFile(dest, 'old');
    const got = await c.fileContent('file-1', dest);
    assert.deepEqual(got, { path: dest, bytes: payload.length, contentType: 'application/vnd.apache.parquet' });
    assert.deepEqual(await readFile(dest), payload);
    const named = await c.fileContent('file-1', (type) => path.join(dir, `named.${fileExtension(type)}`));
    assert.equal(named.path, path.join(dir, 'named.parquet'));
    assert.deepEqual(await files(), ['named.parquet', 'out.parquet'], 'no temporary file left');
    await c.close();
    await rm(dest);
    await rm(named.path);
  });

  test('fileContent: a transfer cut short, a server silent past the deadline, no answer, an error answer: the destination untouched, no temporary file', async () => {
    const dest = path.join(dir, 'keep.jsonl');
    await writeFile(dest, 'what was there');
    const c = new BatchClient({ url, timeoutMs: 400, retry: { attempts: 1 } });
    const cases: Array<[string, Handler, (e: unknown) => boolean]> = [
      [
        'cut short',
        (_req, _body, res) => {
          res.writeHead(200, { 'content-type': 'application/jsonl', 'content-length': 1000 });
          res.write('x'.repeat(100), () => res.socket?.destroy());
        },
        (e) => e instanceof ConnectionError && e.code === 'CONNECTION_FAILED',
      ],
      [
        'silent',
        (_req, _body, res) => {
          res.writeHead(200, { 'content-type': 'application/jsonl' });
          res.write('x'.repeat(100)); // and nothing more: the deadline is a gap between bytes
        },
        (e) => e instanceof TimeoutError && e.code === 'TIMEOUT' && /no byte for 400 ms/.test(e.message),
      ],
      [
        'no answer',
        () => undefined,
        (e) => e instanceof TimeoutError && e.code === 'TIMEOUT',
      ],
      [
        'error answer',
        (_req, _body, res) => json(res, 404, { error: { message: "no file 'file-1'", type: 'invalid_request_error', param: null, code: 'not_found' } }),
        (e) => e instanceof NotFoundError && e.code === 'NOT_FOUND' && /no file 'file-1'/.test(e.message),
      ],
    ];
    for (const [what, h, expected] of cases) {
      handler = h;
      await assert.rejects(c.fileContent('file-1', dest), expected, what);
      assert.equal(await readFile(dest, 'utf8'), 'what was there', what);
      assert.deepEqual(await files(), ['keep.jsonl'], `${what}: no temporary file left`);
    }
    await c.close();
  });
});
