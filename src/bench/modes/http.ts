/**
 * `http`: TEI's `POST /embed` (or `/embed_sparse` with --sparse) with --batch-size texts as
 * `inputs`; the target, if any, goes in the body's `model` field (how the manager's data plane
 * picks the instance; a router ignores it). The answer must be one result per text.
 */
import { jsonPoster } from '../http-client.js';
import { BadResponseError, expectCount, type BenchMode } from '../mode.js';
import type { BenchOptions } from '../options.js';

interface HttpRequest {
  body: string;
  rows: number;
}

export function httpMode(opts: BenchOptions): BenchMode<HttpRequest> {
  const http = jsonPoster(opts);
  const route = opts.sparse ? '/embed_sparse' : '/embed';
  const model = opts.target?.value;
  return {
    prepare(texts) {
      const body: Record<string, unknown> = { inputs: texts, truncate: opts.truncate };
      if (model !== undefined) body.model = model;
      return { body: JSON.stringify(body), rows: texts.length };
    },
    async send({ body, rows }) {
      const res = await http.post(route, body);
      if (!Array.isArray(res)) throw new BadResponseError(`${route}: the answer is not a list`);
      expectCount(route, res.length, rows);
    },
    connect: async () => true,
    close: () => http.close(),
  };
}
