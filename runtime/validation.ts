import type { z } from 'zod';

/** Zod issues as `{field, reason}` pairs, with the field path dotted under `root`. */
export function zodIssues(error: z.ZodError, root?: string): Array<{ field: string; reason: string }> {
  return error.issues.map((issue) => {
    const path = [root, ...issue.path.map(String)].filter((p): p is string => p !== undefined && p !== '');
    return { field: path.join('.') || '(body)', reason: issue.message };
  });
}
