// Operation names (what the request log and the faults call each request) and
// the request log: every request outside the control API gets a record.

import { ConnectionDropped } from './http-io.js'
import type { RouteCall, RouteHandler } from './router.js'

export const TWIRP_SERVICE = 'github.actions.results.api.v1.CacheService'
export const TWIRP_OPS = ['GetCacheEntryDownloadURL', 'CreateCacheEntry', 'FinalizeCacheEntryUpload'] as const
export type TwirpOp = (typeof TWIRP_OPS)[number]
export type BlobOp = 'PutBlob' | 'PutBlock' | 'PutBlockList' | 'GetBlob' | 'GetBlobProperties'
export type V1Op = 'v1.GetCacheEntry' | 'v1.ListCaches' | 'v1.ReserveCache' | 'v1.UploadChunk' | 'v1.CommitCache'
/** GitHub's REST API for caches (api.ts). */
export const REST_OPS = ['rest.ListCaches', 'rest.DeleteCachesByKey', 'rest.DeleteCacheById'] as const
export type RestOp = (typeof REST_OPS)[number]
export type Op = TwirpOp | BlobOp | V1Op | RestOp | 'unknown'

export interface RequestRecord {
  seq: number
  time: string
  method: string
  /** URL path without the query. */
  path: string
  /** Query string with `sig` redacted ('' when none). */
  query: string
  op: Op
  /** Cache key concerned (Twirp/v1 request key, the key owning a blob, the REST call's key or key prefix). */
  key?: string
  /** Response status; 0 when the connection was closed without a response. */
  status?: number
  /** Id of the fault that hit this request. */
  fault?: string
  /** The connection was closed before the response was complete. */
  dropped?: boolean
}

/** A route handler that fills in the request's log record (op, key, fault). */
export type TrackedHandler = (call: RouteCall, rec: RequestRecord) => Promise<void>

/**
 * Returns a wrapper that logs each request it handles into `requests`
 * (status and dropped are settled when the response closes, then onRequest
 * gets the final record).
 */
export function requestTracker(requests: RequestRecord[], onRequest?: (rec: RequestRecord) => void): (handler: TrackedHandler) => RouteHandler {
  let seq = 0
  return handler => async call => {
    const { req, res, url } = call
    const query = new URLSearchParams(url.searchParams)
    if (query.has('sig')) query.set('sig', 'REDACTED')
    const rec: RequestRecord = {
      seq: ++seq,
      time: new Date().toISOString(),
      method: req.method ?? 'GET',
      path: url.pathname,
      query: query.toString() === '' ? '' : `?${query.toString()}`,
      op: 'unknown'
    }
    requests.push(rec)
    const settle = (): void => {
      if (rec.status === undefined) rec.status = res.headersSent ? res.statusCode : 0
    }
    res.on('close', () => {
      settle()
      if (!res.writableFinished) rec.dropped = true
      onRequest?.(rec)
    })
    try {
      await handler(call, rec)
    } catch (err) {
      if (err instanceof ConnectionDropped) rec.dropped = true
      throw err
    } finally {
      settle()
    }
  }
}
