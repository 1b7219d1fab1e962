import { MAX_CHAIN } from '../archive/delta.js'
import type { MountKeys } from './keys.js'
import { keyMatch, type RestoredChain } from './status.js'

/**
 * When post saves a delta and when a new full entry (compaction). A chain
 * grows while its deltas together stay under DELTA_SHARE of its base and
 * it has fewer than MAX_DELTAS of them; then the next save is full again,
 * the chain it replaces can be deleted (input delete-superseded), and a
 * repository keeps at most about (1 + DELTA_SHARE) × the mount per mount.
 * Each delta costs a restore one more lookup and download; MAX_DELTAS
 * bounds that cost (docs/performance.md has the measurement).
 */
export const DELTA_SHARE = 0.3
export const MAX_DELTAS = 8

/**
 * The most bytes of changed content the next delta may hold, or undefined
 * when the next save must be full: too long a chain, its deltas already at
 * their share, or a chain of other key files (a fallback restore: the new
 * key files get a base of their own).
 */
export function deltaBudget(keys: MountKeys, chain: RestoredChain): number | undefined {
  if (ownBase(keys, chain) === undefined) return undefined
  if (chain.keys.length - 1 >= Math.min(MAX_DELTAS, MAX_CHAIN)) return undefined
  const budget = Math.floor(DELTA_SHARE * chain.baseBytes) - chain.deltaBytes
  return budget > 0 ? budget : undefined
}

/**
 * The chain's base when it was saved for the mount's own key files: the
 * chains a delta may continue and a full save may replace. A chain of other
 * key files (a fallback restore) is neither.
 */
export function ownBase(keys: MountKeys, chain: RestoredChain | undefined): string | undefined {
  const base = chain?.keys[0]
  return base !== undefined && keyMatch(keys, base) === 'exact' ? base : undefined
}
