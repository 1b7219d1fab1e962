// HTTP plumbing shared by the protocol parts: reading / streaming request
// bodies (optionally cut off after n bytes), sending (possibly truncated)
// responses, draining, the bearer token check.

import { createHash, timingSafeEqual } from 'node:crypto'
import { once } from 'node:events'
import * as fs from 'node:fs'
import type * as http from 'node:http'

/** Thrown after we deliberately destroyed the connection; nothing left to answer. */
export class ConnectionDropped extends Error {}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message)
  }
}

export async function readBody(req: http.IncomingMessage, limit: number, resetAfterBytes?: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    if (resetAfterBytes !== undefined && size + chunk.length >= resetAfterBytes) {
      req.socket.destroy()
      throw new ConnectionDropped()
    }
    size += chunk.length
    if (size > limit) throw new HttpError(413, 'RequestBodyTooLarge', `request body over ${limit} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/** Reads a small JSON body ('' = {}); undefined when it is not a JSON object. */
export async function readJsonObject(req: http.IncomingMessage): Promise<Record<string, unknown> | undefined> {
  const raw = (await readBody(req, 1024 * 1024)).toString('utf8')
  try {
    const parsed: unknown = raw === '' ? {} : JSON.parse(raw)
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined
    return parsed as Record<string, unknown>
  } catch {
    return undefined
  }
}

/** Streams the request body into `file` (from `start` when given), hashing it. */
export async function receiveToFile(
  req: http.IncomingMessage,
  file: string,
  opts: { start?: number; resetAfterBytes?: number } = {}
): Promise<{ size: number; md5: Buffer }> {
  const hash = createHash('md5')
  const out = fs.createWriteStream(file, opts.start === undefined ? { flags: 'w' } : { flags: 'r+', start: opts.start })
  let size = 0
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      let buf = chunk
      const reset = opts.resetAfterBytes !== undefined && size + buf.length >= opts.resetAfterBytes
      if (reset) buf = buf.subarray(0, (opts.resetAfterBytes ?? 0) - size)
      hash.update(buf)
      size += buf.length
      if (!out.write(buf)) await once(out, 'drain')
      if (reset) {
        req.socket.destroy()
        throw new ConnectionDropped()
      }
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())))
  } catch (err) {
    out.destroy()
    throw err
  }
  return { size, md5: hash.digest() }
}

/** Sends a complete body, or only its first `resetAfterBytes` bytes before dropping the connection. */
export async function sendBody(
  res: http.ServerResponse,
  status: number,
  headers: Record<string, string | number>,
  body: Buffer,
  resetAfterBytes?: number
): Promise<void> {
  res.writeHead(status, { ...headers, 'Content-Length': body.length })
  if (resetAfterBytes === undefined) {
    res.end(body)
    return
  }
  res.flushHeaders()
  if (resetAfterBytes > 0) await writeFlushed(res, body.subarray(0, resetAfterBytes))
  return endConnection(res)
}

/** sendBody with a JSON body. */
export const sendJson = (res: http.ServerResponse, status: number, body: unknown, resetAfterBytes?: number): Promise<void> =>
  sendBody(res, status, { 'Content-Type': 'application/json' }, Buffer.from(JSON.stringify(body)), resetAfterBytes)

export function writeFlushed(res: http.ServerResponse, chunk: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => res.write(chunk, err => (err ? reject(err) : resolve())))
}

/**
 * Ends the TCP connection mid-response: what was written is flushed, then FIN,
 * so the client sees exactly the bytes sent and then a premature end.
 */
export function endConnection(res: http.ServerResponse): never {
  const socket = res.socket
  if (socket) {
    socket.end()
    setTimeout(() => socket.destroy(), 1000).unref()
  }
  throw new ConnectionDropped()
}

export async function drain(req: http.IncomingMessage): Promise<void> {
  if (req.readableEnded) return
  req.resume()
  await once(req, 'end').catch(() => undefined)
}

export const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

export function bearerOk(req: http.IncomingMessage, token: string): boolean {
  const expected = Buffer.from(`Bearer ${token}`)
  const given = Buffer.from(req.headers.authorization ?? '')
  return given.length === expected.length && timingSafeEqual(given, expected)
}
