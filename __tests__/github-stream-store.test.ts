// The stream client of the GitHub cache (src/storage/github) against the
// local cache service (service v2, in this process): round trips in each
// codec, key matching, and the service's faults (5xx, 429 with Retry-After,
// connections cut mid-download and mid-upload, a corrupt entry, the entry
// size limit, a service that refuses the client).
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from '@jest/globals'

import { serviceV2, isGhes } from '../src/storage/github/config.js'
import { ENTRY_VERSION, parseEntryHeader } from '../src/storage/github/entry-format.js'
import { backoffMs, parseRetryAfter, HttpStatusError, type RetryPolicy } from '../src/storage/github/retry.js'
import { githubStore } from '../src/storage/github/select.js'
import { GitHubStreamStore, type StreamStoreOptions } from '../src/storage/github/stream-store.js'
import type { CacheStore } from '../src/storage/store.js'
import { readBlobBytes, startCacheService, writeBlobBytes, type CacheService } from '../test-support/cache-service/server.js'
import { captureLog } from '../test-support/fakes/log.js'

let service: CacheService
let dir: string
const waits: number[] = []
const fast: RetryPolicy = { attempts: 4, baseMs: 1, maxWaitMs: 5000, sleep: async ms => void waits.push(ms) }

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bmc-stream-'))
  service = await startCacheService({ dataDir: join(dir, 'service') })
})
afterAll(async () => {
  await service.close()
  rmSync(dir, { recursive: true, force: true })
})
let log: ReturnType<typeof captureLog>
beforeEach(() => {
  log = captureLog()
  waits.length = 0
})
afterEach(() => {
  service.faults.clear()
  log.restore()
})

let n = 0
const unique = (name: string): string => `${name}-${++n}-${randomBytes(4).toString('hex')}`
const store = (options: StreamStoreOptions = {}): GitHubStreamStore => {
  const config = serviceV2(service.env())
  if (!config) throw new Error('the local service env should select v2')
  return new GitHubStreamStore(config, { policy: fast, ...options })
}
const file = (name: string, data: Buffer): string => {
  const path = join(dir, name)
  writeFileSync(path, data)
  return path
}
const text = (bytes: number): Buffer => Buffer.from('all work and no play makes a cache dull\n'.repeat(Math.ceil(bytes / 40)).slice(0, bytes))
const blobOf = (key: string): Buffer => {
  const entry = service.entries().find(e => e.key === key)
  if (!entry) throw new Error(`no entry ${key}`)
  const blobs = join(service.dataDir, 'blobs')
  const match = readdirSync(blobs)
    .map(f => readBlobBytes(join(blobs, f)))
    .filter(b => b.length === entry.size)
  if (match.length === 0) throw new Error(`no blob of ${entry.size} bytes`)
  return match[0]!
}

describe('round trips', () => {
  test.each([
    ['incompressible bytes are stored as they are', randomBytes(3 * 1024 * 1024 + 17), 'none'],
    ['text is zstd-compressed', text(2 * 1024 * 1024), 'zstd']
  ])('%s, restored byte for byte', async (_name, data, codec) => {
    const key = unique('rt')
    const s = store()
    expect(await s.save(file(`${key}.tar`, data), key)).toBe(true)
    const entry = service.entries().find(e => e.key === key)!
    expect(entry.version).toBe(ENTRY_VERSION)
    const blob = blobOf(key)
    const newline = blob.indexOf(0x0a)
    expect(parseEntryHeader(blob.subarray(0, newline).toString('latin1'))).toBe(codec)
    if (codec === 'zstd') expect(entry.size).toBeLessThan(data.length / 10)
    const out = join(dir, `${key}-restored.tar`)
    expect(await s.restore(out, key, [])).toBe(key)
    expect(readFileSync(out).equals(data)).toBe(true)
  })

  test('an empty archive', async () => {
    const key = unique('empty')
    const s = store()
    expect(await s.save(file(`${key}.tar`, Buffer.alloc(0)), key)).toBe(true)
    const out = join(dir, `${key}-restored.tar`)
    expect(await s.restore(out, key, [])).toBe(key)
    expect(readFileSync(out).length).toBe(0)
  })

  test('many blocks, uploaded in parallel, keep their order', async () => {
    const key = unique('blocks')
    const data = randomBytes(1024 * 1024 + 5)
    const s = store()
    // The block size is the client's; a small one through the upload function makes many blocks.
    const { uploadBlob } = await import('../src/storage/github/blob.js')
    const { Readable } = await import('node:stream')
    const config = serviceV2(service.env())!
    const { TwirpClient } = await import('../src/storage/github/twirp.js')
    const twirp = new TwirpClient(config, fast)
    const created = await twirp.createEntry(key, ENTRY_VERSION)
    const { withEntryHeader } = await import('../src/storage/github/entry-format.js')
    const size = await uploadBlob(created.signed_upload_url!, withEntryHeader('none', Readable.from([data])), {
      policy: fast,
      blockBytes: 64 * 1024,
      parallel: 3
    })
    expect(size).toBe('buildkit-mount-cache entry 1 none\n'.length + data.length + 72)
    expect(service.requests.filter(r => r.op === 'PutBlock' && r.key === key)).toHaveLength(Math.ceil(size / (64 * 1024)))
    expect((await twirp.finalize(key, ENTRY_VERSION, size)).ok).toBe(true)
    const out = join(dir, `${key}-restored.tar`)
    expect(await s.restore(out, key, [])).toBe(key)
    expect(readFileSync(out).equals(data)).toBe(true)
  })
})

describe('an uncompressed archive sent in ranges of its file', () => {
  // Small blocks and no single Put Blob, so a test-sized archive takes the path of a large one.
  const ranged = (parallel = 3): GitHubStreamStore => store({ codec: 'none', upload: { blockBytes: 64 * 1024, parallel, singlePutMax: 0 } })
  const header = Buffer.from('buildkit-mount-cache entry 1 none\n')

  test('many blocks: the header, the file in order, and the digest trailer last; restored byte for byte', async () => {
    const key = unique('ranges')
    const data = randomBytes(10 * 64 * 1024 + 123)
    const s = ranged()
    expect(await s.save(file(`${key}.tar`, data), key)).toBe(true)
    // The header, 11 ranges of the file, and the trailer: one block each.
    expect(service.requests.filter(r => r.op === 'PutBlock' && r.key === key)).toHaveLength(1 + 11 + 1)
    expect(service.requests.some(r => r.op === 'PutBlob' && r.key === key)).toBe(false)
    const blob = blobOf(key)
    expect(blob.length).toBe(header.length + data.length + 72)
    expect(blob.subarray(0, header.length).equals(header)).toBe(true)
    expect(blob.subarray(header.length, header.length + data.length).equals(data)).toBe(true)
    const digest = createHash('sha256').update(header).update(data).digest('hex')
    expect(blob.subarray(header.length + data.length).toString('latin1')).toBe(`sha256:${digest}\n`)
    const out = join(dir, `${key}-restored.tar`)
    expect(await s.restore(out, key, [])).toBe(key)
    expect(readFileSync(out).equals(data)).toBe(true)
  })

  test('a file that is a whole number of blocks, sent one block at a time', async () => {
    const key = unique('ranges-even')
    const data = randomBytes(4 * 64 * 1024)
    const s = ranged(1)
    expect(await s.save(file(`${key}.tar`, data), key)).toBe(true)
    expect(service.requests.filter(r => r.op === 'PutBlock' && r.key === key)).toHaveLength(1 + 4 + 1)
    const out = join(dir, `${key}-restored.tar`)
    expect(await s.restore(out, key, [])).toBe(key)
    expect(readFileSync(out).equals(data)).toBe(true)
  })

  test.each([
    ['a connection reset midway through a block', { resetAfterBytes: 20 * 1024 }],
    ['a 500 answer', { status: 500 }],
    ['a 429 with Retry-After', { status: 429, retryAfterSeconds: 3 }]
  ])('%s is retried for that block alone, and the entry is exact', async (_name, action) => {
    const key = unique('ranges-fault')
    const data = randomBytes(6 * 64 * 1024 + 9)
    // One block at a time: the header block goes first, and the fault hits the first range of the file.
    const s = ranged(1)
    service.faults.add({ match: { op: 'PutBlock', key }, action: { delayMs: 0 }, times: 1 })
    const fault = service.faults.add({ match: { op: 'PutBlock', key }, action, times: 1 })
    expect(await s.save(file(`${key}.tar`, data), key)).toBe(true)
    expect(service.faults.list().some(f => f.id === fault)).toBe(false)
    // One block more than the entry's 1 + 7 + 1: the one that failed, sent again.
    expect(service.requests.filter(r => r.op === 'PutBlock' && r.key === key)).toHaveLength(1 + 7 + 1 + 1)
    expect(waits).toEqual(['retryAfterSeconds' in action ? 3000 : 1])
    const blob = blobOf(key)
    const digest = createHash('sha256')
      .update(blob.subarray(0, blob.length - 72))
      .digest('hex')
    expect(blob.subarray(blob.length - 72).toString('latin1')).toBe(`sha256:${digest}\n`)
    const out = join(dir, `${key}-restored.tar`)
    expect(await s.restore(out, key, [])).toBe(key)
    expect(readFileSync(out).equals(data)).toBe(true)
  })

  test('a block that keeps failing fails the save, and nothing is committed', async () => {
    const key = unique('ranges-down')
    const s = ranged()
    service.faults.add({ match: { op: 'PutBlock', key }, action: { status: 503 } })
    await expect(s.save(file(`${key}.tar`, randomBytes(5 * 64 * 1024)), key)).rejects.toThrow('upload block: HTTP 503')
    expect(service.requests.some(r => r.op === 'PutBlockList' && r.key === key)).toBe(false)
    expect(service.entries({ includePending: true }).find(e => e.key === key)?.state).toBe('pending')
  })

  test('an entry over the size limit is refused before any block goes', async () => {
    const key = unique('ranges-big')
    const s = store({ codec: 'none', maxEntryBytes: 100 * 1024, upload: { blockBytes: 64 * 1024, singlePutMax: 0 } })
    await expect(s.save(file(`${key}.tar`, randomBytes(300 * 1024)), key)).rejects.toThrow(
      "the entry is larger than the service's limit of 102400 bytes"
    )
    expect(service.requests.some(r => r.op === 'PutBlock' && r.key === key)).toBe(false)
  })
})

describe('keys', () => {
  test('exact key, prefix fallback (newest first), exists, and a miss', async () => {
    const base = unique('keys')
    const s = store()
    expect(await s.save(file(`${base}-a.tar`, Buffer.from('older')), `${base}-a`)).toBe(true)
    await new Promise(r => setTimeout(r, 5))
    expect(await s.save(file(`${base}-b.tar`, Buffer.from('newer')), `${base}-b`)).toBe(true)
    const out = join(dir, `${base}-out.tar`)
    expect(await s.restore(out, `${base}-a`, [base])).toBe(`${base}-a`)
    expect(readFileSync(out, 'utf8')).toBe('older')
    expect(await s.restore(out, `${base}-c`, [`${base}-`])).toBe(`${base}-b`)
    expect(readFileSync(out, 'utf8')).toBe('newer')
    expect(await s.restore(out, `${base}-zzz`, ['nothing-like-it-'])).toBeUndefined()
    expect(await s.find(out, `${base}-c`, [`${base}-`])).toBe(`${base}-b`)
    expect(await s.find(out, `${base}-zzz`, [])).toBeUndefined()
    expect(await s.exists(out, `${base}-a`)).toBe(true)
    expect(await s.exists(out, base)).toBe(false)
  })

  test('a key saved already is not saved again', async () => {
    const key = unique('twice')
    const s = store()
    const path = file(`${key}.tar`, Buffer.from('once'))
    expect(await s.save(path, key)).toBe(true)
    expect(await s.save(path, key)).toBe(false)
    expect(log.logger.of('info').join('\n')).toContain(`${key} exists already`)
  })
})

describe('faults', () => {
  test('5xx answers are retried with backoff, each retry logged', async () => {
    const key = unique('5xx')
    const s = store()
    service.faults.add({ match: { op: 'CreateCacheEntry', key }, action: { status: 503 }, times: 2 })
    expect(await s.save(file(`${key}.tar`, Buffer.from('x')), key)).toBe(true)
    expect(waits).toEqual([1, 2])
    expect(log.logger.of('info').filter(l => l.includes('CreateCacheEntry failed (CreateCacheEntry: HTTP 503'))).toHaveLength(2)
  })

  test('429 waits what Retry-After asks', async () => {
    const key = unique('429')
    const s = store()
    service.faults.add({ match: { op: 'GetCacheEntryDownloadURL' }, action: { status: 429, retryAfterSeconds: 2 }, times: 1 })
    expect(await s.restore(join(dir, `${key}.tar`), key, [])).toBeUndefined()
    expect(waits).toEqual([2000])
  })

  test('a 4xx answer is not retried', async () => {
    const key = unique('4xx')
    const s = store()
    service.faults.add({ match: { op: 'CreateCacheEntry', key }, action: { status: 403, message: 'forbidden here' }, times: 1 })
    await expect(s.save(file(`${key}.tar`, Buffer.from('x')), key)).rejects.toThrow('CreateCacheEntry: HTTP 403 (permission_denied: forbidden here)')
    expect(waits).toEqual([])
  })

  test('attempts run out: the last error is thrown', async () => {
    const key = unique('down')
    const s = store()
    service.faults.add({ match: { op: 'GetCacheEntryDownloadURL' }, action: { status: 500 } })
    await expect(s.restore(join(dir, `${key}.tar`), key, [])).rejects.toThrow('GetCacheEntryDownloadURL: HTTP 500')
    expect(waits).toHaveLength(fast.attempts - 1)
  })

  test('a download cut off mid-body is retried from the start', async () => {
    const key = unique('cut')
    const data = randomBytes(600 * 1024)
    const s = store()
    expect(await s.save(file(`${key}.tar`, data), key)).toBe(true)
    service.faults.add({ match: { op: 'GetBlob', key }, action: { resetAfterBytes: 200 * 1024 }, times: 2 })
    const out = join(dir, `${key}-restored.tar`)
    expect(await s.restore(out, key, [])).toBe(key)
    expect(readFileSync(out).equals(data)).toBe(true)
    expect(waits).toHaveLength(2)
  })

  test('a download that is always cut off fails with what happened', async () => {
    const key = unique('cut-always')
    const s = store()
    expect(await s.save(file(`${key}.tar`, randomBytes(300 * 1024)), key)).toBe(true)
    service.faults.add({ match: { op: 'GetBlob', key }, action: { resetAfterBytes: 1000 } })
    await expect(s.restore(join(dir, `${key}-restored.tar`), key, [])).rejects.toThrow(/cut off|ended after|aborted|ECONNRESET|premature/i)
  })

  const uploads: [string, 'none' | 'zstd', 'PutBlob' | 'PutBlock'][] = [
    ['one streamed Put Blob (uncompressed, size known)', 'none', 'PutBlob'],
    ['Put Block calls (compressed)', 'zstd', 'PutBlock']
  ]
  test.each(uploads)('an upload cut off midway is retried: %s', async (_name, codec, op) => {
    const key = unique('up-cut')
    const data = randomBytes(500 * 1024)
    const s = store({ codec })
    const fault = service.faults.add({ match: { op, key }, action: { resetAfterBytes: 100 * 1024 }, times: 1 })
    expect(await s.save(file(`${key}.tar`, data), key)).toBe(true)
    // The fault was hit (it is gone after its one time), and the retry stored the whole entry.
    expect(service.faults.list().some(f => f.id === fault)).toBe(false)
    expect(service.requests.filter(r => r.op === op && r.key === key).length).toBeGreaterThanOrEqual(2)
    const out = join(dir, `${key}-restored.tar`)
    expect(await s.restore(out, key, [])).toBe(key)
    expect(readFileSync(out).equals(data)).toBe(true)
  })

  test('an entry without the header is refused', async () => {
    const key = unique('foreign')
    const s = store()
    expect(await s.save(file(`${key}.tar`, Buffer.from('content')), key)).toBe(true)
    const blobs = join(service.dataDir, 'blobs')
    for (const f of readdirSync(blobs)) {
      const b = readBlobBytes(join(blobs, f))
      if (
        b
          .subarray(b.indexOf(0x0a) + 1)
          .toString()
          .startsWith('content')
      )
        writeBlobBytes(join(blobs, f), Buffer.from('PK\u0003\u0004 not ours at all\n..'))
    }
    await expect(s.restore(join(dir, `${key}-restored.tar`), key, [])).rejects.toThrow(
      'the entry does not start with a buildkit-mount-cache entry 1 header ("PK\\u0003\\u0004 not ours at all")'
    )
  })

  test.each([
    ['a flipped byte', (b: Buffer) => ((b[b.length >> 1] = (b[b.length >> 1] ?? 0) ^ 1), b)],
    ['a lost tail', (b: Buffer) => b.subarray(0, b.length - 100)],
    ['no trailer', (b: Buffer) => b.subarray(0, b.length - 72)]
  ])('an uncompressed entry with %s is refused by its checksum', async (_name, damage) => {
    const key = unique('damaged')
    const data = randomBytes(64 * 1024)
    const s = store({ codec: 'none' })
    expect(await s.save(file(`${key}.tar`, data), key)).toBe(true)
    const blobs = join(service.dataDir, 'blobs')
    for (const f of readdirSync(blobs)) {
      const b = readBlobBytes(join(blobs, f))
      if (b.includes(data.subarray(0, 64))) writeBlobBytes(join(blobs, f), damage(Buffer.from(b)))
    }
    await expect(s.restore(join(dir, `${key}-restored.tar`), key, [])).rejects.toThrow(
      "the entry's checksum does not match its content (corrupt in storage or in transit)"
    )
  })

  test('an entry over the size limit is not committed', async () => {
    const key = unique('big')
    const s = store({ maxEntryBytes: 100 * 1024 })
    await expect(s.save(file(`${key}.tar`, randomBytes(300 * 1024)), key)).rejects.toThrow(
      "the entry is larger than the service's limit of 102400 bytes"
    )
    expect(service.entries().some(e => e.key === key)).toBe(false)
  })
})

describe('choosing the client', () => {
  const env = (): NodeJS.ProcessEnv => ({ ...service.env() })

  test('v2 selects the stream client; v1, GHES, missing settings, a proxy and the library opt-out do not', () => {
    expect(serviceV2(env())).toBeDefined()
    expect(serviceV2({ ...env(), ACTIONS_CACHE_SERVICE_V2: '' })).toBeUndefined()
    expect(serviceV2({ ...env(), GITHUB_SERVER_URL: 'https://ghes.example.com' })).toBeUndefined()
    expect(serviceV2({ ...env(), ACTIONS_RUNTIME_TOKEN: '' })).toBeUndefined()
    expect(serviceV2({ ...env(), BUILDKIT_MOUNT_CACHE_GITHUB_CLIENT: 'library' })).toBeUndefined()
    // Behind a proxy, the library (which follows HTTP(S)_PROXY and NO_PROXY).
    expect(serviceV2({ ...env(), HTTPS_PROXY: 'http://proxy.corp:3128' })).toBeUndefined()
    expect(serviceV2({ ...env(), http_proxy: 'http://proxy.corp:3128' })).toBeUndefined()
    expect(serviceV2({ ...env(), HTTPS_PROXY: ' ' })).toBeDefined()
    expect([isGhes(undefined), isGhes('https://github.com'), isGhes('https://x.ghe.com'), isGhes('https://ghes.corp')]).toEqual([
      false,
      false,
      false,
      true
    ])
  })

  test('a service that refuses the stream calls hands the job to the library', async () => {
    const calls: string[] = []
    const library = recordingLibrary(calls)
    service.faults.add({ match: { op: 'GetCacheEntryDownloadURL' }, action: { status: 501 }, times: 1 })
    const s = githubStore(env(), { policy: fast }, library)
    expect(await s.restore(join(dir, 'x.tar'), 'k1', [])).toBeUndefined()
    expect(await s.save(file('y.tar', Buffer.from('y')), 'k2')).toBe(true)
    expect(calls).toEqual(['restore k1', 'save k2'])
    expect(log.logger.of('info').join('\n')).toContain('refused the stream client')
  })

  test('GHES gets the library, with removal through the REST API beside it', async () => {
    const calls: string[] = []
    const library = recordingLibrary(calls)
    service.clearRequests()
    const s = githubStore({ ...env(), GITHUB_SERVER_URL: 'https://ghes.corp' }, {}, library)
    await s.restore(join(dir, 'x.tar'), 'k1', [])
    await s.find(join(dir, 'x.tar'), 'k2', [])
    await s.exists(join(dir, 'x.tar'), 'k3')
    await s.save(file('z.tar', Buffer.from('z')), 'k4')
    expect(calls).toEqual(['restore k1', 'find k2', 'exists k3', 'save k4'])
    expect(service.requests).toEqual([])
    expect(s.removal).toBeDefined()
  })
})

describe('retry policy', () => {
  test('Retry-After in seconds or as a date, capped; backoff doubles', () => {
    expect(parseRetryAfter('7')).toBe(7000)
    expect(parseRetryAfter('Wed, 01 Dec 2026 10:00:30 GMT', Date.parse('Wed, 01 Dec 2026 10:00:00 GMT'))).toBe(30000)
    expect(parseRetryAfter('soon')).toBeUndefined()
    const policy: RetryPolicy = { attempts: 5, baseMs: 100, maxWaitMs: 1000 }
    expect([1, 2, 3, 4, 5].map(a => backoffMs(policy, a, new Error('x')))).toEqual([100, 200, 400, 800, 1000])
    expect(backoffMs(policy, 1, new HttpStatusError(429, 'rate', 5000))).toBe(1000)
  })
})

/** A stand-in for the cache library that records each call and finds nothing. */
function recordingLibrary(calls: string[]): CacheStore {
  return {
    available: () => true,
    readable: () => true,
    writable: () => true,
    restore: async (_p, key) => (calls.push(`restore ${key}`), undefined),
    find: async (_p, key) => (calls.push(`find ${key}`), undefined),
    exists: async (_p, key) => (calls.push(`exists ${key}`), false),
    save: async (_p, key) => (calls.push(`save ${key}`), true)
  }
}
