/**
 * A FAKE tei.v1 child for end-to-end tests of the manager's front ends, run as a `command`
 * instance (`fakeChildScript` writes the executable): it takes TEI's flags, serves tei.v1 Info
 * and Embed (unary and EmbedStream, no teiplex.v1.Batch) and grpc.health.v1 on `--port`, computes
 * nothing, and prints one line `FAKE-CALL {"method", "metadata", "inputs"}` on stdout for every
 * call it receives (the manager keeps it in the instance's log), so a test can see exactly which
 * metadata reached a child.
 *
 * What an input makes it do:
 * - `slow:<ms>`: answer after <ms> (a call in flight for a known time);
 * - `hang`: never answer (the caller's deadline is the only way out);
 * - `fail`: INVALID_ARGUMENT "fake failure" (an input the child refuses);
 * - `health:NOT_SERVING` / `health:SERVING`: its grpc.health.v1 status from now on (the
   manager's health checks then see it), answered like any other input;
 * - anything else: at once, the 4-float embedding [length, 1, 0, 0].
 * Info: max_client_batch_size from `--max-client-batch-size` (default 32); answered after
 * `--fake-info-delay <ms>` (default 0: at once).
 * SIGTERM: finishes the calls in flight, then exits; with `--fake-sigterm exit` (in `extra_args`)
 * it exits at once, cutting them, as a child that does not drain its own calls would.
 */
import { readFileSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { projectPath } from '../../src/common/paths.js';
import { serviceDefinition } from '../../src/tei/proto.js';

const FAKE_LINE = 'FAKE-CALL ';

/** Writes an executable that runs this fake child (for `command = ...`); returns its path. */
export async function fakeChildScript(dir: string): Promise<string> {
  const script = path.join(dir, 'fake-tei-child.sh');
  const tsx = projectPath('node_modules', 'tsx', 'dist', 'loader.mjs');
  await writeFile(script, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} --import ${JSON.stringify(tsx)} ${JSON.stringify(projectPath('test', 'helpers', 'fake-tei-child.ts'))} "$@"\n`);
  await chmod(script, 0o755);
  return script;
}

/** The calls the fake child of instance `name` logged so far (its log under the manager's log_dir). */
export function fakeCallsOf(logDir: string, name: string): FakeCall[] {
  try {
    return fakeCalls(readFileSync(path.join(logDir, `${name}.log`), 'utf8'));
  } catch {
    return [];
  }
}

/** An instance of the fake child in a manager config (`extra`: more TOML keys). */
export function fakeInstanceToml(name: string, script: string, modelId = 'fake/model', extra = ''): string {
  return `[[instances]]\nname = "${name}"\nmodel_id = ${JSON.stringify(modelId)}\nruntime = "command"\ncommand = ${JSON.stringify(script)}\n${extra}\n`;
}

export interface FakeCall {
  method: string;
  metadata: Record<string, unknown>;
  inputs: string[];
}

/** The calls a fake child logged, read from its output (the instance's log file). */
export function fakeCalls(output: string): FakeCall[] {
  const calls: FakeCall[] = [];
  for (const line of output.split('\n')) {
    const at = line.indexOf(FAKE_LINE);
    if (at >= 0) calls.push(JSON.parse(line.slice(at + FAKE_LINE.length)) as FakeCall);
  }
  return calls;
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function record(method: string, metadata: grpc.Metadata, inputs: string[]): void {
  process.stdout.write(`${FAKE_LINE}${JSON.stringify({ method, metadata: metadata.getMap(), inputs })}\n`);
}

/** What one input makes the fake do: the answer, or the error, after its delay (never: hang). */
let healthImpl: HealthImplementation | undefined;

function answer(input: string, done: (err: grpc.ServiceError | null, res?: unknown) => void): void {
  if (input === 'hang') return;
  if (input === 'fail') {
    done(Object.assign(new Error('fake failure'), { code: grpc.status.INVALID_ARGUMENT, details: 'fake failure', metadata: new grpc.Metadata() }));
    return;
  }
  const res = {
    embeddings: [input.length, 1, 0, 0],
    metadata: { compute_chars: input.length, compute_tokens: 1, total_time_ns: '0', tokenization_time_ns: '0', queue_time_ns: '0', inference_time_ns: '0' },
  };
  const healthSwitch = /^health:(SERVING|NOT_SERVING)$/.exec(input);
  if (healthSwitch !== null) healthImpl?.setStatus('', healthSwitch[1] as 'SERVING' | 'NOT_SERVING');
  const slow = /^slow:(\d+)$/.exec(input);
  if (slow === null) done(null, res);
  else setTimeout(() => done(null, res), Number(slow[1]));
}

function main(args: string[]): void {
  const port = Number(flag(args, '--port'));
  const modelId = flag(args, '--model-id') ?? 'fake';
  const maxClientBatchSize = Number(flag(args, '--max-client-batch-size') ?? 32);
  const infoDelayMs = Number(flag(args, '--fake-info-delay') ?? 0);
  const server = new grpc.Server();
  server.addService(serviceDefinition('tei.v1.Info'), {
    Info: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      record('Info', call.metadata, []);
      const info = {
        version: 'fake',
        model_id: modelId,
        model_dtype: 'float32',
        model_type: 'MODEL_TYPE_EMBEDDING',
        max_concurrent_requests: 64,
        max_input_length: 512,
        max_batch_tokens: 16384,
        max_client_batch_size: maxClientBatchSize,
        tokenization_workers: 1,
      };
      setTimeout(() => cb(null, info), infoDelayMs);
    },
  });
  const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'fake child: embeddings only' });
  server.addService(serviceDefinition('tei.v1.Embed'), {
    Embed: (call: grpc.ServerUnaryCall<{ inputs: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      record('Embed', call.metadata, [call.request.inputs]);
      answer(call.request.inputs, (err, res) => cb(err, res));
    },
    EmbedStream: (call: grpc.ServerDuplexStream<{ inputs: string }, unknown>) => {
      const inputs: string[] = [];
      let pending = 0;
      let ended = false;
      let failed = false;
      const maybeEnd = (): void => {
        if (ended && pending === 0 && !failed) {
          record('EmbedStream', call.metadata, inputs);
          call.end();
        }
      };
      call.on('data', (req: { inputs: string }) => {
        inputs.push(req.inputs);
        pending++;
        // Answers in request order: each waits for the one before it.
        const before = previous;
        previous = new Promise<void>((settled) =>
          answer(req.inputs, (err, res) => {
            void before.then(() => {
              pending--;
              if (failed) return settled();
              if (err) {
                failed = true;
                record('EmbedStream', call.metadata, inputs);
                call.emit('error', err);
              } else call.write(res);
              settled();
              maybeEnd();
            });
          }),
        );
      });
      let previous: Promise<void> = Promise.resolve();
      call.on('end', () => {
        ended = true;
        maybeEnd();
      });
    },
    EmbedSparse: unimplemented,
    EmbedSparseStream: (call: grpc.ServerDuplexStream<unknown, unknown>) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'fake child: dense only' }),
    EmbedAll: unimplemented,
    EmbedAllStream: (call: grpc.ServerDuplexStream<unknown, unknown>) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'fake child: dense only' }),
  });
  healthImpl = new HealthImplementation({ '': 'SERVING' });
  healthImpl.addToServer(server);
  server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) {
      process.stderr.write(`fake child: cannot listen on ${port}: ${err.message}\n`);
      process.exit(1);
    }
  });
  const stop = (): void => server.tryShutdown(() => process.exit(0));
  process.on('SIGTERM', flag(args, '--fake-sigterm') === 'exit' ? () => process.exit(0) : stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(import.meta.filename ?? '')) main(process.argv.slice(2));
