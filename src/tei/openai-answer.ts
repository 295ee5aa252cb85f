/**
 * OpenAI's /v1/embeddings answer as JSON text, the vectors written without a number[] per row:
 * the HTTP route streams its pieces (json-answer.ts), a batch job's output line holds them.
 */
import type { OutputType, TypedRow } from './embedding-types.js';
import { rowJson } from './embedding-output.js';

export function* openaiEmbeddingPieces(rows: readonly TypedRow[], type: OutputType, base64: boolean, modelName: string, tokens: number): Generator<string> {
  yield '{"object":"list","data":[';
  for (let index = 0; index < rows.length; index++) {
    yield `${index > 0 ? ',' : ''}{"object":"embedding","embedding":${rowJson(rows[index], type, base64)},"index":${index}}`;
  }
  yield `],"model":${JSON.stringify(modelName)},"usage":{"prompt_tokens":${tokens},"total_tokens":${tokens}}}`;
}
