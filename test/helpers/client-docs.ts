/**
 * The runnable parts of docs/client.md: its fenced ```ts blocks (each one a whole program; a
 * block right after `<!-- client-docs: not run (reason) -->` is type-checked but not run) and the
 * manager config its examples run against (the first ```toml block after "## Examples").
 */

export interface DocExample {
  /** 1-based line of the opening fence. */
  line: number;
  code: string;
  /** Why the block is not run, when it is not. */
  notRun?: string;
}

const FENCE = /^```(\w*)\s*$/;
const NOT_RUN = /^<!--\s*client-docs:\s*not run\s*\((.+)\)\s*-->\s*$/;

/** Every fenced block of `lang` in `markdown`, with its line and the marker before it. */
function blocks(markdown: string, lang: string): DocExample[] {
  const lines = markdown.split('\n');
  const out: DocExample[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!);
    if (open === null) continue;
    const end = lines.findIndex((l, j) => j > i && /^```\s*$/.test(l));
    if (end < 0) throw new Error(`line ${i + 1}: a fenced block that is never closed`);
    if (open[1] === lang) {
      const marker = i > 0 ? NOT_RUN.exec(lines[i - 1]!) : null;
      out.push({ line: i + 1, code: lines.slice(i + 1, end).join('\n'), ...(marker !== null ? { notRun: marker[1]! } : {}) });
    }
    i = end;
  }
  return out;
}

/** The ```ts examples. */
export function tsExamples(markdown: string): DocExample[] {
  return blocks(markdown, 'ts');
}

/** The config of the examples: the first ```toml block after the "## Examples" heading. */
export function examplesConfig(markdown: string): string {
  const at = markdown.indexOf('\n## Examples\n');
  if (at < 0) throw new Error('docs/client.md has no "## Examples" section');
  const toml = blocks(markdown.slice(at), 'toml')[0];
  if (toml === undefined) throw new Error('docs/client.md: no ```toml block under "## Examples"');
  return toml.code;
}
