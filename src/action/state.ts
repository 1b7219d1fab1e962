import * as core from '@actions/core'

import { MAX_CHAIN } from '../archive/delta.js'
import type { ClientKind } from '../builder/engine.js'
import { MANIFEST } from '../builder/dockerfile.js'
import type { RouteChoice, RouteRecord } from '../builder/route.js'
import type { RouteName } from '../builder/transport.js'
import type { JobState } from '../core/job.js'
import type { MountKeys } from '../core/keys.js'
import type { MountState, RestoreStatus, RestoredEntry } from '../core/status.js'
import { isCacheNamespace } from '../mounts/sources.js'
import { formatMode, specFromRecord, type MountSpec } from '../mounts/spec.js'
import { isBuilderName, isImageRef } from './inputs.js'

/**
 * The job state as text: what main hands to post through the step state,
 * and what the restore/ sub-action's `state` output carries to save/. The
 * text may come from a user (the `state` input), so loading checks every
 * field against what main could have written, rebuilds each mount spec with
 * the input parser, and keeps nothing else. The state names no path and no
 * program (core/job.ts).
 */
const STATE_KEY = 'mount-cache-state'

/** Saves the state for post; returns the text (also the `state` output). */
export function saveJobState(state: JobState): string {
  const text = serializeJobState(state)
  core.saveState(STATE_KEY, text)
  return text
}

/** undefined when main did not get as far as saving state. Throws StateError for anything malformed. */
export function loadJobState(): JobState | undefined {
  return parseJobState(core.getState(STATE_KEY))
}

export class StateError extends Error {
  constructor(detail: string) {
    super(detail)
    this.name = 'StateError'
  }
}

/** `indent` for a file people read (the CLI's state file). */
export function serializeJobState(state: JobState, indent?: number): string {
  return JSON.stringify({ ...state, mounts: state.mounts.map(m => ({ ...m, spec: specRecord(m.spec) })) }, null, indent)
}

/** A spec in the input parser's own field names, so loading can run it through that parser again. */
function specRecord(spec: MountSpec): Record<string, unknown> {
  const out: Record<string, unknown> = { id: spec.id, target: spec.target }
  if (spec.uid !== undefined) out.uid = spec.uid
  if (spec.gid !== undefined) out.gid = spec.gid
  if (spec.mode !== undefined) out.mode = formatMode(spec.mode)
  if (spec.sharing !== undefined) out.sharing = spec.sharing
  if (spec.keyFiles !== undefined) out['key-files'] = spec.keyFiles
  if (spec.exclude !== undefined) out.exclude = spec.exclude
  if (spec.maxSize !== undefined) out['max-size'] = String(spec.maxSize)
  return out
}

export function parseJobState(text: string): JobState | undefined {
  if (!text) return undefined
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new StateError('the saved state is not JSON')
  }
  const r = new Reader(value, 'state')
  if (r.field('version') !== 2) throw new StateError('the saved state is from another version of the action (or not a state)')
  const state: JobState = {
    version: 2,
    engine: engineRecord(r.object('engine')),
    utilityImage: r.string('utilityImage', isImageRef, 'an image reference'),
    save: r.boolean('save'),
    extractVia: r.oneOf('extractVia', ROUTE_CHOICES) as RouteChoice,
    maxRestoreBytes: r.integer('maxRestoreBytes'),
    mounts: r.array('mounts').map((m, i) => mountState(m, i))
  }
  const ns = r.optional('cacheNamespace', k => r.string(k, isCacheNamespace, 'a cache namespace'))
  if (ns !== undefined) state.cacheNamespace = ns
  const maxSize = r.optional('maxSize', k => r.integer(k))
  if (maxSize !== undefined) state.maxSize = maxSize
  if (r.optional('lookupOnly', k => r.boolean(k)) === true) state.lookupOnly = true
  if (r.optional('exactMatch', k => r.boolean(k)) === true) state.exactMatch = true
  if (r.optional('deltas', k => r.boolean(k)) === false) state.deltas = false
  if (r.optional('deleteSuperseded', k => r.boolean(k)) === true) state.deleteSuperseded = true
  const injectMs = r.optional('injectMs', k => r.integer(k))
  if (injectMs !== undefined) state.injectMs = injectMs
  const inject = r.optional('inject', k => routeRecord(r.object(k)))
  if (inject !== undefined) state.inject = inject
  const ids = new Set<string>()
  for (const [i, m] of state.mounts.entries()) {
    if (m.index !== i) throw new StateError(`state.mounts[${i}].index must be ${i}`)
    if (ids.has(m.spec.id)) throw new StateError(`state.mounts lists cache id ${JSON.stringify(m.spec.id)} twice`)
    ids.add(m.spec.id)
  }
  return state
}

const KEY = /^[A-Za-z0-9._-]{1,512}$/
const DIGEST = /^[0-9a-f]{16,128}$/
const ROUTE_CHOICES = ['auto', 'loopback', 'export'] as const
const ROUTES: readonly RouteName[] = ['loopback', 'gateway', 'build-io']
const CLIENTS: readonly ClientKind[] = ['buildx', 'docker']

function engineRecord(r: Reader): JobState['engine'] {
  const client = r.oneOf('client', CLIENTS) as ClientKind
  const builder = r.optional('builder', k => r.string(k, isBuilderName, 'a builder name'))
  return builder !== undefined ? { client, builder } : { client }
}

function routeRecord(r: Reader): RouteRecord {
  const route = r.oneOf('route', ROUTES) as RouteName
  const fallback = r.optional('fallback', k => r.string(k, /^[^\n]{0,400}$/))
  return fallback !== undefined ? { route, fallback } : { route }
}

function mountState(value: unknown, i: number): MountState {
  const r = new Reader(value, `state.mounts[${i}]`)
  let spec: MountSpec
  try {
    spec = specFromRecord(r.field('spec'), `${r.where}.spec`)
  } catch (error) {
    throw new StateError(error instanceof Error ? error.message : String(error))
  }
  const k = r.object('keys')
  const keys: MountKeys = { base: k.string('base', KEY), restoreKeys: k.array('restoreKeys').map((_, j) => k.at('restoreKeys', j, KEY)) }
  const m: MountState = { index: r.integer('index'), spec, keys, restore: restoreStatus(r.object('restore')) }
  const ms = r.optional('restoreMs', name => r.integer(name))
  if (ms !== undefined) m.restoreMs = ms
  return m
}

function restoreStatus(r: Reader): RestoreStatus {
  const kind = r.oneOf('kind', ['pending', 'miss', 'refused', 'failed', 'found', 'restored', 'injected'])
  const reason = (): string => r.string('reason', /^[^]{0,2000}$/)
  switch (kind) {
    case 'pending':
    case 'miss':
      return { kind }
    case 'refused':
      return { kind, reason: reason() }
    case 'failed': {
      const matchedKey = r.optional('matchedKey', name => r.string(name, KEY))
      return { kind, reason: reason(), ...(matchedKey !== undefined ? { matchedKey } : {}) }
    }
    case 'found':
      return { kind, matchedKey: r.string('matchedKey', KEY) }
    case 'restored':
      return { kind, entry: restoredEntry(r.object('entry')) }
    default: {
      const manifest = r.optional('manifest', name => r.string(name, MANIFEST))
      return { kind: 'injected', entry: restoredEntry(r.object('entry')), ...(manifest !== undefined ? { manifest } : {}) }
    }
  }
}

function restoredEntry(r: Reader): RestoredEntry {
  const entry: RestoredEntry = { matchedKey: r.string('matchedKey', KEY), digest: r.string('digest', DIGEST), bytes: r.integer('bytes') }
  const chain = r.optional('chain', name => r.object(name))
  if (chain !== undefined) {
    const keys = chain.array('keys').map((_, i) => chain.at('keys', i, KEY))
    if (keys.length === 0 || keys.length > MAX_CHAIN + 1 || keys.at(-1) !== entry.matchedKey) {
      throw new StateError(`${chain.where}.keys must list the chain's keys, ending with the matched key`)
    }
    entry.chain = { keys, baseBytes: chain.integer('baseBytes'), deltaBytes: chain.integer('deltaBytes') }
  }
  return entry
}

/** Typed reads of one JSON object, each failure naming the field. */
class Reader {
  private readonly obj: Record<string, unknown>
  constructor(
    value: unknown,
    readonly where: string
  ) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new StateError(`${where} must be an object`)
    this.obj = value as Record<string, unknown>
  }
  field(name: string): unknown {
    return Object.hasOwn(this.obj, name) ? this.obj[name] : undefined
  }
  private fail(name: string, what: string): never {
    throw new StateError(`${this.where}.${name} must be ${what}`)
  }
  /** A string matching `valid`, or accepted by it (then `what` names what it accepts). */
  string(name: string, valid: RegExp | ((value: string) => boolean), what = ''): string {
    const v = this.field(name)
    const ok = typeof v === 'string' && (typeof valid === 'function' ? valid(v) : valid.test(v))
    if (!ok) this.fail(name, typeof valid === 'function' ? `a string: ${what}` : `a string matching ${String(valid)}`)
    return v as string
  }
  at(name: string, index: number, pattern: RegExp): string {
    const v = (this.field(name) as unknown[])[index]
    if (typeof v !== 'string' || !pattern.test(v)) this.fail(`${name}[${index}]`, `a string matching ${String(pattern)}`)
    return v
  }
  integer(name: string): number {
    const v = this.field(name)
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) this.fail(name, 'a non-negative integer')
    return v
  }
  boolean(name: string): boolean {
    const v = this.field(name)
    if (typeof v !== 'boolean') this.fail(name, 'true or false')
    return v
  }
  oneOf<T extends string>(name: string, values: readonly T[]): T {
    const v = this.field(name)
    if (typeof v !== 'string' || !values.includes(v as T)) this.fail(name, `one of ${values.join(', ')}`)
    return v as T
  }
  object(name: string): Reader {
    return new Reader(this.field(name), `${this.where}.${name}`)
  }
  array(name: string): unknown[] {
    const v = this.field(name)
    if (!Array.isArray(v) || v.length > 1000) this.fail(name, 'a list')
    return v
  }
  optional<T>(name: string, read: (name: string) => T): T | undefined {
    return this.field(name) === undefined ? undefined : read(name)
  }
}
