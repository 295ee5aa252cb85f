/**
 * The instance state machine: named states and the transitions allowed between them, in one
 * place. Every status change goes through `transition`, which refuses anything not listed.
 */
export const INSTANCE_STATES = ['stopped', 'starting', 'running', 'unhealthy', 'stopping', 'backoff', 'failed'] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];

const ALLOWED: Record<InstanceState, readonly InstanceState[]> = {
  // start requested
  stopped: ['starting'],
  // ready | stop requested | died or timed out (restart pending) | died, no restart left | exited 0 (on-failure)
  starting: ['running', 'stopping', 'backoff', 'failed', 'stopped'],
  // health checks failing | stop/restart requested | died | died, no restart left | exited 0 (on-failure)
  running: ['unhealthy', 'stopping', 'backoff', 'failed', 'stopped'],
  // recovered | stop/restart requested or hang detected (killed) | died | died, no restart left | exited 0
  unhealthy: ['running', 'stopping', 'backoff', 'failed', 'stopped'],
  // exited after a stop | exited, and a restart follows (hang restart, manual restart)
  stopping: ['stopped', 'starting', 'backoff'],
  // back-off elapsed | stop requested | restart requested
  backoff: ['starting', 'stopped', 'failed'],
  // manual start or restart | stop acknowledges it
  failed: ['starting', 'stopped'],
};

export class TransitionError extends Error {
  constructor(
    readonly from: InstanceState,
    readonly to: InstanceState,
  ) {
    super(`instance cannot go from ${from} to ${to}`);
    this.name = 'TransitionError';
  }
}

export function canTransition(from: InstanceState, to: InstanceState): boolean {
  return ALLOWED[from].includes(to);
}

/** States in which the instance's child is up and can take a call (unhealthy: a health check failed, it may well answer). */
export function canServe(s: InstanceState): boolean {
  return s === 'running' || s === 'unhealthy';
}

/** States in which a child process may be alive. */
export function hasProcess(s: InstanceState): boolean {
  return s === 'starting' || s === 'running' || s === 'unhealthy' || s === 'stopping';
}

export class StateMachine {
  private current: InstanceState;
  private changedAt = Date.now();

  constructor(
    initial: InstanceState = 'stopped',
    private readonly onChange: (from: InstanceState, to: InstanceState, reason: string) => void = () => undefined,
  ) {
    this.current = initial;
  }

  get state(): InstanceState {
    return this.current;
  }

  /** Milliseconds since the last transition. */
  get sinceMs(): number {
    return Date.now() - this.changedAt;
  }

  transition(to: InstanceState, reason: string): void {
    if (!canTransition(this.current, to)) throw new TransitionError(this.current, to);
    const from = this.current;
    this.current = to;
    this.changedAt = Date.now();
    this.onChange(from, to, reason);
  }
}
