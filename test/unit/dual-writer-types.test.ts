import { describe, expect, it } from 'vitest';
import { copyTable, mapColumn, pgArrayToJson } from '../../actors/dual-writer/pg-types.js';

describe('PostgreSQL → DuckDB type mapping', () => {
  it.each([
    ['smallint', 'SMALLINT'],
    ['integer', 'INTEGER'],
    ['bigint', 'BIGINT'],
    ['numeric(12,2)', 'DECIMAL(12,2)'],
    ['numeric(38,10)', 'DECIMAL(38,10)'],
    ['numeric(5)', 'DECIMAL(5,0)'],
    ['numeric(39,2)', 'VARCHAR'],
    ['numeric', 'VARCHAR'],
    ['numeric(5,-2)', 'VARCHAR'],
    ['real', 'FLOAT'],
    ['double precision', 'DOUBLE'],
    ['text', 'VARCHAR'],
    ['character varying(20)', 'VARCHAR'],
    ['character(3)', 'VARCHAR'],
    ['boolean', 'BOOLEAN'],
    ['uuid', 'UUID'],
    ['date', 'DATE'],
    ['timestamp without time zone', 'TIMESTAMP'],
    ['timestamp(3) without time zone', 'TIMESTAMP'],
    ['timestamp with time zone', 'TIMESTAMPTZ'],
    ['json', 'JSON'],
    ['jsonb', 'JSON'],
    ['bytea', 'BLOB'],
    ['integer[]', 'INTEGER[]'],
    ['text[]', 'VARCHAR[]'],
    ['numeric(10,3)[]', 'DECIMAL(10,3)[]'],
    ['interval', 'VARCHAR'],
    ['mood', 'VARCHAR'],
  ])('%s → %s', (pgType, duckType) => {
    expect(mapColumn({ pgType }).duckType).toBe(duckType);
  });

  it('casts in SQL; bytea hex through from_hex; arrays through JSON', () => {
    expect(mapColumn({ pgType: 'bigint' }).castSql('c0')).toBe('CAST(c0 AS BIGINT)');
    expect(mapColumn({ pgType: 'text' }).castSql('c0')).toBe('c0');
    expect(mapColumn({ pgType: 'bytea' }).castSql('c0')).toBe('from_hex(substr(c0, 3))');
    expect(mapColumn({ pgType: 'integer[]' }).castSql('c0')).toBe('list_transform(CAST(CAST(c0 AS JSON) AS VARCHAR[]), e -> CAST(e AS INTEGER))');
    expect(mapColumn({ pgType: 'integer' }).prepare).toBeUndefined();
    expect(mapColumn({ pgType: 'integer[]' }).prepare).toBe(pgArrayToJson);
  });

  it('copy table names: public → main, other schemas kept, identifiers quoted', () => {
    expect(copyTable('public.users')).toEqual({ schema: 'main', table: 'users', sql: '"main"."users"' });
    expect(copyTable('analytics.events')).toEqual({ schema: 'analytics', table: 'events', sql: '"analytics"."events"' });
  });
});

describe('PostgreSQL array literals', () => {
  it.each([
    ['{}', []],
    ['{1,2,3}', ['1', '2', '3']],
    ['{1,NULL,3}', ['1', null, '3']],
    ['{null,NuLl}', [null, null]],
    ['{"NULL"}', ['NULL']],
    ['{"a,b","c d","q\\"x","back\\\\slash",""}', ['a,b', 'c d', 'q"x', 'back\\slash', '']],
    ['{"{braces}",plain}', ['{braces}', 'plain']],
    ['{"2024-01-01 00:00:00+00","2024-06-01 12:30:00.5+02"}', ['2024-01-01 00:00:00+00', '2024-06-01 12:30:00.5+02']],
    ['{t,f}', ['t', 'f']],
    ['{"\\\\x00ff"}', ['\\x00ff']],
    ['[0:1]={7,8}', ['7', '8']],
    ['{ 1 , 2 }', ['1', '2']],
    ['{"ünï","日本"}', ['ünï', '日本']],
  ])('%s', (literal, expected) => {
    expect(JSON.parse(pgArrayToJson(literal))).toEqual(expected);
  });

  it('refuses multi-dimensional arrays and malformed literals, naming the problem', () => {
    expect(() => pgArrayToJson('{{1,2},{3,4}}')).toThrow(/multi-dimensional/);
    expect(() => pgArrayToJson('1,2')).toThrow(/not a PostgreSQL array literal/);
    expect(() => pgArrayToJson('{"open}')).toThrow(/unterminated/);
  });
});
