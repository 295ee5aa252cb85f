/**
 * Everything `teiplex router` takes from its flags and TEI's environment variables (parsed by
 * args.ts).
 */
import type { Device, Pooling } from '../tei/types.js';

/** Everything `teiplex router` takes from its flags (names follow text-embeddings-router). */
export interface RouterOptions {
  modelId: string;
  revision?: string;
  port: number; // gRPC port, default 3000
  hostname: string; // default 0.0.0.0
  maxConcurrentRequests: number; // 512
  maxBatchTokens: number; // 16384
  maxBatchRequests?: number;
  maxClientBatchSize: number; // 32
  autoTruncate: boolean;
  pooling?: Pooling;
  dtype?: 'float32' | 'float16';
  defaultPromptName?: string;
  defaultPrompt?: string;
  servedModelName?: string;
  apiKey?: string;
  jsonOutput: boolean;
  prometheusPort?: number;
  huggingfaceHubCache?: string;
  payloadLimit: number; // bytes, default 2_000_000
  device: Device; // cpu
  threads?: number; // intra-op threads; default: ONNX Runtime's choice
  httpPort?: number; // serve TEI's HTTP routes on this port too
  onnxFile?: string; // path inside the model dir, e.g. onnx/model_quantized.onnx
  /** --onnx-cache-dir: the optimized-model cache (onnx-cache.ts); undefined: none. */
  onnxCacheDir?: string;
  /**
   * --dense-path: TEI's Dense module folder (e.g. `2_Dense`). No Dense layers are applied here, so
   * a model with one (named by modules.json, or this folder present) is refused at load.
   */
  densePath?: string;
}
