/**
 * The TeiMultiplexer RPCs that forward to a child: each one's tei.v1 method (same name, in the
 * tei.v1 service that holds it; PredictTokens: teiplex.v1.TokenClassification's) and its call shape. The multiplexer's own RPCs (ListInstances,
 * the Arrow batch calls) are not in this table.
 */
export type CallKind = 'unary' | 'bidi' | 'clientStream';

export interface ForwardedMethod {
  /** The RPC's name in TeiMultiplexer (and in tei.v1). */
  name: string;
  /** The child's method path, e.g. `/tei.v1.Embed/Embed`. */
  childPath: string;
  kind: CallKind;
  /** Info only: tei.v1.InfoRequest is empty and tei-manager's InfoRequest has no `request` field. */
  requestOptional: boolean;
}

/** The service of each row: a tei.v1 service's short name, or a full name (teiplex.v1's). */
const TABLE: Array<[service: string, name: string, kind: CallKind]> = [
  ['Info', 'Info', 'unary'],
  ['Embed', 'Embed', 'unary'],
  ['Embed', 'EmbedStream', 'bidi'],
  ['Embed', 'EmbedSparse', 'unary'],
  ['Embed', 'EmbedSparseStream', 'bidi'],
  ['Embed', 'EmbedAll', 'unary'],
  ['Embed', 'EmbedAllStream', 'bidi'],
  ['Predict', 'Predict', 'unary'],
  ['Predict', 'PredictPair', 'unary'],
  ['Predict', 'PredictStream', 'bidi'],
  ['Predict', 'PredictPairStream', 'bidi'],
  ['Rerank', 'Rerank', 'unary'],
  ['Rerank', 'RerankStream', 'clientStream'],
  ['Tokenize', 'Tokenize', 'unary'],
  ['Tokenize', 'TokenizeStream', 'bidi'],
  ['Tokenize', 'Decode', 'unary'],
  ['Tokenize', 'DecodeStream', 'bidi'],
  // teiplex extension: token classification, served by teiplex routers only (a real TEI: UNIMPLEMENTED).
  ['teiplex.v1.TokenClassification', 'PredictTokens', 'unary'],
];

export const FORWARDED_METHODS: ReadonlyMap<string, ForwardedMethod> = new Map(
  TABLE.map(([service, name, kind]) => [name, { name, childPath: `/${service.includes('.') ? service : `tei.v1.${service}`}/${name}`, kind, requestOptional: name === 'Info' }]),
);
