/** Batch jobs' JSONL as tests write and read it: an input line (OpenAI's request line) and the output or error file's lines. */

/** One `/v1/embeddings` request line; `extra` replaces the line's own fields (a wrong `url`, ...). */
export const batchLine = (custom_id: string, body: Record<string, unknown>, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ custom_id, method: 'POST', url: '/v1/embeddings', body, ...extra });

/** An output or error file's line. */
export type OutputLine = { custom_id: string; response: { status_code: number; body: any } | null; error: { code: string } | null };

/** An output or error file's text as its lines. */
export const outputLines = (text: string): OutputLine[] =>
  text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));
