/**
 * The layer table of docs/architecture.md is the rule: every import under src/ goes from a layer
 * to itself or to a layer its row names. Reads the table and every static and dynamic import.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { projectPath } from '../../src/common/paths.js';

const SRC = projectPath('src');

/** Layer -> the layers it may import ('*': every layer), from the table between the markers. */
export function readLayerTable(markdown: string): Map<string, Set<string> | '*'> {
  const begin = markdown.indexOf('<!-- layers:begin -->');
  const end = markdown.indexOf('<!-- layers:end -->');
  assert.ok(begin >= 0 && end > begin, 'docs/architecture.md has no layer table between <!-- layers:begin --> and <!-- layers:end -->');
  const table = new Map<string, Set<string> | '*'>();
  for (const line of markdown.slice(begin, end).split('\n')) {
    const m = /^\|\s*`([a-z-]+)`\s*\|([^|]*)\|/.exec(line);
    if (m === null) continue;
    const cell = m[2].trim();
    table.set(m[1], cell === 'every layer' ? '*' : new Set(cell === '' ? [] : cell.split(',').map((s) => s.trim())));
  }
  return table;
}

export interface Edge {
  file: string;
  from: string;
  to: string;
}

/** Why `edge` is not allowed by `table`, or null when it is. */
export function violation(table: Map<string, Set<string> | '*'>, edge: Edge): string | null {
  if (edge.from === edge.to) return null;
  const allowed = table.get(edge.from);
  if (allowed === undefined) return `${edge.file}: layer '${edge.from}' is not in the table of docs/architecture.md`;
  if (!table.has(edge.to)) return `${edge.file}: imports layer '${edge.to}', which is not in the table of docs/architecture.md`;
  if (allowed === '*' || allowed.has(edge.to)) return null;
  return `${edge.file}: layer '${edge.from}' may not import '${edge.to}' (docs/architecture.md allows: ${[...allowed].join(', ') || 'nothing'})`;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

const layerOf = (file: string): string => path.relative(SRC, file).split(path.sep)[0];

/** Every relative import of every file under src/, as layer edges. */
export function importEdges(): Edge[] {
  const edges: Edge[] = [];
  const pattern = /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)'(\.{1,2}\/[^']+)'/g;
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(pattern)) {
      const target = path.resolve(path.dirname(file), m[1]);
      const rel = path.relative(SRC, target);
      assert.ok(!rel.startsWith('..'), `${path.relative(SRC, file)} imports '${m[1]}', outside src/`);
      edges.push({ file: path.relative(SRC, file), from: layerOf(file), to: rel.split(path.sep)[0] });
    }
  }
  return edges;
}

describe('import boundaries (docs/architecture.md layer table)', () => {
  const table = readLayerTable(readFileSync(projectPath('docs', 'architecture.md'), 'utf8'));

  test('every folder under src/ is a row of the table, and every row is a folder', () => {
    const folders = readdirSync(SRC, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
    assert.deepEqual([...table.keys()].sort(), folders);
    for (const [layer, allowed] of table) if (allowed !== '*') for (const to of allowed) assert.ok(table.has(to), `row '${layer}' names unknown layer '${to}'`);
  });

  test('every import under src/ is allowed by the table', () => {
    const edges = importEdges();
    assert.ok(edges.length > 200, `found only ${edges.length} imports: the scanner is broken`);
    const bad = edges.map((e) => violation(table, e)).filter((v): v is string => v !== null);
    assert.deepEqual(bad, []);
  });

  test('the rule refuses a forbidden edge (a deliberate bad import: mux -> router, tei -> supervisor)', () => {
    assert.match(violation(table, { file: 'mux/fake.ts', from: 'mux', to: 'router' }) ?? '', /layer 'mux' may not import 'router'/);
    assert.match(violation(table, { file: 'tei/fake.ts', from: 'tei', to: 'supervisor' }) ?? '', /layer 'tei' may not import 'supervisor'/);
    assert.match(violation(table, { file: 'nowhere/fake.ts', from: 'nowhere', to: 'common' }) ?? '', /not in the table/);
    assert.equal(violation(table, { file: 'cli/serve.ts', from: 'cli', to: 'router' }), null);
    assert.equal(violation(table, { file: 'mux/x.ts', from: 'mux', to: 'tei' }), null);
  });

  test('the scanner sees static, type-only, side-effect and dynamic imports', () => {
    const text = [`import { a } from '../router/x.js';`, `import type { B } from '../router/y.js';`, `import '../router/z.js';`, `const m = await import('../router/w.js');`].join('\n');
    const pattern = /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)'(\.{1,2}\/[^']+)'/g;
    assert.deepEqual(
      [...text.matchAll(pattern)].map((m) => m[1]),
      ['../router/x.js', '../router/y.js', '../router/z.js', '../router/w.js'],
    );
  });
});
