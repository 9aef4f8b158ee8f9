/**
 * What processing makes of a file's events, in the order they were recorded:
 *
 * | event  | file unknown or deleted            | file present                   |
 * |--------|------------------------------------|--------------------------------|
 * | upload | present                            | present, anomaly duplicate_upload |
 * | update | unchanged, anomaly update_without_upload | present                  |
 * | delete | unchanged, anomaly delete_without_upload | deleted                  |
 *
 * An anomaly never stops processing: the event is marked processed and the
 * anomaly is written into its metadata (`anomaly`, `file_state_before`).
 */
export type FileState = 'present' | 'deleted' | 'unknown';

export type Anomaly = 'duplicate_upload' | 'update_without_upload' | 'delete_without_upload';

export function applyEvent(state: FileState, type: 'upload' | 'update' | 'delete'): { next: FileState; anomaly?: Anomaly } {
  const present = state === 'present';
  switch (type) {
    case 'upload':
      return present ? { next: 'present', anomaly: 'duplicate_upload' } : { next: 'present' };
    case 'update':
      return present ? { next: 'present' } : { next: state, anomaly: 'update_without_upload' };
    case 'delete':
      return present ? { next: 'deleted' } : { next: state, anomaly: 'delete_without_upload' };
  }
}
