// The control API for tests (bearer token, never logged): /_control/faults
// (POST add, GET list, DELETE clear, DELETE faults/<id>), GET entries (pending
// included), GET / DELETE requests, GET / PATCH api (the REST API's job token
// permission and the jobs' ref: {"permission": "read"}); and controlClient(),
// its client for a service running in another process.

import type { ServiceContext } from './context.js'
import { validateFaultSpec, type FaultInfo, type FaultSpec } from './faults.js'
import { bearerOk, drain, readBody, sendJson } from './http-io.js'
import type { RequestRecord } from './ops.js'
import { patchApi, type ApiPatch, type ApiSettings } from './rest.js'
import type { RouteCall } from './router.js'
import type { CacheEntryInfo } from './store.js'

export const CONTROL_PREFIX = '/_control/'

/** Serves /_control/<route>; params[0] is the route. */
export async function handleControl(ctx: ServiceContext, { req, res, params }: RouteCall): Promise<void> {
  const route = params[0] ?? ''
  const { faults, requests } = ctx
  const json = (status: number, body: unknown): Promise<void> => sendJson(res, status, body)
  if (!bearerOk(req, ctx.token)) {
    await drain(req)
    return json(401, { error: 'invalid or missing bearer token' })
  }
  const body = await readBody(req, 1024 * 1024)
  const key = `${req.method ?? ''} ${route}`
  if (key === 'POST faults') {
    try {
      return json(201, { id: faults.add(validateFaultSpec(JSON.parse(body.toString('utf8')))) })
    } catch (err) {
      return json(400, { error: (err as Error).message })
    }
  }
  if (key === 'GET faults') return json(200, faults.list())
  if (key === 'DELETE faults') {
    faults.clear()
    return json(200, {})
  }
  if (route.startsWith('faults/') && req.method === 'DELETE') {
    return json(faults.remove(route.slice('faults/'.length)) ? 200 : 404, {})
  }
  if (key === 'GET entries') return json(200, ctx.store.list({ includePending: true }))
  if (key === 'GET api') return json(200, ctx.api)
  if (key === 'PATCH api') {
    try {
      patchApi(ctx.api, JSON.parse(body.toString('utf8')))
      return json(200, ctx.api)
    } catch (err) {
      return json(400, { error: (err as Error).message })
    }
  }
  if (key === 'GET requests') return json(200, requests)
  if (key === 'DELETE requests') {
    requests.length = 0
    return json(200, {})
  }
  return json(404, { error: `unknown control route ${key}` })
}

// ---------------------------------------------------------------------------
// Client for the control endpoint of a service running in another process.

export interface ControlClient {
  addFault(spec: FaultSpec): Promise<string>
  removeFault(id: string): Promise<void>
  clearFaults(): Promise<void>
  faults(): Promise<FaultInfo[]>
  entries(): Promise<CacheEntryInfo[]>
  requests(): Promise<RequestRecord[]>
  clearRequests(): Promise<void>
  /** Changes the REST API's job token permission or the jobs' ref; answers the settings now. */
  setApi(patch: ApiPatch): Promise<ApiSettings>
}

export function controlClient(url: string, token: string): ControlClient {
  const call = async <T>(method: string, route: string, body?: unknown): Promise<T> => {
    const res = await fetch(new URL(`_control/${route}`, url.endsWith('/') ? url : `${url}/`), {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await res.text()
    if (!res.ok) throw new Error(`control ${method} ${route}: ${res.status} ${text}`)
    return JSON.parse(text) as T
  }
  return {
    addFault: async spec => (await call<{ id: string }>('POST', 'faults', spec)).id,
    removeFault: async id => {
      await call('DELETE', `faults/${encodeURIComponent(id)}`)
    },
    clearFaults: async () => {
      await call('DELETE', 'faults')
    },
    faults: () => call('GET', 'faults'),
    entries: () => call('GET', 'entries'),
    requests: () => call('GET', 'requests'),
    clearRequests: async () => {
      await call('DELETE', 'requests')
    },
    setApi: patch => call('PATCH', 'api', patch)
  }
}
