/**
 * A summary of a V8 CPU profile (`node --cpu-prof` writes one `.cpuprofile` per process at exit):
 * busy time (samples not idle), the functions with the most self time, and inclusive time by
 * source (a file of the project, a package, a Node internal module), as shares of busy time.
 * What a flame graph shows, as a table that fits in a note.
 *
 *   node --import tsx bench/lib/cpu-profile.ts FILE.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Sampled time not spent idle, ms. */
  busyMs: number;
  /** Functions by self time: [name, share of busy time]. */
  self: Array<[string, number]>;
  /** Sources by inclusive time: [source, share of busy time]. */
  inclusive: Array<[string, number]>;
}

const IDLE = new Set(['(idle)', '(root)']);

/** Where a frame's code comes from: a project file (dist/, src/ or bench/), a package, or a Node module. */
export function sourceOf(url: string): string {
  if (url === '') return '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg !== null) return pkg[1];
  const own = /\/((?:dist|src|bench)\/.*)$/.exec(url);
  if (own !== null) return own[1];
  return url.replace(/^node:internal\/|^node:/, 'node:');
}

export function summarize(p: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const time = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) time.set(p.samples[i], (time.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  let busy = 0;
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const n of p.nodes) {
    const t = time.get(n.id) ?? 0;
    if (t === 0 || IDLE.has(n.callFrame.functionName)) continue;
    busy += t;
    const f = n.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${sourceOf(f.url)}${f.url === '' ? '' : `:${f.lineNumber + 1}`}`;
    self.set(key, (self.get(key) ?? 0) + t);
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)!.callFrame;
      if (IDLE.has(frame.functionName)) continue;
      const src = sourceOf(frame.url);
      if (seen.has(src)) continue;
      seen.add(src);
      inclusive.set(src, (inclusive.get(src) ?? 0) + t);
    }
  }
  const ranked = (m: Map<string, number>): Array<[string, number]> =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => [k, busy > 0 ? v / busy : 0]);
  return { busyMs: busy / 1000, self: ranked(self), inclusive: ranked(inclusive) };
}

function main(): void {
  const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '25' } }, allowPositionals: true });
  if (positionals.length !== 1) {
    process.stderr.write('usage: cpu-profile.ts FILE.cpuprofile [--top N]\n');
    process.exit(2);
  }
  const s = summarize(JSON.parse(readFileSync(positionals[0], 'utf8')) as CpuProfile, Number(values.top));
  const pct = (x: number): string => `${(x * 100).toFixed(1).padStart(5)} %`;
  console.log(`busy ${s.busyMs.toFixed(0)} ms\n\nself time:`);
  for (const [k, v] of s.self) console.log(`${pct(v)}  ${k}`);
  console.log('\ninclusive, by source:');
  for (const [k, v] of s.inclusive) console.log(`${pct(v)}  ${k}`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
