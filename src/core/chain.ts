import { mkdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'

import { deltaMetaOf } from '../archive/compose.js'
import type { DeltaMeta } from '../archive/delta.js'
import { errorMessage } from '../errors.js'
import type { CacheStore } from '../storage/store.js'

/**
 * Fetches the rest of a chain once its newest entry is downloaded. A full
 * entry is a chain of one. A delta names every key before it (delta.ts);
 * they are fetched base first, each by its exact key, into
 * `<archive>.chain/<n>`. A missing or foreign link ends the chain there: what
 * comes before it is still one consistent tree, what comes after is never
 * used. A missing base leaves nothing to restore (thrown).
 */
export interface FetchedChain {
  /** Keys of the entries fetched, the base first. */
  keys: string[]
  /** Their archives, in the same order. */
  layers: string[]
  baseBytes: number
  deltaBytes: number
  /** Why the chain was cut short, when it was. */
  cut?: string
}

export const chainDirOf = (archivePath: string): string => `${archivePath}.chain`

export async function fetchChain(cache: CacheStore, archivePath: string, matchedKey: string): Promise<FetchedChain> {
  const tip = await deltaMetaOf(archivePath)
  if (tip === undefined) return { keys: [matchedKey], layers: [archivePath], baseBytes: (await stat(archivePath)).size, deltaBytes: 0 }
  if (!matchedKey.startsWith(`${tip.base}-d${tip.sequence}-`)) {
    throw new Error(`entry ${matchedKey} holds delta ${tip.sequence} of ${tip.base}, which its key does not name`)
  }
  const dir = chainDirOf(archivePath)
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  const tipPath = join(dir, String(tip.sequence))
  await rename(archivePath, tipPath)
  const keys: string[] = []
  const layers: string[] = []
  let cut: string | undefined
  for (const [i, key] of tip.chain.entries()) {
    const why = await fetchLink(cache, archivePath, key, i, tip)
    if (why !== undefined) {
      if (i === 0) throw new Error(`the delta's base ${key} ${why}`)
      cut = `delta ${i} (${key}) ${why}`
      break
    }
    const path = join(dir, String(i))
    await rename(archivePath, path)
    keys.push(key)
    layers.push(path)
  }
  if (cut === undefined) {
    keys.push(matchedKey)
    layers.push(tipPath)
  }
  const sizes = await Promise.all(layers.map(async p => (await stat(p)).size))
  const [baseBytes = 0, ...deltas] = sizes
  return { keys, layers, baseBytes, deltaBytes: deltas.reduce((a, b) => a + b, 0), ...(cut !== undefined ? { cut } : {}) }
}

/** Downloads one earlier entry of the chain to `archivePath`; returns why it cannot be used, if it cannot. */
async function fetchLink(cache: CacheStore, archivePath: string, key: string, sequence: number, tip: DeltaMeta): Promise<string | undefined> {
  let found: string | undefined
  try {
    await rm(archivePath, { recursive: true, force: true })
    found = await cache.restore(archivePath, key, [])
  } catch (error) {
    return `could not be restored: ${errorMessage(error)}`
  }
  // A lookup falls back to the newest entry the key is a prefix of: only the exact key will do.
  if (found !== key) return 'is not in the cache (evicted or deleted)'
  let meta: DeltaMeta | undefined
  try {
    meta = await deltaMetaOf(archivePath)
  } catch (error) {
    return `is not readable: ${errorMessage(error)}`
  }
  if (sequence === 0) return meta === undefined ? undefined : 'is a delta, not a full entry'
  const fits = meta !== undefined && meta.sequence === sequence && meta.chain.every((k, j) => k === tip.chain[j])
  return fits ? undefined : 'belongs to another chain'
}
