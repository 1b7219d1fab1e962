// Issue 7, part 2: property-based tests of everything a user value passes on
// its way into generated Dockerfile text or cache keys. Any string is either
// parsed into values that satisfy the safe patterns, or refused with an
// InputError naming the input; generated Dockerfiles never carry a newline,
// quote or `$` coming from a value; valid specs survive the line form.
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'

import { afterAll, afterEach, describe, expect, test } from '@jest/globals'
import fc from 'fast-check'

import { scanMountArchive } from '../src/archive/scan.js'
import { splitExport } from '../src/archive/split.js'
import { TreeDigest, type ArchiveSummary } from '../src/archive/digest.js'
import { injectStream, type StreamMount } from '../src/archive/inject-stream.js'
import { getInputs, InputName } from '../src/action/inputs.js'
import { cacheMountFlag, extractDockerfile, injectDockerfile, type IndexedMount } from '../src/builder/dockerfile.js'
import { ArchiveError, InputError } from '../src/errors.js'
import { idSegment, mountKeys, platformSegment } from '../src/core/keys.js'
import { cleanTarget, formatMode, parseMounts, type MountSpec } from '../src/mounts/spec.js'
import { makeTar, readTar, type RawEntry } from './helpers/tar.js'

const RUNS = { numRuns: 400 }

/** Fragments that break naive parsers and generators. */
const TOKENS = [
  'id=',
  'target=',
  'dst=',
  'destination=',
  'uid=',
  'gid=',
  'mode=',
  'sharing=',
  'type=cache',
  'type=bind',
  'key-files=',
  'exclude=',
  'max-size=',
  ',',
  '=',
  ';',
  '\n',
  '\r\n',
  '\r',
  ' ',
  '\t',
  '"',
  "'",
  '`',
  '$',
  '${X}',
  '$(id)',
  '\\',
  '\\\n',
  '#',
  '--mount=',
  '--mount=type=bind,source=/,target=/host',
  '/',
  '//',
  '..',
  '.',
  '/..',
  'a',
  'Z',
  '0',
  '07',
  '0755',
  '1000',
  '-1',
  '1e3',
  '99999999999',
  'locked',
  'shared',
  '__proto__',
  'constructor',
  'toString',
  '*',
  '**',
  '?',
  '\0',
  '\u2028',
  '\u0085',
  'é',
  '✓',
  '[',
  ']',
  '{',
  '}',
  ':',
  '@',
  '+',
  '~',
  '%',
  'RUN rm -rf /',
  'x'.repeat(300)
]
const hostileText = fc
  .array(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...TOKENS) }, { weight: 1, arbitrary: fc.string({ maxLength: 6, unit: 'binary' }) }), {
    maxLength: 30
  })
  .map(parts => parts.join(''))

const SAFE_ID = /^[A-Za-z0-9_./][A-Za-z0-9_.:@+/-]*$/
const SAFE_TARGET = /^\/[A-Za-z0-9_.:@+~%/-]*$/
const SHARINGS = ['shared', 'private', 'locked']
const FIELDS = new Set(['id', 'target', 'uid', 'gid', 'mode', 'sharing', 'keyFiles', 'exclude', 'maxSize'])
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/

function expectSafe(spec: MountSpec): void {
  for (const key of Object.keys(spec)) expect(FIELDS.has(key)).toBe(true)
  expect(spec.id.length).toBeLessThanOrEqual(200)
  expect(spec.id).toMatch(SAFE_ID)
  if (spec.target !== '') expect(spec.target).toMatch(SAFE_TARGET)
  for (const n of [spec.uid, spec.gid]) if (n !== undefined) expect(Number.isSafeInteger(n) && n >= 0 && n <= 2 ** 31 - 1).toBe(true)
  if (spec.mode !== undefined) expect(Number.isInteger(spec.mode) && spec.mode >= 0 && spec.mode <= 0o7777).toBe(true)
  if (spec.sharing !== undefined) expect(SHARINGS).toContain(spec.sharing)
  for (const list of [spec.keyFiles, spec.exclude]) {
    if (list === undefined) continue
    expect(list.length).toBeGreaterThan(0)
    for (const p of list) expect(p !== '' && !CONTROL.test(p)).toBe(true)
  }
  if (spec.maxSize !== undefined) expect(Number.isSafeInteger(spec.maxSize) && spec.maxSize >= 0).toBe(true)
}

/** Runs `fn`; it must return or throw an InputError whose message names `input`. */
function parsedOrRefused<T>(fn: () => T, input: RegExp): T | undefined {
  try {
    return fn()
  } catch (error) {
    if (!(error instanceof InputError)) throw error
    expect(error.message).toMatch(input)
    // The message quotes values: no raw line break reaches the log annotation.
    expect(error.message).not.toMatch(/[\n\r]/)
    return undefined
  }
}

describe('parseMounts: any text parses into safe values or is an input error', () => {
  test('line form', () => {
    fc.assert(
      fc.property(hostileText, fc.boolean(), (text, partial) => {
        const specs = parsedOrRefused(() => parseMounts(text, 'mounts', { partial }), /^Input "mounts( line \d+)?"/)
        specs?.forEach(expectSafe)
      }),
      RUNS
    )
  })

  test('line form, every field hostile', () => {
    const field = fc.tuple(
      fc.constantFrom('id', 'target', 'uid', 'gid', 'mode', 'sharing', 'key-files', 'exclude', 'max-size', 'type', '__proto__'),
      hostileText
    )
    fc.assert(
      fc.property(fc.array(field, { maxLength: 6 }), fields => {
        const line = ['target=/ok', ...fields.map(([k, v]) => `${k}=${v}`)].join(',')
        const specs = parsedOrRefused(() => parseMounts(line), /^Input "mounts( line \d+)?"/)
        specs?.forEach(expectSafe)
      }),
      RUNS
    )
  })

  test('JSON form', () => {
    const key = fc.constantFrom(
      'id',
      'target',
      'dst',
      'uid',
      'gid',
      'mode',
      'sharing',
      'key-files',
      'exclude',
      'max-size',
      'type',
      '__proto__',
      'constructor',
      'x'
    )
    const value = fc.oneof(fc.jsonValue({ maxDepth: 2 }), hostileText, fc.constant('/ok'), fc.integer())
    const entry = fc.dictionary(key, value, { maxKeys: 6 })
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 3 }), entries => {
        const specs = parsedOrRefused(() => parseMounts(JSON.stringify(entries)), /^Input "mounts(\[\d+\])?"/)
        specs?.forEach(expectSafe)
      }),
      RUNS
    )
  })

  test('a crafted __proto__ option is refused, not swallowed', () => {
    expect(() => parseMounts('__proto__=x,target=/a')).toThrow(/unknown option "__proto__"/)
    expect(() => parseMounts('constructor=x,target=/a')).toThrow(/unknown option "constructor"/)
  })

  test.each([
    ['quote', 'id=a"b,target=/a'],
    ['single quote', "id=a'b,target=/a"],
    ['dollar', 'id=$HOME,target=/a'],
    ['escaped quote', 'id=a\\"b,target=/a'],
    ['backslash', 'id=a\\\\b,target=/a'],
    ['space', 'id=a b,target=/a'],
    ['hash', 'id=a#b,target=/a'],
    ['mount fragment in id', 'id=a --mount=type=bind,source=/,target=/x'],
    ['mount fragment in target', 'id=a,target=/a --mount=type=bind'],
    ['target with quote', 'id=a,target=/a"b'],
    ['target with dollar', 'id=a,target=/$HOME'],
    ['target with space', 'id=a,target=/a b'],
    ['target with backslash', 'id=a,target=/a\\\\b'],
    ['unterminated quote', 'id=a,target="/a'],
    ['target with hash', 'id=a,target=/a#b'],
    ['uid with letters', 'id=a,target=/a,uid=1000x'],
    ['uid newline', '[{"id":"a","target":"/a","uid":"1\\n0"}]'],
    ['id newline (JSON)', '[{"id":"a\\nRUN evil","target":"/a"}]'],
    ['target newline (JSON)', '[{"id":"a","target":"/a\\nRUN evil"}]'],
    ['key-files newline (JSON)', '[{"id":"a","target":"/a","key-files":["a\\n!b"]}]'],
    ['very long id', `id=${'a'.repeat(5000)},target=/a`],
    ['very long target', `target=/${'a'.repeat(5000)}`],
    ['same id twice', 'id=a,target=/a\nid=a,target=/b']
  ])('refuses %s', (_name, text) => {
    expect(() => parseMounts(text)).toThrow(InputError)
    expect(() => parseMounts(text)).toThrow(/^Input "mounts/)
  })
})

/** A spec as parseMounts returns it, built from values the parser must accept. */
const validSpec = fc
  .record(
    {
      id: fc.stringMatching(/^[A-Za-z0-9_./][A-Za-z0-9_.:@+/-]{0,40}$/),
      // Characters of both patterns: the target is the default id.
      target: fc.array(fc.stringMatching(/^[A-Za-z0-9_.:@+-]{1,12}$/), { minLength: 1, maxLength: 4 }).map(parts => `/${parts.join('/')}`),
      uid: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      gid: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      mode: fc.integer({ min: 0, max: 0o7777 }),
      sharing: fc.constantFrom('shared', 'private', 'locked') as fc.Arbitrary<MountSpec['sharing']>,
      keyFiles: fc.array(fc.stringMatching(/^[A-Za-z0-9_.*/-]{1,16}$/), { minLength: 1, maxLength: 3 }),
      exclude: fc.array(fc.stringMatching(/^[A-Za-z0-9_*][A-Za-z0-9_.*-]{0,12}$/), { minLength: 1, maxLength: 3 }),
      maxSize: fc.integer({ min: 0, max: 2 ** 40 })
    },
    { requiredKeys: ['target'] }
  )
  .map(r => ({ ...r, target: cleanTarget(r.target) }) as MountSpec & { id?: string })

/** The line form of a spec, optionally as a full `--mount=type=cache,...` flag. */
function toLine(spec: Partial<MountSpec>, flag: boolean): string {
  const parts: string[] = flag ? ['type=cache'] : []
  if (spec.id !== undefined) parts.push(`id=${spec.id}`)
  parts.push(`target=${spec.target ?? ''}`)
  if (spec.uid !== undefined) parts.push(`uid=${spec.uid}`)
  if (spec.gid !== undefined) parts.push(`gid=${spec.gid}`)
  if (spec.mode !== undefined) parts.push(`mode=${formatMode(spec.mode)}`)
  if (spec.sharing !== undefined) parts.push(`sharing=${spec.sharing}`)
  if (spec.keyFiles !== undefined) parts.push(`key-files=${spec.keyFiles.join(';')}`)
  if (spec.exclude !== undefined) parts.push(`exclude=${spec.exclude.join(';')}`)
  if (spec.maxSize !== undefined) parts.push(`max-size=${spec.maxSize}`)
  return `${flag ? '--mount=' : ''}${parts.join(',')}`
}

describe('round trip of valid specs', () => {
  test('through the line form', () => {
    fc.assert(
      fc.property(validSpec, fc.boolean(), (spec, flag) => {
        const expected = { ...spec, id: spec.id ?? spec.target }
        expect(parseMounts(toLine(spec, flag))).toEqual([expected])
      }),
      RUNS
    )
  })

  test('through the JSON form', () => {
    fc.assert(
      fc.property(validSpec, spec => {
        const json = JSON.stringify([
          {
            ...spec,
            mode: spec.mode === undefined ? undefined : formatMode(spec.mode),
            'key-files': spec.keyFiles,
            keyFiles: undefined,
            'max-size': spec.maxSize,
            maxSize: undefined
          }
        ])
        expect(parseMounts(json)).toEqual([{ ...spec, id: spec.id ?? spec.target }])
      }),
      RUNS
    )
  })

  test('targets may use ~ and % when the id is given', () => {
    expect(parseMounts('id=m2,target=/home/u/~m2%cache')).toEqual([{ id: 'm2', target: '/home/u/~m2%cache' }])
  })

  test('several mounts, one per line', () => {
    fc.assert(
      fc.property(fc.uniqueArray(validSpec, { selector: s => s.id ?? s.target, maxLength: 5 }), specs => {
        const parsed = parseMounts(specs.map(s => toLine(s, false)).join('\n'))
        expect(parsed).toEqual(specs.map(s => ({ ...s, id: s.id ?? s.target })))
      }),
      RUNS
    )
  })
})

describe('generated Dockerfiles', () => {
  const parsedSpecs = fc
    .uniqueArray(validSpec, { selector: s => s.id ?? s.target, minLength: 1, maxLength: 4 })
    .map(specs => parseMounts(specs.map(s => toLine(s, false)).join('\n')))
  const generators: [string, (image: string, mounts: IndexedMount[]) => string][] = [
    ['inject', injectDockerfile],
    ['extract (export)', (image, mounts) => extractDockerfile(image, mounts, 'export')],
    ['extract (loopback)', (image, mounts) => extractDockerfile(image, mounts, { host: '127.0.0.1' })]
  ]

  test.each(generators)('%s: values only fill their own slots', (_name, generate) => {
    fc.assert(
      fc.property(parsedSpecs, specs => {
        const mounts = specs.map((spec, index) => ({ index, spec }))
        const text = generate('img', mounts)
        // The same text with every id replaced by a placeholder, then put back: ids land only in id= slots.
        const skeleton = generate(
          'img',
          mounts.map(m => ({ ...m, spec: { ...m.spec, id: `IDSLOT${m.index}X` } }))
        )
        expect(skeleton.replace(/IDSLOT(\d+)X/g, (_m, i: string) => specs[Number(i)]!.id)).toBe(text)
        expect(text.split('\n')).toHaveLength(skeleton.split('\n').length)
        for (const spec of specs) expect(spec.id).not.toMatch(/[\s"'`$\\#,=]/)
        // Every cache flag parses back into exactly the options we meant.
        const flags = text
          .split('\n')
          .map(l => l.trim())
          .filter(l => l.startsWith('--mount=type=cache,'))
        expect(flags).toHaveLength(specs.length)
        flags.forEach((line, i) => {
          const spec = specs[i]!
          const opts = Object.fromEntries(
            line
              .replace(/ \\$/, '')
              .slice('--mount='.length)
              .split(',')
              .map(kv => [kv.split('=')[0], kv.split('=').slice(1).join('=')])
          )
          expect(opts.id).toBe(spec.id)
          expect(opts.uid).toBe(spec.uid === undefined ? undefined : String(spec.uid))
          expect(opts.gid).toBe(spec.gid === undefined ? undefined : String(spec.gid))
          expect(opts.mode).toBe(spec.mode === undefined ? undefined : formatMode(spec.mode))
        })
      }),
      { numRuns: 200 }
    )
  })

  test.each(generators)('%s: unvalidated values are refused, never written', (_name, generate) => {
    const anyNumber = fc.oneof(fc.integer(), fc.double(), fc.constant(Number.NaN), fc.constant(2 ** 60))
    fc.assert(
      fc.property(
        hostileText,
        hostileText,
        fc.option(anyNumber, { nil: undefined }),
        fc.option(anyNumber, { nil: undefined }),
        (id, image, uid, mode) => {
          const spec: MountSpec = { id, target: '/x', ...(uid === undefined ? {} : { uid }), ...(mode === undefined ? {} : { mode }) }
          let text: string
          try {
            text = generate(image, [{ index: 0, spec }])
          } catch {
            return
          }
          expect(id).toMatch(SAFE_ID)
          expect(image).toMatch(/^[a-z0-9][a-z0-9._/:@-]*$/)
          const baseline = generate('img', [{ index: 0, spec: { id: 'x', target: '/x' } }])
          expect(text.split('\n')).toHaveLength(baseline.split('\n').length)
          // Nothing from the values but their own characters: no quote, `$`, backslash or space beyond the template's.
          const count = (s: string, re: RegExp): number => (s.match(re) ?? []).length
          for (const re of [/"/g, /'/g, /\$/g, /\\/g, / /g, /#/g]) expect(count(text, re)).toBe(count(baseline, re))
        }
      ),
      RUNS
    )
  })

  test('cacheMountFlag refuses non-integer owners and modes', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60]) {
      expect(() => cacheMountFlag({ index: 0, spec: { id: 'a', target: '/a', uid: bad } })).toThrow()
      expect(() => cacheMountFlag({ index: 0, spec: { id: 'a', target: '/a', mode: bad } })).toThrow()
    }
  })
})

describe('cache keys', () => {
  test('any valid id and platform give a key of key-safe characters under 512', () => {
    fc.assert(
      fc.property(
        validSpec,
        fc.stringMatching(/^[A-Za-z0-9._-]{1,100}$/),
        fc.stringMatching(/^[a-z0-9]{1,20}\/[a-z0-9]{1,20}(\/[a-z0-9]{1,20})?$/),
        (spec, prefix, platform) => {
          const id = spec.id ?? spec.target
          const keys = mountKeys(prefix, id, platform, 'f'.repeat(64))
          for (const key of [keys.base, ...keys.restoreKeys]) {
            expect(key).toMatch(/^[A-Za-z0-9._-]+$/)
            expect(key.length).toBeLessThan(512)
          }
          expect(idSegment(id)).toMatch(/^[A-Za-z0-9._-]+$/)
          expect(platformSegment(platform)).not.toMatch(/\//)
        }
      ),
      RUNS
    )
  })

  test('distinct ids never share a key segment', () => {
    fc.assert(
      fc.property(validSpec, validSpec, (a, b) => {
        const ia = a.id ?? a.target
        const ib = b.id ?? b.target
        if (ia !== ib) expect(idSegment(ia)).not.toBe(idSegment(ib))
      }),
      RUNS
    )
  })
})

describe('step inputs: hostile values are input errors naming the input', () => {
  const saved = { ...process.env }
  afterEach(() => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k]
    Object.assign(process.env, saved)
  })
  const setInputs = (inputs: Record<string, string>): void => {
    for (const k of Object.keys(process.env)) if (k.startsWith('INPUT_')) delete process.env[k]
    for (const [name, value] of Object.entries(inputs)) process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = value
  }
  const cases: [string, RegExp, (v: string) => boolean][] = [
    [InputName.keyPrefix, /^[A-Za-z0-9._-]{1,100}$/, v => getInputs().keyPrefix === v],
    [InputName.utilityImage, /^[a-z0-9][a-z0-9._/:@-]*$/, v => getInputs().utilityImage === v],
    [InputName.builder, /^[A-Za-z0-9][A-Za-z0-9._-]*$/, v => getInputs().builder === v],
    [InputName.platform, /^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/, v => getInputs().platform === v],
    [InputName.client, /^(auto|buildx|docker)$/, v => getInputs().client === v],
    [InputName.maxRestoreSize, /^\d+(\.\d+)?\s*[kmgt]?i?b?$/i, () => (getInputs().maxRestoreBytes ?? 0) >= 1024]
  ]

  test.each(cases)('%s', (name, pattern, accepted) => {
    fc.assert(
      fc.property(hostileText, raw => {
        setInputs({ mounts: 'id=a,target=/a', [name]: raw })
        const value = raw.trim()
        try {
          // Throws for every value but a valid one (or an empty one, which means the default).
          if (!accepted(value) && value !== '') throw new Error(`accepted without keeping the value: ${JSON.stringify(raw)}`)
          if (value !== '') expect(value).toMatch(pattern)
        } catch (error) {
          if (!(error instanceof InputError)) throw error
          expect(error.input).toBe(name)
          expect(error.message.startsWith(`Input "${name}"`)).toBe(true)
          expect(error.message).not.toMatch(/[\n\r]/)
        }
      }),
      { numRuns: 200 }
    )
  })

  test.each([
    [InputName.keyPrefix, 'quote', 'a"b'],
    [InputName.keyPrefix, 'space', 'a b'],
    [InputName.keyPrefix, 'too long', 'x'.repeat(101)],
    [InputName.utilityImage, 'newline', 'busybox\nRUN evil'],
    [InputName.utilityImage, 'space', 'busybox AS x'],
    [InputName.utilityImage, 'dollar', '$IMAGE'],
    [InputName.utilityImage, 'too long', `a${'b'.repeat(600)}`],
    [InputName.builder, 'flag', 'b --allow=network.host'],
    [InputName.builder, 'semicolon', 'b;rm'],
    [InputName.builder, 'too long', `b${'c'.repeat(200)}`],
    [InputName.platform, 'newline', 'linux/amd64\nx'],
    [InputName.platform, 'too long', `linux/${'a'.repeat(600)}`],
    [InputName.client, 'flag', 'buildx --allow'],
    [InputName.maxRestoreSize, 'zero', '0'],
    [InputName.maxRestoreSize, 'unit', '12 parsecs']
  ])('%s: %s', (name, _what, value) => {
    setInputs({ mounts: 'id=a,target=/a', [name]: value })
    expect(() => getInputs()).toThrow(new RegExp(`^Input "${name}"`))
  })
})

describe('mount archives: scan and context agree, hostile trees are refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bmc-prop-'))
  /** One restored mount as the inject stream takes it. */
  async function* oneMount(archivePath: string): AsyncIterable<StreamMount> {
    yield { index: 0, archivePath }
  }
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  let n = 0

  const name = fc
    .array(fc.constantFrom('a', 'b', 'c', '..', '.', '', 'x y', 'ü', 'n'.repeat(256)), { minLength: 1, maxLength: 4 })
    .map(parts => parts.join('/'))
  const entry: fc.Arbitrary<RawEntry> = fc.oneof(
    fc.record({
      name,
      type: fc.constant('file' as const),
      body: fc.constantFrom('', 'data', 'x'.repeat(600)),
      mode: fc.constantFrom(0o644, 0o755, 0o4755, 0o2755, 0o1777, 0),
      uid: fc.constantFrom(0, 1000, 300000, 2 ** 32 - 2)
    }),
    fc.record({ name, type: fc.constant('directory' as const), mode: fc.constantFrom(0o755, 0o2775, 0o4755, 0o1777) }),
    fc.record({ name, type: fc.constant('symlink' as const), linkname: fc.constantFrom('a', '/etc', '../..', 'b/c', '') }),
    fc.record({ name, type: fc.constant('link' as const), linkname: fc.constantFrom('a', 'b', 'a/b', '../a', '/etc/passwd') }),
    fc.record({ name, type: fc.constantFrom('fifo' as const, 'character-device' as const) })
  )

  test('every archive is either refused with an ArchiveError or injected as exactly what was scanned', async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(entry, { maxLength: 8 }), async (withRoot, entries) => {
        const file = join(dir, `p${n++}.tar`)
        writeFileSync(file, await makeTar([...(withRoot ? [{ name: './', type: 'directory' as const, mode: 0o755 }] : []), ...entries]))
        // The same bytes arriving as a download: checked on their way, with the same verdict and summary.
        const outcomes: Array<{ summary: ArchiveSummary } | { error: unknown }> = []
        const live = { body: createReadStream(file), maxBytes: 1e9, settle: (o: (typeof outcomes)[number]) => outcomes.push(o) }
        const streamed = await readTar(injectStream(Readable.from([{ index: 0, live }])))
        let scanned: ArchiveSummary
        try {
          scanned = await scanMountArchive(file, { maxBytes: 1e9 })
        } catch (error) {
          expect(error).toBeInstanceOf(ArchiveError)
          expect(outcomes[0] !== undefined && 'error' in outcomes[0]).toBe(true)
          expect(streamed.map(e => e.header.name)).not.toContain('ok.0')
          return
        }
        expect(outcomes).toEqual([{ summary: scanned }])
        // What the inject build unpacks: the mount's entries between its markers, then the fix-up list.
        const all = await readTar(injectStream(oneMount(file)))
        expect(all.map(e => e.header.name)).toEqual(streamed.map(e => e.header.name))
        expect([all[0]?.header.name, all.at(-2)?.header.name, all.at(-1)?.header.name]).toEqual(['at.0', 'ok.0', 'fixups'])
        const context = all.slice(1, -2)
        const names = context.map(e => e.header.name)
        for (const e of context) {
          expect(e.header.name.startsWith('c0/')).toBe(true)
          expect(e.header.name.split('/')).not.toContain('..')
          expect((e.header.mode ?? 0) & (e.header.type === 'directory' ? 0o4000 : 0o6000)).toBe(0)
          if (e.header.type === 'link') expect(names).toContain(e.header.linkname)
          expect(['file', 'directory', 'symlink', 'link']).toContain(e.header.type)
        }
        // The digest of the injected tree is the one the scan reported.
        const digest = new TreeDigest()
        for (const e of context) {
          const path = e.header.name.replace(/^c0\/?/, '').replace(/\/$/, '')
          const link = e.header.type === 'link' ? (e.header.linkname ?? '').replace(/^c0\//, '') : (e.header.linkname ?? undefined)
          digest.header({
            path,
            type: e.header.type as 'file',
            mode: (e.header.mode ?? 0) & 0o7777,
            uid: e.header.uid ?? 0,
            gid: e.header.gid ?? 0,
            mtime: e.header.mtime ?? new Date(0),
            size: e.header.type === 'file' ? e.body.length : 0,
            ...(link ? { linkname: link } : {})
          })
          if (e.header.type === 'file') digest.content(e.body)
        }
        expect(digest.digest()).toBe(scanned.digest)
      }),
      { numRuns: 300 }
    )
  })

  test('ids above 262143 survive the inject stream (pax records), setuid is stripped on save', async () => {
    const exported = await makeTar([
      { name: '0/', type: 'directory', mode: 0o755 },
      { name: '0/big', type: 'file', body: 'x', uid: 300000, gid: 4000000000, mode: 0o4755, pax: { uid: '300000', gid: '4000000000' } },
      { name: '0/sgid-dir/', type: 'directory', mode: 0o2775 }
    ])
    const archivePath = join(dir, 'split.tar')
    const split = await splitExport(Readable.from([exported]), [{ dir: '0', archivePath }])
    const saved = await readTar(readFileSync(archivePath))
    // tar-stream reads the clamped header field; Go's archive/tar (BuildKit) reads the pax record.
    expect(saved.find(e => e.header.name === 'big')?.header).toMatchObject({ mode: 0o755, pax: { uid: '300000', gid: '4000000000' } })
    expect(saved.find(e => e.header.name === 'sgid-dir/')?.header.mode).toBe(0o2775)
    expect(await scanMountArchive(archivePath, { maxBytes: 1e9 })).toEqual(split.get('0'))
    const context = await readTar(injectStream(oneMount(archivePath)))
    expect(context.find(e => e.header.name === 'c0/big')?.header).toMatchObject({ pax: { uid: '300000', gid: '4000000000' } })
  })

  test('a destination that fails mid-write ends the split with an error instead of hanging', async () => {
    const exported = await makeTar([
      { name: '0/', type: 'directory', mode: 0o755 },
      { name: '0/big', body: Buffer.alloc(4 << 20, 1) }
    ])
    const missing = join(dir, 'no-such-dir', 'x.tar')
    await expect(splitExport(Readable.from([exported]), [{ dir: '0', archivePath: missing }])).rejects.toThrow()
  }, 10_000)

  test('the limit counts content and entries', async () => {
    const many = join(dir, 'many.tar')
    writeFileSync(
      many,
      await makeTar([{ name: './', type: 'directory' }, ...Array.from({ length: 300 }, (_, i): RawEntry => ({ name: `e${i}`, body: '' }))])
    )
    await expect(scanMountArchive(many, { maxBytes: 100 * 1024 })).rejects.toMatchObject({ code: 'ARCHIVE_TOO_LARGE' })
    await expect(scanMountArchive(many, { maxBytes: 200 * 1024 })).resolves.toMatchObject({ entries: 301 })
  })
})
