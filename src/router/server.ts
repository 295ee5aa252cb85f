/**
 * `teiplex router` orchestration: resolve the model, listen on gRPC first (health NOT_SERVING
 * while the model loads), load the Engine, wrap it with metrics, serve it over gRPC, optionally
 * over TEI HTTP (--http-port) and a Prometheus endpoint (--prometheus-port), announce the ready
 * line, and drain on stop.
 *
 * Stop order: /health and gRPC health go unhealthy; the gRPC server and the HTTP server stop
 * accepting and wait for in-flight requests (up to `drainTimeoutMs`, then they are cut); the
 * Engine closes (queue drained, ONNX session released); the Prometheus endpoint closes last.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { createEngine, type EngineTuning, type RouterEngine } from './engine.js';
import { InferenceWorker, type IdleWorker } from './inference-worker.js';
import { startGrpcServer, type RouterGrpcServer } from './grpc-server.js';
import { httpFront } from './http-front.js';
import { routeNotFound, toHttpError } from '../tei/http-errors.js';
import { RouterMetrics, withMetrics } from './metrics.js';
import { resolveModelDir } from './model-source.js';
import type { RouterLog } from './router-log.js';
import type { RouterOptions } from './options.js';

/** Longest a stop waits for in-flight requests before cutting them (ms). */
export const DEFAULT_DRAIN_TIMEOUT_MS = 25_000;

export interface StartRouterExtras {
  /** --tokenization-workers. */
  tokenizationWorkers?: number;
  /** --hf-token: passed to hub downloads (as HF_TOKEN). */
  hfToken?: string;
  /** Engine knobs for tests and benchmarks. */
  tuning?: EngineTuning;
  drainTimeoutMs?: number;
  /** Environment for hub settings (HF_ENDPOINT, HF_HOME, ...); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** What a standby router started ahead (prepareStandby); default: started here. */
  prestarted?: Prestarted;
}

/** A standby router's head start: its session thread, ONNX Runtime imported, no session. */
export interface Prestarted {
  worker: IdleWorker;
}

/**
 * A standby router (`teiplex router --standby`) before it is told its model: the modules are
 * imported already (this file's imports); here the session thread starts and imports ONNX
 * Runtime, and a gRPC server is set up and closed once, so the protos are loaded and the code
 * paths compiled. What is left for the model: bind, read its files, open its session.
 */
export async function prepareStandby(): Promise<Prestarted> {
  const worker = await InferenceWorker.prestart();
  const grpc = await startGrpcServer({ hostname: '127.0.0.1', port: 0, maxClientBatchSize: 1, payloadLimit: 1024 });
  grpc.forceClose();
  return { worker };
}

export interface RunningRouter {
  readonly grpcPort: number;
  readonly httpPort?: number;
  readonly prometheusPort?: number;
  /** The metrics-wrapped Engine the front ends serve. */
  readonly engine: RouterEngine;
  readonly metrics: RouterMetrics;
  /** Drain in-flight requests, then close servers and the model. Idempotent. */
  stop(): Promise<void>;
  /** Close everything now; in-flight calls fail. */
  forceStop(): Promise<void>;
}

function boundPort(server: { address(): AddressInfo | string | null }): number {
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('server is not listening on a TCP port');
  return a.port;
}

async function startHttp(opts: RouterOptions, engine: RouterEngine, metrics: RouterMetrics, isHealthy: () => boolean, log: RouterLog): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: opts.payloadLimit, forceCloseConnections: 'idle', return503OnClosing: true });
  // While draining, answers close their keep-alive connection, so the server closes once they are sent.
  app.addHook('onSend', async (_request, reply) => {
    if (!isHealthy()) reply.header('connection', 'close');
  });
  await app.register(httpFront, {
    engine,
    maxClientBatchSize: opts.maxClientBatchSize,
    autoTruncate: opts.autoTruncate,
    payloadLimit: opts.payloadLimit,
    apiKey: opts.apiKey,
    metrics,
    isHealthy,
    servedModelName: opts.servedModelName,
    log,
  });
  app.setNotFoundHandler((request, reply) => {
    const r = toHttpError(routeNotFound(request.method, request.url), 'tei');
    reply.status(r.status).headers(r.headers).send(r.body);
  });
  await app.listen({ port: opts.httpPort ?? 0, host: opts.hostname });
  return app;
}

async function startPrometheus(port: number, hostname: string, metrics: RouterMetrics): Promise<Server> {
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || (url !== '/metrics' && url !== '/')) {
      res.writeHead(404).end();
      return;
    }
    metrics.render().then(
      (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, hostname, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Start `teiplex router`; resolves once it serves (after the ready line), rejects if it cannot. */
export async function startRouter(opts: RouterOptions, log: RouterLog, extras: StartRouterExtras = {}): Promise<RunningRouter> {
  const drainTimeoutMs = extras.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
  log.info('starting', { model_id: opts.modelId, revision: opts.revision, device: opts.device });

  // gRPC first, so health answers NOT_SERVING while the model downloads and loads.
  const grpc: RouterGrpcServer = await startGrpcServer({
    hostname: opts.hostname,
    port: opts.port,
    apiKey: opts.apiKey,
    maxClientBatchSize: opts.maxClientBatchSize,
    payloadLimit: opts.payloadLimit,
  });
  log.info('gRPC listening (NOT_SERVING until the model is loaded)', { grpc_port: grpc.port, hostname: opts.hostname });

  let engine: RouterEngine | undefined;
  let http: FastifyInstance | undefined;
  let prometheus: Server | undefined;
  let healthy = false;
  const metrics = new RouterMetrics();

  const closeAll = async (): Promise<void> => {
    grpc.forceClose();
    // In-flight HTTP requests are not waited for either (close() alone would wait for them).
    http?.server.closeAllConnections();
    await Promise.allSettled([http?.close(), engine?.close(), prometheus ? closeServer(prometheus) : undefined]);
  };

  try {
    const env = extras.hfToken !== undefined ? { ...(extras.env ?? process.env), HF_TOKEN: extras.hfToken } : extras.env;
    const resolved = await resolveModelDir({
      modelId: opts.modelId,
      revision: opts.revision,
      cacheDir: opts.huggingfaceHubCache,
      onnxFile: opts.onnxFile,
      env,
      log: (m) => log.info(m),
    });
    log.info('loading model', { dir: resolved.dir, sha: resolved.sha });
    const loaded = await createEngine(
      opts,
      resolved.dir,
      (m) => (m.startsWith('warning: ') ? log.warn(m.slice(9)) : log.info(m)),
      { ...extras.tuning, tokenizationWorkers: extras.tuning?.tokenizationWorkers ?? extras.tokenizationWorkers },
      extras.prestarted?.worker,
    );
    engine = withMetrics(loaded, metrics);
    grpc.setEngine(engine);
    healthy = true;
    if (opts.httpPort !== undefined) http = await startHttp(opts, engine, metrics, () => healthy, log);
    if (opts.prometheusPort !== undefined) prometheus = await startPrometheus(opts.prometheusPort, opts.hostname, metrics);
  } catch (err) {
    await closeAll();
    throw err;
  }

  const served = engine;
  const httpPort = http ? boundPort(http.server) : undefined;
  const prometheusPort = prometheus ? boundPort(prometheus) : undefined;
  log.ready({
    grpc_port: grpc.port,
    http_port: httpPort,
    prometheus_port: prometheusPort,
    model_id: served.info.modelId,
    model_type: served.model.kind,
    max_input_length: served.model.maxInputLength,
    pid: process.pid,
  });

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    if (stopping) return stopping;
    healthy = false;
    stopping = (async () => {
      log.info('draining in-flight requests');
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), drainTimeoutMs);
      });
      const drained = Promise.allSettled([grpc.drain(), http?.close()]).then(() => 'drained' as const);
      const outcome = await Promise.race([drained, timedOut]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        log.warn(`in-flight requests still running after ${drainTimeoutMs} ms; closing them`);
        grpc.forceClose();
        http?.server.closeAllConnections();
      }
      await served.close();
      if (prometheus) await closeServer(prometheus);
      log.info('stopped');
    })();
    return stopping;
  };

  return {
    grpcPort: grpc.port,
    httpPort,
    prometheusPort,
    engine: served,
    metrics,
    stop,
    forceStop: async () => {
      healthy = false;
      await closeAll();
    },
  };
}
