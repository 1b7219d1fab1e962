import type { Readable } from 'node:stream'

import * as tar from 'tar-stream'

import { oneChunk, writeEntry } from '../archive/tar-io.js'

/**
 * A generated build's context, as a tar stream holding its Dockerfile and
 * `files` (generated names: extract's listings). The mounts reach the
 * inject build as its own stream (inject-stream.ts).
 */
export function dockerfileContext(dockerfile: string, files: ReadonlyMap<string, Buffer> = new Map()): Readable {
  const pack = tar.pack()
  const fill = async (): Promise<void> => {
    for (const [name, content] of [['Dockerfile', Buffer.from(dockerfile)] as const, ...files]) {
      await writeEntry(pack, { name, type: 'file', mode: 0o100644, size: content.length, mtime: new Date(0) }, oneChunk(content))
    }
    pack.finalize()
  }
  fill().catch((error: unknown) => pack.destroy(error as Error))
  return pack as unknown as Readable
}
