import { getHeapStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { collectGarbageAbove } from '../../runtime/index.js';

describe('collectGarbageAbove', () => {
  it('leaves the heap alone below the soft limit, and collects unreachable batches above it', () => {
    expect(collectGarbageAbove(Number.MAX_SAFE_INTEGER)).toBe(false);
    expect(collectGarbageAbove(0)).toBe(false); // 0 turns it off

    // Garbage shaped like parsed CDC batches: many small arrays of strings, then dropped.
    let batches: string[][] | undefined = Array.from({ length: 300_000 }, (_, i) => [String(i), `name ${i}`, `${i}.25`]);
    const withBatches = getHeapStatistics().used_heap_size;
    batches = undefined;
    expect(batches).toBeUndefined();
    expect(collectGarbageAbove(withBatches - 1)).toBe(true);
    const after = getHeapStatistics().used_heap_size;
    // 300k arrays of 3 strings are well over 20 MB; a full collection frees most of it.
    expect(withBatches - after).toBeGreaterThan(20 * 1_048_576);
  });
});
