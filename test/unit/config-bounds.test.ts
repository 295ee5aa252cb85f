/**
 * Every scalar config key's documented range (docs/manager.md's config table), checked at its
 * edges: the last value inside is taken, the first one outside is refused with a message naming
 * the key. The table below is the expectation, written from the docs, not read from the schema,
 * so a bound changed in src/config/config.ts fails here.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { resolveConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/config/validate.js';

/** key -> [a value taken, a value refused] pairs at each documented edge; non-numbers: a wrong type. */
const EDGES: Record<string, Array<[unknown, unknown]>> = {
  api_port: [
    [0, -1],
    [65535, 65536],
  ],
  grpc_port: [
    [0, -1],
    [65535, 65536],
  ],
  data_port: [
    [0, -1],
    [65535, 65536],
  ],
  instance_port_start: [
    [1, 0],
    [65535, 65536],
  ],
  instance_port_end: [
    [1, 0],
    [65535, 65536],
  ],
  log_max_bytes: [[1024, 1023]],
  log_max_files: [[1, 0]],
  log_tail_lines: [[1, 0]],
  log_line_max_bytes: [
    [256, 255],
    [1024 * 1024, 1024 * 1024 + 1],
  ],
  log_buffer_bytes: [[64 * 1024, 64 * 1024 - 1]],
  health_check_interval_secs: [[0.001, 0]],
  health_check_timeout_secs: [[0.001, 0]],
  max_failures_before_restart: [[1, 0]],
  startup_timeout_secs: [[0.001, 0]],
  graceful_shutdown_timeout_secs: [[0, -0.001]],
  max_instances: [[1, 0]],
  grpc_request_timeout_secs: [[0.001, 0]],
  grpc_max_message_size_mb: [
    [0.001, 0],
    [2047, 2047.5],
  ],
  grpc_max_concurrent_streams: [
    [1, 0],
    [2147483647, 2147483648],
  ],
  grpc_keepalive_interval_secs: [[0.001, 0]],
  grpc_keepalive_timeout_secs: [[0.001, 0]],
  arrow_max_rows: [[1, 0]],
  arrow_max_decompressed_mb: [
    [0.001, 0],
    [16384, 16385],
  ],
  arrow_decode_budget_mb: [
    [0.001, 0],
    [65536, 65537],
  ],
  arrow_decode_threads: [
    [1, 0],
    [64, 65],
  ],
  max_request_inputs: [[1, 0]],
  http_body_limit_mb: [
    [0.001, 0],
    [1024, 1025],
  ],
  http_response_limit_mb: [
    [0.001, 0],
    [16384, 16385],
  ],
  embedding_cache_mb: [
    [0, -1],
    [1_048_576, 1_048_577],
  ],
  priority_aging_ms: [
    [0, -1],
    [3_600_000, 3_600_001],
  ],
  bulk_chunk_rows: [
    [1, 0],
    [256, 257],
  ],
  batch_max_file_mb: [
    [0.001, 0],
    [1048576, 1048577],
  ],
  batch_storage_mb_per_key: [
    [0.001, 0],
    [16777216, 16777217],
  ],
  batch_files_per_key: [
    [1, 0],
    [1_000_000, 1_000_001],
  ],
  batch_retention_hours: [
    [0, -1],
    [87600, 87601],
  ],
  batch_max_rows: [
    [1, 0],
    [100_000_000, 100_000_001],
  ],
  batch_max_running_jobs: [
    [1, 0],
    [64, 65],
  ],
  batch_jobs_per_key: [
    [1, 0],
    [10_000, 10_001],
  ],
  batch_chunk_rows: [
    [1, 0],
    [4096, 4097],
  ],
  batch_chunks_in_flight: [
    [1, 0],
    [64, 65],
  ],
  http_request_timeout_secs: [[0.001, 0]],
  http_keep_alive_timeout_secs: [[0.001, 0]],
  http_send_timeout_secs: [[0.001, 0]],
  events_max_streams: [
    [1, 0],
    [10_000, 10_001],
  ],
  events_buffer_kb: [
    [1, 0],
    [1_048_576, 1_048_577],
  ],
  events_keep_alive_secs: [[0.001, 0]],
  idle_timeout_secs: [[0.001, 0]],
  cold_start_timeout_secs: [[0.001, 0]],
  cold_start_queue_size: [[1, 0]],
  cold_start_queue_mb: [[0.001, 0]],
  min_resident_secs: [[0, -1]],
  memory_wait_preempt_secs: [[0, -1]],
  gpu_memory_budget_mb: [[0.001, 0]],
  gpu_memory_reserve_mb: [[0, -1]],
  cpu_memory_budget_mb: [[0.001, 0]],
  cpu_memory_reserve_mb: [[0, -1]],
  default_memory_mb: [[0.001, 0]],
  standby_children: [
    [0, -1],
    [8, 9],
  ],
  scale_up_inflight: [[1, 0]],
  scale_up_after_secs: [[0.001, 0]],
  state_file: [['s.toml', '']],
  log_dir: [['logs', '']],
  batch_dir: [['batch', '']],
  tei_binary_path: [['/bin/tei', '']],
  nvidia_smi_path: [['/bin/nvidia-smi', '']],
  listen_host: [['127.0.0.1', 1]],
  onnx_cache_dir: [['', 2]],
  auto_restore: [[false, 'no']],
  arrow_allow_noop: [[true, 1]],
};

/** Integer keys: a fraction is refused. */
const INTEGERS = [
  'api_port',
  'grpc_port',
  'data_port',
  'instance_port_start',
  'instance_port_end',
  'log_max_bytes',
  'log_max_files',
  'log_tail_lines',
  'log_line_max_bytes',
  'log_buffer_bytes',
  'max_failures_before_restart',
  'max_instances',
  'grpc_max_concurrent_streams',
  'arrow_max_rows',
  'arrow_decode_threads',
  'max_request_inputs',
  'cold_start_queue_size',
  'standby_children',
  'scale_up_inflight',
  'events_max_streams',
  'events_buffer_kb',
  'priority_aging_ms',
  'bulk_chunk_rows',
  'batch_files_per_key',
  'batch_max_rows',
  'batch_max_running_jobs',
  'batch_jobs_per_key',
  'batch_chunk_rows',
  'batch_chunks_in_flight',
];

const RESTART_EDGES: Record<string, Array<[unknown, unknown]>> = {
  initial_backoff_ms: [
    [0, -1],
    [5, 5.5],
  ],
  backoff_factor: [[1, 0.999]],
  max_backoff_ms: [
    [0, -1],
    [5, 5.5],
  ],
  reset_after_secs: [[0.001, 0]],
  max_restarts: [
    [0, -1],
    [5, 5.5],
  ],
  window_secs: [[0.001, 0]],
};

/** A key set alone on top of the defaults (ports kept apart so the range check does not interfere). */
function withKey(key: string, value: unknown): Record<string, unknown> {
  if (key === 'instance_port_start') return { instance_port_start: value, instance_port_end: 65535 };
  if (key === 'instance_port_end') return { instance_port_start: 1, instance_port_end: value };
  return { [key]: value };
}

function refusal(file: Record<string, unknown>): string {
  try {
    resolveConfig(file, {}, 'c.toml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail(`taken: ${JSON.stringify(file)}`);
}

describe('every top-level key at the edges of its range', () => {
  for (const [key, edges] of Object.entries(EDGES)) {
    test(key, () => {
      for (const [ok, bad] of edges) {
        const c = resolveConfig(withKey(key, ok), {}, 'c.toml') as unknown as Record<string, unknown>;
        assert.equal(c[key], ok, `${key} = ${JSON.stringify(ok)} is taken as it is`);
        const message = refusal(withKey(key, bad));
        assert.ok(message.startsWith(`c.toml: ${key}: `), `${key} = ${JSON.stringify(bad)}: ${message}`);
        assert.ok(message.includes(`(got ${JSON.stringify(bad)})`), message);
      }
      if (INTEGERS.includes(key)) assert.match(refusal(withKey(key, 2.5)), new RegExp(`^c\\.toml: ${key}: Expected integer`));
    });
  }
  test('the table covers every scalar key', () => {
    const scalar = Object.keys(resolveConfig({ max_instances: 1, data_port: 0, gpu_memory_budget_mb: 1, cpu_memory_budget_mb: 1 }, {})).filter(
      (k) => !['restart', 'failover', 'outlier_detection', 'instances', 'models', 'auth', 'security'].includes(k),
    );
    assert.deepEqual(scalar.filter((k) => !(k in EDGES)), []);
  });
});

describe('[restart] at the edges of its ranges', () => {
  for (const [key, edges] of Object.entries(RESTART_EDGES)) {
    test(key, () => {
      for (const [ok, bad] of edges) {
        assert.equal((resolveConfig({ restart: { [key]: ok } }, {}).restart as Record<string, unknown>)[key], ok);
        const message = refusal({ restart: { [key]: bad } });
        assert.ok(message.startsWith(`c.toml: restart.${key}: `), message);
      }
    });
  }
  test('the table covers every [restart] key; an unknown one is refused by name', () => {
    assert.deepEqual(Object.keys(resolveConfig({}, {}).restart).sort(), Object.keys(RESTART_EDGES).sort());
    assert.match(refusal({ restart: { max_restart: 3 } }), /^c\.toml: restart.*max_restart|restart: Unexpected property/);
  });
});

/** [failover] and [outlier_detection]: key -> [taken, refused] pairs at each documented edge. */
const TABLE_EDGES: Record<string, Record<string, Array<[unknown, unknown]>>> = {
  failover: {
    enabled: [[false, 'no']],
    budget_percent: [
      [0, -0.001],
      [100, 100.5],
    ],
    min_retry_concurrency: [
      [0, -1],
      [2, 2.5],
    ],
  },
  outlier_detection: {
    consecutive_failures: [
      [1, 0],
      [2, 2.5],
    ],
    base_ejection_secs: [[0.001, 0]],
    slow_factor: [[1.001, 1]],
    slow_min_requests: [
      [1, 0],
      [2, 2.5],
    ],
    max_ejected_percent: [
      [0, -0.001],
      [100, 100.5],
    ],
  },
};

for (const [table, keys] of Object.entries(TABLE_EDGES)) {
  describe(`[${table}] at the edges of its ranges`, () => {
    for (const [key, edges] of Object.entries(keys)) {
      test(key, () => {
        for (const [ok, bad] of edges) {
          assert.equal((resolveConfig({ [table]: { [key]: ok } }, {}) as unknown as Record<string, Record<string, unknown>>)[table][key], ok);
          const message = refusal({ [table]: { [key]: bad } });
          assert.ok(message.startsWith(`c.toml: ${table}.${key}: `), message);
        }
      });
    }
  });
}

describe('tables that are not tables, and unknown keys', () => {
  for (const table of ['restart', 'failover', 'outlier_detection', 'auth', 'security']) {
    test(`${table} given as a value`, () => {
      for (const v of [3, 'x', [1], null]) assert.equal(refusal({ [table]: v }), `c.toml: ${table}: expected a table`);
    });
  }
  test('an unknown top-level key is refused', () => {
    assert.match(refusal({ grpc_prot: 1 }), /^c\.toml: .*Unexpected property/);
  });
  test('at most five problems, each once', () => {
    const message = refusal({ api_port: -1, grpc_port: -1, log_max_files: 0, log_tail_lines: 0, arrow_max_rows: 0, max_request_inputs: 0, standby_children: 9 });
    const problems = message.slice('c.toml: '.length).split('; ');
    assert.equal(problems.length, 5, message);
    assert.equal(new Set(problems).size, 5, message);
  });
});
