// The local cache service's block blobs (test-support/cache-service/blob.ts,
// stored-blob.ts), spoken to with plain fetch as Azure documents them: a Put
// Block List commits by linking the staged blocks, not by copying them, and
// Get Blob serves the parts in list order, whole, by ranges across part
// boundaries, and cut short by a fault; deleting the entry removes the parts.
import { randomBytes } from 'node:crypto'
import { lstatSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import * as http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals'

import { readBlobBytes, startCacheService, statBlob, TWIRP_SERVICE, writeBlobBytes, type CacheService } from '../test-support/cache-service/server.js'

let service: CacheService
let dir: string

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bmc-blocks-svc-'))
  service = await startCacheService({ dataDir: join(dir, 'service') })
})
afterAll(async () => {
  await service.close()
  rmSync(dir, { recursive: true, force: true })
})
afterEach(() => service.faults.clear())

async function twirp(method: string, body: object): Promise<Record<string, unknown>> {
  const res = await fetch(`${service.url}twirp/${TWIRP_SERVICE}/${method}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${service.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body)
  })
  const json = (await res.json()) as Record<string, unknown>
  if (res.status !== 200) throw new Error(`${method}: ${res.status} ${JSON.stringify(json)}`)
  return json
}

let n = 0
const VERSION = 'blocks-version'
const blockId = (name: string): string => Buffer.from(name.padEnd(16, '-')).toString('base64')
const blobIdOf = (url: string): string => new URL(url).pathname.split('/').pop() ?? ''

/** Every regular file under `root` with its size and inode. */
function filesUnder(root: string): Array<{ file: string; size: number; ino: number }> {
  return readdirSync(root, { recursive: true, encoding: 'utf8' })
    .map(f => ({ file: join(root, f), stat: lstatSync(join(root, f)) }))
    .filter(f => f.stat.isFile())
    .map(f => ({ file: f.file, size: f.stat.size, ino: f.stat.ino }))
}

interface Committed {
  key: string
  blobId: string
  data: Buffer
  /** Inodes of the staged blocks, by name. */
  staged: Map<string, number>
  commit: Response
}

/** Reserves an entry, stages `blocks`, commits `list` (names of blocks) and finalizes it. */
async function commitBlocks(blocks: Record<string, Buffer>, list: string[], commitHeaders: Record<string, string> = {}): Promise<Committed> {
  const key = `blocks-${++n}`
  const url = String((await twirp('CreateCacheEntry', { key, version: VERSION }))['signed_upload_url'])
  const blobId = blobIdOf(url)
  for (const [name, body] of Object.entries(blocks)) {
    const res = await fetch(`${url}&comp=block&blockid=${encodeURIComponent(blockId(name))}`, { method: 'PUT', body })
    expect(res.status).toBe(201)
  }
  const blockDir = join(service.dataDir, 'blocks', blobId)
  const staged = new Map(readdirSync(blockDir).map(hex => [Buffer.from(hex, 'hex').toString().replace(/-+$/, ''), statSync(join(blockDir, hex)).ino]))
  const xml = `<?xml version="1.0" encoding="utf-8"?><BlockList>${list.map(b => `<Latest>${blockId(b)}</Latest>`).join('')}</BlockList>`
  const commit = await fetch(`${url}&comp=blocklist`, { method: 'PUT', body: xml, headers: commitHeaders })
  expect(commit.status).toBe(201)
  const data = Buffer.concat(list.map(b => blocks[b] ?? Buffer.alloc(0)))
  await twirp('FinalizeCacheEntryUpload', { key, version: VERSION, size_bytes: String(data.length) })
  return { key, blobId, data, staged, commit }
}

async function downloadUrl(key: string): Promise<string> {
  return String((await twirp('GetCacheEntryDownloadURL', { key, version: VERSION }))['signed_download_url'])
}

const bytes = async (res: Response): Promise<Buffer> => Buffer.from(await res.arrayBuffer())

/** A GET that reads whatever arrives until the connection closes, cut short or not. */
function rawGet(url: string): Promise<{ status: number; contentLength: number; body: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, res => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('error', () => undefined)
        res.on('close', () =>
          resolve({
            status: res.statusCode ?? 0,
            contentLength: Number(res.headers['content-length']),
            body: Buffer.concat(chunks),
            complete: res.complete
          })
        )
      })
      .on('error', reject)
  })
}

// Three blocks of odd sizes, bigger than a read stream's chunk, one listed twice.
const BLOCKS = { a: randomBytes(100_003), b: randomBytes(70_000), c: randomBytes(1) }
const LIST = ['b', 'a', 'c', 'a']

describe('Put Block List', () => {
  test('commits by linking the staged blocks: no file of the blob size is written, the parts are the staged inodes', async () => {
    const c = await commitBlocks(BLOCKS, LIST)
    const total = c.data.length
    const files = filesUnder(service.dataDir)
    expect(files.filter(f => f.size === total)).toEqual([])
    const blob = statBlob(join(service.dataDir, 'blobs', c.blobId))
    expect(blob?.size).toBe(total)
    expect(blob?.parts.map(p => statSync(p.file).ino)).toEqual(LIST.map(b => c.staged.get(b)))
    // The staging area is gone (the unlisted blocks with it); the entry has the committed size.
    expect(readdirSync(join(service.dataDir, 'blocks'))).not.toContain(c.blobId)
    expect(service.entries().find(e => e.key === c.key)?.size).toBe(total)
  })

  test('an unknown block is refused and nothing is committed', async () => {
    const key = `blocks-${++n}`
    const url = String((await twirp('CreateCacheEntry', { key, version: VERSION }))['signed_upload_url'])
    expect((await fetch(`${url}&comp=block&blockid=${encodeURIComponent(blockId('x'))}`, { method: 'PUT', body: 'xx' })).status).toBe(201)
    const xml = `<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>${blockId('x')}</Latest><Latest>${blockId('y')}</Latest></BlockList>`
    const res = await fetch(`${url}&comp=blocklist`, { method: 'PUT', body: xml })
    expect(res.status).toBe(400)
    expect(res.headers.get('x-ms-error-code')).toBe('InvalidBlockList')
    expect(statBlob(join(service.dataDir, 'blobs', blobIdOf(url)))).toBeUndefined()
  })

  test('a declared x-ms-blob-content-md5 becomes the blob Content-MD5; without one there is none', async () => {
    const md5 = 'q83vEjRWeJCrze8SNFZ4kA=='
    const declared = await commitBlocks({ a: Buffer.from('aaa') }, ['a'], { 'x-ms-blob-content-md5': md5 })
    expect((await fetch(await downloadUrl(declared.key))).headers.get('content-md5')).toBe(md5)
    const plain = await commitBlocks({ a: Buffer.from('aaa') }, ['a'])
    expect((await fetch(await downloadUrl(plain.key))).headers.get('content-md5')).toBeNull()
  })

  test('Put Blob still stores one file', async () => {
    const key = `blocks-${++n}`
    const url = String((await twirp('CreateCacheEntry', { key, version: VERSION }))['signed_upload_url'])
    const data = randomBytes(5000)
    expect((await fetch(url, { method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob' }, body: data })).status).toBe(201)
    await twirp('FinalizeCacheEntryUpload', { key, version: VERSION, size_bytes: String(data.length) })
    const file = join(service.dataDir, 'blobs', blobIdOf(url))
    expect(lstatSync(file).isFile()).toBe(true)
    expect(await bytes(await fetch(await downloadUrl(key)))).toEqual(data)
  })
})

describe('Get Blob of a block list', () => {
  let c: Committed
  let url: string
  beforeAll(async () => {
    c = await commitBlocks(BLOCKS, LIST)
    url = await downloadUrl(c.key)
  })

  test('whole: byte-identical, with Content-Length, and the ETag of the commit on GET and HEAD', async () => {
    const full = await fetch(url)
    expect(full.status).toBe(200)
    expect(full.headers.get('content-length')).toBe(String(c.data.length))
    expect(full.headers.get('etag')).toBe(c.commit.headers.get('etag'))
    expect((await bytes(full)).equals(c.data)).toBe(true)
    const head = await fetch(url, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe(String(c.data.length))
    expect(head.headers.get('etag')).toBe(c.commit.headers.get('etag'))
    expect(await head.text()).toBe('')
  })

  const b = BLOCKS.b.length
  const a = BLOCKS.a.length
  test.each([
    ['inside one part', 10, 20],
    ['the last byte of a part and the first of the next', b - 1, b],
    ['across three parts', b - 5, b + a + 1],
    ['the one-byte part alone', b + a, b + a],
    ['everything', 0, b + a + 1 + a - 1],
    ['the tail', b + a + 1, b + a + 1 + a - 1]
  ])('range %s (%d-%d), by Range and by x-ms-range', async (_name, start, end) => {
    for (const header of ['Range', 'x-ms-range']) {
      const res = await fetch(url, { headers: { [header]: `bytes=${start}-${end}` } })
      expect(res.status).toBe(206)
      expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/${c.data.length}`)
      expect(res.headers.get('content-length')).toBe(String(end - start + 1))
      expect((await bytes(res)).equals(c.data.subarray(start, end + 1))).toBe(true)
    }
  })

  test('an open range and an unsatisfiable one', async () => {
    const open = await fetch(url, { headers: { 'x-ms-range': `bytes=${b - 3}-` } })
    expect((await bytes(open)).equals(c.data.subarray(b - 3))).toBe(true)
    const past = await fetch(url, { headers: { Range: `bytes=${c.data.length}-` } })
    expect(past.status).toBe(416)
    expect(past.headers.get('content-range')).toBe(`bytes */${c.data.length}`)
  })

  test.each([0, 1, b, b + 17])('a reset after %d bytes sends exactly those bytes of the blob, then ends the connection', async after => {
    service.faults.add({ match: { op: 'GetBlob', key: c.key }, action: { resetAfterBytes: after }, times: 1 })
    const got = await rawGet(url)
    expect(got.status).toBe(200)
    expect(got.contentLength).toBe(c.data.length) // the length promised, not delivered
    expect(got.complete).toBe(false)
    expect(got.body.equals(c.data.subarray(0, after))).toBe(true)
  })
})

describe('an entry of parts', () => {
  test('readBlobBytes reads it whole; writeBlobBytes replaces it (what the corrupting helpers use)', async () => {
    const c = await commitBlocks(BLOCKS, LIST)
    const file = join(service.dataDir, 'blobs', c.blobId)
    expect(readBlobBytes(file).equals(c.data)).toBe(true)
    const damaged = Buffer.from(c.data)
    const at = BLOCKS.b.length >> 1 // in the first part
    damaged[at] = (damaged[at] ?? 0) ^ 0xff
    writeBlobBytes(file, damaged)
    expect((await bytes(await fetch(await downloadUrl(c.key)))).equals(damaged)).toBe(true)
    expect(readdirSync(join(service.dataDir, 'blobs')).filter(f => f.startsWith(c.blobId))).toEqual([c.blobId])
  })

  test('deleting the entry removes its part files', async () => {
    const c = await commitBlocks(BLOCKS, LIST)
    const parts = statBlob(join(service.dataDir, 'blobs', c.blobId))?.parts.map(p => p.file) ?? []
    expect(parts).toHaveLength(LIST.length)
    const api = new URL(service.env().GITHUB_API_URL ?? '')
    const res = await fetch(`${api.href.replace(/\/$/, '')}/repos/owner/repo/actions/caches?key=${c.key}`, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${service.githubToken}` }
    })
    expect(res.status).toBe(200)
    for (const part of parts) expect(() => lstatSync(part)).toThrow()
    expect(readdirSync(join(service.dataDir, 'blobs'))).not.toContain(c.blobId)
  })
})
