// The s3:// backend against a real S3-compatible server (s3rver on
// 127.0.0.1): streamed multipart uploads, metadata-recorded compression,
// restore-keys lookup by listing, list/delete, and the client configuration
// for custom endpoints.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { S3Client } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'

import { onPath } from '../src/storage/compression.js'
import { s3ClientConfig, S3Store, type S3Options } from '../src/storage/s3.js'

interface S3rverInstance {
  run(): Promise<AddressInfo>
  close(): Promise<void>
}
type S3rverClass = new (options: Record<string, unknown>) => S3rverInstance
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass
// The SDK's notice about the Node versions of its future releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

const work = mkdtempSync(join(tmpdir(), 'bmc-s3store-'))
let server: S3rverInstance
let endpoint = ''

beforeAll(async () => {
  server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: join(work, 'data'), configureBuckets: [{ name: 'cache-bucket' }] })
  endpoint = `http://127.0.0.1:${(await server.run()).port}`
})

afterAll(async () => {
  await server?.close()
  rmSync(work, { recursive: true, force: true })
})

/** A store with a client that records the S3 operations it sends. */
function store(options: Partial<S3Options> = {}): { store: S3Store; calls: string[] } {
  const opts: S3Options = { bucket: 'cache-bucket', prefix: 'ci/cache', endpoint, ...options }
  const client = new S3Client({ ...s3ClientConfig(opts, {}), credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } })
  const calls: string[] = []
  client.middlewareStack.add(
    (next, context) => async args => {
      calls.push(context.commandName ?? 'unknown')
      return next(args)
    },
    { step: 'initialize' }
  )
  return { store: new S3Store(opts, client), calls }
}

let n = 0
function archive(content: Buffer): string {
  const path = join(work, `in-${++n}.tar`)
  writeFileSync(path, content)
  return path
}
const out = (): string => join(work, `out-${++n}.tar`)

describe.each(onPath('zstd') ? (['zstd', 'gzip'] as const) : (['gzip'] as const))('%s', codec => {
  test('a multipart upload streamed from the compressor restores bit-exact', async () => {
    const { store: s, calls } = store({ codec, partSize: 5 * 1024 * 1024 })
    // Random bytes do not compress: ~12 MiB is three parts of 5 MiB.
    const content = randomBytes(12 * 1024 * 1024)
    expect(await s.save(archive(content), `mp-${codec}-1`)).toBe(true)
    expect(calls).toContain('CreateMultipartUploadCommand')
    expect(calls.filter(c => c === 'UploadPartCommand')).toHaveLength(3)
    expect(calls).toContain('CompleteMultipartUploadCommand')
    const dest = out()
    expect(await s.restore(dest, `mp-${codec}-1`, [])).toBe(`mp-${codec}-1`)
    expect(readFileSync(dest).equals(content)).toBe(true)
  })
})

test('a small archive is one PUT; a save of an existing key is a no-op', async () => {
  const { store: s, calls } = store()
  const path = archive(randomBytes(1000))
  expect(await s.save(path, 'small-1')).toBe(true)
  expect(calls).toContain('PutObjectCommand')
  expect(calls).not.toContain('CreateMultipartUploadCommand')
  expect(await s.exists(path, 'small-1')).toBe(true)
  expect(await s.exists(path, 'small-2')).toBe(false)
  expect(await s.save(path, 'small-1')).toBe(false)
})

test('restore-keys lookup by listing: exact, then newest by LastModified per prefix', async () => {
  const { store: s } = store({ prefix: 'lookup' })
  const a = randomBytes(5000)
  const b = randomBytes(5000)
  const c = randomBytes(5000)
  await s.save(archive(a), 'p-npm-amd64-aaa-d1')
  // LastModified has one-second resolution.
  await new Promise(r => setTimeout(r, 1100))
  await s.save(archive(b), 'p-npm-amd64-aaa-d2')
  await s.save(archive(c), 'p-npm-cache-amd64-aaa-d3')
  const restoreAs = async (primary: string, keys: string[]): Promise<Buffer | undefined> => {
    const dest = out()
    return (await s.restore(dest, primary, keys)) === undefined ? undefined : readFileSync(dest)
  }
  expect((await restoreAs('p-npm-amd64-aaa-d1', []))?.equals(a)).toBe(true)
  expect((await restoreAs('p-npm-amd64-aaa', ['p-npm-amd64-aaa-', 'p-npm-amd64-']))?.equals(b)).toBe(true)
  expect((await restoreAs('p-npm-amd64-bbb', ['p-npm-amd64-bbb-', 'p-npm-amd64-']))?.equals(b)).toBe(true)
  expect(await restoreAs('p-apt-amd64-aaa', ['p-apt-amd64-aaa-', 'p-apt-amd64-'])).toBeUndefined()
})

test('list and delete stay inside the prefix', async () => {
  const { store: s } = store({ prefix: 'managed' })
  const { store: other } = store({ prefix: 'managed/deeper' })
  await s.save(archive(randomBytes(3000)), 'm-1')
  await s.save(archive(randomBytes(4000)), 'm-2')
  await other.save(archive(randomBytes(100)), 'm-3')
  const listed = (await s.list('m-')).sort((x, y) => x.key.localeCompare(y.key))
  expect(listed.map(e => e.key)).toEqual(['m-1', 'm-2'])
  expect(listed.every(e => e.size > 0 && e.created.getTime() > 0)).toBe(true)
  await s.delete('m-1')
  await s.delete('m-1')
  expect((await s.list('')).map(e => e.key)).toEqual(['m-2'])
  expect((await other.list('')).map(e => e.key)).toEqual(['m-3'])
})

test('client configuration: custom endpoints get path-style, a region and required-only checksums', () => {
  expect(s3ClientConfig({ bucket: 'b', prefix: '' }, {})).toEqual({})
  expect(s3ClientConfig({ bucket: 'b', prefix: '' }, { AWS_REGION: 'eu-west-1' })).toEqual({ region: 'eu-west-1' })
  expect(s3ClientConfig({ bucket: 'b', prefix: '' }, { AWS_ENDPOINT_URL: 'http://minio:9000' })).toEqual({
    endpoint: 'http://minio:9000',
    forcePathStyle: true,
    region: 'us-east-1',
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED'
  })
  const explicit = s3ClientConfig(
    { bucket: 'b', prefix: '', endpoint: 'https://r2.example', region: 'auto' },
    { AWS_ENDPOINT_URL_S3: 'http://ignored', AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_SUPPORTED' }
  )
  expect(explicit).toEqual({ endpoint: 'https://r2.example', forcePathStyle: true, region: 'auto', responseChecksumValidation: 'WHEN_REQUIRED' })
})
