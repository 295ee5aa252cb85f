/**
 * `teiplex` entry point: dispatches to one subcommand module each.
 */
interface Subcommand {
  summary: string;
  load: () => Promise<{ run(argv: string[]): Promise<number> }>;
}

const SUBCOMMANDS: Record<string, Subcommand> = {
  serve: {
    summary: 'run the manager: supervise one child per model instance, persist state, REST admin API',
    load: () => import('./serve.js'),
  },
  router: {
    summary: 'serve one model over TEI gRPC (tei.v1) and optionally TEI HTTP (built-in ONNX Runtime server)',
    load: () => import('./router.js'),
  },
  bench: {
    summary: "load generator for the gRPC multiplexer, a child's tei.v1 port and the HTTP front ends (JSON report)",
    load: () => import('./bench.js'),
  },
  ctl: {
    summary: "admin CLI over the manager's REST API: instances, logs, catalog models, memory, reload",
    load: () => import('./ctl.js'),
  },
  'make-test-model': {
    summary: 'write a BERT-shaped ONNX model with seeded random weights in the HuggingFace layout',
    load: () => import('./make-test-model.js'),
  },
};

export function usage(): string {
  const width = Math.max(...Object.keys(SUBCOMMANDS).map((n) => n.length));
  const lines = Object.entries(SUBCOMMANDS).map(([name, s]) => `  ${name.padEnd(width)}  ${s.summary}`);
  return [
    'Usage: teiplex <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `teiplex <command> --help` for the options of a command.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    const { VERSION } = await import('../common/version.js');
    process.stdout.write(`teiplex ${VERSION}\n`);
    return 0;
  }
  const sub = SUBCOMMANDS[name];
  if (!sub) {
    process.stderr.write(`teiplex: unknown command '${name}'\n\n${usage()}\n`);
    return 2;
  }
  const mod = await sub.load();
  return mod.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`teiplex: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
