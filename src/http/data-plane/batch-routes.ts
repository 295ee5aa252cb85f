/**
 * OpenAI's Files and Batches API on the data plane (docs/batch.md): `/v1/files` (multipart upload,
 * list, get, content, delete) and `/v1/batches` (create, get, list, cancel), over the batch
 * service (src/batch/). Everything belongs to the API key that created it (no keys: one owner);
 * another key's file or batch is 404, as if it did not exist. An upload streams to disk, cut at
 * batch_max_file_mb (or what is left of the key's batch_storage_mb_per_key) with 413. These
 * routes are not counted by the key's quotas; its jobs' tokens are, as they run (job-target.ts).
 */
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import multipart from '@fastify/multipart';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Batches } from '../../batch/batches.js';
import { formatOf } from '../../batch/file-format.js';
import { CONTENT_TYPE } from '../../batch/table-format.js';
import { TeiplexError } from '../../common/errors.js';
import { OUTPUT_TYPES } from '../../tei/embedding-types.js';
import type { ListPage } from '../../tei/batch-objects.js';
import { INPUT_TYPES } from '../../tei/input-types.js';
import type { GrantOf } from './model-directory.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false: the key's quotas do not count the route's requests (quota-hooks.ts). */
    quota?: false;
  }
}

const TAG = 'data plane (OpenAI batches)';
const Id = Type.String({ minLength: 1, maxLength: 128 });
const lit = <T extends string>(values: readonly T[], what: string) => Type.Union(values.map((v) => Type.Literal(v)), { description: what });

const CreateBatchBody = Type.Object(
  {
    input_file_id: Id,
    endpoint: Type.String({ description: '"/v1/embeddings"' }),
    completion_window: Type.String({ description: '"24h" (or "<n>h" / "<n>m", at most 168h)' }),
    metadata: Type.Optional(Type.Union([Type.Null(), Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 512 }), { maxProperties: 16, description: 'at most 16 string pairs' })])),
    output_expires_after: Type.Optional(Type.Unknown()),
    model: Type.Optional(Type.String({ minLength: 1 })),
    text_column: Type.Optional(Type.String({ minLength: 1 })),
    id_column: Type.Optional(Type.String({ minLength: 1 })),
    output: Type.Optional(lit(['dense', 'sparse', 'multivector'] as const, '"dense", "sparse" or "multivector"')),
    embedding_type: Type.Optional(lit(OUTPUT_TYPES, 'one of float32, float16, int8, uint8, binary, ubinary')),
    dimensions: Type.Optional(Type.Integer({ minimum: 1, maximum: 0xffffffff, description: 'a positive integer' })),
    input_type: Type.Optional(lit(INPUT_TYPES, `one of ${INPUT_TYPES.join(', ')}`)),
  },
  { additionalProperties: false },
);

const ListQuery = Type.Object(
  {
    // A string on the data plane's own listener, a number on the admin API's (its query values are
    // coerced): either way checked and read by `limitOf`.
    limit: Type.Optional(Type.Union([Type.Integer(), Type.String({ pattern: '^[0-9]{1,5}$' })], { description: 'an integer from 1 to 10000' })),
    after: Type.Optional(Id),
    purpose: Type.Optional(Type.String()),
    order: Type.Optional(lit(['asc', 'desc'] as const, '"asc" or "desc"')),
  },
  { additionalProperties: false },
);
type ListQuery = Static<typeof ListQuery>;
const IdParams = Type.Object({ id: Id });

/** `?limit=`, 1 to 10000; `fallback` when absent. */
function limitOf(q: ListQuery, fallback: number): number {
  if (q.limit === undefined) return fallback;
  const n = Number(q.limit);
  if (!(n >= 1 && n <= 10_000)) throw new TeiplexError('VALIDATION', '`limit` must be an integer from 1 to 10000', { param: 'limit' });
  return n;
}

const list = <T extends { id: string }>(data: T[], hasMore: boolean): ListPage<T> => ({ object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore });

export function batchRoutes(app: FastifyInstance, batches: Batches, grant: GrantOf): void {
  const files = batches.files;
  const owner = (request: FastifyRequest): string => grant(request)?.name ?? '';

  app.register(async (scope) => {
    await scope.register(multipart, { throwFileSizeLimit: false });
    scope.post('/v1/files', { schema: { tags: [TAG] }, config: { errorShape: 'openai', quota: false } }, async (request) => {
      if (!request.isMultipart()) throw new TeiplexError('BAD_REQUEST', 'send multipart/form-data with the fields `purpose` ("batch") and `file`', { param: 'file' });
      const who = owner(request);
      files.checkRoom(who);
      const limit = files.uploadLimit(who);
      let purpose: string | undefined;
      let received: { temp: string; bytes: number; filename: string } | undefined;
      try {
        for await (const part of request.parts({ limits: { fileSize: limit, files: 1, fields: 8, fieldSize: 1024, parts: 10 } })) {
          if (part.type === 'file') {
            if (part.fieldname !== 'file') {
              part.file.resume();
              throw new TeiplexError('BAD_REQUEST', `unexpected file field '${part.fieldname.slice(0, 64)}': the file goes in \`file\``, { param: part.fieldname.slice(0, 64) });
            }
            const file = part.file;
            received = { ...(await files.receive(file, limit, () => file.truncated)), filename: part.filename };
          } else if (part.fieldname === 'purpose') purpose = String(part.value);
        }
        if (received === undefined) throw new TeiplexError('BAD_REQUEST', 'the form has no `file` part', { param: 'file' });
        if (received.bytes === 0) throw new TeiplexError('BAD_REQUEST', 'the file is empty', { param: 'file' });
        if (purpose !== 'batch') throw new TeiplexError('BAD_REQUEST', `purpose must be "batch"${purpose === undefined ? ' (the form has no `purpose` field)' : `, not '${purpose.slice(0, 32)}'`}`, { param: 'purpose' });
        const adopted = await files.adopt(who, received.temp, received.filename, 'batch');
        received = undefined;
        return adopted;
      } finally {
        if (received !== undefined) await rm(received.temp, { force: true });
      }
    });
  });

  app.get<{ Querystring: ListQuery }>('/v1/files', { schema: { querystring: ListQuery, tags: [TAG] }, config: { errorShape: 'openai', quota: false } }, async (request) => {
    const q = request.query;
    let all = files.list(owner(request), q.purpose);
    if (q.order !== 'asc') all = all.reverse();
    const from = q.after === undefined ? 0 : all.findIndex((f) => f.id === q.after) + 1;
    const limit = limitOf(q, 10_000);
    return list(all.slice(from, from + limit), from + limit < all.length);
  });
  app.get<{ Params: Static<typeof IdParams> }>('/v1/files/:id', { schema: { params: IdParams, tags: [TAG] }, config: { errorShape: 'openai', quota: false } }, async (request) => files.get(owner(request), request.params.id));
  app.get<{ Params: Static<typeof IdParams> }>('/v1/files/:id/content', { schema: { params: IdParams, tags: [TAG] }, config: { errorShape: 'openai', quota: false } }, async (request, reply) => {
    const f = files.get(owner(request), request.params.id);
    const path = files.dataPath(f.id);
    reply.type(CONTENT_TYPE[await formatOf(path)]).header('content-length', f.bytes).header('content-disposition', `attachment; filename="${f.filename.replace(/["\\]/g, '_')}"`);
    return reply.send(createReadStream(path));
  });
  app.delete<{ Params: Static<typeof IdParams> }>('/v1/files/:id', { schema: { params: IdParams, tags: [TAG] }, config: { errorShape: 'openai', quota: false } }, async (request) => {
    const who = owner(request);
    files.get(who, request.params.id);
    const user = batches.inputOf(request.params.id);
    if (user !== undefined) throw new TeiplexError('BAD_REQUEST', `file '${request.params.id}' is the input of batch '${user}', which has not finished; cancel it first`, { param: 'file_id' });
    await files.delete(who, request.params.id);
    return { id: request.params.id, object: 'file', deleted: true };
  });

  app.post<{ Body: Static<typeof CreateBatchBody> }>('/v1/batches', { schema: { body: CreateBatchBody, tags: [TAG] }, config: { errorShape: 'openai', quota: false } }, async (request) => {
    const { output_expires_after: _ignored, ...body } = request.body;
    return batches.create(owner(request), body);
  });
  app.get<{ Querystring: ListQuery }>('/v1/batches', { schema: { querystring: ListQuery, tags: [TAG] }, config: { errorShape: 'openai', quota: false } }, async (request) => {
    const page = batches.list(owner(request), limitOf(request.query, 20), request.query.after);
    return list(page.data, page.has_more);
  });
  app.get<{ Params: Static<typeof IdParams> }>('/v1/batches/:id', { schema: { params: IdParams, tags: [TAG] }, config: { errorShape: 'openai', quota: false } }, async (request) => batches.get(owner(request), request.params.id));
  app.post<{ Params: Static<typeof IdParams> }>('/v1/batches/:id/cancel', { schema: { params: IdParams, tags: [TAG] }, config: { errorShape: 'openai', quota: false } }, async (request) => batches.cancel(owner(request), request.params.id));
}
