/**
 * Compares two V8 heap snapshots of the same process (`.heapsnapshot`, written by
 * `--heapsnapshot-signal` or `v8.writeHeapSnapshot`) to find what grows: by constructor (the
 * object's class, or `(type)` for strings, arrays, code, closures' contexts ...), the count, the
 * shallow size and the retained size (what freeing those objects would free; computed from the
 * dominator tree, weak edges ignored, an object inside another of its class counted once) in each
 * snapshot and the difference; then the objects allocated after the first snapshot and still
 * alive in the second, by constructor, with the dominator chain from a GC root to one of them, so
 * the holder of a leak is named.
 *
 *   node --import tsx bench/lib/heap-diff.ts A.heapsnapshot B.heapsnapshot [--top 25]
 *
 * A snapshot is parsed whole: it needs a few times its file size in memory.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface RawSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

export interface Heap {
  count: number;
  /** Per node (by ordinal): its class name, id, shallow size, retained size and immediate dominator. */
  cls: string[];
  id: Float64Array;
  self: Float64Array;
  retained: Float64Array;
  idom: Int32Array;
  /** The name of the edge by which each node's first non-weak retainer holds it (for the chains). */
  via: string[];
}

export interface ClassFigures {
  count: number;
  self: number;
  retained: number;
}

/** Parses a snapshot and computes the dominator tree and retained sizes. */
export function loadHeap(file: string): Heap {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as RawSnapshot;
  const m = raw.snapshot.meta;
  const nf = m.node_fields.length;
  const ef = m.edge_fields.length;
  const [fType, fName, fId, fSize, fEdges] = ['type', 'name', 'id', 'self_size', 'edge_count'].map((k) => m.node_fields.indexOf(k)) as [number, number, number, number, number];
  const [eType, eName, eTo] = ['type', 'name_or_index', 'to_node'].map((k) => m.edge_fields.indexOf(k)) as [number, number, number];
  const nodeTypes = m.node_types[0];
  const edgeTypes = m.edge_types[0];
  const weak = edgeTypes.indexOf('weak');
  const shortcut = edgeTypes.indexOf('shortcut');
  const n = raw.nodes.length / nf;
  const firstEdge = new Int32Array(n + 1);
  for (let i = 0, e = 0; i < n; i++) {
    firstEdge[i] = e;
    e += raw.nodes[i * nf + fEdges]! * ef;
    firstEdge[i + 1] = e;
  }
  const cls: string[] = new Array(n);
  const id = new Float64Array(n);
  const self = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const type = nodeTypes[raw.nodes[i * nf + fType]!]!;
    const name = raw.strings[raw.nodes[i * nf + fName]!]!;
    cls[i] = type === 'object' || type === 'native' ? name : `(${type})`;
    id[i] = raw.nodes[i * nf + fId]!;
    self[i] = raw.nodes[i * nf + fSize]!;
  }
  const strong = (e: number): boolean => raw.edges[e + eType] !== weak && raw.edges[e + eType] !== shortcut;
  const target = (e: number): number => raw.edges[e + eTo]! / nf;

  // Depth-first postorder from the root (node 0), strong edges only.
  const post = new Int32Array(n).fill(-1);
  const order: number[] = [];
  const via: string[] = new Array(n).fill('');
  {
    const stack = [0];
    const next = Int32Array.from(firstEdge.subarray(0, n));
    const seen = new Uint8Array(n);
    seen[0] = 1;
    while (stack.length > 0) {
      const v = stack[stack.length - 1]!;
      let pushed = false;
      while (next[v]! < firstEdge[v + 1]!) {
        const e = next[v]!;
        next[v] = e + ef;
        if (!strong(e)) continue;
        const w = target(e);
        if (seen[w] === 1) continue;
        seen[w] = 1;
        const t = edgeTypes[raw.edges[e + eType]!];
        via[w] = t === 'element' || t === 'hidden' ? `[${raw.edges[e + eName]}]` : String(raw.strings[raw.edges[e + eName]!]);
        stack.push(w);
        pushed = true;
        break;
      }
      if (!pushed) {
        stack.pop();
        post[v] = order.length;
        order.push(v);
      }
    }
  }

  // Predecessors (strong edges between reachable nodes), as compressed rows.
  const predCount = new Int32Array(n + 1);
  for (let v = 0; v < n; v++) {
    if (post[v] === -1) continue;
    for (let e = firstEdge[v]!; e < firstEdge[v + 1]!; e += ef) if (strong(e) && post[target(e)] !== -1) predCount[target(e) + 1]!++;
  }
  for (let i = 0; i < n; i++) predCount[i + 1]! += predCount[i]!;
  const preds = new Int32Array(predCount[n]!);
  const fill = Int32Array.from(predCount.subarray(0, n));
  for (let v = 0; v < n; v++) {
    if (post[v] === -1) continue;
    for (let e = firstEdge[v]!; e < firstEdge[v + 1]!; e += ef) if (strong(e) && post[target(e)] !== -1) preds[fill[target(e)]!++] = v;
  }

  // Immediate dominators (Cooper, Harvey and Kennedy's iteration), in postorder numbers.
  const root = post[0]!;
  const dom = new Int32Array(order.length).fill(-1);
  dom[root] = root;
  const intersect = (a: number, b: number): number => {
    while (a !== b) {
      while (a < b) a = dom[a]!;
      while (b < a) b = dom[b]!;
    }
    return a;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (let p = order.length - 2; p >= 0; p--) {
      const v = order[p]!;
      let d = -1;
      for (let k = predCount[v]!; k < predCount[v + 1]!; k++) {
        const q = post[preds[k]!]!;
        if (dom[q] === -1) continue;
        d = d === -1 ? q : intersect(q, d);
      }
      if (d !== -1 && dom[p] !== d) {
        dom[p] = d;
        changed = true;
      }
    }
  }
  const idom = new Int32Array(n).fill(-1);
  const retained = new Float64Array(n);
  for (let p = 0; p < order.length; p++) {
    const v = order[p]!;
    idom[v] = order[dom[p]!]!;
    retained[v] += self[v]!;
    if (p !== root) retained[idom[v]!] += retained[v]!;
  }
  return { count: n, cls, id, self, retained, idom, via };
}

/**
 * Figures by class over the nodes `keep` accepts; the retained size counts an object only when no
 * object of its class dominates it (so nested ones are not counted twice).
 */
export function byClass(h: Heap, keep: (i: number) => boolean = () => true): Map<string, ClassFigures> {
  const out = new Map<string, ClassFigures>();
  const outer = new Uint8Array(h.count);
  for (let i = 0; i < h.count; i++) {
    if (h.idom[i] === -1 || !keep(i)) continue;
    let nested = false;
    for (let d = h.idom[i]!, steps = 0; d !== h.idom[d] && steps < 10_000; d = h.idom[d]!, steps++) {
      if (h.cls[d] === h.cls[i]) {
        nested = true;
        break;
      }
    }
    outer[i] = nested ? 0 : 1;
    const f = out.get(h.cls[i]!) ?? { count: 0, self: 0, retained: 0 };
    f.count++;
    f.self += h.self[i]!;
    if (outer[i] === 1) f.retained += h.retained[i]!;
    out.set(h.cls[i]!, f);
  }
  return out;
}

/** The dominator chain from a root to node `i`: class and edge name at each step. */
export function chain(h: Heap, i: number, max = 12): string[] {
  const out: string[] = [];
  for (let v = i, steps = 0; v !== -1 && steps < 64; steps++) {
    out.push(`${h.cls[v]}${h.via[v] ? ` .${h.via[v]}` : ''} (retains ${(h.retained[v]! / 1024).toFixed(0)} KiB)`);
    if (h.idom[v] === v) break;
    v = h.idom[v]!;
  }
  return out.slice(0, max).reverse();
}

const kib = (x: number): string => `${(x / 1024).toFixed(0)}`;

function main(): void {
  const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '25' } }, allowPositionals: true });
  if (positionals.length !== 2) {
    process.stderr.write('usage: heap-diff.ts A.heapsnapshot B.heapsnapshot [--top 25]\n');
    process.exit(2);
  }
  const top = Number(values.top);
  const [a, b] = positionals.map((f) => loadHeap(f)) as [Heap, Heap];
  const ca = byClass(a);
  const cb = byClass(b);
  const total = (c: Map<string, ClassFigures>): number => [...c.values()].reduce((s, f) => s + f.self, 0);
  console.log(`heap A: ${a.count} nodes, ${kib(total(ca))} KiB; heap B: ${b.count} nodes, ${kib(total(cb))} KiB (shallow sizes of reachable objects)`);
  const names = new Set([...ca.keys(), ...cb.keys()]);
  const zero = { count: 0, self: 0, retained: 0 };
  const rows = [...names].map((name) => ({ name, a: ca.get(name) ?? zero, b: cb.get(name) ?? zero }));
  console.log(`\nby class, largest growth of retained size (KiB) first:\n${'class'.padEnd(40)} ${'count A'.padStart(9)} ${'count B'.padStart(9)} ${'self A'.padStart(9)} ${'self B'.padStart(9)} ${'ret A'.padStart(9)} ${'ret B'.padStart(9)}`);
  for (const r of rows.sort((x, y) => y.b.retained - y.a.retained - (x.b.retained - x.a.retained)).slice(0, top))
    console.log(`${r.name.slice(0, 40).padEnd(40)} ${String(r.a.count).padStart(9)} ${String(r.b.count).padStart(9)} ${kib(r.a.self).padStart(9)} ${kib(r.b.self).padStart(9)} ${kib(r.a.retained).padStart(9)} ${kib(r.b.retained).padStart(9)}`);

  // Objects of B that did not exist in A (ids grow monotonically within a process).
  let maxIdA = 0;
  for (let i = 0; i < a.count; i++) if (a.id[i]! > maxIdA) maxIdA = a.id[i]!;
  const fresh = byClass(b, (i) => b.id[i]! > maxIdA);
  console.log(`\nallocated after A and alive in B, by class (largest shallow size first):\n${'class'.padEnd(40)} ${'count'.padStart(9)} ${'self KiB'.padStart(9)} ${'ret KiB'.padStart(9)}`);
  const freshRows = [...fresh.entries()].sort((x, y) => y[1].self - x[1].self).slice(0, top);
  for (const [name, f] of freshRows) console.log(`${name.slice(0, 40).padEnd(40)} ${String(f.count).padStart(9)} ${kib(f.self).padStart(9)} ${kib(f.retained).padStart(9)}`);
  console.log('\nwho holds them (dominator chain from a GC root to one new object of each of the top classes):');
  for (const [name] of freshRows.slice(0, 6)) {
    let pick = -1;
    for (let i = b.count - 1; i >= 0 && pick === -1; i--) if (b.id[i]! > maxIdA && b.cls[i] === name && b.idom[i] !== -1) pick = i;
    if (pick !== -1) console.log(`- ${name}:\n    ${chain(b, pick).join('\n    -> ')}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) main();
