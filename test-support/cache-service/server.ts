// A GitHub Actions cache service on 127.0.0.1 that the UNMODIFIED
// @actions/cache client (6.x) talks to, for tests and the demo. Protocol
// learned from node_modules/@actions/cache/lib and @azure/storage-blob.
//
// This file creates the service (context, router, listen) and re-exports the
// public API of its parts:
//   twirp.ts    service v2: Twirp JSON calls (ACTIONS_RESULTS_URL)
//   blob.ts     the Azure blob endpoint of the signed URLs (azure.ts: its wire format)
//   sas.ts      signing / checking blob URLs
//   v1.ts       service v1: the GHES REST API (ACTIONS_CACHE_URL)
//   rest.ts     GitHub's REST API for caches: list and delete (GITHUB_API_URL)
//   store.ts    the persisted entries and GitHub's key lookup
//   stored-blob.ts  an entry's bytes: one file or the parts of a block list
//   faults.ts   fault injection
//   control.ts  the /_control API for tests and its client
//   ops.ts      operation names and the request log
//   router.ts   method + path routing;  http-io.ts  HTTP body plumbing
//   context.ts  the per-service state handed to every part

import { randomBytes } from 'node:crypto'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import * as path from 'node:path'
import { blobRoutes } from './blob.js'
import type { ServiceContext } from './context.js'
import { CONTROL_PREFIX, handleControl } from './control.js'
import { cacheClientEnv, githubApiEnv, type CacheServiceVersion, type ServiceEnv } from './env.js'
import { Faults } from './faults.js'
import { ConnectionDropped, drain, HttpError, sendBody } from './http-io.js'
import { requestTracker, type RequestRecord } from './ops.js'
import { Router, under } from './router.js'
import { patchApi, restRoutes, type ActionsPermission, type ApiPatch, type ApiSettings } from './rest.js'
import { DEFAULT_REF, Store, type CacheEntryInfo } from './store.js'
import { twirpRoutes } from './twirp.js'
import { v1Routes } from './v1.js'

export { blockIdToHex, parseBlockList, parseRange, type BlockKind } from './azure.js'
export { controlClient, type ControlClient } from './control.js'
export { faultMatches, Faults, validateFaultSpec, type FaultAction, type FaultInfo, type FaultOp, type FaultSpec } from './faults.js'
export { REST_OPS, TWIRP_OPS, TWIRP_SERVICE, type BlobOp, type Op, type RequestRecord, type RestOp, type TwirpOp, type V1Op } from './ops.js'
export { patchApi, type ActionsPermission, type ApiPatch, type ApiSettings } from './rest.js'
export { signBlob, verifyBlobSignature, type BlobPermission } from './sas.js'
export { findEntry, type CacheEntryInfo, type MatchCandidate } from './store.js'
export { readBlobBytes, statBlob, writeBlobBytes, type StoredBlob } from './stored-blob.js'

export interface StartOptions {
  dataDir: string
  /** 0 (default) = a random free port. */
  port?: number
  /** Bearer token for Twirp, v1 and /_control; random when omitted. */
  token?: string
  /** The token the REST API accepts (the job's GITHUB_TOKEN); random when omitted. */
  githubToken?: string
  /** The repository the REST API serves (default owner/repo). */
  repository?: string
  /** The job token's `actions` permission (default write: it may list and delete). */
  permission?: ActionsPermission
  /** The jobs' ref, GITHUB_REF: entries are saved from it (default refs/heads/main). */
  ref?: string
  /** Default 127.0.0.1. */
  host?: string
  /** A reservation that is not finalized within this time may be re-created (default 10 min). */
  pendingTtlMs?: number
  /** Lifetime of signed blob URLs (default 1 h). */
  urlTtlMs?: number
  /** Called when a (non-control) request is over, with its final log record. */
  onRequest?: (rec: RequestRecord) => void
  /**
   * A host name for the signed blob URLs instead of the listening address,
   * e.g. `bmc.blob.core.windows.net`: the cache client then downloads as it
   * does from Azure on a runner (its Azure SDK path, with `Received …`
   * progress lines). Nothing resolves that name: the client must reach the
   * service through it as an HTTP proxy (HTTP_PROXY=the service's url,
   * NO_PROXY=127.0.0.1); the service answers proxy-form requests itself.
   */
  blobHost?: string
}

export interface CacheService {
  /** e.g. http://127.0.0.1:PORT/ */
  readonly url: string
  readonly port: number
  readonly token: string
  /** The token of the REST API (what the action's github-token input would be). */
  readonly githubToken: string
  readonly dataDir: string
  /** Env vars for the @actions/cache client (v2 by default) and the REST API (GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_REF). */
  env(version?: CacheServiceVersion): ServiceEnv
  /** Changes the job token's permission or the jobs' ref (throws on a bad value); returns the settings now. */
  setApi(patch: ApiPatch): Readonly<ApiSettings>
  readonly faults: Faults
  /** Stored entries, oldest first; committed only unless includePending. */
  entries(opts?: { includePending?: boolean }): CacheEntryInfo[]
  /** Live request log (control requests excluded). */
  readonly requests: readonly RequestRecord[]
  clearRequests(): void
  close(): Promise<void>
}

function buildRouter(ctx: ServiceContext, onRequest: StartOptions['onRequest']): Router {
  const tracked = requestTracker(ctx.requests, onRequest)
  const router = new Router(
    tracked(async ({ req, res, url }) => {
      await drain(req)
      return sendBody(res, 404, { 'Content-Type': 'text/plain' }, Buffer.from(`not found: ${url.pathname}\n`))
    })
  )
  router.on('*', under(CONTROL_PREFIX), call => handleControl(ctx, call)) // not logged
  for (const route of [...twirpRoutes(ctx), ...blobRoutes(ctx), ...v1Routes(ctx), ...restRoutes(ctx)]) {
    router.on(route.method, route.pattern, tracked(route.handler))
  }
  return router
}

export async function startCacheService(opts: StartOptions): Promise<CacheService> {
  const host = opts.host ?? '127.0.0.1'
  const ctx: ServiceContext = {
    store: new Store(path.resolve(opts.dataDir)),
    faults: new Faults(),
    requests: [],
    token: opts.token ?? randomBytes(16).toString('hex'),
    api: {
      repository: opts.repository ?? 'owner/repo',
      token: opts.githubToken ?? `ghs_${randomBytes(16).toString('hex')}`,
      permission: 'write',
      ref: DEFAULT_REF
    },
    secret: randomBytes(32),
    pendingTtlMs: opts.pendingTtlMs ?? 10 * 60_000,
    urlTtlMs: opts.urlTtlMs ?? 60 * 60_000,
    v1Ranges: new Map(),
    baseUrl: ''
  }
  patchApi(ctx.api, { ...(opts.permission ? { permission: opts.permission } : {}), ...(opts.ref ? { ref: opts.ref } : {}) })
  const router = buildRouter(ctx, opts.onRequest)

  const server = http.createServer((req, res) => {
    router.handle(req, res).catch((err: unknown) => {
      if (err instanceof ConnectionDropped) return
      if (res.headersSent) {
        res.destroy()
        return
      }
      const status = err instanceof HttpError ? err.status : 500
      const message = err instanceof Error ? err.message : String(err)
      res.writeHead(status, { 'Content-Type': 'text/plain', Connection: 'close' })
      res.end(`${message}\n`)
    })
  })
  server.on('clientError', (_err, socket) => socket.destroy())

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  const baseUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}/`
  ctx.baseUrl = baseUrl
  if (opts.blobHost !== undefined) ctx.blobBaseUrl = `http://${opts.blobHost}:${port}/`

  return {
    url: baseUrl,
    port,
    token: ctx.token,
    githubToken: ctx.api.token,
    dataDir: ctx.store.dataDir,
    env: (version: CacheServiceVersion = 'v2') => ({
      ...cacheClientEnv(baseUrl, ctx.token, version),
      ...githubApiEnv(baseUrl, ctx.api.repository, ctx.api.ref)
    }),
    setApi: patch => {
      patchApi(ctx.api, patch)
      return { ...ctx.api }
    },
    faults: ctx.faults,
    entries: o => ctx.store.list(o),
    requests: ctx.requests,
    clearRequests: () => {
      ctx.requests.length = 0
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close(err => (err ? reject(err) : resolve()))
        server.closeAllConnections()
      })
  }
}
