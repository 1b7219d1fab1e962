import type { StoredEntry } from './managed.js'

/**
 * Which entries `prune` removes. Self-hosted stores do not evict by
 * themselves (the GitHub cache does, least recently used first, at 10 GB),
 * so prune applies the same idea on demand: entries unused for longer than
 * `maxAgeMs`, then the least recently used until the rest fits `maxTotalBytes`.
 */
export interface PrunePolicy {
  maxAgeMs?: number
  maxTotalBytes?: number
}

/** Last use where the store records it, else the save time. */
export function lastUse(e: StoredEntry): number {
  return Math.max(e.created.getTime(), e.lastUsed.getTime())
}

/** The entries to remove, least recently used first. */
export function selectPrunable(entries: readonly StoredEntry[], policy: PrunePolicy, now: number): StoredEntry[] {
  const byRecency = [...entries].sort((a, b) => lastUse(b) - lastUse(a) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  const doomed = new Set<StoredEntry>()
  if (policy.maxAgeMs !== undefined) {
    const maxAge = policy.maxAgeMs
    for (const e of byRecency) if (now - lastUse(e) > maxAge) doomed.add(e)
  }
  if (policy.maxTotalBytes !== undefined) {
    let total = 0
    let full = false
    // Keep the most recently used while they fit; everything older goes, even if smaller.
    for (const e of byRecency) {
      if (doomed.has(e)) continue
      if (!full && total + e.size <= policy.maxTotalBytes) total += e.size
      else {
        full = true
        doomed.add(e)
      }
    }
  }
  return byRecency.filter(e => doomed.has(e)).reverse()
}

const AGE_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/** A duration like 7d, 12h, 30m, 2w or 90s, in milliseconds; undefined when not one. */
export function parseAge(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([smhdw])$/i.exec(text.trim())
  if (!m) return undefined
  return Math.round(Number(m[1]) * (AGE_UNITS[(m[2] ?? '').toLowerCase()] ?? 0))
}

/** `3 d`, `5 h`, `12 min`, `40 s`: how long ago, for listings. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 120) return `${s} s`
  if (s < 7200) return `${Math.round(s / 60)} min`
  if (s < 172_800) return `${Math.round(s / 3600)} h`
  return `${Math.round(s / 86_400)} d`
}
