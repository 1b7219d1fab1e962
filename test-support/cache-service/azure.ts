// The Azure Blob wire format the blob endpoint (blob.ts) speaks: parsing Put
// Block List bodies, block ids and Range headers, and the x-ms-* response
// headers, ETags and XML error bodies.

import { createHash, randomUUID } from 'node:crypto'
import type * as http from 'node:http'
import { sendBody } from './http-io.js'
import { AZURE_VERSION } from './sas.js'

// ---------------------------------------------------------------------------
// Pure helpers (unit-tested)

export type BlockKind = 'Committed' | 'Uncommitted' | 'Latest'

/** Parses a Put Block List body (<BlockList><Latest>id</Latest>...</BlockList>), order preserved. */
export function parseBlockList(xml: string): Array<{ kind: BlockKind; id: string }> {
  if (!/<BlockList\s*>/.test(xml) && !/<BlockList\s*\/>/.test(xml)) throw new Error('not a BlockList')
  const blocks: Array<{ kind: BlockKind; id: string }> = []
  const re = /<(Committed|Uncommitted|Latest)>([^<]*)<\/\1>/g
  for (let m = re.exec(xml); m; m = re.exec(xml)) {
    blocks.push({ kind: m[1] as BlockKind, id: decodeXml((m[2] ?? '').trim()) })
  }
  return blocks
}

function decodeXml(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&')
}

/** Decodes an Azure block id (base64 of <= 64 bytes) to a file-name-safe hex string. */
export function blockIdToHex(blockId: string): string | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blockId) || blockId.length % 4 !== 0) return undefined
  const raw = Buffer.from(blockId, 'base64')
  if (raw.length === 0 || raw.length > 64) return undefined
  return raw.toString('hex')
}

/**
 * Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `size` bytes.
 * undefined = no (usable) range, serve everything; 'unsatisfiable' = 416.
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m || (m[1] === '' && m[2] === '')) return undefined // multi-range / garbage: ignore
  if (m[1] === '') {
    const suffix = Number(m[2])
    if (suffix === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (start >= size || end < start) return 'unsatisfiable'
  return { start, end }
}

// ---------------------------------------------------------------------------
// Azure responses

export function azureCodeFor(status: number): string {
  const preferred: Record<number, string> = {
    400: 'InvalidInput',
    403: 'AuthenticationFailed',
    404: 'BlobNotFound',
    409: 'BlobAlreadyExists',
    412: 'ConditionNotMet',
    500: 'InternalError',
    503: 'ServerBusy'
  }
  return preferred[status] ?? 'InternalError'
}

export function azureHeaders(req: http.IncomingMessage): Record<string, string> {
  const h: Record<string, string> = {
    'x-ms-request-id': randomUUID(),
    'x-ms-version': (req.headers['x-ms-version'] as string | undefined) ?? AZURE_VERSION,
    Date: new Date().toUTCString()
  }
  const clientId = req.headers['x-ms-client-request-id']
  if (typeof clientId === 'string') h['x-ms-client-request-id'] = clientId
  return h
}

export function azureError(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  status: number,
  code: string,
  message: string,
  reset?: number,
  extra: Record<string, string> = {}
): Promise<void> {
  const headers = azureHeaders(req)
  const xml =
    `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}\n` +
    `RequestId:${headers['x-ms-request-id']}\nTime:${new Date().toISOString()}</Message></Error>`
  const body = req.method === 'HEAD' ? Buffer.alloc(0) : Buffer.from(xml)
  return sendBody(res, status, { ...headers, ...extra, 'Content-Type': 'application/xml', 'x-ms-error-code': code }, body, reset)
}

export const etagFor = (md5: string, mtimeMs: number): string =>
  `"0x8D${createHash('sha1').update(`${md5}:${mtimeMs}`).digest('hex').slice(0, 13).toUpperCase()}"`
