import type pg from 'pg';
import { ValidationError } from '../../runtime/index.js';
import type { SideColumn } from '../../queues/validate.js';
import { isIntegerKey, keyColumnsOf, parseKey } from './key-hash.js';

/**
 * Keys given to the API (`?primary_key=`, `primary_keys`), checked before any work is
 * enqueued so that a malformed one is a 400 naming its field, not a failed side job.
 */
export interface KeyCheck {
  /** Integer key: the keys as given. Any other key: each key's column texts, in key order. */
  integer: boolean;
  tuples: string[][];
}

/**
 * Parses and checks `keys` against the table's key: an integer key as before (decimal
 * digits); a composite key as a JSON array of its columns' values; every column text is
 * then checked by PostgreSQL itself (`pg_input_is_valid`, PostgreSQL 16+) against the
 * column's type, so `not-a-uuid` or a 21-character `varchar(20)` is refused here.
 */
export async function checkKeys(db: pg.Pool, columns: readonly SideColumn[], keys: readonly string[], field: (i: number) => string): Promise<KeyCheck> {
  const kc = keyColumnsOf(columns);
  if (isIntegerKey(columns)) {
    const bad = keys.findIndex((k) => !/^-?\d{1,19}$/.test(k));
    if (bad >= 0) throw new ValidationError(`${field(bad)} must be an integer`, [{ field: field(bad), reason: `the key of this table (${kc[0]!.name}) is an integer; got ${JSON.stringify(keys[bad])}` }]);
    return { integer: true, tuples: keys.map((k) => [k]) };
  }
  const tuples = keys.map((k, i) => {
    try {
      return parseKey(kc, k);
    } catch (err) {
      throw new ValidationError(`${field(i)} is not a key of this table`, [{ field: field(i), reason: (err as Error).message }]);
    }
  });
  const version = Number((await db.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0]!.v);
  for (const [j, c] of kc.entries()) {
    const values = tuples.map((t) => t[j]!);
    if (version >= 160000) {
      const { rows } = await db.query<{ i: number; message: string }>(
        `SELECT u.i::int AS i, (pg_input_error_info(u.v, $2)).message AS message FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i) WHERE NOT pg_input_is_valid(u.v, $2) ORDER BY u.i LIMIT 1`,
        [values, c.pgType],
      );
      const bad = rows[0];
      if (bad) throw new ValidationError(`${field(bad.i - 1)} is not a valid ${c.pgType}`, [{ field: field(bad.i - 1), reason: `${c.name} (${c.pgType}): ${bad.message}` }]);
    } else {
      // Older servers: the cast itself, without telling which key failed.
      try {
        await db.query(`SELECT count(u.v::${c.pgType}) FROM unnest($1::text[]) AS u(v)`, [values]);
      } catch (err) {
        if (!/^22/.test(String((err as { code?: unknown }).code))) throw err;
        throw new ValidationError(`a key is not a valid ${c.pgType}`, [{ field: field(0).replace(/\.\d+$/, ''), reason: `${c.name} (${c.pgType}): ${(err as Error).message}` }]);
      }
    }
  }
  return { integer: false, tuples };
}
