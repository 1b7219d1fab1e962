import type { Readable } from 'node:stream'
import { text } from 'node:stream/consumers'

import { forEachEntry } from '../archive/tar-io.js'
import { MANIFEST, MANIFEST_FILE } from './dockerfile.js'

/** Inject's result: each mount's manifest, and the listings it kept (see LIST_FUNCTIONS in dockerfile.ts). */
export interface InjectResult {
  manifests: Map<number, string>
  /** Listing text by mount index, for the mounts extract may send as deltas. */
  listings: Map<number, Buffer>
}

const LISTING_NAME = /^listing\.(\d{1,6})$/
/** Largest listing kept (about half a million entries); a mount with more is always saved whole. */
const MAX_LISTING_BYTES = 64 * 1024 ** 2

/** Reads an inject build's result; malformed manifest lines and unknown files are ignored. */
export async function readInjectResult(out: Readable): Promise<InjectResult> {
  const manifests = new Map<number, string>()
  const listings = new Map<number, Buffer>()
  await forEachEntry(out, async (header, body) => {
    const name = header.name.replace(/^\.?\//, '')
    if (header.type !== 'file') return
    const listing = LISTING_NAME.exec(name)
    if (listing && (header.size ?? 0) <= MAX_LISTING_BYTES) {
      const chunks: Buffer[] = []
      for await (const chunk of body) chunks.push(chunk)
      listings.set(Number(listing[1]), Buffer.concat(chunks))
      return
    }
    if (name !== MANIFEST_FILE || (header.size ?? 0) > 1024 ** 2) return
    for (const line of (await text(body)).split('\n')) {
      const match = /^(\d{1,6}) (\S+)$/.exec(line)
      if (match && MANIFEST.test(match[2] ?? '')) manifests.set(Number(match[1]), match[2] as string)
    }
  })
  return { manifests, listings }
}

/** Only what belongs to the mounts that were injected. */
export function resultFor(result: InjectResult, indexes: readonly number[]): InjectResult {
  const only = <T>(m: Map<number, T>): Map<number, T> => new Map([...m].filter(([index]) => indexes.includes(index)))
  return { manifests: only(result.manifests), listings: only(result.listings) }
}
