import { homedir } from 'node:os'
import { join, resolve } from 'node:path'

import { githubStore } from './github/select.js'
import type { CacheStore } from './store.js'
import { InputError } from '../errors.js'
import { parseSize } from '../mounts/spec.js'
import { parseCodec, type Codec } from './compression.js'
import { LocalDirStore } from './local-dir.js'
import { MIN_PART_SIZE, S3Store, type S3Options } from './s3.js'

/**
 * Picks the storage backend from one string, the `backend` input of the
 * action and the CLI's `--backend`, so both name stores the same way:
 *
 *   '' or github                 the GitHub Actions cache
 *   dir:/path[?compression=gzip] a directory (~ expands to the home directory)
 *   s3://bucket/prefix[?endpoint=URL&region=R&part-size=16M&compression=zstd]
 */
export const BACKEND_INPUT = 'backend'

export type BackendSpec = { kind: 'github' } | { kind: 'dir'; path: string; codec?: Codec } | ({ kind: 's3' } & S3Options)

const BUCKET_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/

/** Parses a backend spec; throws an InputError naming the `backend` input. */
export function parseBackend(spec: string, home: string = homedir()): BackendSpec {
  const text = spec.trim()
  if (text === '' || text === 'github') return { kind: 'github' }
  const q = text.indexOf('?')
  const main = q < 0 ? text : text.slice(0, q)
  const params = new URLSearchParams(q < 0 ? '' : text.slice(q + 1))
  if (main.startsWith('dir:')) {
    allowOnly(params, ['compression'])
    const raw = main.slice('dir:'.length)
    if (raw === '') fail('dir: needs a path, e.g. dir:~/.cache/buildkit-mount-cache')
    const path = resolve(raw === '~' || raw.startsWith('~/') ? join(home, raw.slice(1)) : raw)
    const codec = params.get('compression')
    return { kind: 'dir', path, ...(codec !== null ? { codec: parseCodec(codec, BACKEND_INPUT) } : {}) }
  }
  if (main.startsWith('s3://')) {
    allowOnly(params, ['endpoint', 'region', 'part-size', 'compression'])
    const rest = main.slice('s3://'.length)
    const slash = rest.indexOf('/')
    const bucket = slash < 0 ? rest : rest.slice(0, slash)
    const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '')
    if (!BUCKET_PATTERN.test(bucket)) fail(`"${bucket}" is not a bucket name (s3://bucket/prefix)`)
    const out: BackendSpec = { kind: 's3', bucket, prefix }
    const endpoint = params.get('endpoint')
    if (endpoint !== null) {
      if (!/^https?:\/\/[^\s/]+/.test(endpoint)) fail(`endpoint must be an http(s) URL, got "${endpoint}"`)
      out.endpoint = endpoint
    }
    const region = params.get('region')
    if (region !== null) out.region = region
    const partSize = params.get('part-size')
    if (partSize !== null) {
      out.partSize = parseSize(partSize, BACKEND_INPUT, 'part-size')
      if (out.partSize < MIN_PART_SIZE) fail('part-size must be at least 5M (the S3 minimum)')
    }
    const codec = params.get('compression')
    if (codec !== null) out.codec = parseCodec(codec, BACKEND_INPUT)
    return out
  }
  return fail(`must be github, dir:/path or s3://bucket/prefix, got "${text}"`)
}

export interface OpenStoreOptions {
  /** The GitHub cache deletes entries with it (the github-token input); the other backends need none. */
  githubToken?: string
}

/** The store a spec names: the Actions cache, a directory or a bucket. */
export function openStore(spec: string, options: OpenStoreOptions = {}): CacheStore {
  const b = parseBackend(spec)
  if (b.kind === 'github') return githubStore(process.env, options.githubToken !== undefined ? { githubToken: options.githubToken } : {})
  if (b.kind === 'dir') return new LocalDirStore(b.path, b.codec ? { codec: b.codec } : {})
  const { kind: _kind, ...s3 } = b
  return new S3Store(s3)
}

/**
 * A store opened on first use: the action's services are a module-level
 * value, created before the inputs may be read.
 */
export function deferredStore(spec: () => string): CacheStore {
  let store: CacheStore | undefined
  const get = (): CacheStore => (store ??= openStore(spec()))
  return {
    available: () => get().available(),
    readable: () => get().readable(),
    writable: () => get().writable(),
    restore: async (archivePath, primaryKey, restoreKeys) => get().restore(archivePath, primaryKey, restoreKeys),
    find: async (archivePath, primaryKey, restoreKeys) => get().find(archivePath, primaryKey, restoreKeys),
    exists: async (archivePath, key) => get().exists(archivePath, key),
    save: async (archivePath, key) => get().save(archivePath, key)
  }
}

function allowOnly(params: URLSearchParams, names: string[]): void {
  for (const name of params.keys()) {
    if (!names.includes(name)) fail(`unknown option "${name}" (allowed: ${names.join(', ')})`)
  }
}

function fail(detail: string): never {
  throw new InputError(BACKEND_INPUT, detail)
}
