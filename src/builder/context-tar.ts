import type { Readable } from 'node:stream'

import * as tar from 'tar-stream'

import { oneChunk, writeEntry } from '../archive/tar-io.js'

/**
 * A generated build's context, as a tar stream holding only its Dockerfile
 * (the mounts reach the inject build as its own stream: inject-stream.ts).
 */
export function dockerfileContext(dockerfile: string): Readable {
  const pack = tar.pack()
  const fill = async (): Promise<void> => {
    await writeEntry(
      pack,
      { name: 'Dockerfile', type: 'file', mode: 0o100644, size: Buffer.byteLength(dockerfile), mtime: new Date(0) },
      oneChunk(Buffer.from(dockerfile))
    )
    pack.finalize()
  }
  fill().catch((error: unknown) => pack.destroy(error as Error))
  return pack as unknown as Readable
}
