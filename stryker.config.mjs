// Mutation testing of the pure core (docs/testing.md, "Mutation testing").
// A run covers the module groups below named in STRYKER_MODULE (comma-separated; unset: all of
// them): STRYKER_MODULE=backoff npm run mutation. Each group mutates its source files and runs
// only the unit test files that exercise them; the tap runner runs one test file per process and
// records per-file coverage, so a mutant only reruns the files that reach it.
import { readFileSync } from 'node:fs';

/** `file:start-end` for the lines of one exported function (from its signature to its closing brace). */
function fn(file, name) {
  const lines = readFileSync(file, 'utf8').split('\n');
  const start = lines.findIndex((l) => l.startsWith(`export function ${name}(`));
  if (start < 0) throw new Error(`${file}: no exported function ${name}`);
  const end = lines.findIndex((l, i) => i > start && l === '}');
  return `${file}:${start + 1}-${end + 1}`;
}

const unit = (...names) => names.map((n) => `test/unit/${n}.test.ts`);

export const groups = {
  'instance-state': { mutate: ['src/supervisor/instance-state.ts'], tests: unit('instance-state', 'model-state', 'catalog-sweep') },
  'model-state': { mutate: ['src/catalog/model-state.ts'], tests: unit('model-state', 'catalog-sweep') },
  backoff: { mutate: ['src/supervisor/backoff.ts'], tests: unit('backoff') },
  'queue-cuts': { mutate: [fn('src/router/queue.ts', 'planCuts')], tests: unit('router-queue', 'batch-cuts-properties') },
  'row-fanout-chunks': { mutate: [fn('src/child/batching/row-fanout.ts', 'planChunks')], tests: unit('row-fanout', 'chunk-plan-properties') },
  placement: { mutate: ['src/catalog/memory-budget.ts', 'src/catalog/placement.ts'], tests: unit('memory-budget', 'placement', 'placement-properties', 'catalog-sweep', 'authz-units') },
  'allow-list': { mutate: ['src/auth/allow-list.ts'], tests: unit('allow-list', 'subject-match-properties', 'authz-units', 'security-policy') },
  access: { mutate: ['src/auth/access.ts', 'src/auth/api-keys.ts'], tests: unit('authz-units', 'api-keys') },
  config: { mutate: ['src/config/validate.ts', 'src/config/config.ts'], tests: unit('config', 'config-bounds', 'config-checks', 'docs-contract-config', 'security-policy', 'outlier') },
};

const names = process.env.STRYKER_MODULE ? process.env.STRYKER_MODULE.split(',') : Object.keys(groups);
for (const n of names) if (!(n in groups)) throw new Error(`STRYKER_MODULE: ${n} is not one of ${Object.keys(groups).join(', ')}`);
const chosen = names.map((n) => groups[n]);
const tag = process.env.STRYKER_MODULE ? names.join('+') : 'all';
const existing = (files) =>
  files.filter((f) => {
    try {
      readFileSync(f);
      return true;
    } catch {
      return false;
    }
  });

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  mutate: chosen.flatMap((g) => g.mutate),
  testRunner: 'tap',
  tap: {
    testFiles: existing([...new Set(chosen.flatMap((g) => g.tests))]),
    // The test file runs in the process Stryker starts (no --test: that would run it in a child
    // process whose coverage Stryker cannot see); node:test then reports TAP on stdout.
    nodeArgs: ['--import', 'tsx', '--test-reporter=tap', '{{testFile}}'],
  },
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  coverageAnalysis: 'perTest',
  concurrency: 2,
  // The machine this was tuned on is shared and slow: a test file takes seconds to start.
  timeoutMS: 30000,
  timeoutFactor: 2,
  ignorePatterns: ['dist', 'bench', 'test/e2e', 'reports', '.tmp'],
  incremental: true,
  incrementalFile: `reports/stryker-incremental-${tag}.json`,
  reporters: ['clear-text', 'progress', 'json', 'html'],
  jsonReporter: { fileName: `reports/mutation/${tag}.json` },
  htmlReporter: { fileName: `reports/mutation/${tag}.html` },
  clearTextReporter: { allowColor: false, logTests: false },
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
};
