// Service v1 (GHES REST, base ACTIONS_CACHE_URL, bearer token) under
// _apis/artifactcache/: GET cache?keys=a,b&version=v (200 entry | 204 miss),
// GET caches?key= (list, debug only), POST caches {key, version, cacheSize}
// (201 {cacheId} | 409), PATCH caches/:id with `Content-Range: bytes s-e/*`
// chunks, POST caches/:id {size} (commit). Download via archiveLocation = a
// signed blob URL (blob.ts).

import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import type * as http from 'node:http'
import { existingFor, type ServiceContext } from './context.js'
import { applyFault } from './faults.js'
import { bearerOk, drain, readJsonObject, receiveToFile, sendBody, sendJson } from './http-io.js'
import type { RequestRecord, TrackedHandler, V1Op } from './ops.js'
import { exactly, under, type Route, type RouteCall } from './router.js'
import { signedUrl } from './sas.js'
import { findEntry, refOf, type StoredEntry } from './store.js'

const V1_PREFIX = '/_apis/artifactcache/'

const v1Json = (res: http.ServerResponse, status: number, body: object | undefined, reset?: number): Promise<void> =>
  body === undefined ? sendBody(res, status, {}, Buffer.alloc(0), reset) : sendJson(res, status, body, reset)

const v1Error = (res: http.ServerResponse, status: number, message: string, reset?: number): Promise<void> =>
  v1Json(
    res,
    status,
    { $id: '1', innerException: null, message, typeName: 'CacheServiceException', typeKey: 'CacheServiceException', errorCode: 0, eventId: 3000 },
    reset
  )

export function v1Routes(ctx: ServiceContext): Array<Route<TrackedHandler>> {
  const op =
    (name: V1Op): TrackedHandler =>
    (call, rec) =>
      v1Call(ctx, call, rec, name)
  const caches = `${V1_PREFIX}caches`
  const cacheId = /^\/_apis\/artifactcache\/caches\/(\d+)$/
  return [
    { method: 'GET', pattern: exactly(`${V1_PREFIX}cache`), handler: op('v1.GetCacheEntry') },
    { method: 'GET', pattern: exactly(caches), handler: op('v1.ListCaches') },
    { method: 'POST', pattern: exactly(caches), handler: op('v1.ReserveCache') },
    { method: 'PATCH', pattern: cacheId, handler: op('v1.UploadChunk') },
    { method: 'POST', pattern: cacheId, handler: op('v1.CommitCache') },
    {
      method: '*',
      pattern: under(V1_PREFIX),
      handler: async ({ req, res, url }, rec) => {
        await drain(req)
        return v1Error(res, 404, `no handler for ${rec.method} ${url.pathname}`)
      }
    }
  ]
}

async function v1Call(ctx: ServiceContext, { req, res, url, params }: RouteCall, rec: RequestRecord, op: V1Op): Promise<void> {
  rec.op = op
  let key: string | undefined
  let entry: StoredEntry | undefined
  let body: Record<string, unknown> = {}
  if (op === 'v1.UploadChunk' || op === 'v1.CommitCache') {
    const id = Number(params[0])
    entry = ctx.store.entries.find(e => e.id === id)
    key = entry?.key
  }
  if (op === 'v1.ReserveCache' || op === 'v1.CommitCache') {
    const parsed = await readJsonObject(req)
    if (!parsed) return v1Error(res, 400, 'request body is not a JSON object')
    body = parsed
  }
  if (op === 'v1.ReserveCache') key = typeof body['key'] === 'string' ? body['key'] : undefined
  if (op === 'v1.GetCacheEntry') key = (url.searchParams.get('keys') ?? '').split(',')[0]
  const fault = await applyFault(ctx.faults, req, rec, key, (status, msg) => v1Error(res, status, msg), res)
  if (fault.done) return
  return handleV1(ctx, req, res, op, url, entry, body, fault.reset)
}

async function handleV1(
  ctx: ServiceContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  op: V1Op,
  url: URL,
  entry: StoredEntry | undefined,
  body: Record<string, unknown>,
  reset: number | undefined
): Promise<void> {
  const { store, v1Ranges } = ctx
  const v1Entry = (e: StoredEntry): object => ({
    scope: refOf(e),
    cacheKey: e.key,
    cacheVersion: e.version,
    creationTime: new Date(e.createdAt).toISOString(),
    archiveLocation: signedUrl(ctx, e.blobId, 'r')
  })
  if (!bearerOk(req, ctx.token)) {
    await drain(req)
    return v1Error(res, 401, 'invalid or missing bearer token', op === 'v1.UploadChunk' ? undefined : reset)
  }
  if (op === 'v1.GetCacheEntry') {
    const keys = (url.searchParams.get('keys') ?? '').split(',').filter(k => k !== '')
    const version = url.searchParams.get('version') ?? ''
    const [primary, ...restoreKeys] = keys
    if (primary === undefined || !version) return v1Error(res, 400, 'keys and version are required', reset)
    const hit = findEntry(store.committed(), primary, restoreKeys, version)
    if (!hit) return v1Json(res, 204, undefined, reset)
    store.touch(hit, Date.now())
    return v1Json(res, 200, v1Entry(hit), reset)
  }
  if (op === 'v1.ListCaches') {
    const key = url.searchParams.get('key') ?? ''
    const list = store.committed().filter(e => e.key.startsWith(key))
    return v1Json(res, 200, { totalCount: list.length, artifactCaches: list.map(v1Entry) }, reset)
  }
  if (op === 'v1.ReserveCache') {
    const key = typeof body['key'] === 'string' ? body['key'] : ''
    const version = typeof body['version'] === 'string' ? body['version'] : ''
    if (!key || !version) return v1Error(res, 400, 'key and version are required', reset)
    if (existingFor(ctx, key, version)) {
      return v1Error(res, 409, `Cache already exists. Scope: ${ctx.api.ref}, Key: ${key}, Version: ${version}`, reset)
    }
    const created = store.create(key, version, 'v1', Date.now(), ctx.api.ref)
    fs.writeFileSync(store.uploadPath(created.blobId), '')
    v1Ranges.set(created.id, [])
    return v1Json(res, 201, { cacheId: created.id }, reset)
  }
  if (!entry || entry.api !== 'v1' || entry.state !== 'pending' || !v1Ranges.has(entry.id)) {
    await drain(req)
    return v1Error(res, 404, 'cache reservation not found', op === 'v1.UploadChunk' ? undefined : reset)
  }
  const ranges = v1Ranges.get(entry.id) ?? []
  if (op === 'v1.UploadChunk') {
    const m = /^bytes (\d+)-(\d+)\/(\*|\d+)$/.exec(req.headers['content-range'] ?? '')
    if (!m) {
      await drain(req)
      return v1Error(res, 400, 'invalid Content-Range')
    }
    const start = Number(m[1])
    const end = Number(m[2])
    const { size } = await receiveToFile(req, store.uploadPath(entry.blobId), { start, resetAfterBytes: reset })
    if (size !== end - start + 1) return v1Error(res, 400, `chunk is ${size} bytes, Content-Range says ${end - start + 1}`)
    ranges.push([start, end])
    return v1Json(res, 204, undefined)
  }
  // v1.CommitCache
  const size = Number(body['size'])
  if (!Number.isSafeInteger(size) || size < 0) return v1Error(res, 400, 'size is required', reset)
  let covered = 0
  for (const [s, e] of [...ranges].sort((a, b) => a[0] - b[0])) {
    if (s > covered) break
    covered = Math.max(covered, e + 1)
  }
  const file = store.uploadPath(entry.blobId)
  if (covered !== size || fs.statSync(file).size !== size) {
    return v1Error(res, 400, `Cache upload is incomplete: ${covered} contiguous bytes received, size is ${size}`, reset)
  }
  const hash = createHash('md5')
  for await (const chunk of fs.createReadStream(file) as AsyncIterable<Buffer>) hash.update(chunk)
  fs.renameSync(file, store.blobPath(entry.blobId))
  entry.uploadedSize = size
  entry.md5 = hash.digest('base64')
  entry.size = size
  entry.state = 'committed'
  entry.committedAt = Date.now()
  store.save()
  v1Ranges.delete(entry.id)
  return v1Json(res, 204, undefined, reset)
}
