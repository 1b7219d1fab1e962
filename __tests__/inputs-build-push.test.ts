// The inputs a docker/build-push-action workflow brings along: list syntax of key-files,
// build-args as build-push-action reads them, context/file with its defaults, target,
// key-platform, and the mounts input read by the Dockerfile's own flag parser. Messages
// are quoted exactly: they are what a user sees.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'

import { getInputs, withDefaults } from '../src/action/inputs.js'
import { discoverMounts } from '../src/discover/index.js'
import { parseInputList } from '../src/input-list.js'
import { parseBuildArgs } from '../src/mounts/sources.js'
import { parseMounts } from '../src/mounts/spec.js'
import { captureLog, type CapturingLogger } from '../test-support/fakes/log.js'
import { useWorld, type World } from '../test-support/fakes/harness.js'

const reader = (given: Record<string, string>) => withDefaults(name => given[name] ?? '')

let logger: CapturingLogger
let restoreLog: () => void
let ws: string
const savedWorkspace = process.env.GITHUB_WORKSPACE
beforeEach(() => {
  const captured = captureLog()
  logger = captured.logger
  restoreLog = captured.restore
  ws = mkdtempSync(join(tmpdir(), 'bmc-inputs-'))
  process.env.GITHUB_WORKSPACE = ws
})
afterEach(() => {
  restoreLog()
  rmSync(ws, { recursive: true, force: true })
  if (savedWorkspace === undefined) delete process.env.GITHUB_WORKSPACE
  else process.env.GITHUB_WORKSPACE = savedWorkspace
})

function write(path: string, text: string): void {
  mkdirSync(join(ws, path, '..'), { recursive: true })
  writeFileSync(join(ws, path), text)
}

function errorOf(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    return (error as Error).message
  }
  return 'no error'
}

describe('list inputs (the docker/*-actions syntax)', () => {
  test('newline and comma separated, CSV quotes, blank and comment lines dropped, items trimmed', () => {
    const text = 'package-lock.json, Dockerfile\n\n  "a,b.txt" ,c\r\n# a comment\n"say ""hi""",d"e\n'
    expect(parseInputList(text, 'key-files')).toEqual(['package-lock.json', 'Dockerfile', 'a,b.txt', 'c', 'say "hi"', 'd"e'])
    expect(parseInputList('"two\nlines",x', 'key-files')).toEqual(['two\nlines', 'x'])
    expect(parseInputList('', 'key-files')).toEqual([])
  })

  test('without comma splitting, one item per line, its quotes resolved', () => {
    expect(parseInputList('"KEY=a,b"\nK2=c,d\nK3="e,f"', 'build-args', { ignoreComma: true })).toEqual(['KEY=a,b', 'K2=c,d', 'K3="e,f"'])
  })

  test('broken quoting is an error naming the input and the line', () => {
    expect(errorOf(() => parseInputList('a\n"open', 'key-files'))).toBe('Input "key-files": line 2: a quoted value has no closing quote')
    expect(errorOf(() => parseInputList('"a"b', 'key-files'))).toBe(
      'Input "key-files": line 1: a quoted value must be followed by a comma or the end of the line, got "b"'
    )
  })

  test('the key-files input takes the list syntax', () => {
    const inputs = getInputs(reader({ mounts: 'id=a,target=/a', 'key-files': 'package-lock.json, Dockerfile' }))
    expect(inputs.keyFiles).toEqual(['package-lock.json', 'Dockerfile'])
  })
})

describe('build-args as docker/build-push-action reads them', () => {
  test('comment lines, quoted values, a bare KEY from the environment, a bare KEY missing from it left unset', () => {
    const args = parseBuildArgs('# versions\nNODE=22\nFROM_ENV\nNOT_IN_ENV\n"LIST=a,b"\nPLAIN=x,y\nEMPTY=\n', { FROM_ENV: 'from-env' })
    expect({ ...args }).toEqual({ NODE: '22', FROM_ENV: 'from-env', LIST: 'a,b', PLAIN: 'x,y', EMPTY: '' })
    expect(Object.hasOwn(args, 'NOT_IN_ENV')).toBe(false)
  })

  test('an item without a name is an error', () => {
    expect(errorOf(() => parseBuildArgs('=x'))).toBe(
      'Input "build-args": "=x" has no name: expected KEY=VALUE, or KEY to take its value from the environment'
    )
  })

  test('a bare KEY expands a mount id in discovery; without it in the environment the ARG default stays', () => {
    write('Dockerfile', 'FROM alpine\nARG BMC_FLAVOUR=none\nRUN --mount=type=cache,id=deps-$BMC_FLAVOUR,target=/deps true\n')
    const given = { 'build-args': '# from the job environment\nBMC_FLAVOUR' }
    expect(getInputs(reader(given)).mounts.map(m => m.id)).toEqual(['deps-none'])
    process.env.BMC_FLAVOUR = 'slim'
    try {
      expect(getInputs(reader(given)).mounts.map(m => m.id)).toEqual(['deps-slim'])
    } finally {
      delete process.env.BMC_FLAVOUR
    }
  })
})

describe("context and file, with build-push-action's defaults", () => {
  const npm = 'FROM node\nRUN --mount=type=cache,id=npm,target=/root/.npm npm ci\n'

  test('context: ./app finds ./app/Dockerfile, keyed on it', () => {
    write('app/Dockerfile', npm)
    const inputs = getInputs(reader({ context: './app' }))
    expect(inputs.mounts).toEqual([{ id: 'npm', target: '/root/.npm', keyFiles: ['app/Dockerfile'] }])
    expect(logger.warnings).toEqual([])
  })

  test('{{defaultContext}}:subdir is the subdirectory of the workspace', () => {
    write('svc/Dockerfile', npm)
    expect(getInputs(reader({ context: '{{defaultContext}}:svc' })).mounts.map(m => m.id)).toEqual(['npm'])
  })

  test('file is read relative to the workspace, as buildx reads --file', () => {
    write('docker/prod.Dockerfile', npm)
    expect(getInputs(reader({ context: 'app', file: 'docker/prod.Dockerfile' })).mounts.map(m => m.keyFiles)).toEqual([['docker/prod.Dockerfile']])
  })

  test('a missing default Dockerfile is a warning with a hint, not a failed step', () => {
    const inputs = getInputs(reader({}))
    expect(inputs.mounts).toEqual([])
    expect(logger.warnings).toEqual([
      'No Dockerfile at "Dockerfile" (the default, {context}/Dockerfile), so no cache mounts were found: set file (or context) to where your Dockerfile is, dockerfile to several, or list the mounts in mounts (ENOENT)'
    ])
    logger.clear()
    getInputs(reader({ context: 'web' }))
    expect(logger.warnings[0]).toMatch(/^No Dockerfile at "web\/Dockerfile" \(the default/)
  })

  test('a file or dockerfile that is given and missing fails the step, naming the input', () => {
    expect(errorOf(() => getInputs(reader({ file: 'missing.Dockerfile' })))).toBe('Input "file": cannot read "missing.Dockerfile": ENOENT')
    expect(errorOf(() => getInputs(reader({ dockerfile: 'a.Dockerfile' })))).toBe('Input "dockerfile": cannot read "a.Dockerfile": ENOENT')
  })

  test('a remote context cannot be read: a warning, no discovery', () => {
    const inputs = getInputs(reader({ context: 'https://github.com/o/r.git#main' }))
    expect(inputs.mounts).toEqual([])
    expect(logger.warnings[0]).toBe(
      'context "https://github.com/o/r.git#main" is not a local directory: no Dockerfile to search for cache mounts. Set file (or dockerfile) to the Dockerfile\'s path in the workspace, or list the mounts in mounts.'
    )
  })
})

describe('target', () => {
  const multi = [
    'FROM alpine AS base',
    'RUN --mount=type=cache,id=apk,target=/var/cache/apk true',
    'FROM base AS deps',
    'RUN --mount=type=cache,id=npm,target=/root/.npm true',
    'FROM alpine AS tools',
    'RUN --mount=type=cache,id=tools,target=/tools true',
    'FROM alpine AS seed',
    'RUN --mount=type=cache,id=seed,target=/seed true',
    'FROM deps AS build',
    'COPY --from=2 /tools /tools',
    'RUN --mount=type=bind,from=seed,target=/s --mount=type=cache,id=build,target=/cache true',
    'FROM alpine AS test',
    'RUN --mount=type=cache,id=test,target=/t true',
    'FROM build AS app',
    ''
  ].join('\n')
  const discover = (target?: string) =>
    discoverMounts({
      dockerfiles: [{ path: 'Dockerfile', content: multi }],
      buildArgs: {},
      platforms: ['linux/amd64'],
      buildPlatform: 'linux/amd64',
      ...(target !== undefined ? { target } : {})
    })

  test('only the stages the target needs: FROM, COPY --from by index, RUN --mount=from=', () => {
    expect(discover('app').mounts.map(m => m.spec.id)).toEqual(['apk', 'npm', 'tools', 'seed', 'build'])
    expect(discover('app').skippedStages).toEqual(['Dockerfile:test'])
    expect(discover('DEPS').mounts.map(m => m.spec.id)).toEqual(['apk', 'npm'])
    expect(discover().mounts.map(m => m.spec.id)).toEqual(['apk', 'npm', 'tools', 'seed', 'build', 'test'])
  })

  test('an unknown target fails the step, naming the input and listing the stages', () => {
    write('Dockerfile', multi)
    expect(errorOf(() => getInputs(reader({ target: 'prod' })))).toBe(
      'Input "target": no stage "prod" in Dockerfile (its stages: "base", "deps", "tools", "seed", "build", "test", "app")'
    )
    expect(getInputs(reader({ target: 'deps' })).mounts.map(m => m.id)).toEqual(['apk', 'npm'])
  })

  test('a target without a Dockerfile to search is a warning', () => {
    getInputs(reader({ mounts: 'id=a,target=/a', target: 'app' }))
    expect(logger.warnings).toEqual(['target "app" is not used: no Dockerfile is searched for cache mounts (set file or dockerfile).'])
  })
})

describe('key-platform', () => {
  test("sets the keys' platform; platform is a deprecated alias that still works", () => {
    expect(getInputs(reader({ mounts: 'id=a,target=/a', 'key-platform': 'linux/arm64' })).platform).toBe('linux/arm64')
    expect(logger.warnings).toEqual([])
    expect(getInputs(reader({ mounts: 'id=a,target=/a', platform: 'linux/arm64' })).platform).toBe('linux/arm64')
    expect(logger.warnings).toEqual([
      'Input "platform" is deprecated: use key-platform (the platform part of the cache keys; the build\'s platforms are the platforms input).'
    ])
  })

  test('a key-platform that is not one of platforms: a warning that $TARGETARCH resolves for platforms', () => {
    getInputs(reader({ mounts: 'id=a,target=/a', 'key-platform': 'linux/arm64', platforms: 'linux/amd64' }))
    expect(logger.warnings).toEqual([
      'key-platform "linux/arm64" is not one of platforms (linux/amd64): it changes only the keys; $TARGETARCH and the other platform variables in mount ids resolve for platforms, not for key-platform.'
    ])
    logger.clear()
    getInputs(reader({ mounts: 'id=a,target=/a', 'key-platform': 'linux/arm64', platforms: 'linux/amd64,linux/arm64' }))
    expect(logger.warnings).toEqual([])
  })

  test('an invalid key-platform is an error naming it', () => {
    expect(errorOf(() => getInputs(reader({ mounts: 'id=a,target=/a', 'key-platform': 'arm64' })))).toBe(
      'Input "key-platform": "arm64" is not a platform like linux/amd64'
    )
  })
})

describe('the mounts input, read by the Dockerfile flag parser', () => {
  test('quotes as in a Dockerfile, readonly/ro as BuildKit accepts them', () => {
    expect(parseMounts('type=cache,id=npm,target="/root/.npm"')).toEqual([{ id: 'npm', target: '/root/.npm' }])
    expect(parseMounts("--mount=type=cache,'id=go',target=/go,readonly")).toEqual([{ id: 'go', target: '/go' }])
    expect(parseMounts('id=a,target=/a,ro=true\nid=b,target=/b,rw')).toEqual([
      { id: 'a', target: '/a' },
      { id: 'b', target: '/b' }
    ])
    expect(parseMounts('[{"id":"c","target":"/c","readonly":true}]')).toEqual([{ id: 'c', target: '/c' }])
    expect(errorOf(() => parseMounts('id=a,target=/a,ro=maybe'))).toBe(
      'Input "mounts line 1": ro must be true or false (or given without a value), got "maybe"'
    )
  })

  test('commas inside a per-mount key-files need CSV quotes; a bare comma gets a hint', () => {
    expect(parseMounts(`id=a,target=/a,'"key-files=a.lock,b.lock"'`)[0]?.keyFiles).toEqual(['a.lock', 'b.lock'])
    expect(errorOf(() => parseMounts('id=a,target=/a,key-files=a.lock,b.lock'))).toBe(
      'Input "mounts line 1": unknown option "b.lock" (expected id, target, uid, gid, mode, sharing, readonly, key-files, exclude, max-size; several key-files or exclude patterns are separated by ";")'
    )
  })

  test('an options-only line without a Dockerfile that declares its id fails with a hint', () => {
    expect(errorOf(() => getInputs(reader({ mounts: 'id=gobuild,max-size=2G' })))).toBe(
      'Input "mounts line 1": id "gobuild" needs a target path (target=/path as in the Dockerfile), or a Dockerfile that declares this cache: set file or dockerfile to add options to the mounts it declares'
    )
    write('Dockerfile', 'FROM golang\nRUN --mount=type=cache,id=gomod,target=/go/pkg/mod go build\n')
    expect(errorOf(() => getInputs(reader({ mounts: 'id=gobuild,max-size=2G', file: 'Dockerfile' })))).toBe(
      'Input "mounts": id "gobuild" has no target and no cache mount with this id is declared in Dockerfile: give target= (as in the Dockerfile flag), or set file or dockerfile to the Dockerfile that declares it'
    )
    expect(getInputs(reader({ mounts: 'id=gomod,max-size=2G', file: 'Dockerfile' })).mounts).toEqual([
      { id: 'gomod', target: '/go/pkg/mod', keyFiles: ['Dockerfile'], maxSize: 2 * 1024 ** 3 }
    ])
  })
})

describe('key-files patterns that match no file', () => {
  let world: World
  let log: CapturingLogger
  useWorld((w, l) => {
    world = w
    log = l
  })

  test('one warning per pattern, naming it; the key still uses the files the other patterns match', async () => {
    write('package-lock.json', '{}')
    const services = { ...world.services }
    delete services.hashFiles
    const missing = join(ws, 'package-lock.jsn')
    const found = join(ws, 'package-lock.json')
    const { state } = await planMountsWith(services, [found, missing])
    expect(log.warnings).toEqual([
      `key-files: no file matches ${JSON.stringify(missing)} (patterns are relative to the workspace); it adds nothing to the keys of "npm", "apt"`
    ])
    const only = await planMountsWith(services, [found])
    expect(state.mounts.map(m => m.keys.base)).toEqual(only.state.mounts.map(m => m.keys.base))
    expect(state.mounts[0]?.keys.base).not.toMatch(/nofiles$/)
  })

  async function planMountsWith(services: World['services'], keyFiles: string[]) {
    const { planMounts } = await import('../src/core/plan.js')
    return planMounts(services, {
      mounts: [
        { id: 'npm', target: '/root/.npm' },
        { id: 'apt', target: '/var/cache/apt' }
      ],
      keyFiles,
      keyPrefix: 'bmc',
      utilityImage: 'busybox:1.36',
      client: 'auto',
      platform: 'linux/amd64',
      save: true,
      maxRestoreBytes: 1024 ** 3,
      extractVia: 'auto'
    })
  }
})
