import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'

import { afterAll, describe, expect, test } from '@jest/globals'

import { dockerfileContext } from '../src/builder/context-tar.js'
import { excludeMatcher } from '../src/archive/exclude.js'
import { relativeEntryPath } from '../src/archive/entry.js'
import { scanMountArchive } from '../src/archive/scan.js'
import { splitExport } from '../src/archive/split.js'
import { TreeDigest } from '../src/archive/digest.js'
import { ArchiveError } from '../src/errors.js'
import { injectStream } from '../src/archive/inject-stream.js'
import { makeTar, readTar, type RawEntry } from './helpers/tar.js'

const dir = mkdtempSync(join(tmpdir(), 'archive-test-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let n = 0
async function archiveFile(entries: RawEntry[]): Promise<string> {
  const file = join(dir, `a${n++}.tar`)
  writeFileSync(file, await makeTar(entries))
  return file
}

const t = new Date('2024-05-06T07:08:09Z')
const exported: RawEntry[] = [
  { name: '0/', type: 'directory', mode: 0o755, uid: 1000, gid: 1000, mtime: t },
  { name: '0/a.txt', type: 'file', mode: 0o640, uid: 1000, gid: 1001, mtime: t, body: 'hello' },
  { name: '0/zero-mode', type: 'file', mode: 0, uid: 5, gid: 6, mtime: t, body: '' },
  { name: '0/hard', type: 'link', linkname: '0/a.txt', mode: 0o640, uid: 1000, gid: 1001, mtime: t },
  { name: '0/dangling', type: 'symlink', linkname: '../nowhere', mode: 0o777, mtime: t },
  { name: '0/sub/', type: 'directory', mode: 0o700, uid: 2, gid: 3, mtime: t },
  { name: `0/sub/${'long name ü '.repeat(12)}`, type: 'file', mode: 0o644, mtime: t, body: 'x'.repeat(70000) },
  { name: '1/', type: 'directory', mode: 0o777, mtime: t },
  { name: '1/b', type: 'file', mode: 0o4755, uid: 0, gid: 0, mtime: t, body: 'b' }
]

describe('relativeEntryPath', () => {
  test.each([
    [1, './a/b', 'a/b'],
    [2, 'a//b/', 'a/b'],
    [3, './', ''],
    [4, '.', '']
  ])('%i: %s → %s', (_n, name, expected) => {
    expect(relativeEntryPath(name)).toBe(expected)
  })
  test.each([
    [1, '/etc/passwd'],
    [2, '../x'],
    [3, 'a/../../x'],
    [4, 'a\nb'],
    [5, 'a\0b']
  ])('%i: refuses %j', (_n, name) => {
    expect(() => relativeEntryPath(name)).toThrow(ArchiveError)
  })
})

describe('splitExport → scanMountArchive → injectStream', () => {
  test('round trip keeps every attribute and digests agree', async () => {
    const source = Readable.from([await makeTar(exported)])
    const targets = [
      { dir: '0', archivePath: join(dir, 'm0.tar') },
      { dir: '1', archivePath: join(dir, 'm1.tar') },
      { dir: '2', archivePath: join(dir, 'm2.tar') }
    ]
    const split = await splitExport(source, targets)
    const m0 = await readTar(readFileSync(join(dir, 'm0.tar')))
    expect(m0.map(e => e.header.name)).toEqual(['./', 'a.txt', 'zero-mode', 'hard', 'dangling', 'sub/', `sub/${'long name ü '.repeat(12)}`])
    expect(m0[1]?.header).toMatchObject({ uid: 1000, gid: 1001, mode: 0o640, mtime: t })
    expect(m0[2]?.header.mode).toBe(0)
    expect(m0[3]?.header).toMatchObject({ type: 'link', linkname: 'a.txt' })
    expect(m0[4]?.header).toMatchObject({ type: 'symlink', linkname: '../nowhere' })
    expect(m0[6]?.body.length).toBe(70000)
    // A mount the stream leaves out (found unchanged in the builder) gets no archive and no summary.
    expect(existsSync(join(dir, 'm2.tar'))).toBe(false)
    expect(split.has('2')).toBe(false)

    for (const target of targets.slice(0, 2)) {
      const scanned = await scanMountArchive(target.archivePath, { maxBytes: 1e9 })
      expect(scanned).toEqual(split.get(target.dir))
    }
    expect(split.get('0')?.bytes).toBe(5 + 70000)

    expect(await readTar(await buffer(dockerfileContext('FROM x\n')))).toMatchObject([
      { header: { name: 'Dockerfile' }, body: Buffer.from('FROM x\n') }
    ])
    const context = await readTar(
      injectStream(
        (async function* () {
          yield { index: 0, archivePath: targets[0]!.archivePath }
          yield { index: 1, archivePath: targets[1]!.archivePath }
        })()
      )
    )
    const names = context.map(e => e.header.name)
    expect(names).toContain('c0/hard')
    expect(context.find(e => e.header.name === 'c0/hard')?.header.linkname).toBe('c0/a.txt')
    expect(context.find(e => e.header.name === 'c0/')?.header).toMatchObject({ uid: 1000, gid: 1000, mode: 0o755 })
    // setuid/setgid bits from a cache are dropped on restore (see src/archive.ts).
    expect(context.find(e => e.header.name === 'c1/b')?.header.mode).toBe(0o755)
  })

  test('a changed file changes the digest, an unchanged tree does not', async () => {
    const once = await splitExport(Readable.from([await makeTar(exported)]), [{ dir: '0', archivePath: join(dir, 'x.tar') }])
    const again = await splitExport(Readable.from([await makeTar(exported)]), [{ dir: '0', archivePath: join(dir, 'y.tar') }])
    const changed = exported.map(e => (e.name === '0/a.txt' ? { ...e, body: 'hellO' } : e))
    const other = await splitExport(Readable.from([await makeTar(changed)]), [{ dir: '0', archivePath: join(dir, 'z.tar') }])
    expect(again.get('0')?.digest).toBe(once.get('0')?.digest)
    expect(other.get('0')?.digest).not.toBe(once.get('0')?.digest)
  })
})

describe('scanMountArchive refuses hostile archives', () => {
  const root: RawEntry = { name: './', type: 'directory', mode: 0o755 }
  test.each([
    [1, 'ARCHIVE_PATH_UNSAFE', [root, { name: '../evil', body: 'x' }]],
    [2, 'ARCHIVE_PATH_UNSAFE', [root, { name: '/etc/evil', body: 'x' }]],
    [3, 'ARCHIVE_PATH_ESCAPE', [root, { name: 'link', type: 'symlink', linkname: '/etc' }, { name: 'link/passwd', body: 'x' }]],
    [4, 'ARCHIVE_LINK_UNSAFE', [root, { name: 'hard', type: 'link', linkname: 'missing' }]],
    [5, 'ARCHIVE_PATH_UNSAFE', [root, { name: 'hard', type: 'link', linkname: '../../etc/shadow' }]],
    [6, 'ARCHIVE_ENTRY_TYPE', [root, { name: 'fifo', type: 'fifo' }]],
    [7, 'ARCHIVE_ENTRY_TYPE', [root, { name: 'dev', type: 'character-device', devmajor: 1, devminor: 3 }]],
    [8, 'ARCHIVE_TOO_LARGE', [root, { name: 'big', body: Buffer.alloc(2048) }]]
  ] as [number, string, RawEntry[]][])('%i: %s', async (_n, code, entries) => {
    const file = await archiveFile(entries)
    await expect(scanMountArchive(file, { maxBytes: 1024 })).rejects.toMatchObject({ code })
  })

  test('not a tar at all', async () => {
    const file = join(dir, 'garbage.tar')
    writeFileSync(file, Buffer.alloc(4096, 'garbage'))
    await expect(scanMountArchive(file, { maxBytes: 1e9 })).rejects.toBeInstanceOf(ArchiveError)
  })

  test('truncated archive', async () => {
    const whole = await makeTar([root, { name: 'f', body: Buffer.alloc(5000, 1) }])
    const file = join(dir, 'trunc.tar')
    writeFileSync(file, whole.subarray(0, 2048))
    await expect(scanMountArchive(file, { maxBytes: 1e9 })).rejects.toBeInstanceOf(ArchiveError)
  })
})

describe('exclude', () => {
  test.each([
    [1, ['registry/src'], 'registry/src', true],
    [2, ['registry/src'], 'registry/src/crate/lib.rs', true],
    [3, ['registry/src'], 'registry/srcx', false],
    [4, ['*.tmp'], 'a.tmp', true],
    [5, ['*.tmp'], 'dir/a.tmp', false],
    [6, ['**/*.tmp'], 'dir/deep/a.tmp', true],
    [7, ['git/checkouts', 'x?'], 'xy/z', true],
    [8, [], 'anything', false]
  ])('%i: %j %s → %s', (_n, patterns, path, expected) => {
    expect(excludeMatcher(patterns)(path)).toBe(expected)
  })

  test('excluded paths are left out of the archive and of its digest', async () => {
    const entries: RawEntry[] = [
      { name: '0/', type: 'directory', mtime: t },
      { name: '0/keep', body: 'k', mtime: t },
      { name: '0/registry/', type: 'directory', mtime: t },
      { name: '0/registry/src/', type: 'directory', mtime: t },
      { name: '0/registry/src/big', body: 'xxxx', mtime: t },
      { name: '0/link-to-big', type: 'link', linkname: '0/registry/src/big', mtime: t }
    ]
    const withExclude = await splitExport(Readable.from([await makeTar(entries)]), [
      { dir: '0', archivePath: join(dir, 'ex.tar'), exclude: ['registry/src'] }
    ])
    expect((await readTar(readFileSync(join(dir, 'ex.tar')))).map(e => e.header.name)).toEqual(['./', 'keep', 'registry/'])
    const without = entries.filter(e => !e.name.includes('src') && e.name !== '0/link-to-big')
    const plain = await splitExport(Readable.from([await makeTar(without)]), [{ dir: '0', archivePath: join(dir, 'ex2.tar') }])
    expect(withExclude.get('0')).toEqual(plain.get('0'))
  })
})

describe('TreeDigest', () => {
  const at = new Date('2024-01-01T00:00:00Z')
  const entry = (path: string, type: 'file' | 'link' | 'directory', linkname?: string) => ({
    path,
    type,
    mode: 0o644,
    uid: 1,
    gid: 2,
    mtime: at,
    size: type === 'file' ? 3 : 0,
    ...(linkname ? { linkname } : {})
  })
  const digestOf = (entries: ReturnType<typeof entry>[]): string => {
    const d = new TreeDigest()
    for (const e of entries) {
      d.header(e)
      if (e.type === 'file') d.content(Buffer.from('abc'))
    }
    return d.digest()
  }

  test('does not depend on entry order or on which hardlinked name comes first', () => {
    const a = digestOf([entry('', 'directory'), entry('x', 'file'), entry('y', 'link', 'x'), entry('d', 'directory')])
    const b = digestOf([entry('', 'directory'), entry('d', 'directory'), entry('y', 'file'), entry('x', 'link', 'y')])
    expect(a).toBe(b)
    expect(a).toMatch(/^[0-9a-f]{64}$/)
  })

  test('changes with a path, an owner or the content', () => {
    const base = digestOf([entry('', 'directory'), entry('x', 'file')])
    expect(digestOf([entry('', 'directory'), entry('z', 'file')])).not.toBe(base)
    expect(digestOf([entry('', 'directory'), { ...entry('x', 'file'), uid: 9 }])).not.toBe(base)
    const d = new TreeDigest()
    d.header(entry('', 'directory'))
    d.header(entry('x', 'file'))
    d.content(Buffer.from('abd'))
    expect(d.digest()).not.toBe(base)
  })
})
