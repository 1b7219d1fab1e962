import * as http from 'node:http'
import * as https from 'node:https'
import type { Readable } from 'node:stream'

import { HttpStatusError, parseRetryAfter, TransferError } from './retry.js'

/**
 * One HTTP request of the stream client, on node:http(s) with nothing in
 * between: the body is streamed both ways, and a peer that goes silent for
 * `idleMs` (no header, no byte) ends the request with a TransferError, so
 * no cache call can hold a job.
 */
export interface HttpRequest {
  method: 'GET' | 'PUT' | 'POST' | 'HEAD' | 'DELETE'
  url: URL
  headers?: Record<string, string | number>
  /** A buffer, or a stream of exactly `length` bytes. */
  body?: Buffer | { stream: Readable; length: number }
  idleMs?: number
  /** Aborts the request (an overall deadline): it fails with the signal's AbortError. */
  signal?: AbortSignal
}

export interface HttpResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: Readable
}

export const DEFAULT_IDLE_MS = 120_000

export function send(request: HttpRequest): Promise<HttpResponse> {
  const { url } = request
  const lib = url.protocol === 'https:' ? https : http
  const idleMs = request.idleMs ?? DEFAULT_IDLE_MS
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...request.headers }
    const { body } = request
    if (body !== undefined) headers['Content-Length'] = body.length
    const options: http.RequestOptions = { method: request.method, headers, ...(request.signal ? { signal: request.signal } : {}) }
    const req = lib.request(url, options, res => {
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res })
    })
    // The socket's idle timer covers the request, the wait for an answer and the body that follows.
    req.setTimeout(idleMs, () => req.destroy(new TransferError(`${url.host} sent nothing for ${Math.round(idleMs / 1000)} s`)))
    req.once('error', reject)
    if (body === undefined || Buffer.isBuffer(body)) req.end(body)
    else {
      body.stream.once('error', e => req.destroy(e))
      body.stream.pipe(req)
    }
  })
}

/** Reads a (small) body whole; more than `limit` bytes is an error. */
export async function readBody(body: Readable, limit = 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) {
      body.destroy()
      throw new Error(`the answer is larger than ${limit} bytes`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/** Throws an HttpStatusError for a non-2xx answer (its body read for a message, at most 4 KiB shown). */
export async function expectOk(what: string, res: HttpResponse, describe: (text: string) => string = shortText): Promise<void> {
  if (res.status >= 200 && res.status < 300) return
  let text = ''
  try {
    text = (await readBody(res.body, 64 * 1024)).toString('utf8')
  } catch {
    // the status is the message
  }
  const retryAfter = parseRetryAfter(headerOf(res.headers, 'retry-after'))
  const detail = describe(text)
  throw new HttpStatusError(res.status, `${what}: HTTP ${res.status}${detail ? ` (${detail})` : ''}`, retryAfter)
}

export function headerOf(headers: http.IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** An XML or text error body as one short line: Azure's <Code> and <Message>, or the text itself. */
function shortText(text: string): string {
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1]
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1]
  const line = code !== undefined ? `${code}${message ? `: ${message}` : ''}` : text
  return line.replace(/\s+/g, ' ').trim().slice(0, 200)
}
