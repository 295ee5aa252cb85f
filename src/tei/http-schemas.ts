/**
 * TEI's HTTP request bodies as TypeBox schemas (text-embeddings-inference router/src/http/types.rs),
 * and the fastify validator compiler that checks them: shared by the router's own HTTP routes and
 * the manager's HTTP data plane, so both accept exactly the same bodies and name the same field
 * when one is wrong. No coercion: a value of the wrong type is refused, never converted.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { ValueError } from '@sinclair/typebox/errors';
import { OUTPUT_TYPES } from './embedding-types.js';
import { INPUT_TYPES } from './input-types.js';

export const nullable = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()]));
export const Truncate = nullable(Type.Boolean({ description: 'truncate inputs longer than the max input length (default: --auto-truncate)' }));
export const Direction = Type.Optional(
  Type.Union([Type.Literal('Right'), Type.Literal('Left'), Type.Literal('right'), Type.Literal('left')], {
    description: '"Right" or "Left"',
  }),
);
export const PromptName = nullable(Type.String({ description: 'a key of the prompts in config_sentence_transformers.json' }));
export const TokenIds = Type.Array(Type.Integer({ minimum: 0, maximum: 0xffffffff }));
export const InputType = Type.Union([Type.String(), TokenIds]);
export const Inputs = Type.Union([InputType, Type.Array(InputType)], {
  description: 'a string, a list of token ids, or a list of those',
});

/**
 * Bodies are strict: a field that is not TEI's (or OpenAI's on /v1/embeddings) is refused with 422
 * VALIDATION naming it, so a misspelled option (`normalise`) is never silently ignored. Every
 * field TEI's router/src/http/types.rs defines is accepted, whether or not it changes anything here.
 */
const STRICT = { additionalProperties: false } as const;

/** teiplex's output matrix on the dense routes (src/tei/embedding-output.ts). */
export const EmbeddingTypeField = Type.Optional(
  Type.Union(
    OUTPUT_TYPES.map((t) => Type.Literal(t)),
    { description: '"float32", "float16", "int8", "uint8", "binary" or "ubinary"' },
  ),
);
export const EncodingField = Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('base64')], { description: '"json" or "base64"' }));
/** What the texts are, for the model's prompt (src/tei/input-types.ts). */
export const InputTypeField = Type.Optional(
  Type.Union(
    INPUT_TYPES.map((t) => Type.Literal(t)),
    { description: '"query", "document", "search_query", "search_document", "classification" or "clustering"' },
  ),
);

export const EmbedRequest = Type.Object({
  inputs: Inputs,
  truncate: Truncate,
  truncation_direction: Direction,
  prompt_name: PromptName,
  normalize: Type.Optional(Type.Boolean({ default: true })),
  dimensions: nullable(Type.Integer({ minimum: 1, maximum: 0xffffffff, description: 'keep the first N dimensions (Matryoshka), before normalizing' })),
  embedding_type: EmbeddingTypeField,
  encoding: EncodingField,
  input_type: InputTypeField,
}, STRICT);
export const EmbedSparseRequest = Type.Object({ inputs: Inputs, truncate: Truncate, truncation_direction: Direction, prompt_name: PromptName, input_type: InputTypeField }, STRICT);
export const EmbedAllRequest = EmbedSparseRequest;

export const Sequence = Type.Array(Type.String(), { minItems: 1, maxItems: 2 });
export const PredictRequest = Type.Object({
  inputs: Type.Union([Type.String(), Type.Array(Type.Union([Type.String(), Sequence]), { minItems: 1 })], {
    description: 'a string, a pair of strings [string, string], or a batch [[string], [string, string], ...]',
  }),
  truncate: Truncate,
  truncation_direction: Direction,
  raw_scores: Type.Optional(Type.Boolean({ default: false })),
}, STRICT);
export const AggregationStrategyField = Type.Optional(
  Type.Union([Type.Literal('none'), Type.Literal('simple'), Type.Literal('first'), Type.Literal('max'), Type.Literal('average')], {
    description: '"none", "simple", "first", "max" or "average"',
  }),
);
export const PredictTokensRequest = Type.Object({
  inputs: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })], { description: 'a string or a non-empty list of strings' }),
  truncate: Truncate,
  truncation_direction: Direction,
  raw_scores: Type.Optional(Type.Boolean({ default: false })),
  aggregation_strategy: AggregationStrategyField,
}, STRICT);
export const RerankRequest = Type.Object({
  query: Type.String(),
  texts: Type.Array(Type.String(), { description: 'a list of strings' }),
  truncate: Truncate,
  truncation_direction: Direction,
  raw_scores: Type.Optional(Type.Boolean({ default: false })),
  return_text: Type.Optional(Type.Boolean({ default: false })),
}, STRICT);
export const TokenizeRequest = Type.Object({
  inputs: Type.Union([Type.String(), Type.Array(Type.String())], { description: 'a string or a list of strings' }),
  add_special_tokens: Type.Optional(Type.Boolean({ default: true })),
  prompt_name: PromptName,
}, STRICT);
export const DecodeRequest = Type.Object({
  ids: Type.Union([TokenIds, Type.Array(TokenIds)], { description: 'a list of token ids or a list of those' }),
  skip_special_tokens: Type.Optional(Type.Boolean({ default: true })),
}, STRICT);
export const SimilarityRequest = Type.Object(
  {
    inputs: Type.Object(
      {
        source_sentence: Type.String({ description: 'the text the others are compared with' }),
        sentences: Type.Array(Type.String(), { description: 'a list of strings' }),
      },
      { additionalProperties: false, description: 'an object {source_sentence: string, sentences: string[]}' },
    ),
    parameters: nullable(Type.Object({ truncate: Truncate, truncation_direction: Direction, prompt_name: PromptName }, { additionalProperties: false, description: 'an object {truncate, truncation_direction, prompt_name}' })),
  },
  STRICT,
);
export const OpenAIEmbeddingsRequest = Type.Object({
  input: Inputs,
  model: nullable(Type.String()),
  user: nullable(Type.String()),
  encoding_format: Type.Optional(Type.Union([Type.Literal('float'), Type.Literal('base64')], { description: '"float" or "base64"' })),
  dimensions: nullable(Type.Integer({ minimum: 1, maximum: 0xffffffff, description: 'a positive integer' })),
  embedding_type: EmbeddingTypeField,
  input_type: InputTypeField,
}, STRICT);

/** Cohere's embedding types: float32 as "float", "base64" the float32 bytes; float16 is teiplex's addition. */
export const COHERE_EMBEDDING_TYPES = ['float', 'float16', 'int8', 'uint8', 'binary', 'ubinary', 'base64'] as const;
/** Cohere's v2 embed body (texts only). */
export const CohereEmbedRequest = Type.Object({
  model: nullable(Type.String()),
  texts: Type.Array(Type.String(), { description: 'a list of strings' }),
  input_type: InputTypeField,
  embedding_types: Type.Optional(
    Type.Array(
      Type.Union(
        COHERE_EMBEDDING_TYPES.map((t) => Type.Literal(t)),
        { description: '"float", "float16", "int8", "uint8", "binary", "ubinary" or "base64"' },
      ),
      { minItems: 1, description: 'a non-empty list of "float", "float16", "int8", "uint8", "binary", "ubinary", "base64"' },
    ),
  ),
  truncate: Type.Optional(Type.Union([Type.Literal('NONE'), Type.Literal('START'), Type.Literal('END')], { description: '"NONE", "START" or "END"' })),
  output_dimension: nullable(Type.Integer({ minimum: 1, maximum: 0xffffffff, description: 'a positive integer' })),
}, STRICT);

/** A validation failure found by the schema compiler; fastify's code for one, answered as a 4xx. */
export class BodyError extends Error {
  readonly code = 'FST_ERR_VALIDATION';
  /** The offending field's path in the body ('' for the body itself), e.g. `inputs[2]`. */
  readonly field: string;
  constructor(message: string, field: string) {
    super(message);
    this.field = field;
  }
}

/** A JSON pointer (`/inputs/2`) as the field it names (`inputs[2]`); '' for the body. */
export function fieldPath(pointer: string): string {
  return pointer === '' ? '' : pointer.slice(1).replace(/\/(\d+)/g, '[$1]').replace(/\//g, '.');
}

function fieldName(pointer: string): string {
  return pointer === '' ? 'request body' : '`' + fieldPath(pointer) + '`';
}

/** fastify validator compiler backed by TypeBox: the first error, naming the field. */
export function typeboxValidator({ schema }: { schema: unknown }) {
  const check = TypeCompiler.Compile(schema as TSchema);
  return (data: unknown) => {
    if (check.Check(data)) return { value: data };
    let first = check.Errors(data).First();
    // A union (a nullable object, a string or {text}) where one member got further into the value
    // than the others: that member's error names the field (`parameters.normalise`), not the union.
    while (first !== undefined && first.errors.length > 0) {
      const at = first.path;
      const deeper = first.errors.map((e) => e.First()).filter((e): e is ValueError => e !== undefined && e.path.length > at.length && e.path.startsWith(at));
      if (deeper.length !== 1) break;
      first = deeper[0];
    }
    if (first === undefined) return { error: new BodyError('invalid request body', '') };
    const described = (first.schema as { description?: string }).description;
    let what: string;
    if (first.message === 'Expected required property') what = 'is required';
    else if (first.message.startsWith('Unexpected property')) what = 'is not a known field';
    else what = described ? `must be ${described}` : first.message.replace(/^Expected/, 'expected');
    return { error: new BodyError(`${fieldName(first.path)} ${what}`, fieldPath(first.path)) };
  };
}
