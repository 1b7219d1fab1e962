// Issue 7, part 1: crafted cache entries. Every case is planted in the local
// cache service with the real @actions/cache client under the key and path
// the action restores, then the REAL bundled main step restores them all in
// one run beside two good mounts. Expected for each hostile mount: a warning
// naming it, an empty mount in a later user build, the good mounts restored,
// nothing written outside the mount (host and builder), main exits 0.
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { afterAll, beforeAll, expect, test } from '@jest/globals'

import { runStep, type StepResult } from '../test-support/action-runner.js'
import type { CacheService } from '../test-support/cache-service/server.js'
import { useTestEngine } from '../test-support/hostile/engine-faults.js'
import {
  corruptBlob,
  fixChecksum,
  headerOffset,
  patchOctal,
  plantedKey,
  clientEnv,
  plantMany,
  type GitHubClient,
  type Planting,
  type PlantTarget
} from '../test-support/hostile/plant.js'
import { useItgEnv } from '../test-support/itg-env.js'
import { UTILITY_IMAGE, userBuild } from '../test-support/user-build.js'
import { makeTar, type RawEntry } from './helpers/tar.js'

const itg = useItgEnv('hostile')
const { work, workspace } = itg
let service: CacheService
let stopEngine: (() => Promise<void>) | undefined
const runnerTemp = join(work, 'temp')
const run = randomUUID().slice(0, 8)
const prefix = `hostile-${run}`
const PLATFORM = 'linux/amd64'
/** Host paths a successful escape would create. */
const MARK = `/tmp/bmc-escape-${run}`
let target: PlantTarget

beforeAll(async () => {
  service = itg.service
  stopEngine = await useTestEngine(UTILITY_IMAGE)
  mkdirSync(runnerTemp, { recursive: true })
  target = { service, runnerTemp, workspace }
})

afterAll(async () => {
  await stopEngine?.()
})

const t = new Date('2024-01-02T03:04:05Z')
const root: RawEntry = { name: './', type: 'directory', mode: 0o755, mtime: t }
const good = (name: string, uid: number): RawEntry[] => [
  root,
  { name: `${name}.txt`, body: `${name}\n`, uid, gid: uid, mode: 0o640, mtime: t },
  { name: 'sub/', type: 'directory', mode: 0o700, uid, mtime: t },
  { name: 'sub/deep', body: 'deep', uid, mtime: t }
]

interface Case {
  name: string
  /** What to store at the archive path: file bytes, or a function that makes something there. */
  content: () => Promise<Buffer | ((archivePath: string) => void)>
  /** Runs after the entry is stored (e.g. to corrupt its blob). */
  after?: (key: string) => void
  /** What the warning naming the mount must say. */
  warning: RegExp
  /** Only the cache library's path can hold it (its outer tar puts anything at the archive path). */
  libraryOnly?: true
}

const tarCase = (name: string, entries: () => RawEntry[] | Promise<RawEntry[]>, warning: RegExp): Case => ({
  name,
  content: async () => makeTar(await entries()),
  warning
})
const bytesCase = (name: string, bytes: () => Promise<Buffer>, warning: RegExp): Case => ({ name, content: bytes, warning })

/** A secret tar elsewhere on the host: a symlinked archive path must not smuggle it in. */
const secretTar = join(work, 'secret.tar')

const CASES: Case[] = [
  tarCase('dotdot', () => [root, { name: `../../../../../../../..${MARK}-dotdot`, body: 'HOSTILE' }], /"\.\." /),
  tarCase('absolute', () => [root, { name: `${MARK}-abs`, body: 'HOSTILE' }], /absolute entry name/),
  tarCase(
    'symlink-etc',
    () => [root, { name: 'link', type: 'symlink', linkname: '/etc' }, { name: 'link/passwd', body: 'HOSTILE\n' }],
    /goes through symlink "link"/
  ),
  tarCase(
    'symlink-relative',
    () => [root, { name: 'up', type: 'symlink', linkname: `../../../../../../..${MARK}-dir` }, { name: 'up/pwned', body: 'HOSTILE' }],
    /goes through symlink "up"/
  ),
  tarCase('hardlink-absolute', () => [root, { name: 'hard', type: 'link', linkname: '/etc/passwd' }], /absolute entry name/),
  tarCase('hardlink-outside', () => [root, { name: 'hard', type: 'link', linkname: '../../../../etc/passwd' }], /"\.\."/),
  tarCase('hardlink-missing', () => [root, { name: 'hard', type: 'link', linkname: 'etc/passwd' }], /not an earlier file/),
  tarCase(
    'char-device',
    () => [root, { name: 'null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 }],
    /unsupported type character-device/
  ),
  tarCase(
    'block-device',
    () => [root, { name: 'sda', type: 'block-device', devmajor: 8, devminor: 0, mode: 0o660 }],
    /unsupported type block-device/
  ),
  tarCase('fifo', () => [root, { name: 'fifo', type: 'fifo', mode: 0o644 }], /unsupported type fifo/),
  tarCase('setuid', () => [root, { name: 'suid', body: '#!/bin/sh\nid\n', mode: 0o4755, uid: 0 }], /setuid/),
  tarCase('setgid-file', () => [root, { name: 'sgid', body: 'x', mode: 0o2755 }], /setgid/),
  tarCase('newline-name', () => [root, { name: 'evil\nRUN rm -rf /', body: 'x' }], /unsafe entry name/),
  tarCase('nul-name', () => [root, { name: 'evil', pax: { path: 'evil\0/../../x' }, body: 'x' } as RawEntry], /unsafe entry name/),
  tarCase('long-component', () => [root, { name: 'n'.repeat(300), body: 'x' }], /too long/),
  tarCase('empty-symlink', () => [root, { name: 'nowhere', type: 'symlink', linkname: '' }], /symlink "nowhere" has an empty target/),
  tarCase('file-as-parent', () => [root, { name: 'f', body: 'x' }, { name: 'f/g', body: 'y' }], /not a directory/),
  tarCase('hardlink-to-itself', () => [root, { name: 'a', body: 'x' }, { name: 'a', type: 'link', linkname: 'a' }], /defined twice|itself/),
  tarCase(
    'replaced-dir',
    () => [
      root,
      { name: 'd/', type: 'directory' },
      { name: 'd/x', body: 'x' },
      { name: 'd', body: 'file' },
      { name: 'h', type: 'link', linkname: 'd/x' }
    ],
    /defined twice/
  ),
  bytesCase(
    'size-larger-than-data',
    async () => {
      const tar = await makeTar([root, { name: 'f', body: Buffer.alloc(100, 1) }])
      patchOctal(tar, headerOffset(tar, 'f'), 'size', 100_000)
      return tar
    },
    /cannot read archive|Unexpected end/i
  ),
  bytesCase('truncated', async () => (await makeTar([root, { name: 'f', body: randomBytes(5000) }])).subarray(0, 2048), /cannot read archive/),
  bytesCase(
    'bad-checksum',
    async () => {
      const tar = await makeTar([root, { name: 'f', body: 'x' }, { name: 'g', body: 'y' }])
      tar.write('h', headerOffset(tar, 'g'), 'latin1')
      return tar
    },
    /cannot read archive: Invalid tar header/
  ),
  bytesCase(
    'garbage-uid',
    async () => {
      const tar = await makeTar([root, { name: 'f', body: 'x' }])
      const at = headerOffset(tar, 'f')
      tar.write('zzzzzz \0', at + 108, 'latin1')
      fixChecksum(tar, at)
      return tar
    },
    /invalid uid/
  ),
  bytesCase('not-a-tar', async () => randomBytes(4096), /cannot read archive/),
  bytesCase('empty-file', async () => Buffer.alloc(0), /no entries/),
  {
    name: 'corrupt-zstd',
    content: () => makeTar([root, { name: 'random.bin', body: randomBytes(256 * 1024) }]),
    after: key => corruptBlob(service, key),
    // The library's zstd frame check, or the stream entry's digest trailer.
    warning: /could not be downloaded or unpacked|checksum does not match/
  },
  {
    name: 'path-is-directory',
    content: async () => (p: string) => {
      mkdirSync(p)
      writeFileSync(join(p, 'x'), 'x')
    },
    warning: /not a mount archive|does not hold a mount archive/,
    libraryOnly: true
  },
  {
    name: 'path-is-symlink',
    content: async () => (p: string) => symlinkSync(secretTar, p),
    warning: /not a mount archive|does not hold a mount archive/,
    libraryOnly: true
  },
  {
    name: 'bomb-expansion',
    // 8 MiB of zeros: the entry is tiny, the archive is not.
    content: () => makeTar([root, { name: 'zeros', body: Buffer.alloc(8 << 20) }]),
    warning: /limit/
  },
  {
    name: 'bomb-entries',
    content: () => makeTar([root, ...Array.from({ length: 5000 }, (_, i): RawEntry => ({ name: `e${i}`, body: '' }))]),
    warning: /limit/
  }
]

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex')
}

async function step(
  entry: 'main' | 'post',
  client: GitHubClient,
  inputs: Record<string, string>,
  state?: Record<string, string>
): Promise<StepResult> {
  const env = { ...service.env(), RUNNER_TEMP: runnerTemp, GITHUB_WORKSPACE: workspace, ...clientEnv(client) }
  return runStep(entry, { bundleDir: itg.bundleDir, inputs, env, cwd: workspace, ...(state ? { state } : {}) })
}

// Both GitHub cache clients: the stream client (service v2, the default) and the cache library (GHES, v1).
test.each(['stream', 'library'] as const)(
  '%s client: every crafted entry is refused with a warning, the good mounts are restored, nothing escapes',
  async client => {
    writeFileSync(secretTar, await makeTar([root, { name: 'secret.txt', body: 'host secret\n' }]))
    const cases = CASES.filter(c => client === 'library' || c.libraryOnly !== true)
    const mounts = [
      { id: `good-a-${client}-${run}`, case: undefined as Case | undefined },
      ...cases.map(c => ({ id: `h-${c.name}-${client}-${run}`, case: c as Case | undefined })),
      { id: `good-b-${client}-${run}`, case: undefined }
    ]
    const goods: Record<string, Buffer> = { [mounts[0]!.id]: await makeTar(good('a', 1000)), [mounts.at(-1)!.id]: await makeTar(good('b', 2000)) }
    const plantings = await Promise.all(
      mounts.map(async (m): Promise<Planting & { after?: (key: string) => void }> => {
        const content = m.case ? await m.case.content() : goods[m.id]!
        return {
          id: m.id,
          key: plantedKey(prefix, m.id, PLATFORM),
          make: typeof content === 'function' ? content : p => writeFileSync(p, content),
          ...(m.case?.after ? { after: m.case.after } : {})
        }
      })
    )
    await plantMany({ ...target, client }, plantings)
    for (const p of plantings) p.after?.(p.key)

    const passwd = sha256('/etc/passwd')
    const hostTmpBefore = readdirSync('/tmp').filter(n => n.startsWith(`bmc-escape-${run}`))
    const inputs = {
      mounts: mounts.map((m, i) => `id=${m.id},target=/m/${i}`).join('\n'),
      'key-prefix': prefix,
      'key-platform': PLATFORM,
      'utility-image': UTILITY_IMAGE,
      client: 'buildx',
      'max-restore-size': '1M'
    }
    const main = await step('main', client, inputs)
    const report = `${main.stdout}\n${main.stderr}`
    expect({ exit: main.exitCode, errors: main.errors }).toEqual({ exit: 0, errors: [] })

    // One warning per hostile mount, naming it and saying why.
    for (const m of mounts) {
      const mine = main.warnings.filter(w => w.includes(m.id))
      if (!m.case) {
        expect(mine).toEqual([])
        continue
      }
      // The cache library's own warning about the same entry (labelled with the mount) comes on top of ours.
      const ours = mine.filter(w => !/: Failed to restore: /.test(w))
      expect({ case: m.case.name, warnings: ours }).toEqual({ case: m.case.name, warnings: [expect.stringMatching(m.case.warning)] })
    }
    const hits = (JSON.parse(main.outputs.mounts ?? '[]') as { hit: boolean }[]).map(h => h.hit)
    expect(hits).toEqual(mounts.map(m => m.case === undefined))
    expect(report).toMatch(new RegExp(`Injected 2 mount\\(s\\)`))
    // Over a stream the stream client sends each entry into the build as it downloads: the hostile ones are
    // refused on their way, and emptied again in the builder (the user build below sees them empty).
    if (client === 'stream' && /Injected 2 mount\(s\).*\((loopback|gateway) stream/.test(report)) {
      expect(report.match(/restored \S+ \(exact, .*streamed into the build/g)).toHaveLength(2)
      expect(main.warnings.filter(w => /refused on its way into the builder/.test(w))).toHaveLength(cases.length)
    }

    // A user build sees the good mounts exactly, every hostile mount empty, no trace in its root.
    const out = join(work, 'verify')
    const lines = mounts.map((_, i) => `(cd /m/${i} && find . -mindepth 1 | sort) > /out/${i}`)
    userBuild(
      'buildx',
      `FROM ${UTILITY_IMAGE}\nARG N\nRUN ${mounts.map((m, i) => `--mount=type=cache,id=${m.id},target=/m/${i}`).join(' ')} mkdir /out && ${lines.join(' && ')} && (cat /etc/passwd 2>/dev/null; ls -a /tmp /) > /out/root\n`,
      out,
      { N: randomUUID() }
    )
    const listing = (i: number): string[] =>
      readFileSync(join(out, 'out', String(i)), 'utf8')
        .split('\n')
        .filter(Boolean)
    expect(listing(0)).toEqual(['./a.txt', './sub', './sub/deep'])
    expect(listing(mounts.length - 1)).toEqual(['./b.txt', './sub', './sub/deep'])
    for (let i = 1; i < mounts.length - 1; i++) expect({ id: mounts[i]!.id, files: listing(i) }).toEqual({ id: mounts[i]!.id, files: [] })
    expect(readFileSync(join(out, 'out', 'root'), 'utf8')).not.toMatch(/HOSTILE|secret|bmc-escape/)

    // Nothing on the host outside RUNNER_TEMP, nothing left inside it.
    expect(sha256('/etc/passwd')).toBe(passwd)
    expect(readdirSync('/tmp').filter(n => n.startsWith(`bmc-escape-${run}`))).toEqual(hostTmpBefore)
    expect(existsSync(`${MARK}-dir`)).toBe(false)
    // Only inject's listings of the good mounts wait there, for post.
    expect(readdirSync(join(runnerTemp, 'buildkit-mount-cache')).filter(n => !n.endsWith('.listing'))).toEqual([])

    // Post: hostile mounts are empty (nothing to save), good ones unchanged; nothing saved.
    const before = service.entries().length
    const post = await step('post', client, inputs, main.state)
    expect({ exit: post.exitCode, warnings: post.warnings, errors: post.errors }).toEqual({ exit: 0, warnings: [], errors: [] })
    expect({
      unchanged: post.stdout.match(/unchanged since restore/g)?.length ?? 0,
      log:
        (post.stdout.match(/unchanged since restore/g)?.length ?? 0) === 2
          ? ''
          : post.stdout
              .split('\n')
              .filter(l => !l.startsWith('::debug'))
              .join('\n')
    }).toEqual({ unchanged: 2, log: '' })
    expect(service.entries().length).toBe(before)
  }
)

test('max-restore-size is an input error when malformed', async () => {
  const r = await step('main', 'stream', { mounts: 'id=x,target=/x', 'max-restore-size': '12 parsecs', 'utility-image': UTILITY_IMAGE })
  expect(r.exitCode).toBe(1)
  expect(r.errors.join('\n')).toMatch(/^Input "max-restore-size"/)
})
