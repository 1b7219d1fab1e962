import { constants } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { Readable, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import * as tar from 'tar-stream'

import { ArchiveError } from '../errors.js'
import { MAX_USTAR_ID, type EntryHeader, type EntryType, type TarHeader } from './entry.js'

const TYPE_BITS: Record<EntryType, number> = { file: 0o100000, directory: 0o040000, symlink: 0o120000, link: 0o100000 }

/** A tar-stream header for `name`; type bits keep a 0000 mode from being replaced by a default. */
export function toTarHeader(h: EntryHeader, name: string, linkname?: string): TarHeader {
  const out: TarHeader = {
    name: h.type === 'directory' && !name.endsWith('/') ? `${name}/` : name,
    type: h.type,
    mode: (h.mode & 0o7777) | TYPE_BITS[h.type],
    uid: h.uid,
    gid: h.gid,
    mtime: h.mtime,
    size: h.size
  }
  if (linkname !== undefined) out.linkname = linkname
  // tar-stream writes ids in 6 octal digits and silently clamps larger ones: use pax records.
  if (h.uid > MAX_USTAR_ID || h.gid > MAX_USTAR_ID) out.pax = { uid: String(h.uid), gid: String(h.gid) }
  return out
}

/** Writes one entry into a pack, copying `body` (if any) and feeding every chunk to `onChunk`. */
export async function writeEntry(pack: tar.Pack, header: TarHeader, body?: AsyncIterable<Buffer>, onChunk?: (c: Buffer) => void): Promise<void> {
  const sink = pack.entry(header) as unknown as Writable
  const finished = new Promise<void>((resolve, reject) => {
    sink.once('error', reject)
    sink.once('finish', () => resolve())
    sink.once('close', () => resolve())
  })
  // Awaited below; when the body fails first, the pack is destroyed later and
  // this rejects with nobody waiting: that must not crash the step.
  finished.catch(() => undefined)
  if (body) {
    for await (const chunk of body) {
      onChunk?.(chunk)
      if (!sink.write(chunk)) await drained(sink)
    }
  }
  sink.end()
  await finished
}

/**
 * Waits for 'drain', or for the stream to end another way: a pack destroyed
 * by a failed destination (disk full, the build's stdin gone) never drains,
 * and waiting for it alone would hang the step.
 */
async function drained(stream: Writable): Promise<void> {
  const closed = (): Error => stream.errored ?? new Error('the archive stream was closed')
  if (stream.destroyed) throw closed()
  // Plain listeners, not events.once with an AbortSignal: this runs once per chunk, and aborting builds an error each time.
  await new Promise<void>((resolve, reject) => {
    const settle = (error?: Error): void => {
      stream.off('drain', onDrain)
      stream.off('close', onClose)
      if (error) reject(error)
      else resolve()
    }
    const onDrain = (): void => settle()
    const onClose = (): void => settle(closed())
    stream.on('drain', onDrain)
    stream.on('close', onClose)
  })
}

/**
 * Reads a tar stream entry by entry. `onEntry` must consume the body it is
 * given (or not look at it: the rest is drained here). Errors from the source,
 * the parser or the callback end the read and are thrown once.
 */
export async function forEachEntry(source: Readable, onEntry: (header: TarHeader, body: AsyncIterable<Buffer>) => Promise<void>): Promise<void> {
  const extract = tar.extract()
  const feeding = pipeline(source, extract)
  let failure: unknown
  feeding.catch((error: unknown) => {
    failure ??= error
  })
  let callbackFailure: unknown
  try {
    for await (const entry of extract) {
      await onEntry(entry.header, entry as AsyncIterable<Buffer>)
      entry.resume()
    }
  } catch (error) {
    callbackFailure = error
    extract.destroy()
    source.destroy()
  }
  await feeding.catch(() => undefined)
  // What the callback hit (an unsafe entry, a full disk) is the cause; the
  // pipeline's "premature close" after it is only the consequence.
  failure = callbackFailure ?? failure
  if (failure !== undefined) {
    if (failure instanceof ArchiveError) throw failure
    throw new ArchiveError('ARCHIVE_UNEXPECTED', `cannot read archive: ${(failure as Error).message ?? String(failure)}`)
  }
}

export const HEADER_BYTES = 512
/** Write size for mount archives: fewer, larger writes than the 16 KiB default. */
export const WRITE_CHUNK = 1024 ** 2

export function tooLarge(maxBytes: number): ArchiveError {
  return new ArchiveError('ARCHIVE_TOO_LARGE', `archive expands past the ${maxBytes}-byte limit (content plus ${HEADER_BYTES} bytes per entry)`)
}

/**
 * Opens a mount archive for reading: a regular file, never through a
 * symlink (a restored entry could plant one pointing at any file of the
 * runner), never blocking on a FIFO or device node.
 */
export async function openArchive(archivePath: string, maxBytes?: number): Promise<Readable> {
  let handle: FileHandle
  try {
    handle = await open(archivePath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ELOOP') throw new ArchiveError('ARCHIVE_NOT_FILE', `not a mount archive: ${archivePath} is a symlink`)
    throw new ArchiveError('ARCHIVE_UNEXPECTED', `cannot read archive: ${(error as Error).message}`)
  }
  try {
    const stat = await handle.stat()
    if (!stat.isFile()) throw new ArchiveError('ARCHIVE_NOT_FILE', `not a mount archive: ${archivePath} is not a regular file`)
    // Clearly over the limit without reading it: the file's padding and long-name records aside,
    // it is content plus headers. (Within 2x + 1 MiB, the scan decides.)
    if (maxBytes !== undefined && stat.size > 2 * maxBytes + 1024 ** 2) throw tooLarge(maxBytes)
  } catch (error) {
    await handle.close()
    throw error
  }
  return handle.createReadStream()
}

export async function* oneChunk(chunk: Buffer): AsyncIterable<Buffer> {
  yield chunk
}

/**
 * The first `bytes` bytes of `source` (fewer when it ends before), and a
 * stream of all of it, those bytes included, to read on from.
 */
export async function peekBytes(source: Readable, bytes: number): Promise<{ head: Buffer; whole: Readable }> {
  const chunks = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  let head = Buffer.alloc(0)
  let done = false
  while (head.length < bytes && !done) {
    const next = await chunks.next()
    if (next.done === true) done = true
    else head = Buffer.concat([head, next.value])
  }
  async function* all(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head
    while (!done) {
      const next = await chunks.next()
      if (next.done === true) return
      yield next.value
    }
  }
  const whole = Readable.from(all(), { objectMode: false })
  whole.once('close', () => {
    if (!whole.readableEnded) source.destroy()
  })
  return { head: head.subarray(0, bytes), whole }
}
