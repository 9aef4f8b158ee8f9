import type { QueueDefinition } from '../../queues/definition.js';
import { dualWriteQueue } from '../../queues/dual-write.js';
import { CHECK_TYPES, createValidationRun, enqueueRepair, validateRunQueue, type CheckType, type SideWork, type ValidateRunJob } from '../../queues/validate.js';
import { ConflictError, NotFoundError, ValidationError, type RuntimeServices } from '../../runtime/index.js';
import { readTableShape, unsupportedKey } from './checks.js';
import { normalizeTable, type ValidatorConfig } from './config.js';
import { repairKeys } from './key-hash.js';
import { checkKeys } from './key-input.js';
import { SideClient } from './side-client.js';
import { readReport, storedDiffKeys } from './store.js';
import { latestTableStates } from '../../queues/consistency-reports.js';

const ROW_TIMEOUT_MS = 15_000;

/**
 * What the control plane does for the validator: record and enqueue runs, read reports,
 * compare one row (through the side queues: the API process never opens DuckDB), and
 * enqueue repairs to the dual-writer. One per process; `close` releases its connections.
 */
export class ValidatorApi {
  private sides: SideClient | undefined;

  constructor(
    private readonly services: RuntimeServices,
    readonly config: ValidatorConfig,
  ) {
    for (const q of [validateRunQueue, dualWriteQueue] as Array<QueueDefinition<unknown>>) services.registry.register(q);
  }

  /** `users` → `public.users`, or a 400 naming the table when it is not a checked table. */
  resolveTables(names: readonly string[] | undefined, field: string): string[] {
    if (!names || names.length === 0) return [...this.config.tables];
    return names.map((n, i) => {
      const t = normalizeTable(n);
      if (t === null || !this.config.tables.includes(t)) {
        throw new ValidationError(`unknown table ${JSON.stringify(n)}`, [{ field: field === 'tables' ? `tables.${i}` : field, reason: `unknown table ${JSON.stringify(n)}; checked tables: ${this.config.tables.join(', ') || '(none: set VALIDATOR_TABLES)'}` }]);
      }
      return t;
    });
  }

  async check(input: { tables?: string[] | undefined; checkTypes?: string[] | undefined; repair?: boolean | undefined }): Promise<{ runId: string; tables: string[]; checkTypes: CheckType[] }> {
    const tables = this.resolveTables(input.tables, 'tables');
    if (tables.length === 0) throw new ValidationError('no tables to check', [{ field: 'tables', reason: 'no table named and none configured (VALIDATOR_TABLES)' }]);
    const types = (input.checkTypes?.length ? input.checkTypes : [...CHECK_TYPES]).map((t, i) => {
      if (!(CHECK_TYPES as readonly string[]).includes(t)) throw new ValidationError(`unknown check type ${JSON.stringify(t)}`, [{ field: `check_types.${i}`, reason: `unknown check type ${JSON.stringify(t)}; one of ${CHECK_TYPES.join(', ')}` }]);
      return t as CheckType;
    });
    const repair = input.repair ?? false;
    const runId = await createValidationRun(this.services.pg(), { trigger: 'manual', tables, checkTypes: types, repair });
    const data: ValidateRunJob = { runId, trigger: 'manual', tables, checkTypes: types, repair };
    await this.services.queues.add(validateRunQueue.name, 'manual', data, { jobId: runId });
    return { runId, tables, checkTypes: types };
  }

  report(runId: string) {
    return readReport(this.services.pg(), runId);
  }

  async status() {
    const db = this.services.pg();
    const [latest] = (await db.query<{ id: string }>(`SELECT id FROM concord_validation_runs WHERE status = 'completed' ORDER BY finished_at DESC LIMIT 1`)).rows;
    const running = await db.query<{ id: string; status: string; created_at: string }>(`SELECT id, status, created_at FROM concord_validation_runs WHERE status IN ('queued', 'running') ORDER BY created_at`);
    const run = latest ? await readReport(db, latest.id) : undefined;
    const tables = await latestTableStates(db, this.config.tables);
    return {
      consistency_score: run?.consistency_score ?? null,
      latest_run: run ? { id: run.id, trigger: run.trigger, finished_at: run.finished_at, consistency_score: run.consistency_score, tables: run.tables, check_types: run.check_types } : null,
      runs_in_progress: running.rows,
      tables: this.config.tables.map((t) => tables.find((s) => s.table === t) ?? { table: t, run_id: null, consistency_score: null, checked_at: null, checks: [] }),
    };
  }

  /** One row from both stores, each column's canonical text, and which columns differ. */
  async compareRow(tableName: string, primaryKey: string) {
    const [table] = this.resolveTables([tableName], 'table');
    const shape = await readTableShape(this.services.pg(), table!);
    const bad = unsupportedKey(shape);
    if (bad) throw new ValidationError(`table ${table} cannot be compared by key`, [{ field: 'table', reason: bad }]);
    const key = await checkKeys(this.services.pg(), shape.columns, [primaryKey], () => 'primary_key');
    const sides = (this.sides ??= new SideClient(this.services, ROW_TIMEOUT_MS));
    const base = { op: 'lookup' as const, table: table!, columns: shape.columns };
    const work: SideWork = key.integer ? { ...base, keys: [primaryKey] } : { ...base, keyTuples: key.tuples };
    const [p, d] = await Promise.all([sides.pg(work), sides.duck(work)]);
    const source = p.detail?.[0];
    const copy = d.detail?.[0];
    const differing = shape.columns.filter((c) => source?.canonical[c.name] !== copy?.canonical[c.name]).map((c) => c.name);
    return {
      table,
      primary_key: primaryKey,
      consistent: source !== undefined && copy !== undefined ? differing.length === 0 : source === copy,
      status: !source && !copy ? 'absent_in_both' : !copy ? 'missing_in_copy' : !source ? 'extra_in_copy' : differing.length === 0 ? 'equal' : 'changed',
      differing_columns: source && copy ? differing : [],
      postgres: source ? { row: source.raw, canonical: source.canonical } : null,
      duckdb: copy ? { row: copy.raw, canonical: copy.canonical } : null,
    };
  }

  /** Enqueues dual-writer recovery legs for the differing keys of a run, or for the keys given. */
  async repair(input: { runId?: string | undefined; table?: string | undefined; primaryKeys?: string[] | undefined }) {
    const dualwrite = this.services.queues.queue(dualWriteQueue.name);
    if (input.runId) {
      const report = await readReport(this.services.pg(), input.runId);
      if (!report) throw new NotFoundError(`no consistency run ${input.runId}`, { run_id: input.runId });
      if (report.status !== 'completed') throw new ConflictError(`run ${input.runId} is ${report.status}; repair a completed run`, { run_id: input.runId, status: report.status });
      const out = [];
      for (const t of await storedDiffKeys(this.services.pg(), input.runId)) {
        // Composite keys are stored as JSON arrays: the dual-writer takes each column's text.
        const shape = await readTableShape(this.services.pg(), t.table);
        let keys: Array<string | string[]>;
        try {
          keys = repairKeys(shape.columns, t.keys);
        } catch (err) {
          throw new ConflictError(`the keys run ${input.runId} stored for ${t.table} no longer fit its primary key: ${(err as Error).message}`, { run_id: input.runId, table: t.table });
        }
        out.push({ table: t.table, enqueued: await enqueueRepair(dualwrite, t.table, keys), differing: t.total, complete: t.keys.length === t.total });
      }
      return { run_id: input.runId, tables: out };
    }
    const [table] = this.resolveTables([input.table ?? ''], 'table');
    const keys = input.primaryKeys ?? [];
    const shape = await readTableShape(this.services.pg(), table!);
    const bad = unsupportedKey(shape);
    if (bad) throw new ValidationError(`table ${table} cannot be repaired by key`, [{ field: 'table', reason: bad }]);
    const checked = await checkKeys(this.services.pg(), shape.columns, keys, (i) => `primary_keys.${i}`);
    return { tables: [{ table, enqueued: await enqueueRepair(dualwrite, table!, checked.integer ? keys : checked.tuples), differing: keys.length, complete: true }] };
  }

  async close(): Promise<void> {
    await this.sides?.close();
    this.sides = undefined;
  }
}
