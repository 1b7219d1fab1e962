// The Azure blob endpoint behind the signed URLs (sas.ts): /blobs/cache/<blobId>
// (wire format details in azure.ts).
// Uploads are the Azure Block Blob calls of BlockBlobClient.uploadFile: Put
// Blob (PUT, x-ms-blob-type: BlockBlob) when the archive is <= 128 MiB, else
// Put Block (PUT ?comp=block&blockid=) per 64 MiB chunk + Put Block List (PUT
// ?comp=blocklist, XML body), which links the staged blocks into the blob
// without copying them (stored-blob.ts). The download of a URL whose host is not
// *.blob.core.windows.net is one plain GET through @actions/http-client (no
// Range; Content-Length is checked); Range / x-ms-range and HEAD are
// supported anyway.

import { createHash } from 'node:crypto'
import { once } from 'node:events'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import type * as http from 'node:http'
import * as path from 'node:path'
import { azureCodeFor, azureError, azureHeaders, blockIdToHex, etagFor, parseBlockList, parseRange, type BlockKind } from './azure.js'
import type { ServiceContext } from './context.js'
import { applyFault } from './faults.js'
import { drain, endConnection, readBody, receiveToFile, writeFlushed } from './http-io.js'
import type { BlobOp, TrackedHandler } from './ops.js'
import { under, type Route } from './router.js'
import { BLOB_PREFIX, verifyBlobSignature } from './sas.js'
import type { StoredEntry } from './store.js'
import { linkParts, readBlob, replaceBlob, statBlob } from './stored-blob.js'

// ---------------------------------------------------------------------------
// Routing: every method under the prefix; the op comes from method + ?comp=.

function blobOp(method: string, comp: string | null): BlobOp | undefined {
  if (method === 'GET') return 'GetBlob'
  if (method === 'HEAD') return 'GetBlobProperties'
  if (method === 'PUT' && comp === null) return 'PutBlob'
  if (method === 'PUT' && comp === 'block') return 'PutBlock'
  if (method === 'PUT' && comp === 'blocklist') return 'PutBlockList'
  return undefined
}

export function blobRoutes(ctx: ServiceContext): Array<Route<TrackedHandler>> {
  const handler: TrackedHandler = async ({ req, res, url, params }, rec) => {
    const blobId = params[0] ?? ''
    const comp = url.searchParams.get('comp')
    const op = blobOp(rec.method, comp)
    if (!op) {
      await drain(req)
      return azureError(req, res, 400, 'UnsupportedHttpVerb', `${rec.method} ${comp ?? ''} is not supported by this service.`)
    }
    rec.op = op
    const entry = /^[0-9a-f]{32}$/.test(blobId) ? ctx.store.entries.find(e => e.blobId === blobId) : undefined
    const fault = await applyFault(ctx.faults, req, rec, entry?.key, (status, msg) => azureError(req, res, status, azureCodeFor(status), msg), res)
    if (fault.done) return
    const write = op === 'PutBlob' || op === 'PutBlock' || op === 'PutBlockList'
    const denied = verifyBlobSignature(ctx.secret, blobId, url.searchParams, write ? 'w' : 'r', Date.now())
    if (denied) {
      await drain(req)
      return azureError(req, res, 403, denied.code, denied.message, write ? undefined : fault.reset)
    }
    if (!write) return getBlob(ctx, req, res, blobId, entry, fault.reset)
    return putBlob(ctx, req, res, op, blobId, url, entry, fault.reset)
  }
  return [{ method: '*', pattern: under(BLOB_PREFIX), handler }]
}

// ---------------------------------------------------------------------------
// Get Blob / Get Blob Properties, with Range / x-ms-range

async function getBlob(
  ctx: ServiceContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  blobId: string,
  entry: StoredEntry | undefined,
  reset: number | undefined
): Promise<void> {
  const blob = statBlob(ctx.store.blobPath(blobId))
  if (!entry || entry.state !== 'committed' || !blob) {
    return azureError(req, res, 404, 'BlobNotFound', 'The specified blob does not exist.', reset)
  }
  const range = parseRange((req.headers['x-ms-range'] as string | undefined) ?? req.headers.range, blob.size)
  const common: Record<string, string | number> = {
    ...azureHeaders(req),
    'Content-Type': 'application/octet-stream',
    'Last-Modified': blob.mtime.toUTCString(),
    ETag: etagFor(entry.md5 ?? blobId, blob.mtime.getTime()),
    'Accept-Ranges': 'bytes',
    'x-ms-blob-type': 'BlockBlob',
    'x-ms-creation-time': new Date(entry.createdAt).toUTCString(),
    'x-ms-lease-state': 'available',
    'x-ms-lease-status': 'unlocked',
    'x-ms-server-encrypted': 'true'
  }
  if (range === 'unsatisfiable') {
    return azureError(req, res, 416, 'InvalidRange', 'The range specified is invalid for the current size of the resource.', reset, {
      'Content-Range': `bytes */${blob.size}`
    })
  }
  const start = range?.start ?? 0
  const end = range?.end ?? blob.size - 1
  const length = Math.max(0, end - start + 1)
  const headers: Record<string, string | number> = { ...common, 'Content-Length': length }
  if (range) headers['Content-Range'] = `bytes ${start}-${end}/${blob.size}`
  else if (entry.md5) headers['Content-MD5'] = entry.md5
  res.writeHead(range ? 206 : 200, headers)
  if (reset !== undefined) res.flushHeaders()
  const limit = reset === undefined ? end : Math.min(end, start + reset - 1)
  if (req.method !== 'HEAD' && length > 0 && limit >= start) {
    for await (const chunk of readBlob(blob, start, limit)) {
      if (reset !== undefined) await writeFlushed(res, chunk)
      else if (!res.write(chunk)) await once(res, 'drain')
    }
  }
  if (reset !== undefined) endConnection(res)
  res.end()
}

// ---------------------------------------------------------------------------
// Put Blob / Put Block / Put Block List

async function putBlob(
  ctx: ServiceContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  op: BlobOp,
  blobId: string,
  url: URL,
  entry: StoredEntry | undefined,
  reset: number | undefined
): Promise<void> {
  const { store } = ctx
  // Writes are accepted only while the entry is an unfinished v2 reservation.
  if (!entry) {
    await drain(req)
    return azureError(req, res, 404, 'BlobNotFound', 'The specified blob does not exist.')
  }
  if (entry.state !== 'pending' || entry.api !== 'v2') {
    await drain(req)
    return azureError(req, res, 409, 'BlobImmutableDueToPolicy', 'This operation is not permitted as the blob is immutable.')
  }
  const created = (extra: Record<string, string>): void => {
    res.writeHead(201, { ...azureHeaders(req), 'Content-Length': 0, 'x-ms-request-server-encrypted': 'true', ...extra })
    res.end()
  }
  /** Puts the uploaded blob (a file, or a part directory) in place; uncommitted blocks are discarded. */
  const finishBlob = (staged: string, size: number, md5: string | undefined): Record<string, string> => {
    replaceBlob(staged, store.blobPath(blobId), store.tmpPath())
    fs.rmSync(store.blockDir(blobId), { recursive: true, force: true })
    entry.uploadedSize = size
    if (md5 === undefined) delete entry.md5
    else entry.md5 = md5
    store.save()
    const mtime = fs.statSync(store.blobPath(blobId)).mtime
    return { ETag: etagFor(entry.md5 ?? blobId, mtime.getTime()), 'Last-Modified': mtime.toUTCString() }
  }
  const checkLength = async (size: number, tmp: string, md5: Buffer): Promise<boolean> => {
    const declared = req.headers['content-length']
    if (declared !== undefined && Number(declared) !== size) {
      await fsp.rm(tmp, { force: true })
      await azureError(req, res, 400, 'InvalidInput', 'Content-Length does not match the body.')
      return false
    }
    const declaredMd5 = req.headers['content-md5']
    if (typeof declaredMd5 === 'string' && declaredMd5 !== md5.toString('base64')) {
      await fsp.rm(tmp, { force: true })
      await azureError(
        req,
        res,
        400,
        'Md5Mismatch',
        'The MD5 value specified in the request did not match with the MD5 value calculated by the server.'
      )
      return false
    }
    return true
  }

  if (op === 'PutBlob') {
    if (req.headers['x-ms-blob-type'] !== 'BlockBlob') {
      await drain(req)
      return azureError(
        req,
        res,
        400,
        'MissingRequiredHeader',
        'An HTTP header that is mandatory for this request is not specified: x-ms-blob-type: BlockBlob.'
      )
    }
    const tmp = store.tmpPath()
    const { size, md5 } = await receiveToFile(req, tmp, { resetAfterBytes: reset })
    if (!(await checkLength(size, tmp, md5))) return
    created({ ...finishBlob(tmp, size, md5.toString('base64')), 'Content-MD5': md5.toString('base64') })
    return
  }

  if (op === 'PutBlock') {
    const blockId = url.searchParams.get('blockid') ?? ''
    const hex = blockIdToHex(blockId)
    if (!hex) {
      await drain(req)
      return azureError(
        req,
        res,
        400,
        'InvalidQueryParameterValue',
        `Value for one of the query parameters specified in the request URI is invalid: blockid=${blockId}`
      )
    }
    const tmp = store.tmpPath()
    const { size, md5 } = await receiveToFile(req, tmp, { resetAfterBytes: reset })
    if (!(await checkLength(size, tmp, md5))) return
    fs.mkdirSync(store.blockDir(blobId), { recursive: true })
    fs.renameSync(tmp, path.join(store.blockDir(blobId), hex))
    created({ 'Content-MD5': md5.toString('base64') })
    return
  }

  // PutBlockList
  const xml = await readBody(req, 4 * 1024 * 1024, reset)
  let blocks: Array<{ kind: BlockKind; id: string }>
  try {
    blocks = parseBlockList(xml.toString('utf8'))
  } catch {
    return azureError(req, res, 400, 'InvalidXmlDocument', 'XML specified is not syntactically valid.')
  }
  const files: string[] = []
  for (const block of blocks) {
    const hex = blockIdToHex(block.id)
    const file = hex === undefined ? undefined : path.join(store.blockDir(blobId), hex)
    if (!file || !fs.existsSync(file)) {
      return azureError(req, res, 400, 'InvalidBlockList', `The specified block list is invalid: unknown block ${block.id}.`)
    }
    files.push(file)
  }
  // Committing links the staged blocks into the blob's part directory: no
  // data is copied or read, so the blob has no MD5 of its own unless the
  // client declares one (x-ms-blob-content-md5), as on Azure.
  const staging = store.tmpPath()
  linkParts(files, staging)
  const size = files.reduce((sum, file) => sum + fs.statSync(file).size, 0)
  const declared = req.headers['x-ms-blob-content-md5']
  const headers = finishBlob(staging, size, typeof declared === 'string' ? declared : undefined)
  created({ ...headers, 'Content-MD5': createHash('md5').update(xml).digest('base64') })
}
