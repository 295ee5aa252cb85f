/**
 * The verbs of `teiplex ctl` and their flags, in one table: the parser (args.ts), the help texts
 * (help.ts) and the shell completion (completion.ts) all read it, so a verb or flag exists in all
 * three or in none. What each verb does lives in commands.ts (batch-commands.ts for the `batch`
 * group). A verb of a group is named by two words (`batch submit`); the group's word alone is
 * no verb.
 */

export interface FlagDef {
  /** Long name without the dashes. */
  name: string;
  short?: string;
  type: 'string' | 'boolean';
  /** May be given more than once (values collected in order). */
  multiple?: boolean;
  /** The value's placeholder in the help (`--tail N`). */
  value?: string;
  help: string;
  /** What the shell completes as this flag's value. */
  completeValues?: readonly string[] | 'files';
}

/** What a verb's names are, for completion (from the live manager: instances, models, batches; local: files, shells). */
export type NameKind = 'instances' | 'models' | 'shells' | 'batches' | 'files';

export interface VerbDef {
  /** One word, or two for a verb of a group (`batch submit`). */
  name: string;
  /** The positional arguments as the help shows them (`NAME...`, `[MODEL...]`). */
  args: string;
  minNames: number;
  maxNames: number;
  names?: NameKind;
  summary: string;
  flags: readonly FlagDef[];
  /** Arguments after `--` are taken (create: the child's extra args). */
  extraArgs?: boolean;
  /** Output formats besides `table` and `json` (`name`: one name a line). */
  nameOutput?: boolean;
  /**
   * The verb has its own `--output` flag (a path, a kind of embedding): the long form is the
   * verb's, and the output format is given as `-o` only.
   */
  ownsOutput?: boolean;
}

/** Groups of verbs (`teiplex ctl batch submit ...`): the group's word and what its verbs are about. */
export const VERB_GROUPS: Readonly<Record<string, string>> = {
  batch: "batch jobs on the manager's HTTP data plane (the Files and Batches API, docs/batch.md)",
};

export const OUTPUT_FORMATS = ['table', 'json', 'name'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export const DEFAULT_URL = 'http://127.0.0.1:9000';
export const DEFAULT_TIMEOUT_SECS = 120;

export const GLOBAL_FLAGS: readonly FlagDef[] = [
  { name: 'url', type: 'string', value: 'URL', help: `the manager's REST API; batch verbs: its HTTP data plane [env TEIPLEX_URL] (default ${DEFAULT_URL})` },
  { name: 'api-key', type: 'string', value: 'KEY', help: 'an admin API key (batch verbs: any data-plane key), sent as `authorization: Bearer KEY` [env TEIPLEX_API_KEY]' },
  { name: 'cacert', type: 'string', value: 'FILE', help: "PEM CA certificate(s) to verify the manager's certificate (https://)", completeValues: 'files' },
  { name: 'cert', type: 'string', value: 'FILE', help: 'PEM client certificate (mTLS)', completeValues: 'files' },
  { name: 'key', type: 'string', value: 'FILE', help: "PEM client certificate's private key (mTLS)", completeValues: 'files' },
  {
    name: 'timeout',
    type: 'string',
    value: 'SECS',
    help: `deadline of each call to the manager, and of an instance's --wait (default ${DEFAULT_TIMEOUT_SECS})`,
  },
  {
    name: 'output',
    short: 'o',
    type: 'string',
    value: 'FORMAT',
    help: "table (default) | json (the manager's answer) | name (one name a line: ls, models, batch status)",
    completeValues: OUTPUT_FORMATS,
  },
  { name: 'help', short: 'h', type: 'boolean', help: 'this help; `teiplex ctl VERB --help` for a verb' },
];

const WAIT: FlagDef = { name: 'wait', type: 'boolean', help: 'wait until the instance runs (exit 1 if it fails or --timeout runs out first)' };

export const VERBS: readonly VerbDef[] = [
  {
    name: 'ls',
    args: '',
    minNames: 0,
    maxNames: 0,
    summary: 'list instances, catalog replicas included (name, model, runtime, status, restarts, uptime, port, GPU, memory)',
    flags: [],
    nameOutput: true,
  },
  { name: 'get', args: 'NAME', minNames: 1, maxNames: 1, names: 'instances', summary: 'one instance in detail', flags: [] },
  {
    name: 'create',
    args: 'NAME --model-id ID [-- ARGS...]',
    minNames: 1,
    maxNames: 1,
    summary: 'create an instance and start it; ARGS after -- go to the child',
    extraArgs: true,
    flags: [
      { name: 'model-id', type: 'string', value: 'ID', help: 'hub id or local model directory (required)' },
      { name: 'runtime', type: 'string', value: 'KIND', help: 'router (default) | tei | command', completeValues: ['router', 'tei', 'command'] },
      { name: 'command', type: 'string', value: 'PATH', help: 'runtime command: the executable (one the manager allows)', completeValues: 'files' },
      { name: 'gpu', type: 'string', multiple: true, value: 'N', help: 'GPU index (repeatable, or N,M)' },
      { name: 'port', type: 'string', value: 'N', help: "the child's gRPC port (default: the manager picks one)" },
      { name: 'alias', type: 'string', multiple: true, value: 'NAME', help: 'another name the data plane resolves to it (repeatable)' },
      { name: 'pooling', type: 'string', value: 'P', help: 'cls | mean | splade | last-token', completeValues: ['cls', 'mean', 'splade', 'last-token'] },
      { name: 'dtype', type: 'string', value: 'T', help: 'float32 | float16', completeValues: ['float32', 'float16'] },
      { name: 'revision', type: 'string', value: 'REV', help: 'hub revision' },
      { name: 'max-batch-tokens', type: 'string', value: 'N', help: 'passed to the child' },
      { name: 'max-concurrent-requests', type: 'string', value: 'N', help: 'passed to the child' },
      { name: 'restart-policy', type: 'string', value: 'P', help: 'always (default) | on-failure | never', completeValues: ['always', 'on-failure', 'never'] },
      {
        name: 'env',
        type: 'string',
        multiple: true,
        value: 'NAME=VALUE',
        help: "an environment variable for the child (repeatable; the manager's [security] api_env must allow it)",
      },
      { name: 'no-start', type: 'boolean', help: 'create it stopped' },
      WAIT,
    ],
  },
  { name: 'start', args: 'NAME...', minNames: 1, maxNames: Infinity, names: 'instances', summary: 'start instances', flags: [WAIT] },
  {
    name: 'stop',
    args: 'NAME...',
    minNames: 1,
    maxNames: Infinity,
    names: 'instances',
    summary: 'stop instances (their children stopped, desired state stopped)',
    flags: [],
  },
  { name: 'restart', args: 'NAME...', minNames: 1, maxNames: Infinity, names: 'instances', summary: 'restart instances', flags: [WAIT] },
  {
    name: 'rm',
    args: 'NAME...',
    minNames: 1,
    maxNames: Infinity,
    names: 'instances',
    summary: 'delete instances (stopped first; their logs removed)',
    flags: [],
  },
  {
    name: 'logs',
    args: 'NAME',
    minNames: 1,
    maxNames: 1,
    names: 'instances',
    summary: "an instance's log (the manager's in-memory tail)",
    flags: [
      { name: 'follow', short: 'f', type: 'boolean', help: 'keep printing new lines as they come (polls the manager; Ctrl-C ends)' },
      { name: 'tail', type: 'string', value: 'N', help: 'only the last N lines (default all the manager keeps)' },
    ],
  },
  {
    name: 'models',
    args: '[MODEL...]',
    minNames: 0,
    maxNames: Infinity,
    names: 'models',
    summary: 'list the catalog of on-demand models (or the named ones): state, replicas, memory',
    flags: [],
    nameOutput: true,
  },
  {
    name: 'load',
    args: 'MODEL...',
    minNames: 1,
    maxNames: Infinity,
    names: 'models',
    summary: 'start a catalog model now (returns once a replica serves)',
    flags: [],
  },
  { name: 'unload', args: 'MODEL...', minNames: 1, maxNames: Infinity, names: 'models', summary: "stop a catalog model's replicas", flags: [] },
  { name: 'memory', args: '', minNames: 0, maxNames: 0, summary: 'memory per device: used, budget, standby children', flags: [] },
  { name: 'reload', args: '', minNames: 0, maxNames: 0, summary: "reload the manager's config file (what changed)", flags: [] },
  { name: 'gpus', args: '', minNames: 0, maxNames: 0, summary: 'the GPUs the manager sees (nvidia-smi)', flags: [] },
  {
    name: 'batch submit',
    args: 'FILE',
    minNames: 1,
    maxNames: 1,
    names: 'files',
    summary: 'upload FILE (JSONL, Arrow IPC or Parquet) and start a batch over it; prints the batch id',
    ownsOutput: true,
    flags: [
      { name: 'model', type: 'string', value: 'M', help: 'the model (required for Arrow or Parquet input; JSONL lines name theirs)' },
      { name: 'text-column', type: 'string', value: 'C', help: 'table input: the text column (default text, else the only string column)' },
      { name: 'id-column', type: 'string', value: 'C', help: 'table input: the id column (default id when present, else the row number)' },
      {
        name: 'output',
        type: 'string',
        value: 'KIND',
        help: "dense | sparse | multivector (default by model: sparse for SPLADE, else dense); the format is -o's",
        completeValues: ['dense', 'sparse', 'multivector'],
      },
      {
        name: 'embedding-type',
        type: 'string',
        value: 'T',
        help: 'float32 | float16 | int8 | uint8 | binary | ubinary',
        completeValues: ['float32', 'float16', 'int8', 'uint8', 'binary', 'ubinary'],
      },
      { name: 'dimensions', type: 'string', value: 'N', help: 'truncate dense embeddings to N dimensions (Matryoshka models)' },
      { name: 'input-type', type: 'string', value: 'T', help: "the model's prompt for this kind of input (query, document, ...)" },
      { name: 'completion-window', type: 'string', value: 'W', help: 'the time the batch may take: <n>h or <n>m, at most 168h (default 24h); rows not done by then expire' },
      { name: 'metadata', type: 'string', multiple: true, value: 'KEY=VALUE', help: "the batch's metadata (repeatable)" },
      {
        name: 'wait',
        type: 'boolean',
        help: 'poll until the batch ends, progress on stderr (exit 0 only when completed; --timeout bounds each call, not the wait; Ctrl-C stops waiting, not the batch)',
      },
    ],
  },
  {
    name: 'batch status',
    args: '[ID]',
    minNames: 0,
    maxNames: 1,
    names: 'batches',
    summary: 'one batch in detail, or every batch of the key (id, status, model, rows done of total, failed, age)',
    flags: [],
    nameOutput: true,
  },
  { name: 'batch cancel', args: 'ID', minNames: 1, maxNames: 1, names: 'batches', summary: 'cancel a batch (the rows done so far stay in its output)', flags: [] },
  {
    name: 'batch download',
    args: 'ID',
    minNames: 1,
    maxNames: 1,
    names: 'batches',
    summary: "write a finished batch's output file (and error file) to disk",
    ownsOutput: true,
    flags: [
      {
        name: 'output',
        type: 'string',
        value: 'PATH',
        help: 'where the output goes (default ID-output.EXT in the current directory; a directory: that name in it)',
        completeValues: 'files',
      },
      { name: 'errors', type: 'string', value: 'PATH', help: 'where the error file goes, if the batch has one (default ID-errors.jsonl beside the output; a directory: that name in it)', completeValues: 'files' },
    ],
  },
  {
    name: 'completion',
    args: 'bash',
    minNames: 1,
    maxNames: 1,
    names: 'shells',
    summary: 'print a bash completion script (names completed from the live manager)',
    flags: [],
  },
];

export const SHELLS = ['bash'] as const;

export function findVerb(name: string): VerbDef | undefined {
  return VERBS.find((v) => v.name === name);
}

/** The verbs of a group (`batch`: submit, status, cancel, download), by their full names. */
export function groupVerbs(group: string): VerbDef[] {
  return VERBS.filter((v) => v.name.startsWith(`${group} `));
}
