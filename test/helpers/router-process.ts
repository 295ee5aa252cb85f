/**
 * Runs the real `teiplex router` CLI (bin/teiplex.js -> dist/, so `npm run build` first) as a
 * child process on loopback with ephemeral ports, and waits for its ready line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { projectPath } from '../../src/common/paths.js';

export interface RouterProcess {
  grpcPort: number;
  httpPort?: number;
  prometheusPort?: number;
  /** The parsed ready line. */
  ready: Record<string, unknown>;
  proc: ChildProcess;
  /** Send `signal` (default SIGTERM) and resolve with the exit code (128 + n when killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number>;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/** Parse the ready line out of the router's stdout, if it is there yet. */
export function findReadyLine(text: string): Record<string, unknown> | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const v = JSON.parse(line) as Record<string, unknown>;
      if (v.msg === 'ready') return v;
    } catch {
      // a partial line; wait for more
    }
  }
  return undefined;
}

export interface StartOptions {
  /** How long to wait for the ready line (default 60 s). */
  timeoutMs?: number;
  /** Add `--port 0 --hostname 127.0.0.1` unless the args say otherwise (default true). */
  ephemeral?: boolean;
}

/**
 * Spawn `node bin/teiplex.js router ...args` and wait for the ready line. Rejects (with the
 * process output) if it exits first or does not get ready in time; the process is then killed.
 */
export function startRouterProcess(args: string[], env: NodeJS.ProcessEnv = {}, opts: StartOptions = {}): Promise<RouterProcess> {
  const extra: string[] = [];
  if (opts.ephemeral !== false) {
    if (!args.includes('--port')) extra.push('--port', '0');
    if (!args.includes('--hostname')) extra.push('--hostname', '127.0.0.1');
  }
  const proc = spawn(process.execPath, [projectPath('bin', 'teiplex.js'), 'router', ...args, ...extra], {
    cwd: projectPath(),
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);
  let out = '';
  let err = '';
  let stdout = '';
  proc.stdout!.setEncoding('utf8');
  proc.stderr!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => {
    out += d;
    stdout += d;
  });
  proc.stderr!.on('data', (d: string) => {
    out += d;
    err += d;
  });
  const exited = new Promise<number>((resolve) => {
    proc.on('exit', (code, signal) => {
      live.delete(proc);
      resolve(code ?? 128 + (signal ? (SIGNAL_NUMBERS[signal] ?? 0) : 0));
    });
  });

  return new Promise<RouterProcess>((resolve, reject) => {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const timer = setTimeout(() => {
      cleanup();
      proc.kill('SIGKILL');
      reject(new Error(`teiplex router not ready after ${timeoutMs} ms; output:\n${out}`));
    }, timeoutMs);
    const onData = (): void => {
      const ready = findReadyLine(stdout);
      if (ready === undefined) return;
      cleanup();
      resolve({
        grpcPort: ready.grpc_port as number,
        httpPort: ready.http_port as number | undefined,
        prometheusPort: ready.prometheus_port as number | undefined,
        ready,
        proc,
        exited,
        output: () => out,
        stderr: () => err,
        stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
          return exited;
        },
      });
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(Object.assign(new Error(`teiplex router exited with code ${code} before it was ready; output:\n${out}`), { exitCode: code, output: out, stderr: err }));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      proc.stdout!.off('data', onData);
    };
    proc.stdout!.on('data', onData);
    void exited.then(onExit);
  });
}

/** The CLI running in the background: its output so far, and its exit code once it exits. */
export interface CliProcess {
  readonly proc: ChildProcess;
  out: string;
  err: string;
  /** The exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>;
}

/** Start the CLI in the background, collecting its output (SIGKILLed when the test process exits). */
export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): CliProcess {
  const proc = spawn(process.execPath, [projectPath('bin', 'teiplex.js'), ...args], {
    cwd: projectPath(),
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);
  const exited = new Promise<number | null>((resolve) =>
    proc.once('exit', (code) => {
      live.delete(proc);
      resolve(code);
    }),
  );
  const c: CliProcess = { proc, out: '', err: '', exited };
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (c.out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (c.err += d));
  return c;
}

/** Run the CLI to completion (e.g. a start that must fail) and collect its output. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = startCli(args, env);
    const timer = setTimeout(() => {
      c.proc.kill('SIGKILL');
      reject(new Error(`teiplex ${args.join(' ')} did not exit in ${timeoutMs} ms; output:\n${c.out}${c.err}`));
    }, timeoutMs);
    c.proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128 + (signal ? (SIGNAL_NUMBERS[signal] ?? 0) : 0), stdout: c.out, stderr: c.err });
    });
  });
}
