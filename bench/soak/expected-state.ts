/**
 * What the manager must hold after the soak's admin changes: for every name the bench tracks,
 * the set of states it may be in. An acknowledged change (2xx) makes the set exactly its
 * outcome; a change that may have reached the manager but got no answer (manager killed
 * mid-call, connection reset, timeout) adds its outcome to the set (either is accepted); a change
 * answered with an error, or refused before it reached the manager, leaves it as it was.
 *
 * `check` compares an observation (GET /instances, the state file) with the sets: a name whose
 * observed state is outside its set is a lost (or resurrected) acknowledged change. After a check
 * each set collapses to what was observed, so one loss is counted once and later changes are
 * judged from there.
 */

/** `running`/`stopped`: an instance's desired_state (a catalog model present: `running`); `absent`: not there. */
export type Desired = 'running' | 'stopped' | 'absent';

export interface Mismatch {
  name: string;
  expected: Desired[];
  observed: Desired;
  where: string;
  at_s: number;
}

export class ExpectedState {
  private readonly possible = new Map<string, Set<Desired>>();

  constructor(initial: Record<string, Desired>) {
    for (const [name, d] of Object.entries(initial)) this.possible.set(name, new Set([d]));
  }

  /** The one state `name` is in, or undefined while an unanswered change leaves it open. */
  known(name: string): Desired | undefined {
    const s = this.possible.get(name) ?? new Set<Desired>(['absent']);
    return s.size === 1 ? [...s][0] : undefined;
  }

  acknowledged(name: string, to: Desired): void {
    this.possible.set(name, new Set([to]));
  }

  ambiguous(name: string, to: Desired): void {
    const s = this.possible.get(name) ?? new Set<Desired>(['absent']);
    s.add(to);
    this.possible.set(name, s);
  }

  /**
   * Compare `observed` (every name it lists; a tracked name missing from it is `absent`) and
   * collapse the sets to it. Returns the mismatches.
   */
  check(observed: ReadonlyMap<string, Desired>, where: string, atS: number): Mismatch[] {
    const out: Mismatch[] = [];
    const names = new Set([...this.possible.keys(), ...observed.keys()]);
    for (const name of [...names].sort()) {
      const want = this.possible.get(name) ?? new Set<Desired>(['absent']);
      const got = observed.get(name) ?? 'absent';
      if (!want.has(got)) out.push({ name, expected: [...want].sort(), observed: got, where, at_s: atS });
      this.possible.set(name, new Set([got]));
    }
    return out;
  }
}
