// An entry's stored bytes. blobs/<blobId> is either one file (Put Blob, a v1
// upload) or, for a Put Block List, a directory of the committed blocks' files
// in list order (part 00000, 00001, ...): hard links to the staged blocks, so a
// commit costs a few links and renames however big the blob is, as Azure's
// does. Everything that reads or edits an entry's bytes goes through here, so
// it need not care which of the two it is.

import * as fs from 'node:fs'
import * as path from 'node:path'

/** The parts of a stored blob, in order, with their sizes. */
export interface StoredBlob {
  parts: ReadonlyArray<{ file: string; size: number }>
  size: number
  /** The blob's last modification (the file's, or the directory's: when it was committed). */
  mtime: Date
}

/** Azure allows 50,000 blocks in a list: five digits keep the names in list order. */
const partName = (index: number): string => String(index).padStart(5, '0')

/** The blob at `file` (blobs/<blobId>), or undefined when there is none. */
export function statBlob(file: string): StoredBlob | undefined {
  let stat: fs.Stats
  try {
    stat = fs.statSync(file)
  } catch {
    return undefined
  }
  if (!stat.isDirectory()) return { parts: [{ file, size: stat.size }], size: stat.size, mtime: stat.mtime }
  const parts = fs
    .readdirSync(file)
    .sort()
    .map(name => ({ file: path.join(file, name), size: fs.statSync(path.join(file, name)).size }))
  return { parts, size: parts.reduce((sum, p) => sum + p.size, 0), mtime: stat.mtime }
}

/** Streams bytes start..end (inclusive) of the blob, part after part. */
export async function* readBlob(blob: StoredBlob, start: number, end: number): AsyncGenerator<Buffer> {
  let offset = 0
  for (const part of blob.parts) {
    const from = Math.max(start, offset)
    const to = Math.min(end, offset + part.size - 1)
    offset += part.size
    if (from > to) continue
    for await (const chunk of fs.createReadStream(part.file, {
      start: from - (offset - part.size),
      end: to - (offset - part.size)
    }) as AsyncIterable<Buffer>) {
      yield chunk
    }
  }
}

/**
 * Puts `source` (a file or a part directory) at `dest`, replacing what was
 * there; `trash` is a path in the same file system to move the old blob to
 * first (a directory cannot be renamed over).
 */
export function replaceBlob(source: string, dest: string, trash: string): void {
  const old = fs.existsSync(dest)
  if (old) fs.renameSync(dest, trash)
  fs.renameSync(source, dest)
  if (old) fs.rmSync(trash, { recursive: true, force: true })
}

/**
 * Builds the part directory of a block list at `staging` (a new path in the
 * same file system as `blocks`): one hard link per listed block, so a block
 * listed twice is two links to one file. No data is copied.
 */
export function linkParts(blocks: readonly string[], staging: string): void {
  fs.mkdirSync(staging)
  blocks.forEach((block, i) => fs.linkSync(block, path.join(staging, partName(i))))
}

/** The whole blob at `file` in memory (for tests that inspect or damage an entry). */
export function readBlobBytes(file: string): Buffer {
  const blob = statBlob(file)
  if (!blob) throw new Error(`no blob at ${file}`)
  return Buffer.concat(blob.parts.map(p => fs.readFileSync(p.file)))
}

/** Replaces the bytes of the blob at `file` with `data`, as one file (for tests that damage an entry). */
export function writeBlobBytes(file: string, data: Buffer): void {
  const tmp = `${file}.${process.pid}.new`
  fs.writeFileSync(tmp, data)
  replaceBlob(tmp, file, `${file}.${process.pid}.old`)
}
