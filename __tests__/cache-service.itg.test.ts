// The test cache service (test-support/cache-service) driven by the REAL,
// unmodified @actions/cache client (and, for the blob protocol, the real Azure
// SDK). Nothing in @actions/cache is mocked; only process.stdout.write is
// captured to read what @actions/core logs (info lines, ::warning:: etc.).
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, jest, test } from '@jest/globals'
import * as cache from '@actions/cache'
import { BlockBlobClient, RestError } from '@azure/storage-blob'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { applyEnv, type CacheClientEnv } from '../test-support/cache-service/env.js'
import { controlClient, startCacheService, TWIRP_SERVICE, type CacheService } from '../test-support/cache-service/server.js'

const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), 'cache-service-itg-'))
const WS = path.join(ROOT, 'ws')
fs.mkdirSync(WS, { recursive: true })

// ---------------------------------------------------------------------------
// helpers

/** Client env that is not about the service: archive temp dir, tar root, no cache-mode policy. */
const clientBaseEnv = {
  RUNNER_TEMP: path.join(ROOT, 'runner-temp'),
  GITHUB_WORKSPACE: WS,
  ACTIONS_CACHE_MODE: undefined
}

function writeTree(dir: string, files: Record<string, string | Buffer>): void {
  for (const [rel, content] of Object.entries(files)) {
    const file = path.join(dir, rel)
    if (rel.endsWith('/')) {
      fs.mkdirSync(file, { recursive: true })
      continue
    }
    fs.mkdirSync(path.dirname(file), { recursive: true })
    fs.writeFileSync(file, content)
  }
}

/** rel path -> sha256 (files) or 'dir'. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string): void => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, ent.name)
      const rel = path.relative(dir, full)
      if (ent.isDirectory()) {
        out[`${rel}/`] = 'dir'
        walk(full)
      } else {
        out[rel] = createHash('sha256').update(fs.readFileSync(full)).digest('hex')
      }
    }
  }
  walk(dir)
  return out
}

// What @actions/core writes (info lines, ::warning::, ::debug::...) is captured
// per test; CACHE_SERVICE_TEST_VERBOSE=1 also lets it through.
let output: string[] = []
beforeAll(() => {
  const write = process.stdout.write.bind(process.stdout)
  jest.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array, ...rest: never[]) => {
    output.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'))
    return process.env['CACHE_SERVICE_TEST_VERBOSE'] ? write(chunk, ...rest) : true
  }) as typeof process.stdout.write)
})
beforeEach(() => {
  output = []
})
afterAll(() => {
  jest.restoreAllMocks()
})
const lines = (): string[] => output.join('').split('\n')
const warnings = (): string[] => lines().filter(l => l.startsWith('::warning::'))
const errors = (): string[] => lines().filter(l => l.startsWith('::error::'))

/** `op status` of the requests logged since `mark`. */
function opsSince(svc: CacheService, mark: number): string[] {
  return svc.requests.slice(mark).map(r => `${r.op} ${r.status ?? 'pending'}`)
}

async function twirp(svc: CacheService, method: string, body: object, token = svc.token): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${svc.url}twirp/${TWIRP_SERVICE}/${method}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body)
  })
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

const str = (v: unknown): string => {
  if (typeof v !== 'string') throw new Error(`expected a string, got ${JSON.stringify(v)}`)
  return v
}

afterAll(() => {
  fs.rmSync(ROOT, { recursive: true, force: true })
})

// ---------------------------------------------------------------------------

describe('service v2 with the real @actions/cache', () => {
  let svc: CacheService
  let restoreEnv: () => void

  beforeAll(async () => {
    svc = await startCacheService({ dataDir: path.join(ROOT, 'data-v2') })
    restoreEnv = applyEnv({ ...svc.env(), ...clientBaseEnv })
  })
  afterAll(async () => {
    restoreEnv()
    await svc.close()
  })

  test('(a) saveCache a directory tree, delete it, restoreCache puts it back', async () => {
    const dir = path.join(WS, 'a')
    writeTree(dir, {
      'top.txt': 'top level\n',
      'nested/deep/blob.bin': randomBytes(100_000),
      'nested/empty.txt': '',
      'nested/empty-dir/': ''
    })
    const before = snapshot(dir)

    let mark = svc.requests.length
    const id = await cache.saveCache([dir], 'a-key')
    expect(id).toBeGreaterThan(0)
    expect(opsSince(svc, mark)).toEqual(['CreateCacheEntry 200', 'PutBlob 201', 'FinalizeCacheEntryUpload 200'])
    const entry = svc.entries().find(e => e.key === 'a-key')
    expect(entry).toMatchObject({ id, state: 'committed', api: 'v2' })
    expect(entry?.size).toBeGreaterThan(100_000)

    fs.rmSync(dir, { recursive: true })
    mark = svc.requests.length
    expect(await cache.restoreCache([dir], 'a-key')).toBe('a-key')
    expect(snapshot(dir)).toEqual(before)
    expect(opsSince(svc, mark)).toEqual(['GetCacheEntryDownloadURL 200', 'GetBlob 200'])
    expect(warnings()).toEqual([])
  })

  test('(b) restore keys: newest prefix match wins, exact key beats prefix, order beats recency, version scopes', async () => {
    const dir = path.join(WS, 'b')
    const saveWith = async (key: string, content: string): Promise<void> => {
      fs.rmSync(dir, { recursive: true, force: true })
      writeTree(dir, { 'which.txt': content })
      expect(await cache.saveCache([dir], key)).toBeGreaterThan(0)
    }
    const restoreWhich = async (primary: string, restoreKeys: string[]): Promise<[string | undefined, string | undefined]> => {
      fs.rmSync(dir, { recursive: true, force: true })
      const hit = await cache.restoreCache([dir], primary, restoreKeys)
      return [hit, hit === undefined ? undefined : fs.readFileSync(path.join(dir, 'which.txt'), 'utf8')]
    }
    await saveWith('b-mac-1', 'mac')
    await saveWith('b-linux-aaa', 'older')
    await saveWith('b-linux-bbb', 'newer')

    expect(await restoreWhich('b-linux-zzz', ['b-linux-'])).toEqual(['b-linux-bbb', 'newer'])
    expect(await restoreWhich('b-linux-aaa', ['b-linux-'])).toEqual(['b-linux-aaa', 'older'])
    expect(await restoreWhich('b-nothing', ['b-mac-', 'b-linux-'])).toEqual(['b-mac-1', 'mac'])
    // GitHub also tries the primary key itself as a prefix before the restore keys.
    expect(await restoreWhich('b-linux-', ['b-mac-'])).toEqual(['b-linux-bbb', 'newer'])
    // A different path list is a different version: no match.
    expect(await cache.restoreCache([dir, path.join(WS, 'b-other')], 'b-linux-aaa', ['b-'])).toBeUndefined()
    expect(warnings()).toEqual([])
  })

  test('(c) saving the same key twice: the second saveCache returns -1 (no throw), the first entry is intact', async () => {
    const dir = path.join(WS, 'c')
    writeTree(dir, { 'v.txt': 'first' })
    const first = await cache.saveCache([dir], 'c-key')
    expect(first).toBeGreaterThan(0)
    const entriesBefore = svc.entries().filter(e => e.key === 'c-key')

    writeTree(dir, { 'v.txt': 'second' })
    output = []
    const mark = svc.requests.length
    const second = await cache.saveCache([dir], 'c-key')
    expect(second).toBe(-1)
    expect(opsSince(svc, mark)).toEqual(['CreateCacheEntry 409'])
    // ReserveCacheError is caught inside saveCache and logged with core.info.
    expect(lines()).toContain('Failed to save: Unable to reserve cache with key c-key, another job may be creating this cache.')
    expect(warnings()).toEqual([])
    expect(errors()).toEqual([])

    expect(svc.entries().filter(e => e.key === 'c-key')).toEqual(entriesBefore)
    fs.rmSync(dir, { recursive: true })
    expect(await cache.restoreCache([dir], 'c-key')).toBe('c-key')
    expect(fs.readFileSync(path.join(dir, 'v.txt'), 'utf8')).toBe('first')
  })

  test('(d) a miss returns undefined', async () => {
    const dir = path.join(WS, 'd')
    const mark = svc.requests.length
    expect(await cache.restoreCache([dir], 'd-absent', ['d-absent-', 'a-'])).toBeUndefined()
    expect(opsSince(svc, mark)).toEqual(['GetCacheEntryDownloadURL 200'])
    expect(fs.existsSync(dir)).toBe(false)
    expect(warnings()).toEqual([])
  })

  describe('(e) fault injection', () => {
    const dir = path.join(WS, 'e')
    beforeAll(async () => {
      writeTree(dir, { 'f.txt': 'fault tests\n', 'blob.bin': randomBytes(50_000) })
      expect(await cache.saveCache([dir], 'e-key')).toBeGreaterThan(0)
    })
    afterEach(() => svc.faults.clear())

    test('one 500 on GetCacheEntryDownloadURL: the Twirp client retries (3 s later) and restores', async () => {
      const id = svc.faults.add({ match: { op: 'GetCacheEntryDownloadURL', key: 'e-key' }, action: { status: 500 }, times: 1 })
      const mark = svc.requests.length
      fs.rmSync(dir, { recursive: true })
      expect(await cache.restoreCache([dir], 'e-key')).toBe('e-key')
      expect(opsSince(svc, mark)).toEqual(['GetCacheEntryDownloadURL 500', 'GetCacheEntryDownloadURL 200', 'GetBlob 200'])
      expect(svc.requests[mark]?.fault).toBe(id)
      expect(lines()).toContain(
        `Attempt 1 of 5 failed with error: Failed request: (500) Internal Server Error: injected fault ${id}. Retrying request in 3000 ms...`
      )
      expect(warnings()).toEqual([])
    })

    test('persistent 500 on GetCacheEntryDownloadURL: 5 attempts, then restoreCache warns and returns undefined (no throw)', async () => {
      const id = svc.faults.add({ match: { op: 'GetCacheEntryDownloadURL' }, action: { status: 500 } })
      const mark = svc.requests.length
      fs.rmSync(dir, { recursive: true, force: true })
      expect(await cache.restoreCache([dir], 'e-key')).toBeUndefined()
      expect(opsSince(svc, mark)).toEqual(Array(5).fill('GetCacheEntryDownloadURL 500'))
      expect(warnings()).toEqual([
        `::warning::Failed to restore: Failed to GetCacheEntryDownloadURL: Failed to make request after 5 attempts: Failed request: (500) Internal Server Error: injected fault ${id}`
      ])
      expect(errors()).toEqual([])
      expect(fs.existsSync(dir)).toBe(false)
    }, 120_000)

    test('connection reset in the middle of the blob download: restoreCache warns and returns undefined', async () => {
      svc.faults.add({ match: { op: 'blob-download', key: 'e-key' }, action: { resetAfterBytes: 1000 } })
      const mark = svc.requests.length
      fs.rmSync(dir, { recursive: true, force: true })
      expect(await cache.restoreCache([dir], 'e-key')).toBeUndefined()
      expect(opsSince(svc, mark)).toEqual(['GetCacheEntryDownloadURL 200', 'GetBlob 200'])
      expect(svc.requests[mark + 1]?.dropped).toBe(true)
      expect(warnings()).toHaveLength(1)
      // The http-client download sees the premature end: `Failed to restore: aborted`.
      expect(warnings()[0]).toMatch(/^::warning::Failed to restore: /)
      expect(fs.existsSync(path.join(dir, 'f.txt'))).toBe(false)
    })

    test('one 503 on the blob upload: the Azure SDK retries at once and the save succeeds', async () => {
      const sdir = path.join(WS, 'e-upload')
      writeTree(sdir, { 'x.txt': 'upload retry' })
      svc.faults.add({ match: { op: 'blob-upload', key: 'e-upload-key' }, action: { status: 503 }, times: 1 })
      const mark = svc.requests.length
      expect(await cache.saveCache([sdir], 'e-upload-key')).toBeGreaterThan(0)
      expect(opsSince(svc, mark)).toEqual(['CreateCacheEntry 200', 'PutBlob 503', 'PutBlob 201', 'FinalizeCacheEntryUpload 200'])
      expect(warnings()).toEqual([])
    })

    test('refused CreateCacheEntry (connection dropped): saveCache returns -1 like a reservation conflict', async () => {
      const sdir = path.join(WS, 'e-refuse')
      writeTree(sdir, { 'x.txt': 'refused' })
      svc.faults.add({ match: { op: 'CreateCacheEntry', key: 'e-refuse-key' }, action: { refuse: true } })
      const mark = svc.requests.length
      expect(await cache.saveCache([sdir], 'e-refuse-key')).toBe(-1)
      expect(opsSince(svc, mark)).toEqual(['CreateCacheEntry 0'])
      expect(lines()).toContain('Failed to save: Unable to reserve cache with key e-refuse-key, another job may be creating this cache.')
      expect(svc.entries({ includePending: true }).some(e => e.key === 'e-refuse-key')).toBe(false)
    })

    test('delay on FinalizeCacheEntryUpload only slows the save down', async () => {
      const sdir = path.join(WS, 'e-delay')
      writeTree(sdir, { 'x.txt': 'delayed' })
      svc.faults.add({ match: { op: 'FinalizeCacheEntryUpload' }, action: { delayMs: 400 } })
      const t0 = Date.now()
      expect(await cache.saveCache([sdir], 'e-delay-key')).toBeGreaterThan(0)
      expect(Date.now() - t0).toBeGreaterThanOrEqual(400)
    })
  })

  test('unfinished uploads are invisible and block the key; finalize checks the size', async () => {
    const version = 'u-version'
    const created = await twirp(svc, 'CreateCacheEntry', { key: 'u-key', version })
    expect(created).toMatchObject({ status: 200, json: { ok: true } })
    const uploadUrl = str(created.json['signed_upload_url'])

    // Finalize before any upload is refused.
    expect(await twirp(svc, 'FinalizeCacheEntryUpload', { key: 'u-key', version, size_bytes: '5' })).toMatchObject({
      status: 412,
      json: { code: 'failed_precondition' }
    })
    const put = await fetch(uploadUrl, { method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob' }, body: 'hello' })
    expect(put.status).toBe(201)

    // Uploaded but not finalized: not visible, and the key is taken.
    expect(await twirp(svc, 'GetCacheEntryDownloadURL', { key: 'u-key', version })).toEqual({
      status: 200,
      json: { ok: false, signed_download_url: '', matched_key: '' }
    })
    expect(svc.entries().some(e => e.key === 'u-key')).toBe(false)
    expect(svc.entries({ includePending: true }).find(e => e.key === 'u-key')).toMatchObject({ state: 'pending', size: 5 })
    expect(await twirp(svc, 'CreateCacheEntry', { key: 'u-key', version })).toMatchObject({ status: 409, json: { code: 'already_exists' } })

    expect(await twirp(svc, 'FinalizeCacheEntryUpload', { key: 'u-key', version, size_bytes: '6' })).toMatchObject({
      status: 400,
      json: { code: 'invalid_argument' }
    })
    const fin = await twirp(svc, 'FinalizeCacheEntryUpload', { key: 'u-key', version, size_bytes: '5' })
    expect(fin).toMatchObject({ status: 200, json: { ok: true } })
    expect(Number(fin.json['entry_id'])).toBeGreaterThan(0)

    const got = await twirp(svc, 'GetCacheEntryDownloadURL', { key: 'u-key', restore_keys: [], version })
    expect(got.json).toMatchObject({ ok: true, matched_key: 'u-key' })
    expect(await (await fetch(str(got.json['signed_download_url']))).text()).toBe('hello')

    // Immutable once finalized.
    const again = await fetch(uploadUrl, { method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob' }, body: 'other' })
    expect(again.status).toBe(409)
    expect(again.headers.get('x-ms-error-code')).toBe('BlobImmutableDueToPolicy')
    expect(await twirp(svc, 'CreateCacheEntry', { key: 'u-key', version })).toMatchObject({ status: 409, json: { code: 'already_exists' } })
  })

  test('an abandoned reservation stops blocking the key after pendingTtlMs', async () => {
    const short = await startCacheService({ dataDir: path.join(ROOT, 'data-ttl'), pendingTtlMs: 50 })
    try {
      const first = await twirp(short, 'CreateCacheEntry', { key: 'ttl-key', version: 'v' })
      expect(first.status).toBe(200)
      expect((await twirp(short, 'CreateCacheEntry', { key: 'ttl-key', version: 'v' })).status).toBe(409)
      await new Promise(resolve => setTimeout(resolve, 80))
      const second = await twirp(short, 'CreateCacheEntry', { key: 'ttl-key', version: 'v' })
      expect(second).toMatchObject({ status: 200, json: { ok: true } })
      // The abandoned reservation's upload URL now points at nothing.
      const stale = await fetch(str(first.json['signed_upload_url']), { method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob' }, body: 'x' })
      expect(stale.status).toBe(404)
      expect(short.entries({ includePending: true })).toHaveLength(1)
    } finally {
      await short.close()
    }
  })

  test('Twirp auth and routing errors', async () => {
    expect(await twirp(svc, 'GetCacheEntryDownloadURL', { key: 'k', version: 'v' }, 'wrong')).toMatchObject({
      status: 401,
      json: { code: 'unauthenticated' }
    })
    expect(await twirp(svc, 'DeleteCacheEntry', { key: 'k', version: 'v' })).toMatchObject({ status: 404, json: { code: 'bad_route' } })
    expect(await twirp(svc, 'CreateCacheEntry', { key: 'k' })).toMatchObject({ status: 400, json: { code: 'invalid_argument' } })
  })

  test('(f) entries survive a restart of the service on the same dataDir', async () => {
    const dataDir = path.join(ROOT, 'data-restart')
    const dir = path.join(WS, 'f')
    writeTree(dir, { 'persist.txt': 'persisted\n', 'sub/data.bin': randomBytes(20_000) })
    const before = snapshot(dir)

    const first = await startCacheService({ dataDir, token: 'restart-token' })
    let restore = applyEnv(first.env())
    let entries
    try {
      expect(await cache.saveCache([dir], 'f-key')).toBeGreaterThan(0)
      entries = first.entries()
      expect(entries).toHaveLength(1)
    } finally {
      restore()
      await first.close()
    }
    expect(JSON.parse(fs.readFileSync(path.join(dataDir, 'index.json'), 'utf8'))).toMatchObject({ formatVersion: 1 })

    const second = await startCacheService({ dataDir, token: 'restart-token' })
    restore = applyEnv(second.env())
    try {
      expect(second.url).not.toBe(first.url) // new random port, new env
      expect(second.entries()).toEqual(entries)
      fs.rmSync(dir, { recursive: true })
      expect(await cache.restoreCache([dir], 'f-key')).toBe('f-key')
      expect(snapshot(dir)).toEqual(before)
      // Still immutable after the restart.
      expect(await cache.saveCache([dir], 'f-key')).toBe(-1)
    } finally {
      restore()
      await second.close()
    }
  })

  test('an archive over 128 MiB goes through Put Block + Put Block List and restores intact', async () => {
    if (process.env['CACHE_SERVICE_SKIP_LARGE']) return
    const dir = path.join(WS, 'large')
    fs.mkdirSync(dir, { recursive: true })
    const file = path.join(dir, 'random.bin')
    const hash = createHash('sha256')
    const fd = fs.openSync(file, 'w')
    for (let i = 0; i < 135; i++) {
      const chunk = randomBytes(1024 * 1024) // incompressible, so the archive stays > 128 MiB
      hash.update(chunk)
      fs.writeSync(fd, chunk)
    }
    fs.closeSync(fd)
    const digest = hash.digest('hex')
    try {
      let mark = svc.requests.length
      expect(await cache.saveCache([dir], 'large-key')).toBeGreaterThan(0)
      expect(opsSince(svc, mark)).toEqual([
        'CreateCacheEntry 200',
        'PutBlock 201', // 64 MiB
        'PutBlock 201', // 64 MiB
        'PutBlock 201', // the rest
        'PutBlockList 201',
        'FinalizeCacheEntryUpload 200'
      ])
      expect(svc.entries().find(e => e.key === 'large-key')?.size).toBeGreaterThan(128 * 1024 * 1024)
      expect(fs.readdirSync(path.join(svc.dataDir, 'blocks'))).toEqual([]) // staged blocks are gone

      fs.rmSync(dir, { recursive: true })
      mark = svc.requests.length
      expect(await cache.restoreCache([dir], 'large-key')).toBe('large-key')
      expect(opsSince(svc, mark)).toEqual(['GetCacheEntryDownloadURL 200', 'GetBlob 200'])
      expect(createHash('sha256').update(fs.readFileSync(file)).digest('hex')).toBe(digest)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})

// ---------------------------------------------------------------------------

describe('Azure Block Blob protocol of the signed URLs', () => {
  let svc: CacheService
  let n = 0
  beforeAll(async () => {
    svc = await startCacheService({ dataDir: path.join(ROOT, 'data-blob') })
  })
  afterAll(async () => {
    await svc.close()
  })

  async function reserve(): Promise<{ key: string; version: string; url: string }> {
    const key = `blob-${++n}`
    const version = 'blob-version'
    const res = await twirp(svc, 'CreateCacheEntry', { key, version })
    return { key, version, url: str(res.json['signed_upload_url']) }
  }
  async function finalize(r: { key: string; version: string }, size: number): Promise<string> {
    const fin = await twirp(svc, 'FinalizeCacheEntryUpload', { key: r.key, version: r.version, size_bytes: String(size) })
    expect(fin.status).toBe(200)
    const got = await twirp(svc, 'GetCacheEntryDownloadURL', { key: r.key, version: r.version })
    return str(got.json['signed_download_url'])
  }
  const blockId = (s: string): string => Buffer.from(s.padEnd(16, '-')).toString('base64')

  test('the real BlockBlobClient.uploadFile in block mode (Put Block x3 + Put Block List)', async () => {
    const r = await reserve()
    const data = randomBytes(2500)
    const file = path.join(ROOT, 'sdk-upload.bin')
    fs.writeFileSync(file, data)
    const mark = svc.requests.length
    // Same call as @actions/cache's uploadCacheArchiveSDK, with thresholds scaled down.
    const client = new BlockBlobClient(r.url)
    const res = await client.uploadFile(file, { blockSize: 1000, concurrency: 8, maxSingleShotSize: 2000 })
    expect(res._response.status).toBe(201)
    expect(res.etag).toMatch(/^"0x/)
    expect(res.lastModified).toBeInstanceOf(Date)
    expect(
      svc.requests
        .slice(mark)
        .map(q => `${q.op} ${q.status}`)
        .sort()
    ).toEqual(['PutBlock 201', 'PutBlock 201', 'PutBlock 201', 'PutBlockList 201'].sort())
    const url = await finalize(r, 2500)
    expect(Buffer.from(await (await fetch(url)).arrayBuffer()).equals(data)).toBe(true)

    // Errors come back as Azure XML the SDK understands.
    await expect(client.upload('x', 1)).rejects.toMatchObject({ statusCode: 409, code: 'BlobImmutableDueToPolicy' })
    const other = new BlockBlobClient(r.url.replace(/sig=[0-9a-f]+/, `sig=${'0'.repeat(64)}`))
    const err = await other.upload('x', 1).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RestError)
    expect(err).toMatchObject({ statusCode: 403, code: 'AuthenticationFailed' })
  })

  test('Put Block / Put Block List by hand: list order, not staging order, defines the blob', async () => {
    const r = await reserve()
    const put = (query: string, body: string, headers: Record<string, string> = {}): Promise<Response> =>
      fetch(`${r.url}&${query}`, { method: 'PUT', headers: { 'x-ms-version': '2026-02-06', ...headers }, body })

    const b = await put(`comp=block&blockid=${encodeURIComponent(blockId('B'))}`, 'BBBB')
    expect(b.status).toBe(201)
    expect(b.headers.get('content-md5')).toBe(createHash('md5').update('BBBB').digest('base64'))
    expect(b.headers.get('x-ms-version')).toBe('2026-02-06')
    expect(b.headers.get('x-ms-request-id')).toMatch(/^[0-9a-f-]{36}$/)
    expect(b.headers.get('x-ms-request-server-encrypted')).toBe('true')
    expect((await put(`comp=block&blockid=${encodeURIComponent(blockId('A'))}`, 'AA')).status).toBe(201)
    expect((await put(`comp=block&blockid=${encodeURIComponent(blockId('unused'))}`, 'ZZZ')).status).toBe(201)
    expect((await put('comp=block&blockid=not*base64', 'x')).status).toBe(400)

    const bad = await put('comp=blocklist', `<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>${blockId('nope')}</Latest></BlockList>`)
    expect(bad.status).toBe(400)
    expect(bad.headers.get('x-ms-error-code')).toBe('InvalidBlockList')
    expect(await bad.text()).toContain('<Code>InvalidBlockList</Code>')

    const list = `<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>${blockId('A')}</Latest><Uncommitted>${blockId('B')}</Uncommitted><Latest>${blockId('A')}</Latest></BlockList>`
    const committed = await put('comp=blocklist', list)
    expect(committed.status).toBe(201)
    expect(committed.headers.get('etag')).toMatch(/^"0x/)
    expect(committed.headers.get('last-modified')).toBeTruthy()
    expect(fs.existsSync(path.join(svc.dataDir, 'blocks', new URL(r.url).pathname.split('/').pop() ?? ''))).toBe(false)

    const url = await finalize(r, 8)
    const full = await fetch(url)
    expect(full.status).toBe(200)
    expect(await full.text()).toBe('AABBBBAA')
    expect(full.headers.get('content-md5')).toBeNull() // a block list has no MD5 of its own unless the client declares one
    expect(full.headers.get('x-ms-blob-type')).toBe('BlockBlob')

    const ranged = await fetch(url, { headers: { Range: 'bytes=2-5' } })
    expect(ranged.status).toBe(206)
    expect(ranged.headers.get('content-range')).toBe('bytes 2-5/8')
    expect(await ranged.text()).toBe('BBBB')
    const xmsRange = await fetch(url, { headers: { 'x-ms-range': 'bytes=6-' } })
    expect(await xmsRange.text()).toBe('AA')
    const unsatisfiable = await fetch(url, { headers: { Range: 'bytes=8-' } })
    expect(unsatisfiable.status).toBe(416)
    expect(unsatisfiable.headers.get('content-range')).toBe('bytes */8')
    const head = await fetch(url, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe('8')
  })

  test('signatures: tampered, wrong blob, read URL used for writing, upload URL used for reading', async () => {
    const r = await reserve()
    expect((await fetch(r.url, { method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob' }, body: 'abc' })).status).toBe(201)
    // An upload URL cannot read (and the entry is not finalized anyway).
    const readWithUpload = await fetch(r.url)
    expect(readWithUpload.status).toBe(403)
    expect(readWithUpload.headers.get('x-ms-error-code')).toBe('AuthorizationPermissionMismatch')
    const url = await finalize(r, 3)

    const tampered = await fetch(url.replace(/sig=[0-9a-f]/, m => `sig=${m.endsWith('0') ? '1' : '0'}`))
    expect(tampered.status).toBe(403)
    expect(tampered.headers.get('x-ms-error-code')).toBe('AuthenticationFailed')
    const r2 = await reserve()
    const otherBlob = new URL(url)
    otherBlob.pathname = new URL(r2.url).pathname
    expect((await fetch(otherBlob)).status).toBe(403)
    const writeWithRead = await fetch(url, { method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob' }, body: 'x' })
    expect(writeWithRead.status).toBe(403)
    expect(writeWithRead.headers.get('x-ms-error-code')).toBe('AuthorizationPermissionMismatch')
    expect((await fetch(url.replace(/&sig=[0-9a-f]+/, ''))).status).toBe(403)
    // Put Blob needs x-ms-blob-type.
    const noType = await fetch(r2.url, { method: 'PUT', body: 'x' })
    expect(noType.status).toBe(400)
    expect(noType.headers.get('x-ms-error-code')).toBe('MissingRequiredHeader')
  })
})

// ---------------------------------------------------------------------------

describe('service v1 (GHES REST) with the real @actions/cache', () => {
  let svc: CacheService
  let restoreEnv: () => void
  beforeAll(async () => {
    svc = await startCacheService({ dataDir: path.join(ROOT, 'data-v1') })
    // 1 MiB PATCH chunks (the v1 client honours CACHE_UPLOAD_CHUNK_SIZE, in MiB).
    restoreEnv = applyEnv({ ...svc.env('v1'), ...clientBaseEnv, CACHE_UPLOAD_CHUNK_SIZE: '1' })
  })
  afterAll(async () => {
    restoreEnv()
    await svc.close()
  })

  test('save in chunks, restore, restore keys, duplicate, miss', async () => {
    const dir = path.join(WS, 'v1')
    writeTree(dir, { 'big.bin': randomBytes(2_500_000), 'small.txt': 'v1\n' })
    const before = snapshot(dir)

    let mark = svc.requests.length
    const id = await cache.saveCache([dir], 'v1-key-1')
    expect(id).toBeGreaterThan(0)
    expect(opsSince(svc, mark)).toEqual([
      'v1.ReserveCache 201',
      'v1.UploadChunk 204',
      'v1.UploadChunk 204',
      'v1.UploadChunk 204',
      'v1.CommitCache 204'
    ])
    expect(svc.requests.slice(mark).map(r => `${r.method} ${r.path}`)).toEqual([
      'POST /_apis/artifactcache/caches',
      `PATCH /_apis/artifactcache/caches/${id}`,
      `PATCH /_apis/artifactcache/caches/${id}`,
      `PATCH /_apis/artifactcache/caches/${id}`,
      `POST /_apis/artifactcache/caches/${id}`
    ])
    expect(svc.entries()).toEqual([expect.objectContaining({ id, key: 'v1-key-1', api: 'v1', state: 'committed' })])

    fs.rmSync(dir, { recursive: true })
    mark = svc.requests.length
    expect(await cache.restoreCache([dir], 'v1-key-2', ['v1-key-'])).toBe('v1-key-1')
    expect(snapshot(dir)).toEqual(before)
    expect(opsSince(svc, mark)).toEqual(['v1.GetCacheEntry 200', 'GetBlob 200'])
    expect(svc.requests[mark]?.query).toMatch(/^\?keys=v1-key-2%2Cv1-key-&version=[0-9a-f]{64}$/)

    output = []
    mark = svc.requests.length
    expect(await cache.saveCache([dir], 'v1-key-1')).toBe(-1)
    expect(opsSince(svc, mark)).toEqual(['v1.ReserveCache 409'])
    expect(
      lines().some(l =>
        l.startsWith(
          'Failed to save: Unable to reserve cache with key v1-key-1, another job may be creating this cache. More details: Cache already exists.'
        )
      )
    ).toBe(true)

    mark = svc.requests.length
    expect(await cache.restoreCache([dir], 'v1-absent')).toBeUndefined()
    expect(opsSince(svc, mark)).toEqual(['v1.GetCacheEntry 204'])
    expect(warnings()).toEqual([])
  })
})

// ---------------------------------------------------------------------------

describe('cli.ts as a separate process, faults through /_control', () => {
  let child: ChildProcess | undefined
  let stderr = ''
  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL')
  })

  test('prints the env, serves the client, takes faults over HTTP, exits 0 on SIGTERM', async () => {
    const repo = fileURLToPath(new URL('..', import.meta.url))
    const tsx = path.join(repo, 'node_modules', '.bin', 'tsx')
    child = spawn(tsx, [path.join(repo, 'test-support/cache-service/cli.ts'), '--data-dir', path.join(ROOT, 'data-cli'), '--json', '--log'], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe']
    })
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
    let stdout = ''
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
      stdout += chunk.toString()
      if (stdout.includes('\n')) break
    }
    const env = JSON.parse(stdout.split('\n')[0] ?? '') as CacheClientEnv
    expect(env).toMatchObject({ ACTIONS_CACHE_SERVICE_V2: 'true', GITHUB_SERVER_URL: 'https://github.com' })
    expect(env.ACTIONS_RESULTS_URL).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)

    const control = controlClient(env.ACTIONS_RESULTS_URL, env.ACTIONS_RUNTIME_TOKEN)
    const unauthorized = await fetch(`${env.ACTIONS_RESULTS_URL}_control/faults`, { method: 'POST', body: '{}' })
    expect(unauthorized.status).toBe(401)
    await expect(control.addFault({ match: { op: 'Nope' as 'GetBlob' }, action: { status: 500 } })).rejects.toThrow(/400.*unknown match.op/)

    const restore = applyEnv({ ...env, ...clientBaseEnv })
    try {
      const dir = path.join(WS, 'cli')
      writeTree(dir, { 'cli.txt': 'from the cli service\n' })
      expect(await cache.saveCache([dir], 'cli-key')).toBeGreaterThan(0)

      const faultId = await control.addFault({ match: { op: 'GetCacheEntryDownloadURL' }, action: { status: 400 }, times: 1 })
      expect(await control.faults()).toEqual([expect.objectContaining({ id: faultId, remaining: 1 })])
      fs.rmSync(dir, { recursive: true })
      // 400 is not retryable: one request, then a warning and a miss.
      expect(await cache.restoreCache([dir], 'cli-key')).toBeUndefined()
      expect(warnings()).toEqual([
        `::warning::Failed to restore: Failed to GetCacheEntryDownloadURL: Received non-retryable error: Failed request: (400) Bad Request: injected fault ${faultId}`
      ])
      expect(await control.faults()).toEqual([])

      expect(await cache.restoreCache([dir], 'cli-key')).toBe('cli-key')
      expect(fs.readFileSync(path.join(dir, 'cli.txt'), 'utf8')).toBe('from the cli service\n')
      expect(await control.entries()).toEqual([expect.objectContaining({ key: 'cli-key', state: 'committed' })])
      expect((await control.requests()).map(r => `${r.op} ${r.status}`)).toEqual([
        'CreateCacheEntry 200',
        'PutBlob 201',
        'FinalizeCacheEntryUpload 200',
        'GetCacheEntryDownloadURL 400',
        'GetCacheEntryDownloadURL 200',
        'GetBlob 200'
      ])
    } finally {
      restore()
    }

    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    const [code] = (await exited) as [number | null]
    expect(code).toBe(0)
    expect(stderr).toMatch(/POST \/twirp\/github\.actions\.results\.api\.v1\.CacheService\/CreateCacheEntry -> 200 CreateCacheEntry key=cli-key/)
    expect(stderr).toContain('sig=REDACTED')
  })
})
