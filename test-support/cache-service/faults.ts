// Fault injection: the fault specs (validated, whether from code or the control
// API), the per-service fault list, and applying the first matching fault to a
// request before its protocol part serves it.

import type * as http from 'node:http'
import { drain, sleep } from './http-io.js'
import { REST_OPS, TWIRP_OPS, type Op, type RequestRecord } from './ops.js'

/**
 * An Op, a group ('blob-upload' = PutBlob|PutBlock|PutBlockList, 'blob-download' = GetBlob|GetBlobProperties,
 * 'rest' = the REST cache calls) or '*'.
 */
export type FaultOp = Op | 'blob-upload' | 'blob-download' | 'rest' | '*'

const OP_GROUPS: Readonly<Record<string, readonly Op[]>> = {
  'blob-upload': ['PutBlob', 'PutBlock', 'PutBlockList'],
  'blob-download': ['GetBlob', 'GetBlobProperties'],
  rest: REST_OPS
}
const ALL_OPS: readonly string[] = [
  ...TWIRP_OPS,
  'PutBlob',
  'PutBlock',
  'PutBlockList',
  'GetBlob',
  'GetBlobProperties',
  'v1.GetCacheEntry',
  'v1.ListCaches',
  'v1.ReserveCache',
  'v1.UploadChunk',
  'v1.CommitCache',
  ...REST_OPS,
  'unknown',
  'blob-upload',
  'blob-download',
  'rest',
  '*'
]

/**
 * What a matching request suffers. delayMs is applied first and combines with
 * one of the others; with only delayMs the request is then served normally.
 * - status: answer with this status (a Twirp / Azure XML / v1 JSON / REST JSON error body).
 * - resetAfterBytes: destroy the connection after n bytes of the request body
 *   for uploads (PutBlob, PutBlock, PutBlockList, v1.UploadChunk), of the
 *   response body for everything else (0 = right after the headers).
 * - refuse: destroy the connection without answering.
 */
export interface FaultAction {
  status?: number
  message?: string
  delayMs?: number
  resetAfterBytes?: number
  refuse?: boolean
  /** With status: a Retry-After header (seconds) on the answer, as GitHub sends with 429. */
  retryAfterSeconds?: number
}

export interface FaultSpec {
  match: { op: FaultOp | readonly FaultOp[]; key?: string }
  action: FaultAction
  /** How many matching requests it hits; default: all until removed/cleared. */
  times?: number
}

export interface FaultInfo extends FaultSpec {
  id: string
  hits: number
  /** Remaining hits, null = unlimited. */
  remaining: number | null
}

/** Checks a fault spec (e.g. from the control endpoint); throws on anything malformed. */
export function validateFaultSpec(value: unknown): FaultSpec {
  const fail = (msg: string): never => {
    throw new Error(`invalid fault: ${msg}`)
  }
  if (typeof value !== 'object' || value === null) fail('expected an object')
  const spec = value as Record<string, unknown>
  const match = spec['match'] as Record<string, unknown> | undefined
  const action = spec['action'] as Record<string, unknown> | undefined
  if (typeof match !== 'object' || match === null) fail('match must be an object')
  if (typeof action !== 'object' || action === null) fail('action must be an object')
  const m = match as Record<string, unknown>
  const a = action as Record<string, unknown>
  const ops = Array.isArray(m['op']) ? (m['op'] as unknown[]) : [m['op']]
  if (ops.length === 0) fail('match.op is empty')
  for (const op of ops) {
    if (typeof op !== 'string' || !ALL_OPS.includes(op)) fail(`unknown match.op ${JSON.stringify(op)}`)
  }
  if (m['key'] !== undefined && typeof m['key'] !== 'string') fail('match.key must be a string')
  const isCount = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 0
  for (const field of ['delayMs', 'resetAfterBytes', 'retryAfterSeconds'] as const) {
    if (a[field] !== undefined && !isCount(a[field])) fail(`action.${field} must be an integer >= 0`)
  }
  if (a['status'] !== undefined && !(isCount(a['status']) && (a['status'] as number) >= 100 && (a['status'] as number) <= 599)) {
    fail('action.status must be an HTTP status')
  }
  if (a['message'] !== undefined && typeof a['message'] !== 'string') fail('action.message must be a string')
  if (a['refuse'] !== undefined && a['refuse'] !== true) fail('action.refuse must be true')
  if (a['retryAfterSeconds'] !== undefined && a['status'] === undefined) fail('action.retryAfterSeconds needs a status')
  const terminal = ['status', 'resetAfterBytes', 'refuse'].filter(f => a[f] !== undefined)
  if (terminal.length > 1) fail(`combine delayMs with at most one of status/resetAfterBytes/refuse, got ${terminal.join('+')}`)
  if (terminal.length === 0 && a['delayMs'] === undefined) fail('action needs delayMs, status, resetAfterBytes or refuse')
  if (spec['times'] !== undefined && !(isCount(spec['times']) && (spec['times'] as number) > 0)) fail('times must be an integer > 0')
  return value as FaultSpec
}

export class Faults {
  #faults: FaultInfo[] = []
  #nextId = 1

  /** Adds a fault; the first added matching fault wins. Returns its id. */
  add(spec: FaultSpec): string {
    validateFaultSpec(spec)
    const id = `f${this.#nextId++}`
    this.#faults.push({
      id,
      match: { ...spec.match },
      action: { ...spec.action },
      ...(spec.times !== undefined ? { times: spec.times } : {}),
      hits: 0,
      remaining: spec.times ?? null
    })
    return id
  }

  remove(id: string): boolean {
    const before = this.#faults.length
    this.#faults = this.#faults.filter(f => f.id !== id)
    return this.#faults.length !== before
  }

  clear(): void {
    this.#faults = []
  }

  list(): FaultInfo[] {
    return this.#faults.map(f => ({ ...f }))
  }

  /** Consumes one hit of the first fault matching (op, key). */
  take(op: Op, key: string | undefined): FaultInfo | undefined {
    const fault = this.#faults.find(f => faultMatches(f, op, key))
    if (!fault) return undefined
    fault.hits++
    if (fault.remaining !== null) {
      fault.remaining--
      if (fault.remaining <= 0) this.remove(fault.id)
    }
    return { ...fault }
  }
}

export function faultMatches(spec: FaultSpec, op: Op, key: string | undefined): boolean {
  const ops = (Array.isArray(spec.match.op) ? spec.match.op : [spec.match.op]) as readonly FaultOp[]
  const opHit = ops.some(o => o === '*' || o === op || (OP_GROUPS[o]?.includes(op) ?? false))
  return opHit && (spec.match.key === undefined || spec.match.key === key)
}

/** done: the fault refused or answered the request; else serve it, cutting the body after `reset` bytes when set. */
export type FaultOutcome = { done: true } | { done: false; reset: number | undefined }

/**
 * Records the request's key, then applies the first fault matching (rec.op,
 * key): waits delayMs, then refuses the connection, or answers `status` through
 * `answer` (the protocol's error body), or hands back resetAfterBytes.
 */
export async function applyFault(
  faults: Faults,
  req: http.IncomingMessage,
  rec: RequestRecord,
  key: string | undefined,
  answer: (status: number, message: string) => Promise<void>,
  res?: http.ServerResponse
): Promise<FaultOutcome> {
  if (key !== undefined) rec.key = key
  const fault = faults.take(rec.op, key)
  if (!fault) return { done: false, reset: undefined }
  rec.fault = fault.id
  const a = fault.action
  if (a.delayMs) await sleep(a.delayMs)
  if (a.refuse) {
    req.socket.destroy()
    return { done: true }
  }
  if (a.status !== undefined) {
    await drain(req)
    if (a.retryAfterSeconds !== undefined) res?.setHeader('Retry-After', String(a.retryAfterSeconds))
    await answer(a.status, a.message ?? `injected fault ${fault.id}`)
    return { done: true }
  }
  return { done: false, reset: a.resetAfterBytes }
}
