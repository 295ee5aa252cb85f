/**
 * `teiplex serve`: the manager. Loads the config (a bad one exits 2 before any child is touched,
 * and so does an admin API open to the network without the [security] opt-in; with it, a warning
 * at every boot),
 * stops orphans of a dead manager, serves the admin API and the gRPC multiplexer at once, restores
 * or seeds instances and catalog models without waiting for them, reloads the config on SIGHUP,
 * and on SIGTERM/SIGINT: gRPC health NOT_SERVING and both front ends (gRPC and the HTTP data
 * plane) refusing new calls at once, calls in flight finishing within one window of
 * graceful_shutdown_timeout_secs (then cut), then every child stopped in parallel (SIGKILL after
 * the same timeout), the state saved, exit 0: at most about 2 x graceful_shutdown_timeout_secs.
 * Errors no handler caught: process-handlers.ts.
 */
import pino from 'pino';
import { loadAuth, type Auth } from '../auth/auth.js';
import { ConfigError } from '../config/validate.js';
import { loadConfig, type Config } from '../config/config.js';
import { exposureWarning } from '../config/exposure.js';
import { startMuxServer, type MuxServer } from '../mux/server.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import { FlagError, parseFlags } from '../common/flags.js';
import { wireManager } from './manager-parts.js';
import { installProcessHandlers } from './process-handlers.js';
import { ensureQuickstartModels, quickstartBanner, quickstartConfig, quickstartDir } from './quickstart.js';

const SPEC = {
  config: { type: 'string', short: 'c' },
  quickstart: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export const USAGE = `Usage: teiplex serve [--config FILE | --quickstart]

Runs the manager: supervises one child per model instance, persists the desired state, serves the
REST admin API (api_port, OpenAPI at /docs), the HTTP data plane (OpenAI, TEI, rerank, encode;
on api_port, or data_port) and the gRPC multiplexer (grpc_port), on listen_host (default
127.0.0.1; docs/security.md says what a network address needs). See config.example.toml for
every key; environment variables TEIPLEX_<KEY> (and tei-manager's TEI_MANAGER_<KEY>,
TEI_BINARY_PATH) override the file.

  -c, --config FILE   TOML config (env TEIPLEX_CONFIG); without one, defaults + environment
  --quickstart        no config file, no network: generated models written once into
                      $TEIPLEX_CACHE_DIR/quickstart (default ~/.cache/teiplex/quickstart), an
                      embedding instance 'minilm' and a catalog reranker 'reranker'
`;

export async function run(argv: string[]): Promise<number> {
  let flags: ReturnType<typeof parseFlags<typeof SPEC>>;
  try {
    flags = parseFlags(argv, SPEC);
  } catch (err) {
    process.stderr.write(`teiplex serve: ${(err as Error).message}\n`);
    return 2;
  }
  if (flags.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const log = pino({ base: { component: 'manager' } });
  const processErrors = installProcessHandlers(log);
  const configPath = flags.quickstart ? undefined : (flags.config ?? process.env.TEIPLEX_CONFIG);
  if (flags.quickstart && flags.config !== undefined) {
    process.stderr.write('teiplex serve: --quickstart takes no --config (it is its own config)\n');
    return 2;
  }
  let config: Config;
  let auth: Auth;
  try {
    if (flags.quickstart) {
      const dir = quickstartDir(process.env);
      log.info({ dir }, 'quickstart: writing the generated models the folder lacks (once)');
      const written = await ensureQuickstartModels(dir);
      if (written.length > 0) log.info({ dir, written }, 'quickstart: models written');
      config = quickstartConfig(dir, process.env);
    } else {
      config = await loadConfig(configPath, process.env);
    }
    auth = await loadAuth(config.auth, configPath); // cert files read and checked here
  } catch (err) {
    if (err instanceof ConfigError || err instanceof FlagError) {
      process.stderr.write(`teiplex serve: ${err.message}\n`);
      return 2;
    }
    throw err;
  }

  let mux: MuxServer | undefined;
  const { supervisor, catalog, metrics, routing, reloader, app, dataPlane, events } = await wireManager({ config, configPath, auth, log: (msg, fields) => log.info(fields ?? {}, msg) });
  supervisor.events.on('transition', ({ name: instance, from, to, reason }) => {
    log.info({ instance, from, to, reason }, 'instance status');
    mux?.instanceChanged(instance, to);
  });
  catalog.events.on('model', ({ model, from, to, event }) => log.info({ model, from, to, event }, 'model state'));
  processErrors.survived = (kind) => metrics.processError(kind);
  for (const warning of auth.warnings) log.warn(warning);
  const exposed = exposureWarning(config);
  if (exposed !== undefined) log.warn(exposed);
  await app.listen({ port: config.api_port, host: config.listen_host });
  const address = app.server.address();
  const apiPort = typeof address === 'object' && address !== null ? address.port : config.api_port;
  try {
    mux = await startMuxServer({ instances: supervisor, config, registry: metrics.registry, auth, routing, catalog });
  } catch (err) {
    log.error({ err: (err as Error).message }, 'cannot start the gRPC multiplexer');
    await app.close();
    return 1;
  }
  const dataPort = await dataPlane.listen(apiPort);

  let report: Awaited<ReturnType<Supervisor['boot']>>;
  try {
    report = await supervisor.boot();
  } catch (err) {
    // Nothing was spawned yet: exiting is safe, and a listener left open would hide the failure.
    log.fatal({ err: (err as Error).message }, 'boot failed: exiting');
    process.exit(1);
  }
  catalog.start();
  log.info({ ...report, api_port: apiPort, grpc_port: mux.port, data_port: dataPort, pid: process.pid }, 'ready');
  if (flags.quickstart) process.stderr.write(quickstartBanner(config.listen_host, apiPort, mux.port));

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting now');
        resolve(1);
        return;
      }
      stopping = true;
      const graceMs = config.graceful_shutdown_timeout_secs * 1000;
      const t0 = performance.now();
      const since = (): number => Math.round(performance.now() - t0);
      log.info({ signal, grace_ms: graceMs }, 'stopping: health NOT_SERVING, new calls refused, calls in flight finishing');
      // The status page's event streams end now (cleanly, new ones refused): they never hold the listener open.
      events.closeAll();
      void (async () => {
        // One window for both front ends: each refuses new calls from now on and waits for its
        // own calls in flight, both within the same graceMs.
        await Promise.all([dataPlane.drain(graceMs), mux?.shutdown(graceMs)]);
        // What is still open when the window ends is cut (and idle keep-alive connections closed).
        const closing = Promise.all([app.close(), dataPlane.close()]);
        app.server.closeAllConnections();
        await closing;
        routing.channels.closeAll();
        routing.outliers.close();
        log.info({ after_ms: since() }, 'front ends closed: stopping children');
        catalog.close();
        await supervisor.shutdown();
        log.info({ after_ms: since() }, 'stopped');
        resolve(0);
      })();
    };
    process.on('SIGHUP', () => {
      if (stopping) return;
      log.info('SIGHUP: reloading the config');
      reloader.reload().then(
        (r) => log.info({ ...r }, 'config reloaded'),
        (err: Error) => log.error({ err: err.message }, 'config not reloaded'),
      );
    });
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
