import { describe, expect, test } from '@jest/globals'
import fc from 'fast-check'

import { discoverMounts, expandWord, parseMountFlag, UnresolvedVariableError, type DiscoverInput, type MountOptions } from '../src/discover/index.js'
import type { MountSpec } from '../src/mounts/spec.js'

const df = (...lines: string[]): string => lines.join('\n') + '\n'

function discover(content: string, input: Partial<Omit<DiscoverInput, 'dockerfiles'>> = {}) {
  return discoverMounts({
    dockerfiles: [{ path: 'Dockerfile', content }],
    buildArgs: {},
    platforms: ['linux/amd64'],
    buildPlatform: 'linux/amd64',
    ...input
  })
}

interface Case {
  name: string
  dockerfile: string
  buildArgs?: Record<string, string>
  platforms?: string[]
  buildPlatform?: string
  specs: MountSpec[]
  /** Each warning, in order; none expected when omitted. */
  warnings?: RegExp[]
}

const cases: Case[] = [
  {
    name: 'default id is the cleaned target',
    dockerfile: df('FROM alpine', 'RUN --mount=type=cache,target=/root/.npm/ npm ci'),
    specs: [{ id: '/root/.npm', target: '/root/.npm' }]
  },
  {
    name: 'options in any order, target aliases, case-insensitive keys and type',
    dockerfile: df(
      'FROM alpine',
      'RUN --mount=dst=/a,ID=a,Type=Cache --mount=destination=/b,type=cache,sharing=private --mount=sharing=locked,target=/c,type=cache,id=c true'
    ),
    specs: [
      { id: 'a', target: '/a' },
      { id: '/b', target: '/b', sharing: 'private' },
      { id: 'c', target: '/c', sharing: 'locked' }
    ]
  },
  {
    name: 'uid, gid and octal mode only when given',
    dockerfile: df('FROM alpine', 'RUN --mount=type=cache,id=go,target=/go,uid=1000,gid=0,mode=0700 --mount=type=cache,target=/m,mode=755 true'),
    specs: [
      { id: 'go', target: '/go', uid: 1000, gid: 0, mode: 0o700 },
      { id: '/m', target: '/m', mode: 0o755 }
    ]
  },
  {
    name: 'bind, tmpfs, secret, ssh and type-less mounts are ignored',
    dockerfile: df(
      'FROM alpine',
      'RUN --mount=type=bind,source=.,target=/src --mount=type=tmpfs,target=/tmp --mount=type=secret,id=tok \\',
      '    --mount=type=ssh --mount=target=/ctx --mount=type=cache,target=/keep --network=none true'
    ),
    specs: [{ id: '/keep', target: '/keep' }]
  },
  {
    name: 'continuations skip comment and blank lines',
    dockerfile: df(
      'FROM alpine',
      'RUN \\',
      '  # a comment inside the continuation',
      '',
      '  --mount=type=cache,id=one,target=/one \\',
      '  --mount=type=cache,id=two,target=/two \\',
      '  true'
    ),
    specs: [
      { id: 'one', target: '/one' },
      { id: 'two', target: '/two' }
    ]
  },
  {
    name: 'the escape directive changes the continuation and escape character',
    dockerfile: df('# escape=`', 'FROM mcr.microsoft.com/windows/servercore', 'RUN --mount=type=cache,id=nuget,target=/nuget `', '    dir'),
    specs: [{ id: 'nuget', target: '/nuget' }]
  },
  {
    name: 'an escape "directive" after an instruction is only a comment',
    dockerfile: df('FROM alpine', '# escape=`', 'RUN --mount=type=cache,id=a,target=/a \\', '    true'),
    specs: [{ id: 'a', target: '/a' }]
  },
  {
    name: 'heredoc RUN: its mount counts, its body is not read as instructions',
    dockerfile: df(
      'FROM alpine',
      'RUN --mount=type=cache,id=apk,target=/var/cache/apk <<EOF',
      'FROM evil',
      'RUN --mount=type=cache,id=inside,target=/inside true',
      'EOF',
      'RUN --mount=type=cache,id=after,target=/after <<-"END" cat',
      '\tRUN --mount=type=cache,id=inside2,target=/x true',
      '\tEND',
      'RUN --mount=type=cache,id=last,target=/last true'
    ),
    specs: [
      { id: 'apk', target: '/var/cache/apk' },
      { id: 'after', target: '/after' },
      { id: 'last', target: '/last' }
    ]
  },
  {
    name: 'shell-quoted flag and CSV-quoted field',
    dockerfile: df('FROM alpine', `RUN --mount="type=cache,id=pip,target=/root/.cache/pip" --mount='type=cache,"id=c""q",target=/q' true`),
    specs: [{ id: 'pip', target: '/root/.cache/pip' }],
    warnings: [/^Dockerfile:2: cache mount skipped: unexpected end of statement while looking for matching double-quote/]
  },
  {
    name: 'a CSV-quoted comma stays in the value',
    dockerfile: df('FROM alpine', `RUN --mount='type=cache,"target=/a,b"' true`),
    specs: [],
    warnings: [/^Dockerfile:2: cache mount skipped: id "\/a,b" must be/]
  },
  {
    name: 'from= and source= are warned about and skipped',
    dockerfile: df(
      'FROM alpine AS seed',
      'FROM alpine',
      'RUN --mount=type=cache,from=seed,target=/a --mount=type=cache,source=sub,target=/b --mount=type=cache,target=/c true'
    ),
    specs: [{ id: '/c', target: '/c' }],
    warnings: [/^Dockerfile:3: cache mount skipped: it is seeded from "seed"/, /^Dockerfile:3: cache mount skipped: it mounts the subpath "sub"/]
  },
  {
    name: 'invalid values are warnings naming file:line, other mounts survive',
    dockerfile: df(
      'FROM alpine',
      'RUN --mount=type=cache,target=/a,uid=-1 \\',
      '    --mount=type=cache,target=/b,mode=0999 \\',
      '    --mount=type=cache,target=/c,sharing=sometimes \\',
      '    --mount=type=cache,target=/d,colour=blue \\',
      '    --mount=type=cache,target=/e,required \\',
      '    --mount=type=cache,target=/f,uid=4294967295 \\',
      '    --mount=type=cache,target=/g,ro=maybe \\',
      '    --mount=type=cache,id=ok,target=/ok true'
    ),
    specs: [{ id: 'ok', target: '/ok' }],
    warnings: [
      /^Dockerfile:2: .*invalid value -1 for uid/,
      /^Dockerfile:2: .*invalid value 0999 for mode/,
      /^Dockerfile:2: .*unsupported sharing value "sometimes"/,
      /^Dockerfile:2: .*unexpected key 'colour'/,
      /^Dockerfile:2: .*unexpected key 'required'/,
      /^Dockerfile:2: .*uid must be a non-negative integer/,
      /^Dockerfile:2: .*invalid value for ro: maybe/
    ]
  },
  {
    name: 'mounts without a usable target are skipped',
    dockerfile: df('FROM alpine', 'RUN --mount=type=cache,id=x --mount=type=cache,target=/ --mount=type=cache true'),
    specs: [],
    warnings: [/Dockerfile:2: cache mount skipped: it has no target/, /Dockerfile:2: cache mount skipped: its target is "\/"/]
  },
  {
    name: 'the same id with other uid/gid/mode: warned with both places, first kept',
    dockerfile: df('FROM alpine', 'RUN --mount=type=cache,id=go,target=/go,uid=1000 true', 'RUN --mount=type=cache,id=go,target=/go,uid=0 true'),
    specs: [{ id: 'go', target: '/go', uid: 1000 }],
    warnings: [/^Dockerfile:3: cache id "go" is used with uid=0, but with uid=1000 at Dockerfile:2; .*keeping the one at Dockerfile:2/]
  },
  {
    name: 'a global ARG is invisible in a stage until re-declared',
    dockerfile: df(
      'ARG CACHE=npm',
      'FROM alpine',
      'RUN --mount=type=cache,id=$CACHE,target=/a true',
      'ARG CACHE',
      'RUN --mount=type=cache,id=$CACHE,target=/b true'
    ),
    specs: [{ id: 'npm', target: '/b' }],
    warnings: [
      /^Dockerfile:3: cache mount skipped: cannot resolve \$CACHE \(a global or automatic ARG is visible in a stage only after "ARG CACHE" in it\)/
    ]
  },
  {
    name: 'build-args override global and stage ARG defaults; undeclared build-args are not visible',
    dockerfile: df(
      'ARG G=global',
      'FROM alpine',
      'ARG G',
      'ARG S=stage',
      'RUN --mount=type=cache,id=${G}-${S},target=/a --mount=type=cache,id=$EXTRA,target=/b true'
    ),
    buildArgs: { G: 'g', S: 's', EXTRA: 'x' },
    specs: [{ id: 'g-s', target: '/a' }],
    warnings: [/^Dockerfile:5: cache mount skipped: cannot resolve \$EXTRA/]
  },
  {
    name: 'stage ARG defaults expand with the stage environment',
    dockerfile: df('FROM alpine', 'ENV BASE=/cache', 'ARG DIR=$BASE/npm', 'RUN --mount=type=cache,target=$DIR true'),
    specs: [{ id: '/cache/npm', target: '/cache/npm' }]
  },
  {
    name: 'ENV is inherited by FROM <stage>, not by unrelated stages',
    dockerfile: df(
      'FROM golang AS base',
      'ENV GOCACHE=/root/.cache/go-build GOMODCACHE="/go/pkg/mod"',
      'FROM base AS build',
      'RUN --mount=type=cache,target=$GOCACHE --mount=type=cache,target=${GOMODCACHE} true',
      'FROM alpine AS other',
      'RUN --mount=type=cache,target=$GOCACHE true'
    ),
    specs: [
      { id: '/root/.cache/go-build', target: '/root/.cache/go-build' },
      { id: '/go/pkg/mod', target: '/go/pkg/mod' }
    ],
    warnings: [/^Dockerfile:6: cache mount skipped: cannot resolve \$GOCACHE \(variables set only by the base image/]
  },
  {
    name: 'legacy ENV form and ENV pairs expanding with the previous environment',
    dockerfile: df('FROM alpine', 'ENV A /a', 'ENV A=/b B=$A', 'RUN --mount=type=cache,target=$B --mount=type=cache,target=$A true'),
    specs: [
      { id: '/a', target: '/a' },
      { id: '/b', target: '/b' }
    ]
  },
  {
    name: 'default, alternative and unset-only substitutions',
    dockerfile: df(
      'FROM alpine',
      'ARG EMPTY=',
      'RUN --mount=type=cache,id=${NOPE:-d1},target=/a --mount=type=cache,id=${EMPTY:-d2},target=/b \\',
      '    --mount=type=cache,id=x${EMPTY-d3},target=/c --mount=type=cache,id=y${EMPTY:+alt},target=/d \\',
      '    --mount=type=cache,id=${EMPTY+z},target=/e --mount=type=cache,id=${NOPE:-$ALSO_NOPE},target=/f true'
    ),
    specs: [
      { id: 'd1', target: '/a' },
      { id: 'd2', target: '/b' },
      { id: 'x', target: '/c' },
      { id: 'y', target: '/d' },
      { id: 'z', target: '/e' }
    ],
    warnings: [/^Dockerfile:3: cache mount skipped: cannot resolve \$ALSO_NOPE/]
  },
  {
    name: 'automatic platform ARGs need ARG inside the stage',
    dockerfile: df(
      'FROM alpine',
      'RUN --mount=type=cache,id=a-$TARGETARCH,target=/a true',
      'ARG TARGETARCH',
      'RUN --mount=type=cache,id=b-$TARGETARCH,target=/b true'
    ),
    specs: [{ id: 'b-amd64', target: '/b' }],
    warnings: [/^Dockerfile:2: .*cannot resolve \$TARGETARCH \(a global or automatic ARG is visible in a stage only after "ARG TARGETARCH"/]
  },
  {
    name: 'automatic platform ARGs are usable in global ARG defaults',
    dockerfile: df(
      'ARG CACHE_ID=npm-${TARGETOS}-${TARGETARCH}${TARGETVARIANT}',
      'FROM alpine',
      'ARG CACHE_ID',
      'RUN --mount=type=cache,id=$CACHE_ID,target=/root/.npm true'
    ),
    platforms: ['linux/arm/v6'],
    specs: [{ id: 'npm-linux-armv6', target: '/root/.npm' }]
  },
  {
    name: 'platforms are normalized like containerd',
    dockerfile: df('FROM alpine', 'ARG TARGETPLATFORM', 'RUN --mount=type=cache,id=$TARGETPLATFORM,target=/a true'),
    platforms: ['linux/arm', 'linux/arm64/v8', 'linux/x86_64'],
    specs: [
      { id: 'linux/arm/v7', target: '/a' },
      { id: 'linux/arm64', target: '/a' },
      { id: 'linux/amd64', target: '/a' }
    ]
  },
  {
    name: 'BUILD* args come from the build platform',
    dockerfile: df(
      'FROM --platform=$BUILDPLATFORM alpine',
      'ARG BUILDARCH BUILDPLATFORM',
      'RUN --mount=type=cache,id=$BUILDARCH@$BUILDPLATFORM,target=/a true'
    ),
    platforms: ['linux/amd64', 'linux/arm64'],
    buildPlatform: 'linux/arm64',
    specs: [{ id: 'arm64@linux/arm64', target: '/a' }]
  },
  {
    name: 'an id expanding to nothing falls back to the target',
    dockerfile: df('FROM alpine', 'ARG TARGETVARIANT', 'RUN --mount=type=cache,id=$TARGETVARIANT,target=/cache/ true'),
    specs: [{ id: '/cache', target: '/cache' }]
  },
  {
    name: 'a $ left in an id never passes',
    dockerfile: df('FROM alpine', 'RUN --mount=type=cache,id=a$,target=/a --mount=type=cache,id=\\\\\\$x,target=/b true'),
    specs: [],
    warnings: [/Dockerfile:2: cache mount skipped: id "a\$" must be/, /Dockerfile:2: cache mount skipped: id "\$x" must be/]
  },
  {
    name: 'relative targets: id as written, target under WORKDIR',
    dockerfile: df('FROM node', 'WORKDIR /app', 'WORKDIR web', 'RUN --mount=type=cache,target=node_modules/.cache/ npm ci'),
    specs: [{ id: 'node_modules/.cache', target: '/app/web/node_modules/.cache' }]
  },
  {
    name: 'unsupported substitutions and from= with variables are warnings',
    dockerfile: df('FROM alpine', 'ENV V=abc', 'RUN --mount=type=cache,id=${V#a},target=/a --mount=type=cache,from=$V,target=/b true'),
    specs: [],
    warnings: [/Dockerfile:3: .*substitution modifier "#"/, /Dockerfile:3: .*'from' doesn't support variable expansion/]
  },
  {
    name: 'ONBUILD and JSON-form RUNs add nothing',
    dockerfile: df('FROM alpine', 'ONBUILD RUN --mount=type=cache,target=/onbuild true', 'RUN ["--mount=type=cache,target=/json"]'),
    specs: []
  },
  {
    name: 'CRLF line endings and a byte-order mark',
    dockerfile: '\uFEFF# escape=\\\r\nFROM alpine\r\nRUN --mount=type=cache,id=crlf,target=/c \\\r\n    true\r\n',
    specs: [{ id: 'crlf', target: '/c' }]
  }
]

describe('discoverMounts cases', () => {
  test('there are at least 25 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(25)
  })

  test.each(cases.map(c => [c.name, c] as const))('%s', (_name, c) => {
    const result = discover(c.dockerfile, {
      ...(c.buildArgs ? { buildArgs: c.buildArgs } : {}),
      ...(c.platforms ? { platforms: c.platforms } : {}),
      ...(c.buildPlatform ? { buildPlatform: c.buildPlatform } : {})
    })
    expect(result.mounts.map(m => m.spec)).toEqual(c.specs)
    const expected = c.warnings ?? []
    expect(result.warnings).toHaveLength(expected.length)
    expected.forEach((pattern, index) => expect(result.warnings[index]).toMatch(pattern))
  })
})

describe('discoverMounts results', () => {
  const multiArch = df(
    'FROM golang AS build',
    'ARG TARGETARCH',
    'RUN --mount=type=cache,id=gomod-$TARGETARCH,target=/go/pkg/mod \\',
    '    --mount=type=cache,target=/root/.cache/go-build go build',
    'FROM build',
    'RUN --mount=type=cache,target=/root/.cache/go-build,ro go test'
  )

  test('per-platform ids split, platform-free ids are shared', () => {
    const result = discover(multiArch, { platforms: ['linux/amd64', 'linux/arm64'] })
    expect(result.warnings).toEqual([])
    expect(result.mounts).toEqual([
      {
        spec: { id: 'gomod-amd64', target: '/go/pkg/mod' },
        platforms: ['linux/amd64'],
        readonly: false,
        locations: [{ file: 'Dockerfile', line: 3, stage: 'build' }]
      },
      {
        spec: { id: 'gomod-arm64', target: '/go/pkg/mod' },
        platforms: ['linux/arm64'],
        readonly: false,
        locations: [{ file: 'Dockerfile', line: 3, stage: 'build' }]
      },
      {
        spec: { id: '/root/.cache/go-build', target: '/root/.cache/go-build' },
        platforms: ['linux/amd64', 'linux/arm64'],
        readonly: false,
        locations: [
          { file: 'Dockerfile', line: 3, stage: 'build' },
          { file: 'Dockerfile', line: 6, stage: 'stage-1' }
        ]
      }
    ])
  })

  test('read-only only when every use is read-only', () => {
    const content = df(
      'FROM alpine',
      'RUN --mount=type=cache,id=a,target=/a,ro --mount=type=cache,id=b,target=/b,readonly=true true',
      'RUN --mount=type=cache,id=b,target=/b,rw=true true'
    )
    const result = discover(content)
    expect(result.mounts.map(m => [m.spec.id, m.readonly])).toEqual([
      ['a', true],
      ['b', false]
    ])
  })

  test('several Dockerfiles: locations name their file', () => {
    const result = discoverMounts({
      dockerfiles: [
        { path: 'a/Dockerfile', content: df('FROM alpine', 'RUN --mount=type=cache,target=/c true') },
        { path: 'b/Dockerfile', content: df('FROM alpine', '', 'RUN --mount=type=cache,target=/c true') }
      ],
      buildArgs: {},
      platforms: ['linux/amd64'],
      buildPlatform: 'linux/amd64'
    })
    expect(result.mounts).toHaveLength(1)
    expect(result.mounts[0]?.locations).toEqual([
      { file: 'a/Dockerfile', line: 2, stage: 'stage-0' },
      { file: 'b/Dockerfile', line: 3, stage: 'stage-0' }
    ])
  })

  test('BUILDKIT_CACHE_MOUNT_NS is reported, not folded into the ids', () => {
    const content = df('FROM alpine', 'RUN --mount=type=cache,id=npm,target=/root/.npm true')
    expect(discover(content, { buildArgs: { BUILDKIT_CACHE_MOUNT_NS: 'team-a' } })).toEqual({
      mounts: [expect.objectContaining({ spec: { id: 'npm', target: '/root/.npm' } })],
      warnings: [],
      skippedStages: [],
      cacheNamespace: 'team-a'
    })
    expect(discover(content, { buildArgs: { BUILDKIT_CACHE_MOUNT_NS: '' } }).cacheNamespace).toBeUndefined()
  })

  test('bad platforms and unreadable files are warnings, never exceptions', () => {
    const result = discoverMounts({
      dockerfiles: [
        { path: 'broken', content: df('FROM alpine', 'RUN <<EOF', 'never ends') },
        {
          path: 'ok',
          content: df('FROM alpine', 'ARG BUILDARCH', 'RUN --mount=type=cache,target=/c --mount=type=cache,id=$BUILDARCH,target=/d true')
        }
      ],
      buildArgs: {},
      platforms: ['linux/amd64', 'not a platform'],
      buildPlatform: 'nope/'
    })
    expect(result.mounts.map(m => [m.spec.id, m.platforms])).toEqual([['/c', ['linux/amd64']]])
    expect(result.warnings).toEqual([
      expect.stringMatching(/^build platform "nope\/"/),
      expect.stringMatching(/^platform "not a platform"/),
      expect.stringMatching(/^broken: not searched for cache mounts: line 2: unterminated heredoc/),
      expect.stringMatching(/^ok:3: cache mount skipped: cannot resolve \$BUILDARCH \(a value it depends on could not be resolved\)/)
    ])
  })
})

describe('expandWord', () => {
  const env = new Map<string, string | null>([
    ['A', 'a'],
    ['E', ''],
    ['U', null]
  ])
  const lookup = (name: string) => env.get(name)

  test.each([
    ['$A-${A}', 'a-a'],
    ['\'$A\'"$A"', '$Aa'],
    ['\\$A', '$A'],
    ['"\\$A\\x"', '$A\\x'],
    ['${E:-d}${E-d}${A:+p}${E:+p}${E+q}', 'dpq'],
    ['${A:?m}', 'a'],
    ['cost$', 'cost$'],
    ['${NOPE:-${A}}', 'a']
  ])('%s', (word, expected) => {
    expect(expandWord(word, { lookup })).toBe(expected)
  })

  test('unset and unknown variables are unresolved inside a stage, unset is empty in the global scope', () => {
    expect(() => expandWord('$NOPE', { lookup })).toThrow(UnresolvedVariableError)
    expect(() => expandWord('${U:-x}', { lookup })).toThrow(/\$U/)
    expect(expandWord('x$NOPE', { lookup, strict: false })).toBe('x')
    expect(expandWord('${A:-$NOPE}', { lookup })).toBe('a')
  })

  test('syntax errors throw plain errors', () => {
    expect(() => expandWord('${A', { lookup })).toThrow(/missing/)
    expect(() => expandWord("'a", { lookup })).toThrow(/single-quote/)
    expect(() => expandWord('${E:?must be set}', { lookup })).toThrow(/E: must be set/)
  })

  test('the escape character follows the directive', () => {
    expect(expandWord('`$A', { lookup, escape: '`' })).toBe('$A')
  })
})

describe('parseMountFlag', () => {
  test('defaults like BuildKit: bind, read-only unless cache or tmpfs', () => {
    expect(parseMountFlag('target=/a')).toEqual({ type: 'bind', target: '/a', readonly: true })
    expect(parseMountFlag('type=cache,target=/a')).toEqual({ type: 'cache', target: '/a', readonly: false })
    expect(parseMountFlag('type=bind,target=/a,rw')).toEqual({ type: 'bind', target: '/a', readonly: false })
  })

  test.each([
    ['', /csv/],
    ['type=cache,"id=a', /csv/],
    ['type=cache,id=a"b', /bare/],
    ['type=volume', /unsupported mount type/],
    ['type=bind,uid=1', /uid not allowed/],
    ['type=bind,sharing=locked', /invalid cache sharing/],
    ['type=cache,size=1m', /unexpected key 'size'/]
  ])('refuses %j', (value, message) => {
    expect(() => parseMountFlag(value)).toThrow(message)
  })

  const options = fc.record(
    {
      id: fc.stringMatching(/^[A-Za-z0-9_./][A-Za-z0-9_./@+:-]{0,20}$/),
      target: fc.array(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,7}$/), { minLength: 1, maxLength: 4 }).map(parts => `/${parts.join('/')}`),
      uid: fc.nat(2 ** 32 - 1),
      gid: fc.nat(2 ** 32 - 1),
      mode: fc.nat(0o7777),
      sharing: fc.constantFrom('shared' as const, 'private' as const, 'locked' as const),
      readonly: fc.boolean()
    },
    { requiredKeys: ['target'] }
  )

  function fields(o: Partial<MountOptions>, style: { alias: number; zero: boolean; roForm: number }): string[] {
    const out = ['type=cache']
    if (o.id !== undefined) out.push(`id=${o.id}`)
    out.push(`${['target', 'dst', 'destination'][style.alias]}=${o.target}`)
    if (o.uid !== undefined) out.push(`uid=${o.uid}`)
    if (o.gid !== undefined) out.push(`gid=${o.gid}`)
    if (o.mode !== undefined) out.push(`mode=${style.zero ? '0' : ''}${o.mode.toString(8)}`)
    if (o.sharing !== undefined) out.push(`sharing=${o.sharing}`)
    if (o.readonly !== undefined)
      out.push((o.readonly ? ['ro', 'readonly', 'ro=true', 'rw=false'] : ['rw', 'readwrite', 'readonly=false', 'rw=1'])[style.roForm]!)
    return out
  }

  test('property: safe option strings round-trip in any order, case and CSV quoting', () => {
    fc.assert(
      fc.property(
        options,
        fc.record({ alias: fc.integer({ min: 0, max: 2 }), zero: fc.boolean(), roForm: fc.integer({ min: 0, max: 3 }) }),
        fc.infiniteStream(fc.record({ quote: fc.boolean(), upper: fc.boolean(), order: fc.double({ noNaN: true }) })),
        (o, style, tweaks) => {
          const tweaked = fields(o, style).map(field => {
            const t = tweaks.next().value
            const eq = field.indexOf('=')
            const cased = t.upper && eq > 0 ? field.slice(0, eq).toUpperCase() + field.slice(eq) : field
            return { text: t.quote ? `"${cased}"` : cased, order: t.order }
          })
          const text = tweaked
            .sort((a, b) => a.order - b.order)
            .map(f => f.text)
            .join(',')
          expect(parseMountFlag(text)).toEqual({ type: 'cache', ...o, readonly: o.readonly ?? false })
        }
      )
    )
  })

  test('property: a discovered mount is what parseMounts makes of the same options', () => {
    fc.assert(
      fc.property(options, o => {
        const flag = fields({ ...o, uid: o.uid === undefined ? undefined : o.uid % 2 ** 31 }, { alias: 0, zero: true, roForm: 0 }).join(',')
        const result = discover(df('FROM alpine', `RUN --mount=${flag} true`))
        const expected: MountSpec = { id: o.id === undefined ? o.target! : o.id, target: o.target! }
        if (o.uid !== undefined) expected.uid = o.uid % 2 ** 31
        if (o.gid !== undefined && o.gid < 2 ** 31) expected.gid = o.gid
        if (o.mode !== undefined) expected.mode = o.mode
        if (o.sharing !== undefined) expected.sharing = o.sharing
        if (o.gid !== undefined && o.gid >= 2 ** 31) {
          expect(result.mounts).toEqual([])
          expect(result.warnings).toEqual([expect.stringMatching(/gid must be/)])
        } else {
          expect(result.warnings).toEqual([])
          expect(result.mounts).toEqual([
            {
              spec: expected,
              platforms: ['linux/amd64'],
              readonly: o.readonly ?? false,
              locations: [{ file: 'Dockerfile', line: 2, stage: 'stage-0' }]
            }
          ])
        }
      })
    )
  })

  test('property: discovery never throws, whatever the Dockerfile says', () => {
    const piece = fc.constantFrom(
      'FROM a',
      'FROM a AS b',
      'ARG X=$Y',
      'ENV Y=${X:-z}',
      'RUN ',
      '--mount=',
      'type=cache,',
      'target=/t',
      'id=$X',
      ',',
      '"',
      "'",
      '\\',
      '`',
      '\n',
      ' ',
      '<<EOF',
      'EOF',
      '# escape=`',
      '${',
      '}',
      '$'
    )
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 40 }), fc.constantFrom(['linux/amd64'], ['linux/arm64', 'x']), (pieces, platforms) => {
        const result = discover(pieces.join(''), { platforms: [...platforms] })
        expect(Array.isArray(result.mounts) && Array.isArray(result.warnings)).toBe(true)
      }),
      { numRuns: 500 }
    )
  })
})
