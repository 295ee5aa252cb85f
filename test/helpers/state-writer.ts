/**
 * A child process for the crash test: saves states 0, 1, 2, ... through StateStore as fast as it
 * can, printing each committed number, until it is killed.
 */
import { StateStore, type State } from '../../src/state/state-store.js';

const store = new StateStore(process.argv[2]);
const stateOf = (n: number): State => ({
  version: 1,
  instances: Array.from({ length: 1 + (n % 5) }, (_, i) => ({
    name: `inst-${i}`,
    model_id: `org/model-${n}`,
    port: 8080 + i,
    extra_args: ['--auto-truncate', `--n=${n}`],
    env: { K: 'v'.repeat(n % 300) },
    desired_state: n % 2 === 0 ? 'running' : 'stopped',
    created_at: new Date(0).toISOString(),
    source: 'api' as const,
  })),
  models: [],
});
for (let n = 0; ; n++) {
  await store.save(stateOf(n));
  process.stdout.write(`${n}\n`);
}
