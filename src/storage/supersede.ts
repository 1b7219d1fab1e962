import { errorMessage } from '../errors.js'
import { isManagedStore } from './managed.js'
import type { CacheStore } from './store.js'

/**
 * Deleting the entries a new full save replaces. A mount's entries form a
 * chain: a full entry (the base, key F) and deltas keyed `F-d<n>-<hash>`.
 * Once a new base is saved, the old chain only takes room in the
 * repository's cache budget (10 GB on GitHub), so it can go: the base and
 * every `F-d` entry, except those the caller keeps (the entries just saved).
 * `dir:` and `s3://` delete through their own listing; the GitHub cache
 * through the REST API (github/removal.ts), which needs a token and
 * `permissions: actions: write`.
 */

/** A deletion that failed after the entries in `deleted` were removed. */
export class ChainDeleteError extends Error {
  constructor(
    message: string,
    readonly deleted: readonly string[],
    cause?: unknown
  ) {
    super(message, cause === undefined ? undefined : { cause })
    this.name = 'ChainDeleteError'
  }
}

/**
 * Deletes the entry `baseKey` and every entry whose key starts with
 * `${baseKey}-d`, except the keys in `keep`; returns the keys deleted.
 * Throws a ChainDeleteError (with what was deleted before) when listing or
 * a deletion fails; one that the token or permission refuses ends the
 * deletion at once, since every other would be refused as well.
 */
export async function deleteChain(store: CacheStore, baseKey: string, keep: readonly string[]): Promise<{ deleted: string[] }> {
  if (baseKey === '') throw new ChainDeleteError('deleting a chain needs its base key', [])
  const remover = removerOf(store)
  const kept = new Set(keep)
  let listed: string[]
  try {
    listed = await remover.keys(baseKey)
  } catch (error) {
    throw new ChainDeleteError(`could not list the entries of ${baseKey}: ${errorMessage(error)}`, [], error)
  }
  const doomed = [...new Set(listed)].filter(k => (k === baseKey || k.startsWith(`${baseKey}-d`)) && !kept.has(k)).sort()
  const deleted: string[] = []
  const failed: string[] = []
  let firstError: unknown
  for (const key of doomed) {
    try {
      await remover.delete(key)
      deleted.push(key)
    } catch (error) {
      firstError ??= error
      failed.push(`${key} (${errorMessage(error)})`)
      if (refusedForGood(error)) break
    }
  }
  if (failed.length > 0) {
    const rest = doomed.length - deleted.length - failed.length
    const left = rest > 0 ? `; ${rest} more not tried` : ''
    throw new ChainDeleteError(`could not delete ${failed.join(', ')}${left}`, deleted, firstError)
  }
  return { deleted }
}

/** The store's way of listing and deleting: ManagedStore's calls, else its removal. */
function removerOf(store: CacheStore): { keys(prefix: string): Promise<string[]>; delete(key: string): Promise<void> } {
  if (isManagedStore(store)) {
    return { keys: async prefix => (await store.list(prefix)).map(e => e.key), delete: key => store.delete(key) }
  }
  if (store.removal !== undefined) return store.removal
  throw new ChainDeleteError('this storage backend cannot delete entries', [])
}

/** An answer that every further call would get too: a bad token, no permission (GitHub lists with `actions: read`). */
function refusedForGood(error: unknown): boolean {
  const status = (error as { status?: unknown } | null)?.status
  return status === 401 || status === 403
}
