// GitHub's REST API for a repository's caches (GITHUB_API_URL, the job's
// GITHUB_TOKEN), as docs.github.com/en/rest/actions/cache documents it:
//   - GET    /repos/{owner}/{repo}/actions/caches?key=&ref=&sort=&direction=&per_page=&page=
//       -> 200 {total_count, actions_caches: [{id, ref, key, version, last_accessed_at, created_at, size_in_bytes}]}
//       (key: a key or key prefix; per_page at most 100, default 30; newest access first by default)
//   - DELETE /repos/{owner}/{repo}/actions/caches?key=K[&ref=R]
//       -> 200 {total_count, actions_caches: [the deleted]} (every version of exactly K), 404 when none
//   - DELETE /repos/{owner}/{repo}/actions/caches/{cache_id} -> 204, 404
// Auth: `Authorization: Bearer <token>` or `token <token>`; none or another
// token is 401; a token without the `actions` permission the call needs
// (read to list, write to delete) is 403 "Resource not accessible by
// integration", as a job without `permissions: actions: write` gets. Only
// committed entries exist here; what is deleted is gone for Twirp and v1 too.

import { timingSafeEqual } from 'node:crypto'
import type * as http from 'node:http'
import type { ServiceContext } from './context.js'
import { applyFault } from './faults.js'
import { drain, sendBody, sendJson } from './http-io.js'
import type { RequestRecord, RestOp, TrackedHandler } from './ops.js'
import { under, type Route, type RouteCall } from './router.js'
import { refOf, type StoredEntry } from './store.js'

/** The `actions` permission of the job token: `read` lists, `write` deletes too. */
export type ActionsPermission = 'write' | 'read' | 'none'

export interface ApiSettings {
  /** owner/name: the one repository the API serves (others are 404). */
  readonly repository: string
  /** The token it accepts (the job's GITHUB_TOKEN). */
  readonly token: string
  permission: ActionsPermission
  /** The ref of the jobs using the service: entries saved through Twirp or v1 are saved from it. */
  ref: string
}

/** What the control API and CacheService.setApi may change. */
export type ApiPatch = Partial<Pick<ApiSettings, 'permission' | 'ref'>>

const PERMISSIONS: readonly ActionsPermission[] = ['write', 'read', 'none']

/** Checks a patch (e.g. from the control API) and applies it; throws on anything malformed. */
export function patchApi(settings: ApiSettings, value: unknown): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('invalid api settings: expected an object')
  const patch = value as Record<string, unknown>
  for (const name of Object.keys(patch)) {
    if (name !== 'permission' && name !== 'ref') throw new Error(`invalid api settings: unknown field ${JSON.stringify(name)}`)
  }
  const { permission, ref } = patch
  if (permission !== undefined && !PERMISSIONS.includes(permission as ActionsPermission)) {
    throw new Error(`invalid api settings: permission must be one of ${PERMISSIONS.join(', ')}`)
  }
  if (ref !== undefined && (typeof ref !== 'string' || !/^refs\/\S+$/.test(ref)))
    throw new Error('invalid api settings: ref must be like refs/heads/main')
  if (permission !== undefined) settings.permission = permission as ActionsPermission
  if (ref !== undefined) settings.ref = ref as string
}

const DOCS = 'https://docs.github.com/rest/actions/cache'
const MAX_PER_PAGE = 100
const DEFAULT_PER_PAGE = 30

const restError = (res: http.ServerResponse, status: number, message: string, reset?: number): Promise<void> =>
  sendJson(res, status, { message, documentation_url: DOCS, status: String(status) }, reset)

export function restRoutes(ctx: ServiceContext): Array<Route<TrackedHandler>> {
  const caches = /^\/repos\/([^/]+)\/([^/]+)\/actions\/caches$/
  const cacheId = /^\/repos\/([^/]+)\/([^/]+)\/actions\/caches\/([^/]+)$/
  const op =
    (name: RestOp): TrackedHandler =>
    (call, rec) =>
      restCall(ctx, call, rec, name)
  return [
    { method: 'GET', pattern: caches, handler: op('rest.ListCaches') },
    { method: 'DELETE', pattern: caches, handler: op('rest.DeleteCachesByKey') },
    { method: 'DELETE', pattern: cacheId, handler: op('rest.DeleteCacheById') },
    {
      method: '*',
      pattern: under('/repos/'),
      handler: async ({ req, res }) => {
        await drain(req)
        return restError(res, 404, 'Not Found')
      }
    }
  ]
}

/** The token of an `Authorization: Bearer <t>` or `token <t>` header, compared in constant time. */
function tokenOk(req: http.IncomingMessage, token: string): 'ok' | 'missing' | 'wrong' {
  const m = /^(?:Bearer|token) (\S+)$/i.exec(req.headers.authorization ?? '')
  if (!m) return 'missing'
  const given = Buffer.from(m[1] ?? '')
  const expected = Buffer.from(token)
  return given.length === expected.length && timingSafeEqual(given, expected) ? 'ok' : 'wrong'
}

async function restCall(ctx: ServiceContext, { req, res, url, params }: RouteCall, rec: RequestRecord, op: RestOp): Promise<void> {
  rec.op = op
  const { store, api } = ctx
  let target: StoredEntry | undefined
  if (op === 'rest.DeleteCacheById') {
    const id = /^\d+$/.test(params[2] ?? '') ? Number(params[2]) : NaN
    target = store.committed().find(e => e.id === id)
  }
  const key = op === 'rest.DeleteCacheById' ? target?.key : (url.searchParams.get('key') ?? undefined)
  const fault = await applyFault(ctx.faults, req, rec, key, (status, msg) => restError(res, status, msg), res)
  if (fault.done) return
  const reset = fault.reset
  await drain(req)
  const auth = tokenOk(req, api.token)
  if (auth !== 'ok') return restError(res, 401, auth === 'missing' ? 'Requires authentication' : 'Bad credentials', reset)
  if (`${params[0] ?? ''}/${params[1] ?? ''}` !== api.repository) return restError(res, 404, 'Not Found', reset)
  const needs: ActionsPermission = op === 'rest.ListCaches' ? 'read' : 'write'
  if (api.permission === 'none' || (needs === 'write' && api.permission !== 'write')) {
    return restError(res, 403, 'Resource not accessible by integration', reset)
  }

  if (op === 'rest.DeleteCacheById') {
    if (!target) return restError(res, 404, 'Not Found', reset)
    store.remove(target)
    return sendBody(res, 204, {}, Buffer.alloc(0), reset)
  }

  const ref = url.searchParams.get('ref') ?? undefined
  if (op === 'rest.DeleteCachesByKey') {
    if (key === undefined || key === '') return restError(res, 422, 'Validation Failed: key is required', reset)
    const doomed = store.committed().filter(e => e.key === key && (ref === undefined || refOf(e) === ref))
    if (doomed.length === 0) return restError(res, 404, 'Not Found', reset)
    for (const e of doomed) store.remove(e)
    return sendJson(res, 200, { total_count: doomed.length, actions_caches: doomed.map(restEntry) }, reset)
  }

  // rest.ListCaches
  const perPage = Math.min(MAX_PER_PAGE, positive(url.searchParams.get('per_page')) ?? DEFAULT_PER_PAGE)
  const page = positive(url.searchParams.get('page')) ?? 1
  const sort = url.searchParams.get('sort') ?? 'last_accessed_at'
  const direction = url.searchParams.get('direction') ?? 'desc'
  const by = SORTS[sort]
  if (by === undefined || (direction !== 'asc' && direction !== 'desc')) return restError(res, 422, 'Validation Failed: sort or direction', reset)
  const matching = store
    .committed()
    .filter(e => (key === undefined || e.key.startsWith(key)) && (ref === undefined || refOf(e) === ref))
    .sort((a, b) => (by(a) - by(b) || a.id - b.id) * (direction === 'asc' ? 1 : -1))
  const shown = matching.slice((page - 1) * perPage, page * perPage)
  return sendJson(res, 200, { total_count: matching.length, actions_caches: shown.map(restEntry) }, reset)
}

const createdAt = (e: StoredEntry): number => e.committedAt ?? e.createdAt
const lastAccessedAt = (e: StoredEntry): number => e.lastAccessedAt ?? createdAt(e)

const SORTS: Readonly<Record<string, (e: StoredEntry) => number>> = {
  created_at: createdAt,
  last_accessed_at: lastAccessedAt,
  size_in_bytes: e => e.size ?? 0
}

/** A positive integer query parameter; undefined when absent or not one (GitHub falls back to the default). */
function positive(value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value)) return undefined
  const n = Number(value)
  return n > 0 ? n : undefined
}

function restEntry(e: StoredEntry): object {
  return {
    id: e.id,
    ref: refOf(e),
    key: e.key,
    version: e.version,
    last_accessed_at: new Date(lastAccessedAt(e)).toISOString(),
    created_at: new Date(createdAt(e)).toISOString(),
    size_in_bytes: e.size ?? 0
  }
}
