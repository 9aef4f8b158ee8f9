export { defineQueue, dlqName, DLQ_SUFFIX, DEFAULT_JOB_OPTIONS, type QueueDefinition } from './definition.js';
export { QueueRegistry } from './registry.js';
export { dlqEntrySchema, type DlqEntry } from './dlq-entry.js';
export { reconcileQueue, syncStatsKeys, type ReconcileJob } from './reconcile.js';
export { outbox, enqueue, enqueueMany, outboxEventSchema, NOTIFY_CHANNEL as OUTBOX_NOTIFY_CHANNEL, type OutboxEvent, type Queryable } from './outbox.js';
export { inbox, handleOnce } from './inbox.js';
export {
  syncEventsQueue,
  SYNC_EVENT_TYPES,
  recordSyncEvent,
  getSyncEvent,
  listSyncEvents,
  type SyncEventType,
  type SyncEventRow,
  type NewSyncEvent,
  type SyncEventFilter,
} from './sync-events.js';
