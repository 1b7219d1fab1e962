import { createReadStream } from 'node:fs'
import { Readable, Transform } from 'node:stream'

import { expectOk, headerOf, readBody, send, type HttpResponse } from './http.js'
import { retryAfter, TransferError, withRetries, type RetryPolicy } from './retry.js'

/**
 * The signed blob URLs of the cache service v2 (Azure Blob Storage, or the
 * local service speaking its calls): one GET streamed to the caller, and an
 * upload as Put Block calls (bounded parallelism, each retried on its own)
 * plus one Put Block List.
 */
const AZURE_VERSION = '2025-11-05'

/**
 * Entries of a known size up to this go up as one Put Blob streamed from
 * their file (as the Azure SDK does up to the same size): one request, and
 * no block list for the service to assemble.
 */
export const SINGLE_PUT_MAX = 256 * 1024 ** 2

/** Block size and parallel Put Block calls: at most (parallel + 1) blocks in memory per upload. */
export const BLOCK_BYTES = 8 * 1024 ** 2
export const UPLOAD_PARALLEL = 4

/**
 * Streams the blob at `url` to `sink`, which must read it to the end. A
 * connection dropped, a body cut short or longer than its Content-Length,
 * or a silent peer is retried from the start (the sink is called again and
 * must start over); `sink`'s own errors are not retried.
 */
export async function downloadBlob(
  url: string,
  sink: (body: Readable, length: number | undefined) => Promise<void>,
  policy: RetryPolicy
): Promise<void> {
  const target = new URL(url)
  await withRetries('download', policy, async () => {
    const res = await send({ method: 'GET', url: target, headers: { 'x-ms-version': AZURE_VERSION } })
    await expectOk('download', res)
    const length = contentLength(res)
    const counted = res.body.pipe(lengthCheck(length))
    res.body.once('error', e => counted.destroy(e))
    // A body that ends early ends the pipe without an error of its own: 'aborted' says so.
    res.body.once('aborted', () => counted.destroy(new TransferError('the download was cut off')))
    let transferFailed: unknown
    counted.once('error', e => (transferFailed = e))
    try {
      await sink(counted, length)
    } catch (error) {
      res.body.destroy()
      // The transfer's error is the retryable one, whatever the sink made of it.
      throw transferFailed ?? error
    }
  })
}

/**
 * Opens the blob at `url` as one stream for a consumer that cannot start
 * over (the inject build takes the bytes as they come). The first request is
 * retried as downloadBlob's are; a connection dropped or a body cut short
 * later is resumed where it stopped, with a Range request, up to the
 * policy's attempts. The stream fails when the bytes do not add up to the
 * blob's length, or when the blob changed between requests (its ETag).
 */
export async function openBlob(url: string, policy: RetryPolicy): Promise<{ body: Readable; length: number | undefined }> {
  const target = new URL(url)
  const get = async (from: number): Promise<HttpResponse> =>
    withRetries('download', policy, async () => {
      const headers: Record<string, string> = { 'x-ms-version': AZURE_VERSION }
      if (from > 0) headers['x-ms-range'] = `bytes=${from}-`
      const res = await send({ method: 'GET', url: target, headers })
      await expectOk('download', res)
      return res
    })
  const first = await get(0)
  const length = contentLength(first)
  const etag = headerOf(first.headers, 'etag')
  async function* chunks(): AsyncGenerator<Buffer> {
    let res = first
    let delivered = 0
    let skip = 0
    for (let resumes = 0; ;) {
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          // A service that ignored the range sends the blob from its start again.
          const fresh = skip > 0 ? chunk.subarray(Math.min(skip, chunk.length)) : chunk
          skip -= chunk.length - fresh.length
          if (fresh.length === 0) continue
          delivered += fresh.length
          if (length !== undefined && delivered > length) throw new TransferError(`the download is longer than its ${length} bytes`)
          yield fresh
        }
        if (length !== undefined && delivered < length) throw new TransferError(`the download ended after ${delivered} of ${length} bytes`)
        return
      } catch (error) {
        res.body.destroy()
        if (length === undefined || !(await retryAfter('download', policy, ++resumes, error))) throw error
        res = await get(delivered)
        if (etag !== undefined && headerOf(res.headers, 'etag') !== etag) {
          res.body.destroy()
          throw new Error('the cache entry changed while it was downloaded')
        }
        skip = res.status === 206 ? rangeStart(res, delivered) : delivered
      }
    }
  }
  return { body: Readable.from(chunks(), { objectMode: false }), length }
}

/** The answer's Content-Length, when it declares one. */
function contentLength(res: HttpResponse): number | undefined {
  const declared = headerOf(res.headers, 'content-length')
  return declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : undefined
}

/** Bytes to skip of a 206 answer that was asked for the blob from `from` on (0 when it starts there). */
function rangeStart(res: HttpResponse, from: number): number {
  const range = /^bytes (\d+)-/.exec(headerOf(res.headers, 'content-range') ?? '')
  const start = range ? Number(range[1]) : NaN
  if (start !== from) {
    res.body.destroy()
    throw new TransferError(`the service resumed the download at ${range?.[1] ?? 'an unknown offset'}, not at ${from}`)
  }
  return 0
}

/** A pass-through that fails when the bytes do not add up to `length`. */
function lengthCheck(length: number | undefined): Transform {
  let seen = 0
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length
      if (length !== undefined && seen > length) callback(new TransferError(`the download is longer than its ${length} bytes`))
      else callback(null, chunk)
    },
    flush(callback) {
      if (length !== undefined && seen !== length) callback(new TransferError(`the download ended after ${seen} of ${length} bytes`))
      else callback()
    }
  })
}

export interface UploadOptions {
  policy: RetryPolicy
  /** Fails the upload once more bytes than this come from `source`. */
  maxBytes?: number
  blockBytes?: number
  parallel?: number
}

/** Uploads everything `source` gives as one block blob; returns its size in bytes. */
export async function uploadBlob(url: string, source: Readable, options: UploadOptions): Promise<number> {
  const blockBytes = options.blockBytes ?? BLOCK_BYTES
  const parallel = options.parallel ?? UPLOAD_PARALLEL
  const ids: string[] = []
  const inFlight = new Set<Promise<void>>()
  let failure: { error: unknown } | undefined
  let pending: Buffer[] = []
  let pendingBytes = 0
  let total = 0

  const stage = async (block: Buffer): Promise<void> => {
    // Equal-length ids (Azure requires it), in upload order.
    const id = blockId(ids.length)
    ids.push(id)
    const task = putBlock(url, id, block, options.policy).catch((error: unknown) => {
      failure ??= { error }
    })
    const tracked = task.finally(() => inFlight.delete(tracked))
    inFlight.add(tracked)
    while (inFlight.size >= parallel) await Promise.race(inFlight)
  }

  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      if (failure) break
      total += chunk.length
      if (options.maxBytes !== undefined && total > options.maxBytes) {
        throw new Error(`the entry is larger than the service's limit of ${options.maxBytes} bytes`)
      }
      let rest = chunk
      while (rest.length > 0) {
        const take = Math.min(rest.length, blockBytes - pendingBytes)
        pending.push(rest.subarray(0, take))
        pendingBytes += take
        rest = rest.subarray(take)
        if (pendingBytes === blockBytes) {
          const block = Buffer.concat(pending)
          pending = []
          pendingBytes = 0
          await stage(block)
        }
      }
    }
    if (!failure && pendingBytes > 0) await stage(Buffer.concat(pending))
    await Promise.all(inFlight)
  } catch (error) {
    source.destroy()
    await Promise.allSettled(inFlight)
    throw error
  }
  if (failure) {
    source.destroy()
    throw failure.error
  }
  await putBlockList(url, ids, options.policy)
  return total
}

/**
 * Block size and parallel Put Block calls of an upload from a file: each
 * body a range read from disk, none held in memory, so the size costs no
 * memory. Measured on the local service (1 GiB): 32 MiB x 4 was the
 * fastest; 2 in flight left it waiting, 8 only added memory.
 */
export const FILE_BLOCK_BYTES = 32 * 1024 ** 2
export const FILE_UPLOAD_PARALLEL = 4
/** Read size of a block's file range: large reads, few chunks for the socket to take. */
const RANGE_READ_BYTES = 1024 ** 2

/**
 * A blob made of a file between two small pieces: `head`, the file's first
 * `size` bytes, then `tail`, which may still be in the making while the file
 * goes up (an entry's digest trailer).
 */
export interface FileBlob {
  head: Buffer
  path: string
  size: number
  tail: Promise<Buffer>
}

export interface FileUploadOptions {
  policy: RetryPolicy
  blockBytes?: number
  parallel?: number
  /** Told the bytes of each block stored (a progress line). */
  onBlock?: (bytes: number) => void
}

/** One block of a FileBlob: fixed bytes, or a range [start, end) of the file. */
type BlockBody = { bytes: Buffer } | { start: number; end: number }

/**
 * Uploads a FileBlob as Put Block calls straight from byte ranges of the
 * file, `parallel` at a time, each body a read stream of its range with a
 * known length (a retry opens the range again): nothing is assembled in
 * memory. `head` and `tail` go as small blocks of their own, the tail last,
 * once it is known. Returns the blob's size in bytes.
 */
export async function uploadFileBlob(url: string, blob: FileBlob, options: FileUploadOptions): Promise<number> {
  const blockBytes = options.blockBytes ?? FILE_BLOCK_BYTES
  const parallel = options.parallel ?? FILE_UPLOAD_PARALLEL
  let failure: { error: unknown } | undefined
  // A tail that fails stops the upload at the next block (and is no unhandled rejection).
  blob.tail.catch((error: unknown) => (failure ??= { error }))
  const bodies: BlockBody[] = []
  if (blob.head.length > 0) bodies.push({ bytes: blob.head })
  for (let start = 0; start < blob.size; start += blockBytes) bodies.push({ start, end: Math.min(blob.size, start + blockBytes) })
  const put = async (index: number, body: BlockBody): Promise<number> => {
    if ('bytes' in body) await putBlock(url, blockId(index), body.bytes, options.policy)
    else {
      const { start, end } = body
      const makeBody = (): Readable => createReadStream(blob.path, { start, end: end - 1, highWaterMark: RANGE_READ_BYTES })
      await putBlock(url, blockId(index), { makeBody, length: end - start }, options.policy)
    }
    const bytes = 'bytes' in body ? body.bytes.length : body.end - body.start
    options.onBlock?.(bytes)
    return bytes
  }
  let next = 0
  let total = 0
  const lane = async (): Promise<void> => {
    while (!failure && next < bodies.length) {
      const index = next++
      try {
        const bytes = await put(index, bodies[index]!)
        total += bytes
      } catch (error) {
        failure ??= { error }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, bodies.length) }, lane))
  if (failure) throw failure.error
  const tail = await blob.tail
  const ids = bodies.map((_body, index) => blockId(index))
  if (tail.length > 0) {
    const bytes = await put(bodies.length, { bytes: tail })
    total += bytes
    ids.push(blockId(bodies.length))
  }
  await putBlockList(url, ids, options.policy)
  return total
}

/**
 * Uploads `length` bytes as one Put Blob, the body streamed from
 * `makeBody()`; a retry calls it again for a fresh stream. Returns `length`.
 */
export async function putWholeBlob(url: string, makeBody: () => Readable, length: number, policy: RetryPolicy): Promise<number> {
  const target = new URL(url)
  await withRetries('upload', policy, async () => {
    const stream = makeBody()
    try {
      const res = await send({
        method: 'PUT',
        url: target,
        headers: { 'x-ms-version': AZURE_VERSION, 'x-ms-blob-type': 'BlockBlob' },
        body: { stream, length }
      })
      await expectOk('upload', res)
      await readBody(res.body)
    } finally {
      stream.destroy()
    }
  })
  return length
}

/** The id of block number `index`: equal-length ids (Azure requires it); the block list's order is the blob's. */
function blockId(index: number): string {
  return Buffer.from(`block-${String(index).padStart(8, '0')}`).toString('base64')
}

function withQuery(url: string, params: Record<string, string>): URL {
  const u = new URL(url)
  for (const [name, value] of Object.entries(params)) u.searchParams.set(name, value)
  return u
}

/**
 * One Put Block: a block in memory, or `length` bytes streamed from
 * `makeBody()` (a retry calls it again for a fresh stream).
 */
async function putBlock(url: string, id: string, block: Buffer | { makeBody: () => Readable; length: number }, policy: RetryPolicy): Promise<void> {
  const target = withQuery(url, { comp: 'block', blockid: id })
  await withRetries('upload block', policy, async () => {
    const body = Buffer.isBuffer(block) ? block : { stream: block.makeBody(), length: block.length }
    try {
      const res = await send({ method: 'PUT', url: target, headers: { 'x-ms-version': AZURE_VERSION }, body })
      await expectOk('upload block', res)
      await readBody(res.body)
    } finally {
      if (!Buffer.isBuffer(body)) body.stream.destroy()
    }
  })
}

async function putBlockList(url: string, ids: string[], policy: RetryPolicy): Promise<void> {
  const target = withQuery(url, { comp: 'blocklist' })
  const xml = Buffer.from(`<?xml version="1.0" encoding="utf-8"?><BlockList>${ids.map(id => `<Latest>${id}</Latest>`).join('')}</BlockList>`)
  await withRetries('commit blocks', policy, async () => {
    const res = await send({
      method: 'PUT',
      url: target,
      headers: { 'x-ms-version': AZURE_VERSION, 'Content-Type': 'application/xml' },
      body: xml
    })
    await expectOk('commit blocks', res)
    await readBody(res.body)
  })
}
