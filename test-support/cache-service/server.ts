// A GitHub Actions cache service on 127.0.0.1 that the UNMODIFIED
// @actions/cache client (6.x) talks to, for tests and the demo.
//
// Protocol (learned from node_modules/@actions/cache/lib and @azure/storage-blob):
//
// v2 (ACTIONS_CACHE_SERVICE_V2 set, base ACTIONS_RESULTS_URL, bearer token):
//   POST /twirp/github.actions.results.api.v1.CacheService/<Method>, Twirp JSON
//   with proto field names (`restore_keys`, `size_bytes`, `signed_upload_url`...).
//   - GetCacheEntryDownloadURL {key, restore_keys[], version}
//       -> 200 {ok, signed_download_url, matched_key}; a miss is ok:false.
//   - CreateCacheEntry {key, version} -> 200 {ok, signed_upload_url}; an
//       existing key+version is a Twirp error 409 `already_exists`, which the
//       client turns into ReserveCacheError -> info log, saveCache returns -1.
//   - FinalizeCacheEntryUpload {key, version, size_bytes} -> {ok, entry_id}.
//   Blob URLs (no bearer token; HMAC in `sig`) take the Azure Block Blob calls
//   of BlockBlobClient.uploadFile: Put Blob (PUT, x-ms-blob-type: BlockBlob)
//   when the archive is <= 128 MiB, else Put Block (PUT ?comp=block&blockid=)
//   per 64 MiB chunk + Put Block List (PUT ?comp=blocklist, XML body). The
//   download of a URL whose host is not *.blob.core.windows.net is one plain
//   GET through @actions/http-client (no Range; Content-Length is checked);
//   Range / x-ms-range and HEAD are supported anyway.
// v1 (GHES REST, base ACTIONS_CACHE_URL, bearer token) under _apis/artifactcache/:
//   GET cache?keys=a,b&version=v (200 entry | 204 miss), GET caches?key= (list,
//   debug only), POST caches {key, version, cacheSize} (201 {cacheId} | 409),
//   PATCH caches/:id with `Content-Range: bytes s-e/*` chunks, POST caches/:id
//   {size} (commit). Download via archiveLocation = a signed blob URL.
//
// Semantics: entries persist under dataDir (index.json + blobs/, written via
// rename); lookup is scoped by version: exact primary key, then the primary key
// as a prefix, then each restore key as a prefix, newest (createdAt, then id)
// wins; keys are immutable; only finalized/committed entries are visible.

import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'
import { once } from 'node:events'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import * as path from 'node:path'
import { cacheClientEnv, type CacheClientEnv, type CacheServiceVersion } from './env.js'

// ---------------------------------------------------------------------------
// Operations, request log, faults

export const TWIRP_SERVICE = 'github.actions.results.api.v1.CacheService'
export const TWIRP_OPS = ['GetCacheEntryDownloadURL', 'CreateCacheEntry', 'FinalizeCacheEntryUpload'] as const
export type TwirpOp = (typeof TWIRP_OPS)[number]
export type BlobOp = 'PutBlob' | 'PutBlock' | 'PutBlockList' | 'GetBlob' | 'GetBlobProperties'
export type V1Op = 'v1.GetCacheEntry' | 'v1.ListCaches' | 'v1.ReserveCache' | 'v1.UploadChunk' | 'v1.CommitCache'
export type Op = TwirpOp | BlobOp | V1Op | 'unknown'
/** An Op, a group ('blob-upload' = PutBlob|PutBlock|PutBlockList, 'blob-download' = GetBlob|GetBlobProperties) or '*'. */
export type FaultOp = Op | 'blob-upload' | 'blob-download' | '*'

const OP_GROUPS: Readonly<Record<string, readonly Op[]>> = {
  'blob-upload': ['PutBlob', 'PutBlock', 'PutBlockList'],
  'blob-download': ['GetBlob', 'GetBlobProperties']
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
  'unknown',
  'blob-upload',
  'blob-download',
  '*'
]

export interface RequestRecord {
  seq: number
  time: string
  method: string
  /** URL path without the query. */
  path: string
  /** Query string with `sig` redacted ('' when none). */
  query: string
  op: Op
  /** Cache key concerned (Twirp/v1 request key, or the key owning a blob). */
  key?: string
  /** Response status; 0 when the connection was closed without a response. */
  status?: number
  /** Id of the fault that hit this request. */
  fault?: string
  /** The connection was closed before the response was complete. */
  dropped?: boolean
}

/**
 * What a matching request suffers. delayMs is applied first and combines with
 * one of the others; with only delayMs the request is then served normally.
 * - status: answer with this status (a Twirp / Azure XML / v1 JSON error body).
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
  for (const field of ['delayMs', 'resetAfterBytes'] as const) {
    if (a[field] !== undefined && !isCount(a[field])) fail(`action.${field} must be an integer >= 0`)
  }
  if (a['status'] !== undefined && !(isCount(a['status']) && (a['status'] as number) >= 100 && (a['status'] as number) <= 599)) {
    fail('action.status must be an HTTP status')
  }
  if (a['message'] !== undefined && typeof a['message'] !== 'string') fail('action.message must be a string')
  if (a['refuse'] !== undefined && a['refuse'] !== true) fail('action.refuse must be true')
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

// ---------------------------------------------------------------------------
// Pure helpers (unit-tested)

export interface MatchCandidate {
  id: number
  key: string
  version: string
  createdAt: number
}

function newest<T extends MatchCandidate>(list: readonly T[]): T | undefined {
  let best: T | undefined
  for (const e of list) {
    if (!best || e.createdAt > best.createdAt || (e.createdAt === best.createdAt && e.id > best.id)) best = e
  }
  return best
}

/**
 * GitHub's lookup, among entries of the same version: an exact match of the
 * primary key, else the newest entry whose key starts with the primary key,
 * else for each restore key in order the newest entry it is a prefix of.
 * Pass committed entries only.
 */
export function findEntry<T extends MatchCandidate>(
  entries: readonly T[],
  primaryKey: string,
  restoreKeys: readonly string[],
  version: string
): T | undefined {
  const scoped = entries.filter(e => e.version === version)
  const exact = newest(scoped.filter(e => e.key === primaryKey))
  if (exact) return exact
  for (const prefix of [primaryKey, ...restoreKeys]) {
    const hit = newest(scoped.filter(e => e.key.startsWith(prefix)))
    if (hit) return hit
  }
  return undefined
}

export type BlockKind = 'Committed' | 'Uncommitted' | 'Latest'

/** Parses a Put Block List body (<BlockList><Latest>id</Latest>...</BlockList>), order preserved. */
export function parseBlockList(xml: string): Array<{ kind: BlockKind; id: string }> {
  if (!/<BlockList\s*>/.test(xml) && !/<BlockList\s*\/>/.test(xml)) throw new Error('not a BlockList')
  const blocks: Array<{ kind: BlockKind; id: string }> = []
  const re = /<(Committed|Uncommitted|Latest)>([^<]*)<\/\1>/g
  for (let m = re.exec(xml); m; m = re.exec(xml)) {
    blocks.push({ kind: m[1] as BlockKind, id: decodeXml((m[2] ?? '').trim()) })
  }
  return blocks
}

function decodeXml(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&')
}

/** Decodes an Azure block id (base64 of <= 64 bytes) to a file-name-safe hex string. */
export function blockIdToHex(blockId: string): string | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blockId) || blockId.length % 4 !== 0) return undefined
  const raw = Buffer.from(blockId, 'base64')
  if (raw.length === 0 || raw.length > 64) return undefined
  return raw.toString('hex')
}

/**
 * Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `size` bytes.
 * undefined = no (usable) range, serve everything; 'unsatisfiable' = 416.
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m || (m[1] === '' && m[2] === '')) return undefined // multi-range / garbage: ignore
  if (m[1] === '') {
    const suffix = Number(m[2])
    if (suffix === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (start >= size || end < start) return 'unsatisfiable'
  return { start, end }
}

export type BlobPermission = 'r' | 'cw'

export function signBlob(secret: Buffer, blobId: string, permission: string, expiry: string): string {
  return createHmac('sha256', secret).update(`${blobId}\n${permission}\n${expiry}`).digest('hex')
}

/** Checks a blob URL's sp/se/sig query against the blob id; returns an error message or undefined. */
export function verifyBlobSignature(
  secret: Buffer,
  blobId: string,
  query: URLSearchParams,
  need: 'r' | 'w',
  now: number
): { code: string; message: string } | undefined {
  const sp = query.get('sp')
  const se = query.get('se')
  const sig = query.get('sig')
  if (!sp || !se || !sig) {
    return { code: 'AuthenticationFailed', message: 'Server failed to authenticate the request: missing sp/se/sig.' }
  }
  const expected = Buffer.from(signBlob(secret, blobId, sp, se), 'hex')
  const given = Buffer.from(sig, 'hex')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { code: 'AuthenticationFailed', message: 'Server failed to authenticate the request: signature mismatch.' }
  }
  const expiry = Date.parse(se)
  if (Number.isNaN(expiry) || expiry < now) {
    return { code: 'AuthenticationFailed', message: 'Signed expiry time has passed.' }
  }
  if (!sp.includes(need)) {
    return { code: 'AuthorizationPermissionMismatch', message: 'This request is not authorized to perform this operation using this permission.' }
  }
  return undefined
}

// ---------------------------------------------------------------------------
// Persistent store: <dataDir>/index.json + blobs/<blobId>; staging in
// blocks/<blobId>/<hex block id> (v2 Put Block), uploads/<blobId> (v1 chunks)
// and tmp/ (everything is written there or in place, then renamed).

interface StoredEntry {
  id: number
  key: string
  version: string
  blobId: string
  api: CacheServiceVersion
  state: 'pending' | 'committed'
  createdAt: number
  committedAt?: number
  /** Committed archive size. */
  size?: number
  /** Size / MD5 (base64) of the uploaded blob, set when the upload completes. */
  uploadedSize?: number
  md5?: string
}

interface IndexFile {
  formatVersion: 1
  nextId: number
  entries: StoredEntry[]
}

export interface CacheEntryInfo {
  id: number
  key: string
  version: string
  /** Archive size in bytes (for pending entries: bytes uploaded so far, or 0). */
  size: number
  createdAt: string
  state: 'pending' | 'committed'
  api: CacheServiceVersion
}

function writeFileAtomic(file: string, data: string): void {
  const tmp = `${file}.${process.pid}.${randomUUID()}.tmp`
  fs.writeFileSync(tmp, data)
  fs.renameSync(tmp, file)
}

class Store {
  readonly indexPath: string
  entries: StoredEntry[] = []
  nextId = 1

  constructor(readonly dataDir: string) {
    for (const sub of ['blobs', 'blocks', 'uploads']) fs.mkdirSync(path.join(dataDir, sub), { recursive: true })
    fs.rmSync(path.join(dataDir, 'tmp'), { recursive: true, force: true }) // leftovers of interrupted writes
    fs.mkdirSync(path.join(dataDir, 'tmp'))
    this.indexPath = path.join(dataDir, 'index.json')
    if (fs.existsSync(this.indexPath)) {
      const index = JSON.parse(fs.readFileSync(this.indexPath, 'utf8')) as IndexFile
      if (index.formatVersion !== 1) throw new Error(`${this.indexPath}: unsupported formatVersion`)
      this.entries = index.entries
      this.nextId = index.nextId
    }
  }

  save(): void {
    const index: IndexFile = { formatVersion: 1, nextId: this.nextId, entries: this.entries }
    writeFileAtomic(this.indexPath, `${JSON.stringify(index, null, 2)}\n`)
  }

  committed(): StoredEntry[] {
    return this.entries.filter(e => e.state === 'committed')
  }

  create(key: string, version: string, api: CacheServiceVersion, now: number): StoredEntry {
    const entry: StoredEntry = {
      id: this.nextId++,
      key,
      version,
      blobId: randomBytes(16).toString('hex'),
      api,
      state: 'pending',
      createdAt: now
    }
    this.entries.push(entry)
    this.save()
    return entry
  }

  remove(entry: StoredEntry): void {
    this.entries = this.entries.filter(e => e !== entry)
    this.save()
    for (const p of [this.blobPath(entry.blobId), this.blockDir(entry.blobId), this.uploadPath(entry.blobId)]) {
      fs.rmSync(p, { recursive: true, force: true })
    }
  }

  blobPath(blobId: string): string {
    return path.join(this.dataDir, 'blobs', blobId)
  }
  blockDir(blobId: string): string {
    return path.join(this.dataDir, 'blocks', blobId)
  }
  uploadPath(blobId: string): string {
    return path.join(this.dataDir, 'uploads', blobId)
  }
  tmpPath(): string {
    return path.join(this.dataDir, 'tmp', randomUUID())
  }
}

// ---------------------------------------------------------------------------
// HTTP plumbing

/** Thrown after we deliberately destroyed the connection; nothing left to answer. */
class ConnectionDropped extends Error {}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message)
  }
}

const AZURE_VERSION = '2025-11-05'
const BLOB_PREFIX = '/blobs/cache/' // IP-style blob URL: /<account>/<container>/<blob>
const V1_PREFIX = '/_apis/artifactcache/'
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

function azureCodeFor(status: number): string {
  const preferred: Record<number, string> = {
    400: 'InvalidInput',
    403: 'AuthenticationFailed',
    404: 'BlobNotFound',
    409: 'BlobAlreadyExists',
    412: 'ConditionNotMet',
    500: 'InternalError',
    503: 'ServerBusy'
  }
  return preferred[status] ?? 'InternalError'
}

async function readBody(req: http.IncomingMessage, limit: number, resetAfterBytes?: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    if (resetAfterBytes !== undefined && size + chunk.length >= resetAfterBytes) {
      req.socket.destroy()
      throw new ConnectionDropped()
    }
    size += chunk.length
    if (size > limit) throw new HttpError(413, 'RequestBodyTooLarge', `request body over ${limit} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/** Streams the request body into `file` (from `start` when given), hashing it. */
async function receiveToFile(
  req: http.IncomingMessage,
  file: string,
  opts: { start?: number; resetAfterBytes?: number } = {}
): Promise<{ size: number; md5: Buffer }> {
  const hash = createHash('md5')
  const out = fs.createWriteStream(file, opts.start === undefined ? { flags: 'w' } : { flags: 'r+', start: opts.start })
  let size = 0
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      let buf = chunk
      const reset = opts.resetAfterBytes !== undefined && size + buf.length >= opts.resetAfterBytes
      if (reset) buf = buf.subarray(0, (opts.resetAfterBytes ?? 0) - size)
      hash.update(buf)
      size += buf.length
      if (!out.write(buf)) await once(out, 'drain')
      if (reset) {
        req.socket.destroy()
        throw new ConnectionDropped()
      }
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())))
  } catch (err) {
    out.destroy()
    throw err
  }
  return { size, md5: hash.digest() }
}

/** Sends a complete body, or only its first `resetAfterBytes` bytes before dropping the connection. */
async function sendBody(
  res: http.ServerResponse,
  status: number,
  headers: Record<string, string | number>,
  body: Buffer,
  resetAfterBytes?: number
): Promise<void> {
  res.writeHead(status, { ...headers, 'Content-Length': body.length })
  if (resetAfterBytes === undefined) {
    res.end(body)
    return
  }
  res.flushHeaders()
  if (resetAfterBytes > 0) await writeFlushed(res, body.subarray(0, resetAfterBytes))
  return endConnection(res)
}

function writeFlushed(res: http.ServerResponse, chunk: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => res.write(chunk, err => (err ? reject(err) : resolve())))
}

/**
 * Ends the TCP connection mid-response: what was written is flushed, then FIN,
 * so the client sees exactly the bytes sent and then a premature end.
 */
function endConnection(res: http.ServerResponse): never {
  const socket = res.socket
  if (socket) {
    socket.end()
    setTimeout(() => socket.destroy(), 1000).unref()
  }
  throw new ConnectionDropped()
}

async function drain(req: http.IncomingMessage): Promise<void> {
  if (req.readableEnded) return
  req.resume()
  await once(req, 'end').catch(() => undefined)
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------
// The service

export interface StartOptions {
  dataDir: string
  /** 0 (default) = a random free port. */
  port?: number
  /** Bearer token for Twirp, v1 and /_control; random when omitted. */
  token?: string
  /** Default 127.0.0.1. */
  host?: string
  /** A reservation that is not finalized within this time may be re-created (default 10 min). */
  pendingTtlMs?: number
  /** Lifetime of signed blob URLs (default 1 h). */
  urlTtlMs?: number
  /** Called when a (non-control) request is over, with its final log record. */
  onRequest?: (rec: RequestRecord) => void
}

export interface CacheService {
  /** e.g. http://127.0.0.1:PORT/ */
  readonly url: string
  readonly port: number
  readonly token: string
  readonly dataDir: string
  /** Env vars for the @actions/cache client (v2 by default). */
  env(version?: CacheServiceVersion): CacheClientEnv
  readonly faults: Faults
  /** Stored entries, oldest first; committed only unless includePending. */
  entries(opts?: { includePending?: boolean }): CacheEntryInfo[]
  /** Live request log (control requests excluded). */
  readonly requests: readonly RequestRecord[]
  clearRequests(): void
  close(): Promise<void>
}

export async function startCacheService(opts: StartOptions): Promise<CacheService> {
  const host = opts.host ?? '127.0.0.1'
  const token = opts.token ?? randomBytes(16).toString('hex')
  const pendingTtlMs = opts.pendingTtlMs ?? 10 * 60_000
  const urlTtlMs = opts.urlTtlMs ?? 60 * 60_000
  const secret = randomBytes(32)
  const store = new Store(path.resolve(opts.dataDir))
  const faults = new Faults()
  const requests: RequestRecord[] = []
  let seq = 0
  let baseUrl = ''
  /** v1 chunk ranges received per entry id (in memory only). */
  const v1Ranges = new Map<number, Array<[number, number]>>()

  const entryInfo = (e: StoredEntry): CacheEntryInfo => ({
    id: e.id,
    key: e.key,
    version: e.version,
    size: e.size ?? e.uploadedSize ?? 0,
    createdAt: new Date(e.createdAt).toISOString(),
    state: e.state,
    api: e.api
  })
  const listEntries = (o?: { includePending?: boolean }): CacheEntryInfo[] =>
    store.entries
      .filter(e => o?.includePending === true || e.state === 'committed')
      .sort((a, b) => a.createdAt - b.createdAt || a.id - b.id)
      .map(entryInfo)

  const signedUrl = (blobId: string, permission: BlobPermission): string => {
    const se = new Date(Date.now() + urlTtlMs).toISOString().replace(/\.\d{3}Z$/, 'Z')
    const sig = signBlob(secret, blobId, permission, se)
    return `${baseUrl}${BLOB_PREFIX.slice(1)}${blobId}?sv=${AZURE_VERSION}&sr=b&sp=${permission}&se=${encodeURIComponent(se)}&sig=${sig}`
  }

  const bearerOk = (req: http.IncomingMessage): boolean => {
    const expected = Buffer.from(`Bearer ${token}`)
    const given = Buffer.from(req.headers.authorization ?? '')
    return given.length === expected.length && timingSafeEqual(given, expected)
  }

  /** Finds the live entry for key+version, dropping an expired reservation. */
  const existingFor = (key: string, version: string): StoredEntry | undefined => {
    const e = store.entries.find(x => x.key === key && x.version === version)
    if (e && e.state === 'pending' && Date.now() - e.createdAt > pendingTtlMs) {
      store.remove(e)
      v1Ranges.delete(e.id)
      return undefined
    }
    return e
  }

  // ---- Twirp (v2) ---------------------------------------------------------

  const twirpError = (res: http.ServerResponse, status: number, code: string, msg: string, reset?: number): Promise<void> =>
    sendBody(res, status, { 'Content-Type': 'application/json' }, Buffer.from(JSON.stringify({ code, msg })), reset)

  const twirpReply = (res: http.ServerResponse, body: object, reset?: number): Promise<void> =>
    sendBody(res, 200, { 'Content-Type': 'application/json' }, Buffer.from(JSON.stringify(body)), reset)

  async function handleTwirp(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    op: TwirpOp,
    body: Record<string, unknown>,
    reset: number | undefined
  ): Promise<void> {
    if (!bearerOk(req)) return twirpError(res, 401, 'unauthenticated', 'invalid or missing bearer token', reset)
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
      return twirpReply(res, { ok: true, signed_download_url: signedUrl(hit.blobId, 'r'), matched_key: hit.key }, reset)
    }

    if (op === 'CreateCacheEntry') {
      const existing = existingFor(key, version)
      if (existing?.state === 'committed') {
        return twirpError(res, 409, 'already_exists', 'cache entry with the same key, version, and scope already exists', reset)
      }
      if (existing) {
        return twirpError(res, 409, 'already_exists', 'cache entry with the same key, version, and scope is already being created', reset)
      }
      const entry = store.create(key, version, 'v2', Date.now())
      return twirpReply(res, { ok: true, signed_upload_url: signedUrl(entry.blobId, 'cw'), message: '' }, reset)
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

  // ---- Azure blob endpoint -----------------------------------------------

  const azureHeaders = (req: http.IncomingMessage): Record<string, string> => {
    const h: Record<string, string> = {
      'x-ms-request-id': randomUUID(),
      'x-ms-version': (req.headers['x-ms-version'] as string | undefined) ?? AZURE_VERSION,
      Date: new Date().toUTCString()
    }
    const clientId = req.headers['x-ms-client-request-id']
    if (typeof clientId === 'string') h['x-ms-client-request-id'] = clientId
    return h
  }

  const azureError = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    status: number,
    code: string,
    message: string,
    reset?: number,
    extra: Record<string, string> = {}
  ): Promise<void> => {
    const headers = azureHeaders(req)
    const xml =
      `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}\n` +
      `RequestId:${headers['x-ms-request-id']}\nTime:${new Date().toISOString()}</Message></Error>`
    const body = req.method === 'HEAD' ? Buffer.alloc(0) : Buffer.from(xml)
    return sendBody(res, status, { ...headers, ...extra, 'Content-Type': 'application/xml', 'x-ms-error-code': code }, body, reset)
  }

  const etagFor = (md5: string, mtimeMs: number): string =>
    `"0x8D${createHash('sha1').update(`${md5}:${mtimeMs}`).digest('hex').slice(0, 13).toUpperCase()}"`

  async function handleBlob(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    op: BlobOp,
    blobId: string,
    url: URL,
    entry: StoredEntry | undefined,
    reset: number | undefined
  ): Promise<void> {
    const write = op === 'PutBlob' || op === 'PutBlock' || op === 'PutBlockList'
    const denied = verifyBlobSignature(secret, blobId, url.searchParams, write ? 'w' : 'r', Date.now())
    if (denied) {
      await drain(req)
      return azureError(req, res, 403, denied.code, denied.message, write ? undefined : reset)
    }

    if (!write) {
      const file = store.blobPath(blobId)
      if (!entry || entry.state !== 'committed' || !fs.existsSync(file)) {
        return azureError(req, res, 404, 'BlobNotFound', 'The specified blob does not exist.', reset)
      }
      const stat = fs.statSync(file)
      const range = parseRange((req.headers['x-ms-range'] as string | undefined) ?? req.headers.range, stat.size)
      const common: Record<string, string | number> = {
        ...azureHeaders(req),
        'Content-Type': 'application/octet-stream',
        'Last-Modified': stat.mtime.toUTCString(),
        ETag: etagFor(entry.md5 ?? '', stat.mtimeMs),
        'Accept-Ranges': 'bytes',
        'x-ms-blob-type': 'BlockBlob',
        'x-ms-creation-time': new Date(entry.createdAt).toUTCString(),
        'x-ms-lease-state': 'available',
        'x-ms-lease-status': 'unlocked',
        'x-ms-server-encrypted': 'true'
      }
      if (range === 'unsatisfiable') {
        return azureError(req, res, 416, 'InvalidRange', 'The range specified is invalid for the current size of the resource.', reset, {
          'Content-Range': `bytes */${stat.size}`
        })
      }
      const start = range?.start ?? 0
      const end = range?.end ?? stat.size - 1
      const length = Math.max(0, end - start + 1)
      const headers: Record<string, string | number> = { ...common, 'Content-Length': length }
      if (range) headers['Content-Range'] = `bytes ${start}-${end}/${stat.size}`
      else if (entry.md5) headers['Content-MD5'] = entry.md5
      res.writeHead(range ? 206 : 200, headers)
      if (reset !== undefined) res.flushHeaders()
      const limit = reset === undefined ? end : Math.min(end, start + reset - 1)
      if (req.method !== 'HEAD' && length > 0 && limit >= start) {
        for await (const chunk of fs.createReadStream(file, { start, end: limit }) as AsyncIterable<Buffer>) {
          if (reset !== undefined) await writeFlushed(res, chunk)
          else if (!res.write(chunk)) await once(res, 'drain')
        }
      }
      if (reset !== undefined) endConnection(res)
      res.end()
      return
    }

    // Writes are accepted only while the entry is an unfinished v2 reservation.
    if (!entry) {
      await drain(req)
      return azureError(req, res, 404, 'BlobNotFound', 'The specified blob does not exist.')
    }
    if (entry.state !== 'pending' || entry.api !== 'v2') {
      await drain(req)
      return azureError(req, res, 409, 'BlobImmutableDueToPolicy', 'This operation is not permitted as the blob is immutable.')
    }
    const created = (extra: Record<string, string>): void => {
      res.writeHead(201, { ...azureHeaders(req), 'Content-Length': 0, 'x-ms-request-server-encrypted': 'true', ...extra })
      res.end()
    }
    const finishBlob = (tmp: string, size: number, md5: Buffer): Record<string, string> => {
      fs.renameSync(tmp, store.blobPath(blobId))
      fs.rmSync(store.blockDir(blobId), { recursive: true, force: true }) // uncommitted blocks are discarded
      entry.uploadedSize = size
      entry.md5 = md5.toString('base64')
      store.save()
      const stat = fs.statSync(store.blobPath(blobId))
      return { ETag: etagFor(entry.md5, stat.mtimeMs), 'Last-Modified': stat.mtime.toUTCString() }
    }
    const checkLength = async (size: number, tmp: string, md5: Buffer): Promise<boolean> => {
      const declared = req.headers['content-length']
      if (declared !== undefined && Number(declared) !== size) {
        await fsp.rm(tmp, { force: true })
        await azureError(req, res, 400, 'InvalidInput', 'Content-Length does not match the body.')
        return false
      }
      const declaredMd5 = req.headers['content-md5']
      if (typeof declaredMd5 === 'string' && declaredMd5 !== md5.toString('base64')) {
        await fsp.rm(tmp, { force: true })
        await azureError(
          req,
          res,
          400,
          'Md5Mismatch',
          'The MD5 value specified in the request did not match with the MD5 value calculated by the server.'
        )
        return false
      }
      return true
    }

    if (op === 'PutBlob') {
      if (req.headers['x-ms-blob-type'] !== 'BlockBlob') {
        await drain(req)
        return azureError(
          req,
          res,
          400,
          'MissingRequiredHeader',
          'An HTTP header that is mandatory for this request is not specified: x-ms-blob-type: BlockBlob.'
        )
      }
      const tmp = store.tmpPath()
      const { size, md5 } = await receiveToFile(req, tmp, { resetAfterBytes: reset })
      if (!(await checkLength(size, tmp, md5))) return
      created({ ...finishBlob(tmp, size, md5), 'Content-MD5': md5.toString('base64') })
      return
    }

    if (op === 'PutBlock') {
      const blockId = url.searchParams.get('blockid') ?? ''
      const hex = blockIdToHex(blockId)
      if (!hex) {
        await drain(req)
        return azureError(
          req,
          res,
          400,
          'InvalidQueryParameterValue',
          `Value for one of the query parameters specified in the request URI is invalid: blockid=${blockId}`
        )
      }
      const tmp = store.tmpPath()
      const { size, md5 } = await receiveToFile(req, tmp, { resetAfterBytes: reset })
      if (!(await checkLength(size, tmp, md5))) return
      fs.mkdirSync(store.blockDir(blobId), { recursive: true })
      fs.renameSync(tmp, path.join(store.blockDir(blobId), hex))
      created({ 'Content-MD5': md5.toString('base64') })
      return
    }

    // PutBlockList
    const xml = await readBody(req, 4 * 1024 * 1024, reset)
    let blocks: Array<{ kind: BlockKind; id: string }>
    try {
      blocks = parseBlockList(xml.toString('utf8'))
    } catch {
      return azureError(req, res, 400, 'InvalidXmlDocument', 'XML specified is not syntactically valid.')
    }
    const files: string[] = []
    for (const block of blocks) {
      const hex = blockIdToHex(block.id)
      const file = hex === undefined ? undefined : path.join(store.blockDir(blobId), hex)
      if (!file || !fs.existsSync(file)) {
        return azureError(req, res, 400, 'InvalidBlockList', `The specified block list is invalid: unknown block ${block.id}.`)
      }
      files.push(file)
    }
    const tmp = store.tmpPath()
    const hash = createHash('md5')
    let size = 0
    const out = fs.createWriteStream(tmp)
    try {
      for (const file of files) {
        for await (const chunk of fs.createReadStream(file) as AsyncIterable<Buffer>) {
          hash.update(chunk)
          size += chunk.length
          if (!out.write(chunk)) await once(out, 'drain')
        }
      }
      await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())))
    } catch (err) {
      out.destroy()
      await fsp.rm(tmp, { force: true })
      throw err
    }
    const headers = finishBlob(tmp, size, hash.digest())
    created({ ...headers, 'Content-MD5': createHash('md5').update(xml).digest('base64') })
  }

  // ---- v1 (GHES REST) -----------------------------------------------------

  const v1Json = (res: http.ServerResponse, status: number, body: object | undefined, reset?: number): Promise<void> =>
    body === undefined
      ? sendBody(res, status, {}, Buffer.alloc(0), reset)
      : sendBody(res, status, { 'Content-Type': 'application/json' }, Buffer.from(JSON.stringify(body)), reset)

  const v1Error = (res: http.ServerResponse, status: number, message: string, reset?: number): Promise<void> =>
    v1Json(
      res,
      status,
      { $id: '1', innerException: null, message, typeName: 'CacheServiceException', typeKey: 'CacheServiceException', errorCode: 0, eventId: 3000 },
      reset
    )

  const v1Entry = (e: StoredEntry): object => ({
    scope: 'refs/heads/main',
    cacheKey: e.key,
    cacheVersion: e.version,
    creationTime: new Date(e.createdAt).toISOString(),
    archiveLocation: signedUrl(e.blobId, 'r')
  })

  async function handleV1(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    op: V1Op,
    url: URL,
    entry: StoredEntry | undefined,
    body: Record<string, unknown>,
    reset: number | undefined
  ): Promise<void> {
    if (!bearerOk(req)) {
      await drain(req)
      return v1Error(res, 401, 'invalid or missing bearer token', op === 'v1.UploadChunk' ? undefined : reset)
    }
    if (op === 'v1.GetCacheEntry') {
      const keys = (url.searchParams.get('keys') ?? '').split(',').filter(k => k !== '')
      const version = url.searchParams.get('version') ?? ''
      const [primary, ...restoreKeys] = keys
      if (primary === undefined || !version) return v1Error(res, 400, 'keys and version are required', reset)
      const hit = findEntry(store.committed(), primary, restoreKeys, version)
      return hit ? v1Json(res, 200, v1Entry(hit), reset) : v1Json(res, 204, undefined, reset)
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
      if (existingFor(key, version)) {
        return v1Error(res, 409, `Cache already exists. Scope: refs/heads/main, Key: ${key}, Version: ${version}`, reset)
      }
      const created = store.create(key, version, 'v1', Date.now())
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

  // ---- control endpoint ---------------------------------------------------

  async function handleControl(req: http.IncomingMessage, res: http.ServerResponse, route: string): Promise<void> {
    const json = (status: number, body: unknown): Promise<void> =>
      sendBody(res, status, { 'Content-Type': 'application/json' }, Buffer.from(JSON.stringify(body)))
    if (!bearerOk(req)) {
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
    if (key === 'GET entries') return json(200, listEntries({ includePending: true }))
    if (key === 'GET requests') return json(200, requests)
    if (key === 'DELETE requests') {
      requests.length = 0
      return json(200, {})
    }
    return json(404, { error: `unknown control route ${key}` })
  }

  // ---- dispatch -----------------------------------------------------------

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    const pathname = url.pathname
    if (pathname.startsWith('/_control/')) return handleControl(req, res, pathname.slice('/_control/'.length))

    const query = new URLSearchParams(url.searchParams)
    if (query.has('sig')) query.set('sig', 'REDACTED')
    const rec: RequestRecord = {
      seq: ++seq,
      time: new Date().toISOString(),
      method: req.method ?? 'GET',
      path: pathname,
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
      opts.onRequest?.(rec)
    })
    try {
      await dispatch(req, res, rec, url)
    } catch (err) {
      if (err instanceof ConnectionDropped) rec.dropped = true
      throw err
    } finally {
      settle()
    }
  }

  async function dispatch(req: http.IncomingMessage, res: http.ServerResponse, rec: RequestRecord, url: URL): Promise<void> {
    const pathname = url.pathname
    const method = rec.method

    // Classify; small JSON bodies are read first since they carry the key.
    let kind: 'twirp' | 'blob' | 'v1' | 'unknown' = 'unknown'
    let body: Record<string, unknown> = {}
    let entry: StoredEntry | undefined
    let blobId = ''
    let key: string | undefined
    const parseJson = async (): Promise<boolean> => {
      const raw = (await readBody(req, 1024 * 1024)).toString('utf8')
      try {
        const parsed: unknown = raw === '' ? {} : JSON.parse(raw)
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return false
        body = parsed as Record<string, unknown>
        return true
      } catch {
        return false
      }
    }

    if (pathname.startsWith(TWIRP_PREFIX)) {
      const name = pathname.slice(TWIRP_PREFIX.length)
      if (method !== 'POST' || !(TWIRP_OPS as readonly string[]).includes(name)) {
        await drain(req)
        return twirpError(res, 404, 'bad_route', `no handler for ${method} ${pathname}`)
      }
      kind = 'twirp'
      rec.op = name as TwirpOp
      if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
        await drain(req)
        return twirpError(res, 404, 'bad_route', 'only application/json is supported')
      }
      if (!(await parseJson())) return twirpError(res, 400, 'malformed', 'request body is not a JSON object')
      key = typeof body['key'] === 'string' ? body['key'] : undefined
    } else if (pathname.startsWith(BLOB_PREFIX)) {
      blobId = pathname.slice(BLOB_PREFIX.length)
      const comp = url.searchParams.get('comp')
      if (method === 'GET') rec.op = 'GetBlob'
      else if (method === 'HEAD') rec.op = 'GetBlobProperties'
      else if (method === 'PUT' && comp === null) rec.op = 'PutBlob'
      else if (method === 'PUT' && comp === 'block') rec.op = 'PutBlock'
      else if (method === 'PUT' && comp === 'blocklist') rec.op = 'PutBlockList'
      else {
        await drain(req)
        return azureError(req, res, 400, 'UnsupportedHttpVerb', `${method} ${comp ?? ''} is not supported by this service.`)
      }
      kind = 'blob'
      entry = /^[0-9a-f]{32}$/.test(blobId) ? store.entries.find(e => e.blobId === blobId) : undefined
      key = entry?.key
    } else if (pathname.startsWith(V1_PREFIX)) {
      const resource = pathname.slice(V1_PREFIX.length)
      const idMatch = /^caches\/(\d+)$/.exec(resource)
      if (method === 'GET' && resource === 'cache') rec.op = 'v1.GetCacheEntry'
      else if (method === 'GET' && resource === 'caches') rec.op = 'v1.ListCaches'
      else if (method === 'POST' && resource === 'caches') rec.op = 'v1.ReserveCache'
      else if (method === 'PATCH' && idMatch) rec.op = 'v1.UploadChunk'
      else if (method === 'POST' && idMatch) rec.op = 'v1.CommitCache'
      else {
        await drain(req)
        return v1Error(res, 404, `no handler for ${method} ${pathname}`)
      }
      kind = 'v1'
      if (idMatch) {
        const id = Number(idMatch[1])
        entry = store.entries.find(e => e.id === id)
        key = entry?.key
      }
      if (rec.op === 'v1.ReserveCache' || rec.op === 'v1.CommitCache') {
        if (!(await parseJson())) return v1Error(res, 400, 'request body is not a JSON object')
      }
      if (rec.op === 'v1.ReserveCache') key = typeof body['key'] === 'string' ? body['key'] : undefined
      if (rec.op === 'v1.GetCacheEntry') key = (url.searchParams.get('keys') ?? '').split(',')[0]
    } else {
      await drain(req)
      return sendBody(res, 404, { 'Content-Type': 'text/plain' }, Buffer.from(`not found: ${pathname}\n`))
    }
    if (key !== undefined) rec.key = key

    // Faults.
    let reset: number | undefined
    const fault = faults.take(rec.op, key)
    if (fault) {
      rec.fault = fault.id
      const a = fault.action
      if (a.delayMs) await sleep(a.delayMs)
      if (a.refuse) {
        req.socket.destroy()
        return
      }
      if (a.status !== undefined) {
        await drain(req)
        const msg = a.message ?? `injected fault ${fault.id}`
        if (kind === 'twirp') return twirpError(res, a.status, twirpCodeFor(a.status), msg)
        if (kind === 'blob') return azureError(req, res, a.status, azureCodeFor(a.status), msg)
        return v1Error(res, a.status, msg)
      }
      reset = a.resetAfterBytes
    }

    if (kind === 'twirp') return handleTwirp(req, res, rec.op as TwirpOp, body, reset)
    if (kind === 'blob') return handleBlob(req, res, rec.op as BlobOp, blobId, url, entry, reset)
    return handleV1(req, res, rec.op as V1Op, url, entry, body, reset)
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
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
  baseUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}/`

  return {
    url: baseUrl,
    port,
    token,
    dataDir: store.dataDir,
    env: (version: CacheServiceVersion = 'v2') => cacheClientEnv(baseUrl, token, version),
    faults,
    entries: listEntries,
    requests,
    clearRequests: () => {
      requests.length = 0
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close(err => (err ? reject(err) : resolve()))
        server.closeAllConnections()
      })
  }
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
    }
  }
}
