import { describe, expect, it } from 'vitest';
import { applyEvent } from '../../actors/sync-events/rules.js';
import { loadSyncEventsConfig } from '../../actors/sync-events/config.js';
import { ConfigError } from '../../runtime/index.js';

describe('sync event rules', () => {
  it('follows upload, update and delete of a file', () => {
    expect(applyEvent('unknown', 'upload')).toEqual({ next: 'present' });
    expect(applyEvent('present', 'update')).toEqual({ next: 'present' });
    expect(applyEvent('present', 'delete')).toEqual({ next: 'deleted' });
    expect(applyEvent('deleted', 'upload')).toEqual({ next: 'present' }); // re-upload after delete is normal
  });

  it('records anomalies without changing what is known', () => {
    expect(applyEvent('present', 'upload')).toEqual({ next: 'present', anomaly: 'duplicate_upload' });
    expect(applyEvent('unknown', 'update')).toEqual({ next: 'unknown', anomaly: 'update_without_upload' });
    expect(applyEvent('deleted', 'update')).toEqual({ next: 'deleted', anomaly: 'update_without_upload' });
    expect(applyEvent('unknown', 'delete')).toEqual({ next: 'unknown', anomaly: 'delete_without_upload' });
    expect(applyEvent('deleted', 'delete')).toEqual({ next: 'deleted', anomaly: 'delete_without_upload' });
  });
});

describe('sync events config', () => {
  it('defaults from the seed and names bad values', () => {
    expect(loadSyncEventsConfig({ DATABASE_URL: 'postgres://x/y' })).toMatchObject({ enabled: true, processIntervalSeconds: 5, metadataMaxBytes: 16_384, outboxTopic: 'sync-events.files' });
    expect(loadSyncEventsConfig({ DATABASE_URL: 'postgres://x/y', OUTBOX_ENABLED: 'false' }).outboxTopic).toBeUndefined();
    expect(() => loadSyncEventsConfig({ DATABASE_URL: 'postgres://x/y', SYNC_EVENT_PROCESS_INTERVAL: '0' })).toThrow(ConfigError);
    expect(() => loadSyncEventsConfig({ SYNC_EVENTS_ENABLED: 'yes' })).toThrow(/DATABASE_URL/);
  });
});
