import { createHash, type Hash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { Readable, Transform } from 'node:stream'

import { CODECS, type Codec } from '../compression.js'

/**
 * The entries the stream client writes: one line naming the format and the
 * codec (`buildkit-mount-cache entry 1 zstd`), then the mount archive in
 * that codec, then a trailer line with the SHA-256 of everything before it
 * (`sha256:<hex>`), so a flipped or missing byte is caught even where the
 * codec has no checksum of its own (`none`). No outer tar: restore decodes
 * the body straight into the archive that the entry guards check, and the
 * codec travels with the entry, so a reader never guesses.
 *
 * The entry version is fixed for this format. It names no path and no
 * machine, so every runner shares entries; and it differs from the
 * versions the cache library computes, so entries written by the library
 * path (GHES, or the library chosen on purpose) and by this client are
 * kept apart rather than misread: each path reads only its own.
 */
const MAGIC = 'buildkit-mount-cache entry 1'
const MAX_HEADER = 64
/** `sha256:` + 64 hex digits + newline. */
export const ENTRY_TRAILER_BYTES = 7 + 64 + 1
const TRAILER_BYTES = ENTRY_TRAILER_BYTES

export const ENTRY_VERSION = createHash('sha256').update(`${MAGIC}|stream`).digest('hex')

export function entryHeader(codec: Codec): Buffer {
  return Buffer.from(`${MAGIC} ${codec}\n`)
}

/** The header line `text` (without its newline) names this codec; throws for anything else. */
export function parseEntryHeader(text: string): Codec {
  const prefix = `${MAGIC} `
  const codec = text.startsWith(prefix) ? text.slice(prefix.length) : ''
  if (!(CODECS as readonly string[]).includes(codec)) {
    throw new Error(`the entry does not start with a ${MAGIC} header (${JSON.stringify(text.slice(0, 40))})`)
  }
  return codec as Codec
}

/**
 * Reads the header off `body`: the codec, and the encoded archive as a
 * stream that fails at its end when the trailer's digest does not match
 * what came before it (or there is no trailer).
 */
export async function splitEntryHeader(body: Readable): Promise<{ codec: Codec; rest: Readable }> {
  const chunks = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  let head = Buffer.alloc(0)
  let newline = -1
  while (newline < 0) {
    if (head.length > MAX_HEADER) {
      body.destroy()
      throw new Error(`the entry has no header line in its first ${MAX_HEADER} bytes`)
    }
    const next = await chunks.next()
    if (next.done === true) throw new Error('the entry ends before its header line')
    head = Buffer.concat([head, next.value])
    newline = head.indexOf(0x0a)
  }
  let codec: Codec
  try {
    codec = parseEntryHeader(head.subarray(0, newline).toString('latin1'))
  } catch (error) {
    body.destroy()
    throw error
  }
  const hash = createHash('sha256').update(head.subarray(0, newline + 1))
  const first = head.subarray(newline + 1)
  async function* remainder(): AsyncGenerator<Buffer> {
    if (first.length > 0) yield first
    for (;;) {
      const next = await chunks.next()
      if (next.done === true) return
      yield next.value
    }
  }
  const check = trailerCheck(hash)
  const source = Readable.from(remainder(), { objectMode: false })
  source.once('error', e => check.destroy(e))
  return { codec, rest: source.pipe(check) }
}

/** Passes all but the last TRAILER_BYTES through, hashing them; at the end compares the trailer. */
function trailerCheck(hash: Hash): Transform {
  let held: Buffer = Buffer.alloc(0)
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      held = held.length === 0 ? chunk : Buffer.concat([held, chunk])
      if (held.length <= TRAILER_BYTES) return callback()
      const out = held.subarray(0, held.length - TRAILER_BYTES)
      held = Buffer.from(held.subarray(held.length - TRAILER_BYTES))
      hash.update(out)
      callback(null, out)
    },
    flush(callback) {
      const expected = `sha256:${hash.digest('hex')}\n`
      if (held.length === TRAILER_BYTES && held.toString('latin1') === expected) return callback()
      callback(new Error("the entry's checksum does not match its content (corrupt in storage or in transit)"))
    }
  })
}

/** `body` with the header in front and the digest trailer behind. */
export function withEntryHeader(codec: Codec, body: Readable): Readable {
  async function* all(): AsyncGenerator<Buffer> {
    const hash = createHash('sha256')
    const header = entryHeader(codec)
    hash.update(header)
    yield header
    for await (const chunk of body as AsyncIterable<Buffer>) {
      hash.update(chunk)
      yield chunk
    }
    yield Buffer.from(`sha256:${hash.digest('hex')}\n`)
  }
  return Readable.from(all(), { objectMode: false })
}

/** Read size of the digest pass over an archive file: one buffer, reused. */
const DIGEST_READ_BYTES = 4 * 1024 ** 2

/**
 * The trailer of an entry whose body is the file at `path` as it is (codec
 * `none`), computed by one sequential read of the file: an upload that sends
 * the file in ranges, out of order, learns its digest this way while the
 * ranges go up. Fails when the file does not hold exactly `size` bytes.
 */
export async function fileEntryTrailer(codec: Codec, path: string, size: number): Promise<Buffer> {
  const hash = createHash('sha256').update(entryHeader(codec))
  const file = await open(path, 'r')
  try {
    const buffer = Buffer.allocUnsafe(DIGEST_READ_BYTES)
    let seen = 0
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, seen)
      if (bytesRead === 0) break
      hash.update(buffer.subarray(0, bytesRead))
      seen += bytesRead
      if (seen > size) break
    }
    if (seen !== size) throw new Error(`the archive changed while it was uploaded (${seen} bytes, not ${size})`)
  } finally {
    await file.close()
  }
  return Buffer.from(`sha256:${hash.digest('hex')}\n`)
}
