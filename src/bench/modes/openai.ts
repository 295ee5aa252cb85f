/**
 * `openai`: OpenAI's `POST /v1/embeddings` with --batch-size texts as `input`, `model` from the
 * target (instance name or model id, as the manager resolves it), `encoding_format` from
 * --encoding-format. The answer must have one `data` entry per text.
 */
import { jsonPoster } from '../http-client.js';
import { BadResponseError, expectCount, type BenchMode } from '../mode.js';
import type { BenchOptions } from '../options.js';

const ROUTE = '/v1/embeddings';

interface OpenAIRequest {
  body: string;
  rows: number;
}

export function openaiMode(opts: BenchOptions): BenchMode<OpenAIRequest> {
  const http = jsonPoster(opts);
  const model = opts.target?.value;
  return {
    prepare(texts) {
      const body: Record<string, unknown> = { input: texts, encoding_format: opts.encodingFormat };
      if (model !== undefined) body.model = String(model);
      return { body: JSON.stringify(body), rows: texts.length };
    },
    async send({ body, rows }) {
      const res = (await http.post(ROUTE, body)) as { data?: unknown };
      if (!Array.isArray(res?.data)) throw new BadResponseError(`${ROUTE}: the answer has no data list`);
      expectCount(ROUTE, res.data.length, rows);
    },
    connect: async () => true,
    close: () => http.close(),
  };
}
