// The bundle as scripts/bundle.mjs makes it (the layout dist/ is committed
// in): thin entry points over one shared bundle, the AWS SDK in a file of its
// own that only an s3:// backend reads, the CLI bin, the licenses file, and
// the size budget. Runs the bundled CLI with the runner's Node.
import { spawn } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, expect, test } from '@jest/globals'

import { bundleAction, REPO_ROOT, STEP_NODE } from '../test-support/action-runner.js'
import { LocalDirStore } from '../src/storage/local-dir.js'

interface S3rverInstance {
  run(): Promise<AddressInfo>
  close(): Promise<void>
}
type S3rverClass = new (options: Record<string, unknown>) => S3rverInstance
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass
// The SDK's notice about the Node versions of its future releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

const ENTRIES = ['main', 'post', 'restore-only', 'save-only', 'cli']
const S3_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' }
const PREFIX = 'bmc-bundle'

let bundle: ReturnType<typeof bundleAction>
/** The same bundle without the S3 file. */
let withoutSdk = ''
let server: S3rverInstance
let endpoint = ''
const work = mkdtempSync(join(tmpdir(), 'bmc-bundle-test-'))

beforeAll(async () => {
  bundle = bundleAction()
  withoutSdk = join(work, 'no-sdk')
  cpSync(bundle.dir, withoutSdk, { recursive: true })
  rmSync(join(withoutSdk, 's3-sdk.cjs'))
  server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: join(work, 's3-data'), configureBuckets: [{ name: 'bmc-bundle' }] })
  endpoint = `http://127.0.0.1:${(await server.run()).port}`
}, 120_000)

afterAll(async () => {
  await server?.close()
  bundle?.cleanup()
  rmSync(work, { recursive: true, force: true })
})

interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `cli.cjs` of `dir` (asynchronously: the S3 server answers from this process). */
async function cli(dir: string, args: string[]): Promise<CliResult> {
  const child = spawn(STEP_NODE, [join(dir, 'cli.cjs'), ...args], {
    cwd: work,
    env: { ...process.env, GITHUB_ACTIONS: '', RUNNER_TEMP: '', ...S3_CREDENTIALS },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  return { code, stdout, stderr }
}

const listed = (r: CliResult): string[] => (JSON.parse(r.stdout) as { entries: { key: string }[] }).entries.map(e => e.key)
const version = (name: string): string =>
  (JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version

test('thin entry points over one shared bundle; the CLI bin keeps its hashbang and mode', () => {
  for (const entry of ENTRIES) {
    const text = readFileSync(join(bundle.dir, `${entry}.cjs`), 'utf8')
    expect([entry, text.length < 1024, text.includes('require("./index.cjs")')]).toEqual([entry, true, true])
  }
  expect(readFileSync(join(bundle.dir, 'cli.cjs'), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true)
  expect(statSync(join(bundle.dir, 'cli.cjs')).mode & 0o777).toBe(0o755)
})

test('the whole bundle, licenses included, stays within 5 MB', () => {
  const files = readdirSync(bundle.dir)
  expect(files.sort()).toEqual([...ENTRIES.map(e => `${e}.cjs`), 'index.cjs', 'licenses.txt', 's3-sdk.cjs'].sort())
  const total = files.reduce((sum, f) => sum + statSync(join(bundle.dir, f)).size, 0)
  expect(total).toBeLessThanOrEqual(5 * 1024 * 1024)
})

test('licenses.txt names each bundled package with its version, license and text', () => {
  const text = readFileSync(join(bundle.dir, 'licenses.txt'), 'utf8')
  // Packages of both bundles: the action's libraries and the AWS SDK.
  for (const name of ['@actions/cache', '@actions/core', '@azure/storage-blob', 'tar-stream', '@aws-sdk/client-s3', '@aws-sdk/lib-storage']) {
    expect(text).toContain(`\n${name}@${version(name)}  `)
    const section = text.split(`\n${'-'.repeat(80)}\n`).find(s => s.startsWith(`${name}@${version(name)}\n`))
    const license = readFileSync(
      join(REPO_ROOT, 'node_modules', name, readdirSync(join(REPO_ROOT, 'node_modules', name)).find(f => /^licen[cs]e/i.test(f)) ?? 'LICENSE'),
      'utf8'
    )
    expect([name, section?.includes(license.trim())]).toEqual([name, true])
  }
  // Test-only packages are not bundled.
  expect(text).not.toMatch(/\ns3rver@|\njest@|\nesbuild@/)
})

test('a dir: backend runs without the S3 bundle', async () => {
  const dir = join(work, 'store')
  mkdirSync(dir)
  const archive = join(work, 'a.tar')
  writeFileSync(archive, 'tar bytes')
  await new LocalDirStore(dir).save(archive, `${PREFIX}-npm-dir`)
  const r = await cli(withoutSdk, ['ls', '--backend', `dir:${dir}`, '--key-prefix', PREFIX, '--json'])
  expect([r.code, r.stderr]).toEqual([0, ''])
  expect(listed(r)).toEqual([`${PREFIX}-npm-dir`])
})

test('an s3:// backend works from the bundle, and needs its S3 file', async () => {
  const client = new S3Client({
    endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }
  })
  await client.send(new PutObjectCommand({ Bucket: 'bmc-bundle', Key: `ci/${PREFIX}-npm-s3`, Body: 'bytes', Metadata: { compression: 'none' } }))
  client.destroy()
  const args = ['ls', '--backend', `s3://bmc-bundle/ci?endpoint=${endpoint}`, '--key-prefix', PREFIX, '--json']
  const r = await cli(bundle.dir, args)
  expect([r.code, r.stderr]).toEqual([0, ''])
  expect(listed(r)).toEqual([`${PREFIX}-npm-s3`])

  const missing = await cli(withoutSdk, args)
  expect(missing.code).toBe(1)
  expect(missing.stderr).toMatch(/Cannot find module .*s3-sdk\.cjs/)
})
