/**
 * `teiplex router`: parse flags, start the router, stop on SIGTERM/SIGINT.
 *
 * Exit codes: 0 after a signal-initiated drain (or --help); 2 for bad flags (message on stderr);
 * 1 when the model cannot be loaded or the servers cannot start (reason on stderr), or when a
 * second signal cuts a drain short.
 */
import { FlagError } from '../common/flags.js';
import { parseRouterArgs, routerUsage, type RouterArgs } from '../router/args.js';
import { createRouterLog } from '../router/router-log.js';
import { startRouter, type RunningRouter } from '../router/server.js';

const SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];

/** Resolves with the first SIGTERM/SIGINT; `onNext` sees the later ones. */
function watchSignals(onNext: (s: NodeJS.Signals) => void): { first: Promise<NodeJS.Signals>; dispose(): void } {
  let seen = false;
  let resolveFirst!: (s: NodeJS.Signals) => void;
  const first = new Promise<NodeJS.Signals>((r) => (resolveFirst = r));
  const handler = (s: NodeJS.Signals): void => {
    if (!seen) {
      seen = true;
      resolveFirst(s);
    } else onNext(s);
  };
  for (const s of SIGNALS) process.on(s, handler);
  return { first, dispose: () => SIGNALS.forEach((s) => process.off(s, handler)) };
}

export async function run(argv: string[]): Promise<number> {
  let args: RouterArgs;
  try {
    const parsed = parseRouterArgs(argv, process.env);
    if ('help' in parsed) {
      process.stdout.write(routerUsage() + '\n');
      return 0;
    }
    args = parsed;
  } catch (err) {
    if (err instanceof FlagError) {
      process.stderr.write(`teiplex router: ${err.message}\n\nRun \`teiplex router --help\` for the options.\n`);
      return 2;
    }
    throw err;
  }

  const log = createRouterLog({ json: args.jsonOutput });
  for (const w of args.warnings) log.warn(w);

  let router: RunningRouter | undefined;
  let forced = false;
  const signals = watchSignals((s) => {
    // A second signal: stop waiting for in-flight requests.
    log.warn(`received ${s} again; closing without waiting`);
    forced = true;
    void router?.forceStop();
  });

  try {
    const starting = startRouter(args, log, { tokenizationWorkers: args.tokenizationWorkers, hfToken: args.hfToken });
    const first = await Promise.race([starting.then(() => null), signals.first]);
    if (first !== null) {
      // Stopped while loading: nothing is being served yet, so there is nothing to drain.
      log.info(`received ${first} while starting; exiting`);
      process.stderr.write(`teiplex router: received ${first} while starting; exiting\n`);
      process.exit(0);
    }
    router = await starting;
  } catch (err) {
    signals.dispose();
    const reason = err instanceof Error ? err.message : String(err);
    log.error('failed to start', { error: reason });
    process.stderr.write(`teiplex router: failed to start: ${reason}\n`);
    exitSoon(1);
    return 1;
  }

  const signal = await signals.first;
  log.info(`received ${signal}; draining`);
  await router.stop();
  signals.dispose();
  const code = forced ? 1 : 0;
  exitSoon(code);
  return code;
}

/** Make sure the process ends even if some library keeps a handle open after a clean stop. */
function exitSoon(code: number): void {
  setTimeout(() => process.exit(code), 3000).unref();
}
