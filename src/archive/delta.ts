import { text } from 'node:stream/consumers'

import { ArchiveError } from '../errors.js'
import { relativeEntryPath } from './entry.js'
import type { TarHeader } from './entry.js'

/**
 * Delta entries. A delta holds what changed in a mount since the entry it
 * applies to (its parent): the new and changed entries, as in a mount
 * archive, and the paths removed. Its first tar entry is DELTA_META_NAME, a
 * JSON record (DeltaMeta); a full mount archive always starts with its root
 * `./`, so the first entry tells the two apart. A chain is a full entry (its
 * base) and deltas 1..n, each naming its parent by exact key: a delta saved
 * on an entry that was later evicted and saved again with other content
 * can never be applied to it.
 */
export const DELTA_META_NAME = 'buildkit-mount-cache-delta.json'
const FORMAT = 'buildkit-mount-cache delta 1'
/** Longest chain a restore follows (deltas after the base); saves compact well before it. */
export const MAX_CHAIN = 32
/** Largest meta record read (the removed paths of a big change). */
const MAX_META_BYTES = 64 * 1024 ** 2

export interface DeltaMeta {
  /** Key of the full entry the chain starts at. */
  base: string
  /** Keys of the base and of deltas 1..sequence-1, in order: chain[0] is the base, the last is this delta's parent. */
  chain: string[]
  /** 1 for the first delta on a base. */
  sequence: number
  /** Paths (relative to the mount root) that the parent has and this state has not. */
  deleted: string[]
}

export function deltaMetaText(meta: DeltaMeta): Buffer {
  return Buffer.from(`${JSON.stringify({ format: FORMAT, ...meta })}\n`)
}

/** Whether the first entry of an archive is a delta's meta record. */
export function isDeltaMeta(header: TarHeader): boolean {
  return header.name === DELTA_META_NAME && (header.type ?? 'file') === 'file'
}

/** Whether an archive whose first tar block is `block` is a delta (its first entry is the meta record). */
export function startsAsDelta(block: Buffer): boolean {
  const field = block.subarray(0, 100)
  const end = field.indexOf(0)
  const name = field.subarray(0, end < 0 ? field.length : end).toString('utf8')
  const type = block[156]
  return name === DELTA_META_NAME && (type === 0x30 || type === 0)
}

/** Reads and checks a meta record; every path is validated as an entry name is. */
export async function readDeltaMeta(header: TarHeader, body: AsyncIterable<Buffer>): Promise<DeltaMeta> {
  if ((header.size ?? 0) > MAX_META_BYTES) throw invalid(`its record is over ${MAX_META_BYTES} bytes`)
  let raw: unknown
  try {
    raw = JSON.parse(await text(body))
  } catch {
    throw invalid('its record is not JSON')
  }
  const r = raw as Partial<DeltaMeta> & { format?: unknown }
  if (r.format !== FORMAT) throw invalid(`unknown format ${JSON.stringify(r.format)}`)
  const { base, chain, sequence, deleted } = r
  if (typeof base !== 'string' || base === '') throw invalid('no base key')
  if (!Array.isArray(chain) || !chain.every(k => typeof k === 'string' && k !== '')) throw invalid('no chain of keys')
  if (!Number.isSafeInteger(sequence) || (sequence as number) < 1 || (sequence as number) > MAX_CHAIN) throw invalid(`sequence ${String(sequence)}`)
  if (chain.length !== sequence || chain[0] !== base) throw invalid('its chain does not start at its base or has the wrong length')
  if (!Array.isArray(deleted)) throw invalid('no list of removed paths')
  const paths = deleted.map(p => {
    if (typeof p !== 'string') throw invalid('a removed path is not a string')
    const path = relativeEntryPath(p)
    if (path === '') throw invalid('it removes the mount root')
    return path
  })
  return { base, chain, sequence: sequence as number, deleted: paths }
}

function invalid(why: string): ArchiveError {
  return new ArchiveError('ARCHIVE_DELTA_INVALID', `not a usable delta entry: ${why}`)
}
