import type { MountKeys } from './keys.js'
import type { MountSpec } from '../mounts/spec.js'

/**
 * One mount's way through a job, as explicit states. Main moves every mount
 * from `pending` to exactly one of `miss`, `refused`, `failed` or
 * `restored`, and a restored one to `injected` (or `failed` when the inject
 * build did not take it); with lookup-only, a matched mount ends `found`. Post gives each mount one save status. Outputs,
 * the job summary and the CLI's results are all derived from these (see
 * report.ts); nothing else decides whether a mount was a hit.
 */
export type RestoreStatus =
  /** Planned; its restore has not settled yet. */
  | { kind: 'pending' }
  /** No entry matched its keys. */
  | { kind: 'miss' }
  /** The cache could not be read at all (service unavailable, read not allowed). */
  | { kind: 'refused'; reason: string }
  /** lookup-only: an entry matched its keys; nothing was downloaded or injected. */
  | { kind: 'found'; matchedKey: string }
  /** An entry matched but did not reach the builder (download, check or inject failed). */
  | { kind: 'failed'; reason: string; matchedKey?: string }
  /** Downloaded and checked; waiting for (or streaming into) the inject build. */
  | { kind: 'restored'; entry: RestoredEntry }
  /** In the builder's cache mount, with the manifest the inject build recorded when it could. */
  | { kind: 'injected'; entry: RestoredEntry; manifest?: string }

export interface RestoredEntry {
  /** The key restored: a full entry, or the last delta of the chain applied. */
  matchedKey: string
  /** Digest of the restored tree (see archive/digest.ts). */
  digest: string
  /** Content bytes of the tree. */
  bytes: number
  /** What a delta saved on this tree continues (absent for states written before deltas). */
  chain?: RestoredChain
}

/** The entries a restored tree came from: a full base, then its deltas in order. */
export interface RestoredChain {
  /** Keys, the base first; the last is `matchedKey`. */
  keys: string[]
  /** Content bytes of the base. */
  baseBytes: number
  /** Bytes of the deltas' archives together. */
  deltaBytes: number
}

export type SaveStatus =
  /** Nothing to upload: the builder holds what was restored, or the same content is stored already. */
  | { kind: 'unchanged'; bytes: number; how: 'manifest' | 'digest' | 'exists'; key?: string }
  | { kind: 'saved'; key: string; bytes: number; ms: number; delta?: SavedDelta }
  /** Deliberately not saved; `reason` says why in a few words. */
  | { kind: 'skipped'; reason: SkipReason; bytes?: number; key?: string }
  /** Saving was tried and went wrong (a warning was logged). */
  | { kind: 'failed'; reason: string; key?: string }

/** A save that holds only what changed since the restored chain. */
export interface SavedDelta {
  /** Its place in the chain: 1 for the first delta on a base. */
  sequence: number
  /** Paths it removes. */
  removed: number
}

export type SkipReason = 'empty' | 'over max-size' | 'cache unavailable' | 'cache read-only' | 'not extracted' | 'not stored'

export interface MountState {
  index: number
  spec: MountSpec
  keys: MountKeys
  restore: RestoreStatus
  /** Milliseconds the restore (download and check) took, once it settled. */
  restoreMs?: number
}

/** The entry in the builder, if this mount's restore got that far. */
export function injectedEntry(status: RestoreStatus): RestoredEntry | undefined {
  return status.kind === 'injected' ? status.entry : undefined
}

/** The key that matched, whatever happened afterwards. */
export function matchedKeyOf(status: RestoreStatus): string | undefined {
  if (status.kind === 'restored' || status.kind === 'injected') return status.entry.matchedKey
  if (status.kind === 'failed' || status.kind === 'found') return status.matchedKey
  return undefined
}

/** A hit: the mount's entry is in the builder (with lookup-only: an entry was found, as actions/cache reports it). */
export function isHit(status: RestoreStatus): boolean {
  return status.kind === 'injected' || status.kind === 'found'
}

/**
 * How a matched key relates to the mount's keys: `exact` when it was saved
 * for the same key files (the primary key's family), `fallback` when it came
 * from a restore-key prefix (other key files).
 */
export function keyMatch(keys: MountKeys, matchedKey: string): 'exact' | 'fallback' {
  return matchedKey.startsWith(`${keys.base}-`) ? 'exact' : 'fallback'
}

export type HitKind = 'exact' | 'fallback' | 'miss'

/** What the builder got (or, lookup-only, what was found): an exact or a fallback entry, or nothing. */
export function hitKind(m: MountState): HitKind {
  const key = m.restore.kind === 'found' ? m.restore.matchedKey : injectedEntry(m.restore)?.matchedKey
  return key === undefined ? 'miss' : keyMatch(m.keys, key)
}

/** An exact hit (the action's `cache-hit`): from an entry saved for the same key files. */
export function isExactHit(m: MountState): boolean {
  return hitKind(m) === 'exact'
}
