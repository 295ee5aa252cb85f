/**
 * teiplex's TypeScript client (`import { TeiplexClient, AdminClient, BatchClient } from 'teiplex/client'`):
 * docs/client.md.
 */
export { AdminClient } from './admin.js';
export {
  BatchClient,
  FINAL_BATCH_STATUSES,
  fileExtension,
  isFinalBatchStatus,
  type BatchEmbeddingType,
  type BatchError,
  type BatchObject,
  type BatchStatus,
  type CreateBatchRequest,
  type DownloadedFile,
  type FileObject,
  type ListPage,
} from './batches.js';
export {
  BAD_RESPONSE,
  CANCELLED,
  CancelledError,
  CONNECTION_FAILED,
  ConflictError,
  ConnectionError,
  ForbiddenError,
  InvalidRequestError,
  NotFoundError,
  OverloadedError,
  ServerError,
  TeiplexClientError,
  TIMEOUT,
  TimeoutError,
  UnauthorizedError,
  UnavailableError,
} from './errors.js';
export type { CallOptions } from './http-transport.js';
export type {
  DataPlaneModel,
  DecodeOptions,
  EmbedAllOptions,
  EmbedArrowOptions,
  EmbedOptions,
  EmbedSparseOptions,
  InferenceOptions,
  InstanceSummary,
  ModelInfo,
  MultiVector,
  Prediction,
  PredictInput,
  PredictOptions,
  Rank,
  RerankOptions,
  SparseVector,
  Token,
  TokenizeOptions,
  Transport,
} from './inference-types.js';
export type { ClientOptions, RetryEvent, RetryOptions, TlsOptions } from './options.js';
export { TeiplexClient, type ModelRef, type TeiplexClientOptions } from './teiplex-client.js';
export type {
  CatalogModelInfo,
  ExitInfo,
  GpuList,
  InstanceInfo,
  InstanceSpecInput,
  LogRange,
  MemoryReport,
  OutlierInfo,
  ReconcileSummary,
  ReloadReport,
  ReplicaInfo,
} from './types.js';
