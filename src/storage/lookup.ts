/**
 * Restore lookup with the GitHub cache's restore-keys semantics, so an entry
 * is found the same way whichever backend holds it: the exact primary key;
 * else the newest entry whose key starts with the primary key; else, for
 * each restore key in order, the newest entry whose key starts with it.
 */
export interface Candidate {
  key: string
  created: Date
}

/** How a backend answers the two questions the lookup asks. */
export interface CandidateSource<T extends Candidate> {
  exact(key: string): Promise<T | undefined>
  /** Entries whose key starts with `prefix`. */
  list(prefix: string): Promise<T[]>
}

/** The newest entry; equal times are broken by key so every process picks the same one. */
export function newest<T extends Candidate>(entries: readonly T[]): T | undefined {
  let best: T | undefined
  for (const e of entries) {
    if (!best) {
      best = e
      continue
    }
    const dt = e.created.getTime() - best.created.getTime()
    if (dt > 0 || (dt === 0 && e.key > best.key)) best = e
  }
  return best
}

/** The lookup over entries already in memory (the local directory reads them all at once). */
export function matchEntry<T extends Candidate>(entries: readonly T[], primaryKey: string, restoreKeys: readonly string[]): T | undefined {
  const exact = entries.find(e => e.key === primaryKey)
  if (exact) return exact
  for (const prefix of [primaryKey, ...restoreKeys]) {
    if (prefix === '') continue
    const found = newest(entries.filter(e => e.key.startsWith(prefix)))
    if (found) return found
  }
  return undefined
}

/** The same lookup against a remote listing (S3: one HEAD, then one listing per prefix until a match). */
export async function findEntry<T extends Candidate>(
  source: CandidateSource<T>,
  primaryKey: string,
  restoreKeys: readonly string[]
): Promise<T | undefined> {
  const exact = await source.exact(primaryKey)
  if (exact) return exact
  for (const prefix of [primaryKey, ...restoreKeys]) {
    if (prefix === '') continue
    const found = newest((await source.list(prefix)).filter(e => e.key.startsWith(prefix)))
    if (found) return found
  }
  return undefined
}
