/**
 * `teiplex router`: parse flags, start the router, stop on SIGTERM/SIGINT. `--standby` (the
 * manager's): start ahead, without a model, and take the flags from stdin later.
 *
 * Exit codes: 0 after a signal-initiated drain (or --help); 2 for bad flags (message on stderr);
 * 1 when the model cannot be loaded or the servers cannot start (reason on stderr), or when a
 * second signal cuts a drain short.
 */
import { FlagError } from '../common/flags.js';
import { parseRouterArgs, routerUsage, type RouterArgs } from '../router/args.js';
import { createRouterLog } from '../router/router-log.js';
import { prepareStandby, startRouter, type Prestarted, type RunningRouter } from '../router/server.js';

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

/**
 * `teiplex router --standby`: a router started ahead of its model (the manager's standby child).
 * It imports everything, starts its session thread (prepareStandby), prints
 * `{"msg":"standby","pid":N}` and waits for ONE line on stdin: `{"argv": [...]}`, the flags it
 * would have been started with; from then on it is that router. Stdin closed first, or a signal:
 * it exits 0.
 */
async function standby(): Promise<number> {
  const signals = watchSignals(() => undefined);
  const prestarted = await prepareStandby();
  process.stdout.write(`${JSON.stringify({ msg: 'standby', pid: process.pid })}\n`);
  const line = await Promise.race([firstLine(process.stdin), signals.first.then(() => undefined)]);
  signals.dispose();
  if (line === undefined) {
    process.exit(0);
  }
  let argv: string[];
  try {
    const msg = JSON.parse(line) as { argv?: unknown };
    if (!Array.isArray(msg.argv) || !msg.argv.every((a) => typeof a === 'string')) throw new Error('no argv');
    argv = msg.argv;
  } catch (err) {
    process.stderr.write(`teiplex router --standby: bad hand-over line (${(err as Error).message})\n`);
    return 2;
  }
  process.stdin.destroy();
  return run(argv, prestarted);
}

/** The first line read from `stream`; undefined if it ends first. */
function firstLine(stream: NodeJS.ReadableStream): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buf = '';
    const onData = (d: Buffer | string): void => {
      buf += String(d);
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        done();
        resolve(buf.slice(0, nl));
      }
    };
    const onEnd = (): void => {
      done();
      resolve(undefined);
    };
    const done = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onEnd);
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onEnd);
  });
}

/** --standby is read here, before the flags: it is listed after them. */
const STANDBY_USAGE = '  --standby  (first and only flag) start without a model, print {"msg":"standby","pid":N}, and take the flags as one {"argv": [...]} line on stdin (the manager\'s standby children)';

export async function run(argv: string[], prestarted?: Prestarted): Promise<number> {
  if (argv[0] === '--standby' && prestarted === undefined) return standby();
  let args: RouterArgs;
  try {
    const parsed = parseRouterArgs(argv, process.env);
    if ('help' in parsed) {
      process.stdout.write(`${routerUsage()}\n\n${STANDBY_USAGE}\n`);
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
    const starting = startRouter(args, log, { tokenizationWorkers: args.tokenizationWorkers, hfToken: args.hfToken, prestarted });
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
