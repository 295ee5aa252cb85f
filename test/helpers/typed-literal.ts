/**
 * Checks plain data (JSON or YAML read as objects) against a package's TypeScript type with the
 * compiler: each value is written as a literal of its type, so the excess property check names
 * fields the type does not have (a misspelled field that a lax JSON schema lets through), and
 * wrong value types and missing required fields are errors too. One file, one compile.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import ts from 'typescript';
import { projectPath } from '../../src/common/paths.js';

export interface TypedValue {
  /** Names the value in problems (e.g. `DaemonSet/teiplex`). */
  label: string;
  /** The module that exports the type, as an import specifier resolved from the project. */
  module: string;
  /** The exported type's name. */
  type: string;
  value: unknown;
}

/** Problems as `label: compiler message`; empty when every value is a valid literal of its type. */
export async function typedLiteralProblems(values: readonly TypedValue[]): Promise<string[]> {
  const dir = projectPath('.tmp', `typed-literal-${process.pid}-${Math.random().toString(36).slice(2)}`);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, 'values.ts');
  const lines: string[] = [];
  values.forEach((v, i) => lines.push(`import type { ${v.type} as T${i} } from ${JSON.stringify(v.module)};`));
  values.forEach((v, i) => lines.push(`// ${v.label}`, `export const v${i}: T${i} = ${JSON.stringify(v.value, null, 1)};`));
  await writeFile(file, lines.join('\n'));
  try {
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      types: [],
    });
    const sf = program.getSourceFile(file)!;
    const text = sf.getFullText();
    return ts.getPreEmitDiagnostics(program, sf).map((d) => {
      // The value the diagnostic is in: the nearest `// label` line above it.
      const before = text.slice(0, d.start ?? 0);
      const owner = /\n\/\/ (.+)/.exec(before.slice(before.lastIndexOf('\n// ')))?.[1] ?? '?';
      // An inline type is spelled out in full: name the field, not the type.
      const message = ts.flattenDiagnosticMessageText(d.messageText, ' ').replace(/( does not exist in type) '.{80,}'\.$/, '$1 (its parent)');
      return `${owner}: ${message}`;
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
