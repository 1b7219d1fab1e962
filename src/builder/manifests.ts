import type { Readable } from 'node:stream'
import { text } from 'node:stream/consumers'

import { forEachEntry } from '../archive/tar-io.js'
import { MANIFEST, MANIFEST_FILE } from './dockerfile.js'

/** The manifests an inject build wrote (MANIFEST_FILE in its result); malformed lines are ignored. */
export async function readManifests(out: Readable): Promise<Map<number, string>> {
  const manifests = new Map<number, string>()
  await forEachEntry(out, async (header, body) => {
    if (header.name.replace(/^\.?\//, '') !== MANIFEST_FILE || header.type !== 'file' || (header.size ?? 0) > 1024 ** 2) return
    for (const line of (await text(body)).split('\n')) {
      const match = /^(\d{1,6}) (\S+)$/.exec(line)
      if (match && MANIFEST.test(match[2] ?? '')) manifests.set(Number(match[1]), match[2] as string)
    }
  })
  return manifests
}

/** Only the manifests of the mounts that were injected. */
export function manifestsFor(manifests: Map<number, string>, indexes: readonly number[]): Map<number, string> {
  return new Map([...manifests].filter(([index]) => indexes.includes(index)))
}
