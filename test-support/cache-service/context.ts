// The per-service context handed to every protocol part (no module-level
// state: each startCacheService() call makes its own).

import type { Faults } from './faults.js'
import type { RequestRecord } from './ops.js'
import type { ApiSettings } from './rest.js'
import type { Store, StoredEntry } from './store.js'

export interface ServiceContext {
  readonly store: Store
  readonly faults: Faults
  /** Live request log (control requests excluded). */
  readonly requests: RequestRecord[]
  /** Bearer token for Twirp, v1 and /_control. */
  readonly token: string
  /** The REST API's repository, token, permission and the jobs' ref (rest.ts). */
  readonly api: ApiSettings
  /** HMAC key of the signed blob URLs. */
  readonly secret: Buffer
  /** A reservation not finalized within this time may be re-created. */
  readonly pendingTtlMs: number
  /** Lifetime of signed blob URLs. */
  readonly urlTtlMs: number
  /** v1 chunk ranges received per entry id (in memory only). */
  readonly v1Ranges: Map<number, Array<[number, number]>>
  /** e.g. http://127.0.0.1:PORT/, set once listening. */
  baseUrl: string
  /** The origin of signed blob URLs when it is not baseUrl (StartOptions.blobHost). */
  blobBaseUrl?: string
}

/** Finds the live entry for key+version, dropping an expired reservation. */
export function existingFor(ctx: ServiceContext, key: string, version: string): StoredEntry | undefined {
  const e = ctx.store.entries.find(x => x.key === key && x.version === version)
  if (e && e.state === 'pending' && Date.now() - e.createdAt > ctx.pendingTtlMs) {
    ctx.store.remove(e)
    ctx.v1Ranges.delete(e.id)
    return undefined
  }
  return e
}
