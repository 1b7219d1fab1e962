// Service v2 (ACTIONS_CACHE_SERVICE_V2 set, base ACTIONS_RESULTS_URL, bearer
// token): POST /twirp/github.actions.results.api.v1.CacheService/<Method>,
// Twirp JSON with proto field names (`restore_keys`, `size_bytes`,
// `signed_upload_url`...).
//   - GetCacheEntryDownloadURL {key, restore_keys[], version}
//       -> 200 {ok, signed_download_url, matched_key}; a miss is ok:false.
//   - CreateCacheEntry {key, version} -> 200 {ok, signed_upload_url}; an
//       existing key+version is a Twirp error 409 `already_exists`, which the
//       client turns into ReserveCacheError -> info log, saveCache returns -1.
//   - FinalizeCacheEntryUpload {key, version, size_bytes} -> {ok, entry_id}.
// The signed URLs point at the blob endpoint (blob.ts).

import * as fs from 'node:fs'
import type * as http from 'node:http'
import { existingFor, type ServiceContext } from './context.js'
import { applyFault } from './faults.js'
import { bearerOk, drain, readJsonObject, sendJson } from './http-io.js'
import { TWIRP_OPS, TWIRP_SERVICE, type RequestRecord, type TrackedHandler, type TwirpOp } from './ops.js'
import { exactly, under, type Route } from './router.js'
import { signedUrl } from './sas.js'
import { findEntry } from './store.js'

const TWIRP_PREFIX = `/twirp/${TWIRP_SERVICE}/`

function twirpCodeFor(status: number): string {
  const preferred: Record<number, string> = {
    400: 'invalid_argument',
    401: 'unauthenticated',
    403: 'permission_denied',
    404: 'not_found',
    408: 'deadline_exceeded',
    409: 'already_exists',
    412: 'failed_precondition',
    429: 'resource_exhausted',
    501: 'unimplemented',
    503: 'unavailable'
  }
  return preferred[status] ?? (status >= 500 ? 'internal' : 'unknown')
}

const twirpError = (res: http.ServerResponse, status: number, code: string, msg: string, reset?: number): Promise<void> =>
  sendJson(res, status, { code, msg }, reset)

const twirpReply = (res: http.ServerResponse, body: object, reset?: number): Promise<void> => sendJson(res, 200, body, reset)

/** POST <prefix><Method> for each Twirp method; anything else under the prefix is a `bad_route`. */
export function twirpRoutes(ctx: ServiceContext): Array<Route<TrackedHandler>> {
  return [
    ...TWIRP_OPS.map((op): Route<TrackedHandler> => ({
      method: 'POST',
      pattern: exactly(`${TWIRP_PREFIX}${op}`),
      handler: ({ req, res }, rec) => twirpCall(ctx, req, res, op, rec)
    })),
    {
      method: '*',
      pattern: under(TWIRP_PREFIX),
      handler: async ({ req, res, url }, rec) => {
        await drain(req)
        return twirpError(res, 404, 'bad_route', `no handler for ${rec.method} ${url.pathname}`)
      }
    }
  ]
}

async function twirpCall(ctx: ServiceContext, req: http.IncomingMessage, res: http.ServerResponse, op: TwirpOp, rec: RequestRecord): Promise<void> {
  rec.op = op
  if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
    await drain(req)
    return twirpError(res, 404, 'bad_route', 'only application/json is supported')
  }
  const body = await readJsonObject(req)
  if (!body) return twirpError(res, 400, 'malformed', 'request body is not a JSON object')
  const key = typeof body['key'] === 'string' ? body['key'] : undefined
  const fault = await applyFault(ctx.faults, req, rec, key, (status, msg) => twirpError(res, status, twirpCodeFor(status), msg), res)
  if (fault.done) return
  return handleTwirp(ctx, req, res, op, body, fault.reset)
}

async function handleTwirp(
  ctx: ServiceContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  op: TwirpOp,
  body: Record<string, unknown>,
  reset: number | undefined
): Promise<void> {
  const { store } = ctx
  if (!bearerOk(req, ctx.token)) return twirpError(res, 401, 'unauthenticated', 'invalid or missing bearer token', reset)
  const str = (name: string, alt?: string): string => {
    const v = body[name] ?? (alt === undefined ? undefined : body[alt])
    return typeof v === 'string' ? v : ''
  }
  const key = str('key')
  const version = str('version')
  if (!key) return twirpError(res, 400, 'invalid_argument', 'key is required', reset)
  if (!version) return twirpError(res, 400, 'invalid_argument', 'version is required', reset)

  if (op === 'GetCacheEntryDownloadURL') {
    const raw = body['restore_keys'] ?? body['restoreKeys'] ?? []
    const restoreKeys = Array.isArray(raw) ? raw.filter((k): k is string => typeof k === 'string') : []
    const hit = findEntry(store.committed(), key, restoreKeys, version)
    if (!hit) return twirpReply(res, { ok: false, signed_download_url: '', matched_key: '' }, reset)
    store.touch(hit, Date.now())
    return twirpReply(res, { ok: true, signed_download_url: signedUrl(ctx, hit.blobId, 'r'), matched_key: hit.key }, reset)
  }

  if (op === 'CreateCacheEntry') {
    const existing = existingFor(ctx, key, version)
    if (existing?.state === 'committed') {
      return twirpError(res, 409, 'already_exists', 'cache entry with the same key, version, and scope already exists', reset)
    }
    if (existing) {
      return twirpError(res, 409, 'already_exists', 'cache entry with the same key, version, and scope is already being created', reset)
    }
    const entry = store.create(key, version, 'v2', Date.now(), ctx.api.ref)
    return twirpReply(res, { ok: true, signed_upload_url: signedUrl(ctx, entry.blobId, 'cw'), message: '' }, reset)
  }

  // FinalizeCacheEntryUpload
  const sizeRaw = body['size_bytes'] ?? body['sizeBytes'] ?? '0'
  const sizeBytes = Number(sizeRaw)
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
    return twirpError(res, 400, 'invalid_argument', 'size_bytes must be a non-negative integer', reset)
  }
  const entry = store.entries.find(e => e.key === key && e.version === version)
  if (!entry || entry.api !== 'v2') return twirpError(res, 404, 'not_found', 'cache entry not found', reset)
  if (entry.state === 'committed') {
    return twirpError(res, 409, 'already_exists', 'cache entry with the same key, version, and scope already exists', reset)
  }
  if (entry.uploadedSize === undefined || !fs.existsSync(store.blobPath(entry.blobId))) {
    return twirpError(res, 412, 'failed_precondition', 'cache entry has not been uploaded', reset)
  }
  if (entry.uploadedSize !== sizeBytes) {
    return twirpError(res, 400, 'invalid_argument', `size_bytes ${sizeBytes} does not match the uploaded ${entry.uploadedSize} bytes`, reset)
  }
  entry.state = 'committed'
  entry.committedAt = Date.now()
  entry.size = sizeBytes
  store.save()
  return twirpReply(res, { ok: true, entry_id: String(entry.id), message: '' }, reset)
}
