import { posix } from 'node:path'

import { errorMessage, InputError } from './errors.js'
import { cleanTarget, formatMode, parseMounts, type MountSpec, type Sharing } from './mounts.js'

/**
 * Dockerfile auto-discovery of `RUN --mount=type=cache` mounts, so users need
 * not repeat their mount options in the workflow. It follows BuildKit's
 * Dockerfile frontend (moby/buildkit frontend/dockerfile: parser/parser.go,
 * parser/split_command.go, shell/lex.go, instructions/commands_runmount.go,
 * dockerfile2llb/convert.go, convert_runmount.go, platform.go) closely enough
 * to compute the same cache ids, and turns everything it cannot follow into a
 * warning: discovery must never fail a build.
 *
 * Every stage is read, because the build target is not known here; BuildKit
 * itself only runs the stages the target depends on, so a cache of an unused
 * stage is restored and saved for nothing, which is harmless. The base
 * image's ENV and WORKDIR are not visible either: a variable only it could
 * set is unresolved (the mount is skipped with a warning), and a relative
 * target is placed under the Dockerfile's own WORKDIRs (the target is only
 * descriptive; the id, uid, gid and mode are what select the cache).
 */

/** What discovery needs to know of the user's build: the same inputs BuildKit would get. */
export interface DiscoverInput {
  dockerfiles: { path: string; content: string }[]
  /** Values of the build's `--build-arg`s: they override ARG defaults, as in BuildKit. */
  buildArgs: Record<string, string>
  /** Target platforms, e.g. `['linux/amd64', 'linux/arm64']`; never empty. */
  platforms: string[]
  /** The engine's native platform, which BuildKit exposes as BUILDPLATFORM & co. */
  buildPlatform: string
}

/** Where a cache mount is used, for warnings and the job summary. */
export interface MountLocation {
  file: string
  /** 1-based line of the RUN instruction (its first line when continued). */
  line: number
  /** Stage name, or BuildKit's `stage-N` for an unnamed stage. */
  stage: string
}

/** One cache to persist: every use of one id with the same uid/gid/mode, over all files and platforms. */
export interface DiscoveredMount {
  /** As parseMounts would return it: id expanded (default: the cleaned target), uid/gid/mode only when given. */
  spec: MountSpec
  /** The target platforms (as given in the input) whose build uses this cache. */
  platforms: string[]
  /** True only when every use is read-only: such a cache is still restored, never written by the build. */
  readonly: boolean
  locations: MountLocation[]
}

/** Never an exception: whatever could not be followed is a warning, and its mount is left out. */
export interface DiscoverResult {
  mounts: DiscoveredMount[]
  warnings: string[]
  /**
   * The `BUILDKIT_CACHE_MOUNT_NS` build-arg when non-empty. BuildKit names the
   * cache `<namespace>/<id>` (`/<id>` without one) in every Dockerfile build,
   * the generated ones included, so no id rewrite can reproduce it: the
   * generated builds must be given the same build-arg.
   */
  cacheNamespace?: string
}

/** Build-arg that BuildKit prefixes to every cache id (dockerui config.go). */
export const CACHE_NAMESPACE_ARG = 'BUILDKIT_CACHE_MOUNT_NS'

/**
 * Finds every cache mount of the given Dockerfiles, per target platform, and
 * merges uses of one id. Each file is read once per target platform because
 * BuildKit's automatic platform ARGs differ between them; a mount whose id
 * does not depend on them comes out once, with all platforms.
 */
export function discoverMounts(input: DiscoverInput): DiscoverResult {
  const warnings = new Set<string>()
  const warn = (message: string): void => {
    warnings.add(message)
  }
  const build = parsePlatform(input.buildPlatform)
  if (build === undefined) {
    warn(`build platform "${input.buildPlatform}" is not a platform like linux/amd64; BUILD* args stay undefined`)
  }
  const targets: { name: string; platform: Platform }[] = []
  for (const name of unique(input.platforms.map(p => p.trim()).filter(p => p !== ''))) {
    const platform = parsePlatform(name, build)
    if (platform === undefined) warn(`platform "${name}" is not a platform like linux/amd64; it is left out of discovery`)
    else targets.push({ name, platform })
  }
  const uses: Use[] = []
  input.dockerfiles.forEach((file, fileIndex) => {
    let parsed: ParsedDockerfile
    try {
      parsed = parseDockerfile(file.content)
    } catch (error) {
      warn(`${file.path}: not searched for cache mounts: ${errorMessage(error)}`)
      return
    }
    targets.forEach((target, platformIndex) => {
      const args = automaticArgs(target.platform, build, lastStageName(parsed))
      for (const use of evaluate(parsed, file.path, input.buildArgs, args, warn)) {
        uses.push({ ...use, fileIndex, platformIndex })
      }
    })
  })
  uses.sort((a, b) => a.fileIndex - b.fileIndex || a.seq - b.seq || a.platformIndex - b.platformIndex)
  const mounts = mergeUses(uses, targets.map(t => t.name), warn)
  const result: DiscoverResult = { mounts, warnings: [...warnings] }
  const namespace = input.buildArgs[CACHE_NAMESPACE_ARG]
  if (Object.hasOwn(input.buildArgs, CACHE_NAMESPACE_ARG) && namespace !== undefined && namespace !== '') {
    result.cacheNamespace = namespace
  }
  return result
}

interface Use {
  spec: MountSpec
  readonly: boolean
  location: MountLocation
  /** Position of the mount in its file, the same for every platform. */
  seq: number
  fileIndex: number
  platformIndex: number
}

function mergeUses(uses: Use[], platformNames: string[], warn: (m: string) => void): DiscoveredMount[] {
  const byId = new Map<string, { mount: DiscoveredMount; platformIndexes: Set<number> }>()
  for (const use of uses) {
    const kept = byId.get(use.spec.id)
    if (kept === undefined) {
      byId.set(use.spec.id, {
        mount: { spec: use.spec, platforms: [], readonly: use.readonly, locations: [use.location] },
        platformIndexes: new Set([use.platformIndex])
      })
      continue
    }
    const first = kept.mount.locations[0]!
    if (!sameCacheSettings(kept.mount.spec, use.spec)) {
      warn(
        `${where(use.location)}: cache id "${use.spec.id}" is used with ${cacheSettings(use.spec)}, ` +
          `but with ${cacheSettings(kept.mount.spec)} at ${where(first)}; BuildKit keeps these as separate caches ` +
          `and only one can be persisted under this id: keeping the one at ${where(first)}`
      )
      continue
    }
    kept.platformIndexes.add(use.platformIndex)
    kept.mount.readonly &&= use.readonly
    if (!kept.mount.locations.some(l => where(l) === where(use.location))) kept.mount.locations.push(use.location)
  }
  return [...byId.values()].map(({ mount, platformIndexes }) => ({
    ...mount,
    platforms: platformNames.filter((_, index) => platformIndexes.has(index))
  }))
}

/** uid, gid and mode are part of BuildKit's cache identity (convert_runmount.go setCacheUIDGID). */
function sameCacheSettings(a: MountSpec, b: MountSpec): boolean {
  return a.uid === b.uid && a.gid === b.gid && a.mode === b.mode
}

function cacheSettings(spec: MountSpec): string {
  const parts: string[] = []
  if (spec.uid !== undefined) parts.push(`uid=${spec.uid}`)
  if (spec.gid !== undefined) parts.push(`gid=${spec.gid}`)
  if (spec.mode !== undefined) parts.push(`mode=${formatMode(spec.mode)}`)
  return parts.length === 0 ? 'no uid/gid/mode' : parts.join(',')
}

function where(location: { file: string; line: number }): string {
  return `${location.file}:${location.line}`
}

function unique<T>(items: T[]): T[] {
  return [...new Set(items)]
}

interface Platform {
  os: string
  arch: string
  variant: string
}

const KNOWN_OS = new Set(
  'aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 solaris wasip1 windows zos'.split(' ')
)
const KNOWN_ARCH = new Set(
  ('386 amd64 amd64p32 arm armbe arm64 arm64be loong64 mips mipsle mips64 mips64le mips64p32 mips64p32le ' +
    'ppc ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm').split(' ')
)
const PLATFORM_PART = /^[A-Za-z0-9_-]+$/

/**
 * containerd's platforms.Parse followed by Normalize, as BuildKit applies to
 * `--platform` (dockerui attr.go parsePlatforms): `linux/arm` becomes arm/v7,
 * `linux/arm64/v8` becomes arm64 without variant. A lone OS takes the build
 * platform's architecture (the frontend's own, in BuildKit).
 */
function parsePlatform(text: string, build?: Platform): Platform | undefined {
  const parts = text.trim().split('/')
  if (parts.length > 3 || parts.some(p => !PLATFORM_PART.test(p))) return undefined
  const [first, second, third] = parts as [string, string | undefined, string | undefined]
  let p: Platform
  if (second === undefined) {
    const os = normalizeOs(first)
    if (KNOWN_OS.has(os)) {
      if (build === undefined) return undefined
      p = { os, arch: build.arch, variant: build.variant }
    } else {
      const [arch, variant] = normalizeArch(first, '')
      if (!KNOWN_ARCH.has(arch)) return undefined
      p = { os: 'linux', arch, variant: arch === 'arm' && variant === 'v7' ? '' : variant }
    }
  } else if (third === undefined) {
    const [arch, variant] = normalizeArch(second, '')
    p = { os: normalizeOs(first), arch, variant: arch === 'arm' && variant === 'v7' ? '' : variant }
  } else {
    const [arch, variant] = normalizeArch(second, third)
    p = { os: normalizeOs(first), arch, variant: arch === 'arm64' && variant === '' ? 'v8' : variant }
  }
  const [arch, variant] = normalizeArch(p.arch, p.variant)
  return { os: p.os, arch, variant }
}

function normalizeOs(os: string): string {
  const lower = os.toLowerCase()
  return lower === 'macos' ? 'darwin' : lower
}

function normalizeArch(archIn: string, variantIn: string): [string, string] {
  const arch = archIn.toLowerCase()
  const variant = variantIn.toLowerCase()
  switch (arch) {
    case 'i386':
      return ['386', '']
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return ['amd64', variant === 'v1' ? '' : variant]
    case 'aarch64':
    case 'arm64':
      if (['8', 'v8', 'v8.0'].includes(variant)) return ['arm64', '']
      if (['9', '9.0', 'v9.0'].includes(variant)) return ['arm64', 'v9']
      return ['arm64', variant]
    case 'armhf':
      return ['arm', 'v7']
    case 'armel':
      return ['arm', 'v6']
    case 'arm':
      if (variant === '' || variant === '7') return ['arm', 'v7']
      if (['5', '6', '8'].includes(variant)) return ['arm', `v${variant}`]
      return ['arm', variant]
    default:
      return [arch, variant]
  }
}

function formatPlatform(p: Platform): string {
  return [p.os, p.arch, p.variant].filter(s => s !== '').join('/')
}

type Value = string | null

/**
 * BuildKit's automatic ARGs for one target platform (dockerfile2llb
 * platform.go defaultArgs). They live in the global scope only: a stage sees
 * one after re-declaring it (`ARG TARGETARCH`). TARGETSTAGE assumes no
 * `--target`, i.e. the last stage.
 */
function automaticArgs(target: Platform, build: Platform | undefined, targetStage: string): Map<string, Value> {
  const buildValue = (pick: (p: Platform) => string): Value => (build === undefined ? null : pick(build))
  return new Map<string, Value>([
    ['BUILDPLATFORM', buildValue(formatPlatform)],
    ['BUILDOS', buildValue(p => p.os)],
    ['BUILDOSVERSION', buildValue(() => '')],
    ['BUILDARCH', buildValue(p => p.arch)],
    ['BUILDVARIANT', buildValue(p => p.variant)],
    ['TARGETPLATFORM', formatPlatform(target)],
    ['TARGETOS', target.os],
    ['TARGETOSVERSION', ''],
    ['TARGETARCH', target.arch],
    ['TARGETVARIANT', target.variant],
    ['TARGETSTAGE', targetStage]
  ])
}

interface Stage {
  label: string
  env: Map<string, Value>
  /** Last WORKDIR set in the Dockerfile; null when it could not be expanded. */
  workdir: string | null
}

type Found = Omit<Use, 'fileIndex' | 'platformIndex'>

/** Walks one file for one target platform the way dockerfile2llb dispatches it. */
function evaluate(
  parsed: ParsedDockerfile,
  file: string,
  buildArgs: Record<string, string>,
  automatic: Map<string, Value>,
  warn: (m: string) => void
): Found[] {
  const { escape } = parsed
  const buildArg = (key: string): string | undefined => (Object.hasOwn(buildArgs, key) ? buildArgs[key] : undefined)
  const globals = new Map<string, Value>()
  for (const [key, value] of automatic) globals.set(key, buildArg(key) ?? value)
  const named = new Map<string, Stage>()
  const found: Found[] = []
  let stage: Stage | undefined
  let stageIndex = -1
  let seq = 0
  for (const ins of parsed.instructions) {
    switch (ins.keyword) {
      case 'ARG':
        for (const [key, raw] of argPairs(ins.args, escape)) {
          if (stage === undefined) {
            // convert.go buildMetaArgs: a global default sees only earlier global args; unset is empty.
            const value = buildArg(key) ?? (raw === undefined ? undefined : tryExpand(raw, escape, lookupIn(globals), false))
            if (value !== undefined) globals.set(key, value)
          } else {
            // convert.go dispatchArg: build-arg, else default, else the global value.
            const value =
              buildArg(key) ??
              (raw === undefined ? globals.get(key) : tryExpand(raw, escape, lookupIn(stage.env), true))
            if (value !== undefined) stage.env.set(key, value)
          }
        }
        break
      case 'FROM': {
        stageIndex++
        const words = ins.args.split(/[\t\v\f\r ]+/).filter(w => w !== '')
        const name = words.length === 3 && words[1]!.toLowerCase() === 'as' ? words[2]!.toLowerCase() : undefined
        const base = words[0] === undefined ? null : tryExpand(words[0], escape, lookupIn(globals), false)
        const parent = base === null ? undefined : named.get(base)
        stage = {
          label: name ?? `stage-${stageIndex}`,
          env: new Map(parent?.env ?? []),
          workdir: parent === undefined ? '/' : parent.workdir
        }
        if (name !== undefined) named.set(name, stage)
        break
      }
      case 'ENV':
        if (stage !== undefined) {
          const env = stage.env
          const lookup = lookupIn(env)
          const pairs = envPairs(ins.args, escape).map(([key, raw]) => [key, tryExpand(raw, escape, lookup, true)] as const)
          for (const [key, value] of pairs) env.set(key, value)
        }
        break
      case 'WORKDIR':
        if (stage !== undefined) {
          const dir = tryExpand(ins.args, escape, lookupIn(stage.env), true)
          stage.workdir = dir === null || stage.workdir === null ? null : posix.resolve(stage.workdir, dir)
        }
        break
      case 'RUN':
        if (stage !== undefined) {
          for (const flag of ins.flags) {
            if (flag !== '--mount' && !flag.startsWith('--mount=')) continue
            const location: MountLocation = { file, line: ins.line, stage: stage.label }
            const use = discoverOne(flag, stage, escape, location, globals, warn)
            if (use !== undefined) found.push({ ...use, location, seq })
            seq++
          }
        }
        break
    }
  }
  return found
}

function lastStageName(parsed: ParsedDockerfile): string {
  const froms = parsed.instructions.filter(i => i.keyword === 'FROM')
  const words = froms.at(-1)?.args.split(/[\t\v\f\r ]+/).filter(w => w !== '') ?? []
  return words.length === 3 && words[1]!.toLowerCase() === 'as' ? words[2]!.toLowerCase() : 'default'
}

function lookupIn(env: Map<string, Value>): Lookup {
  return name => env.get(name)
}

function tryExpand(word: string, escape: string, lookup: Lookup, strict: boolean): Value {
  try {
    return expandWord(word, { lookup, escape, strict })
  } catch {
    return null
  }
}

/** One `--mount` flag of a RUN: its cache spec, or undefined (not a cache mount, or skipped with a warning). */
function discoverOne(
  flag: string,
  stage: Stage,
  escape: string,
  location: MountLocation,
  globals: Map<string, Value>,
  warn: (m: string) => void
): { spec: MountSpec; readonly: boolean } | undefined {
  const skip = (reason: string): undefined => {
    warn(`${where(location)}: cache mount skipped: ${reason}`)
    return undefined
  }
  const eq = flag.indexOf('=')
  if (eq < 0) return skip('--mount needs a value')
  const value = flag.slice(eq + 1)
  const expand = (word: string): string => {
    try {
      return expandWord(word, { lookup: lookupIn(stage.env), escape, strict: true })
    } catch (error) {
      if (error instanceof UnresolvedVariableError) throw new Error(unresolvedReason(error.names, stage, globals))
      throw error
    }
  }
  let type: string
  try {
    type = mountType(value, expand)
  } catch (error) {
    return skip(`${errorMessage(error)} (in --mount=${value})`)
  }
  if (type !== 'cache') return undefined
  let options: MountOptions
  try {
    options = parseMountFlag(value, expand)
  } catch (error) {
    return skip(`${errorMessage(error)} (in --mount=${value})`)
  }
  if (options.from !== undefined && options.from !== '') {
    return skip(`it is seeded from "${options.from}" (from=), a cache this action cannot restore under the same identity`)
  }
  if (options.source !== undefined && posix.join('/', options.source) !== '/') {
    return skip(`it mounts the subpath "${options.source}" (source=) of the cache, which this action cannot restore`)
  }
  if (options.target === undefined || options.target === '') return skip('it has no target')
  if (!options.target.startsWith('/') && stage.workdir === null) {
    return skip(`its target "${options.target}" is relative to a WORKDIR that could not be expanded`)
  }
  const target = cleanTarget(posix.resolve(stage.workdir ?? '/', options.target))
  if (target === '/') return skip('its target is "/"')
  // convert_runmount.go: an empty id defaults to path.Clean of the target as written.
  const id = options.id === undefined || options.id === '' ? cleanTarget(options.target) : options.id
  const entry: Record<string, unknown> = { id, target }
  if (options.uid !== undefined) entry.uid = options.uid
  if (options.gid !== undefined) entry.gid = options.gid
  if (options.mode !== undefined) entry.mode = formatMode(options.mode)
  if (options.sharing !== undefined) entry.sharing = options.sharing
  try {
    const [spec] = parseMounts(JSON.stringify([entry]), where(location))
    return { spec: spec!, readonly: options.readonly }
  } catch (error) {
    if (error instanceof InputError) return skip(error.message.slice(`Input "${error.input}": `.length))
    return skip(errorMessage(error))
  }
}

function unresolvedReason(names: string[], stage: Stage, globals: Map<string, Value>): string {
  const list = names.map(n => `$${n}`).join(', ')
  const hints: string[] = []
  const unset = names.filter(n => !stage.env.has(n))
  const redeclare = unset.filter(n => typeof globals.get(n) === 'string')
  if (redeclare.length > 0) {
    hints.push(`a global or automatic ARG is visible in a stage only after "ARG ${redeclare.join(' ')}" in it`)
  }
  if (unset.length > redeclare.length) hints.push('variables set only by the base image cannot be seen here')
  if (unset.length < names.length) hints.push('a value it depends on could not be resolved')
  const hint = hints.length > 0 ? ` (${hints.join('; ')})` : ''
  return `cannot resolve ${list}${hint}`
}

/** One `--mount` flag as BuildKit reads it, after variable expansion. */
export interface MountOptions {
  type: string
  id?: string
  target?: string
  uid?: number
  gid?: number
  mode?: number
  sharing?: Sharing
  from?: string
  source?: string
  readonly: boolean
}

const MOUNT_TYPES = new Set(['bind', 'cache', 'tmpfs', 'secret', 'ssh'])
const SHARINGS = new Set(['shared', 'private', 'locked'])
const MAX_UINT32 = 2 ** 32 - 1

/**
 * Parses a `--mount` flag value (without `--mount=`) with BuildKit's rules:
 * CSV fields (quotes as encoding/csv), case-insensitive keys, every value
 * expanded by `expand`, uid/gid decimal and mode octal 32-bit numbers,
 * `type` defaulting to bind. Throws with BuildKit's reason where BuildKit
 * would fail the build.
 */
export function parseMountFlag(value: string, expand: (word: string) => string = word => word): MountOptions {
  const m: MountOptions = { type: 'bind', readonly: false }
  let readonlyGiven = false
  for (const field of csvFields(value)) {
    const eq = field.indexOf('=')
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase()
    if (eq < 0) {
      if (key === 'readonly' || key === 'ro' || key === 'readwrite' || key === 'rw') {
        m.readonly = key === 'readonly' || key === 'ro'
        readonlyGiven = true
        continue
      }
      if (key === 'required' && (m.type === 'secret' || m.type === 'ssh')) continue
      if (key === 'required') throw new Error(`unexpected key 'required' for mount type '${m.type}'`)
      throw new Error(`invalid field '${field}' must be a key=value pair`)
    }
    const raw = field.slice(eq + 1)
    if (key === 'from') {
      const dollar = raw.indexOf('$')
      if (dollar >= 0 && dollar !== raw.length - 1) {
        throw new Error("'from' doesn't support variable expansion, define alias stage instead")
      }
    }
    const v = expand(raw)
    switch (key) {
      case 'type': {
        const type = v.toLowerCase()
        if (!MOUNT_TYPES.has(type)) throw new Error(`unsupported mount type "${v}"`)
        m.type = type
        break
      }
      case 'from':
        m.from = v
        break
      case 'source':
      case 'src':
        m.source = v
        break
      case 'target':
      case 'dst':
      case 'destination':
        m.target = v
        break
      case 'readonly':
      case 'ro':
        m.readonly = parseBool(v, key)
        readonlyGiven = true
        break
      case 'readwrite':
      case 'rw':
        m.readonly = !parseBool(v, key)
        readonlyGiven = true
        break
      case 'required':
        if (m.type !== 'secret' && m.type !== 'ssh') throw new Error(`unexpected key 'required' for mount type '${m.type}'`)
        parseBool(v, key)
        break
      case 'size':
        if (m.type !== 'tmpfs') throw new Error(`unexpected key 'size' for mount type '${m.type}'`)
        break
      case 'id':
        m.id = v
        break
      case 'sharing': {
        const sharing = v.toLowerCase()
        if (!SHARINGS.has(sharing)) throw new Error(`unsupported sharing value "${v}"`)
        m.sharing = sharing as Sharing
        break
      }
      case 'mode':
        m.mode = parseUint32(v, 8, 'mode')
        break
      case 'uid':
        m.uid = parseUint32(v, 10, 'uid')
        break
      case 'gid':
        m.gid = parseUint32(v, 10, 'gid')
        break
      case 'env':
        break
      default:
        throw new Error(`unexpected key '${key}' in '${field}'`)
    }
  }
  const fileInfoAllowed = m.type === 'secret' || m.type === 'ssh' || m.type === 'cache'
  if (!fileInfoAllowed) {
    for (const name of ['mode', 'uid', 'gid'] as const) {
      if (m[name] !== undefined) throw new Error(`${name} not allowed for "${m.type}" type mounts`)
    }
  }
  if (!readonlyGiven) m.readonly = !(m.type === 'cache' || m.type === 'tmpfs')
  if (m.sharing !== undefined && m.type !== 'cache') throw new Error(`invalid cache sharing set for ${m.type} mount`)
  return m
}

/** The mount's type, expanding only the `type` values, so a bind or secret mount's other fields are never judged. */
function mountType(value: string, expand: (word: string) => string): string {
  let type = 'bind'
  for (const field of csvFields(value)) {
    const eq = field.indexOf('=')
    if (eq >= 0 && field.slice(0, eq).toLowerCase() === 'type') type = expand(field.slice(eq + 1)).toLowerCase()
  }
  return type
}

function parseBool(text: string, key: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text)) return true
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(text)) return false
  throw new Error(`invalid value for ${key}: ${text}`)
}

function parseUint32(text: string, base: 8 | 10, name: string): number {
  const digits = base === 8 ? /^[0-7]+$/ : /^[0-9]+$/
  const n = digits.test(text) ? parseInt(text, base) : NaN
  if (!(n <= MAX_UINT32)) throw new Error(`invalid value ${text} for ${name}`)
  return n
}

/** One CSV record with encoding/csv's default rules (tonistiigi/go-csvvalue in BuildKit). */
function csvFields(line: string): string[] {
  let rest = line.endsWith('\r\n') ? line.slice(0, -2) : line.endsWith('\n') ? line.slice(0, -1) : line
  if (rest === '') throw new Error('failed to parse csv mounts: EOF')
  const fields: string[] = []
  for (;;) {
    if (!rest.startsWith('"')) {
      const comma = rest.indexOf(',')
      const field = comma < 0 ? rest : rest.slice(0, comma)
      if (field.includes('"')) throw new Error('failed to parse csv mounts: bare " in non-quoted field')
      fields.push(field)
      if (comma < 0) return fields
      rest = rest.slice(comma + 1)
      continue
    }
    let field = ''
    let i = 1
    for (;;) {
      const quote = rest.indexOf('"', i)
      if (quote < 0) throw new Error('failed to parse csv mounts: extraneous or missing " in quoted field')
      field += rest.slice(i, quote)
      const next = rest[quote + 1]
      if (next === '"') {
        field += '"'
        i = quote + 2
      } else if (next === ',') {
        fields.push(field)
        rest = rest.slice(quote + 2)
        break
      } else if (next === undefined) {
        fields.push(field)
        return fields
      } else {
        throw new Error('failed to parse csv mounts: extraneous or missing " in quoted field')
      }
    }
  }
}

/** A variable's value: a string, null when set to something unknowable, undefined when unset. */
export type Lookup = (name: string) => Value | undefined

export interface ExpandOptions {
  lookup: Lookup
  /** The Dockerfile's escape character (`\` unless `# escape=` says otherwise). */
  escape?: string
  /**
   * Inside a stage the base image may set variables this module cannot see,
   * so an unset variable used without a default is unresolved; in the global
   * scope it is empty, as BuildKit makes it.
   */
  strict?: boolean
}

/** Variables whose value cannot be known here; the word cannot be expanded. */
export class UnresolvedVariableError extends Error {
  constructor(readonly names: string[]) {
    super(`cannot resolve ${names.map(n => `$${n}`).join(', ')}`)
    this.name = 'UnresolvedVariableError'
  }
}

interface Scanner {
  text: string
  pos: number
  escape: string
  lookup: Lookup
  strict: boolean
  unresolved: string[]
}

/**
 * Expands one word as BuildKit's shell lexer does: quotes removed (nothing
 * expands inside '...'), the escape character taken literally, `$VAR`,
 * `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}`, `${VAR:?m}`,
 * `${VAR?m}`. Pattern forms (`#`, `%`, `/`) are refused rather than guessed.
 */
export function expandWord(word: string, options: ExpandOptions): string {
  const s: Scanner = {
    text: word,
    pos: 0,
    escape: options.escape ?? '\\',
    lookup: options.lookup,
    strict: options.strict ?? true,
    unresolved: []
  }
  const out = processUntil(s, undefined)
  if (s.unresolved.length > 0) throw new UnresolvedVariableError(unique(s.unresolved))
  return out
}

function processUntil(s: Scanner, stop: string | undefined): string {
  let out = ''
  while (s.pos < s.text.length) {
    const ch = s.text[s.pos]!
    if (ch === stop) {
      s.pos++
      return out
    }
    if (ch === '$') out += processDollar(s)
    else if (ch === "'") out += processSingleQuote(s)
    else if (ch === '"') out += processDoubleQuote(s)
    else {
      s.pos++
      if (ch === s.escape) {
        if (s.pos >= s.text.length) break
        out += s.text[s.pos++]
      } else out += ch
    }
  }
  if (stop !== undefined) throw new Error(`unexpected end of statement while looking for matching ${stop}`)
  return out
}

function processSingleQuote(s: Scanner): string {
  const end = s.text.indexOf("'", s.pos + 1)
  if (end < 0) throw new Error('unexpected end of statement while looking for matching single-quote')
  const out = s.text.slice(s.pos + 1, end)
  s.pos = end + 1
  return out
}

function processDoubleQuote(s: Scanner): string {
  let out = ''
  s.pos++
  for (;;) {
    const ch = s.text[s.pos]
    if (ch === undefined) throw new Error('unexpected end of statement while looking for matching double-quote')
    if (ch === '"') {
      s.pos++
      return out
    }
    if (ch === '$') {
      out += processDollar(s)
      continue
    }
    s.pos++
    if (ch === s.escape) {
      const next = s.text[s.pos]
      if (next === undefined) continue
      if (next === '"' || next === '$' || next === s.escape) {
        out += next
        s.pos++
        continue
      }
    }
    out += ch
  }
}

function processDollar(s: Scanner): string {
  s.pos++
  if (s.text[s.pos] !== '{') {
    const name = processName(s)
    return name === '' ? '$' : valueOf(s, name)
  }
  s.pos++
  const first = s.text[s.pos]
  if (first === undefined) throw new Error("syntax error: missing '}'")
  if (first === '{' || first === '}' || first === ':') throw new Error('syntax error: bad substitution')
  const name = processName(s)
  const ch = s.text[s.pos++]
  if (ch === '}') return valueOf(s, name)
  if (ch === undefined) throw new Error("syntax error: missing '}'")
  const nullIsUnset = ch === ':'
  const op = nullIsUnset ? s.text[s.pos++] : ch
  if (op !== '-' && op !== '+' && op !== '?') {
    throw new Error(`the substitution modifier "${nullIsUnset ? ':' : ''}${op ?? ''}" in \${${name}...} is not supported here`)
  }
  const mark = s.unresolved.length
  const word = processUntil(s, '}')
  const wordUnresolved = s.unresolved.splice(mark)
  const value = s.lookup(name)
  if (value === null) {
    s.unresolved.push(name)
    return ''
  }
  const empty = value === undefined || (nullIsUnset && value === '')
  switch (op) {
    case '-':
      if (!empty) return value
      s.unresolved.push(...wordUnresolved)
      return word
    case '+':
      if (empty) return ''
      s.unresolved.push(...wordUnresolved)
      return word
    default:
      if (value === undefined && s.strict) {
        s.unresolved.push(name)
        return ''
      }
      if (!empty) return value
      throw new Error(`${name}: ${word !== '' ? word : `is not allowed to be ${value === undefined ? 'unset' : 'empty'}`}`)
  }
}

const NAME_CHAR = /^[\p{L}\p{Nd}_]$/u
const DIGIT = /^\p{Nd}$/u
const SPECIAL_PARAMS = '@*#?-$!0'

function processName(s: Scanner): string {
  const first = s.text[s.pos]
  if (first === undefined) return ''
  if (DIGIT.test(first)) {
    const start = s.pos
    while (s.pos < s.text.length && DIGIT.test(s.text[s.pos]!)) s.pos++
    return s.text.slice(start, s.pos)
  }
  if (SPECIAL_PARAMS.includes(first)) {
    s.pos++
    return first
  }
  const start = s.pos
  while (s.pos < s.text.length && NAME_CHAR.test(s.text[s.pos]!)) s.pos++
  return s.text.slice(start, s.pos)
}

function valueOf(s: Scanner, name: string): string {
  const value = s.lookup(name)
  if (value === null || (value === undefined && s.strict)) {
    s.unresolved.push(name)
    return ''
  }
  return value ?? ''
}

interface Instruction {
  /** Upper-cased instruction name. */
  keyword: string
  /** Builder flags (`--mount=...`) with quotes and escapes removed, as BuildKit's flag parser sees them. */
  flags: string[]
  /** The rest of the instruction after the flags, continuations joined. */
  args: string
  line: number
}

interface ParsedDockerfile {
  escape: string
  instructions: Instruction[]
}

const DIRECTIVE = /^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/
const DIRECTIVES = new Set(['syntax', 'escape', 'check'])
const WHITESPACE = /[\t\v\f\r ]+/
const HEREDOC_KEYWORDS = new Set(['RUN', 'COPY', 'ADD'])

/**
 * Splits a Dockerfile into instructions the way BuildKit's parser does:
 * parser directives (only `# escape=` matters here) at the very top, comment
 * and blank lines skipped even inside continuations, the escape character
 * at the end of a line continuing it, and heredoc bodies of RUN/COPY/ADD
 * consumed so their lines are never read as instructions.
 */
function parseDockerfile(content: string): ParsedDockerfile {
  const lines = content.split('\n').map(l => l.replace(/\r$/, ''))
  if (lines[0] !== undefined) lines[0] = lines[0].replace(/^\uFEFF/, '')
  let escape = '\\'
  let continuation = continuationPattern(escape)
  let directivesDone = false
  const seenDirectives = new Set<string>()
  const instructions: Instruction[] = []
  let i = 0
  while (i < lines.length) {
    const text = lines[i]!.trimStart()
    const line = ++i
    if (!directivesDone) {
      const match = text.startsWith('#') ? DIRECTIVE.exec(text.slice(1).trimStart()) : null
      const name = match?.[1]?.toLowerCase()
      if (match === null || name === undefined || !DIRECTIVES.has(name)) {
        directivesDone = true
      } else {
        if (seenDirectives.has(name)) throw new Error(`line ${line}: only one ${name} parser directive can be used`)
        seenDirectives.add(name)
        if (name === 'escape') {
          const value = match[2]!
          if (value !== '`' && value !== '\\') {
            throw new Error(`line ${line}: invalid escape token '${value}' does not match \` or \\`)
          }
          escape = value
          continuation = continuationPattern(escape)
        }
      }
    }
    if (text.startsWith('#')) continue
    let [joined, ended] = trimContinuation(text, continuation)
    if (ended && joined === '') continue
    while (!ended && i < lines.length) {
      const next = lines[i++]!
      if (next.trimStart().startsWith('#') || next.trim() === '') continue
      const [body, end] = trimContinuation(next, continuation)
      joined += body
      ended = end
    }
    const instruction = splitCommand(joined, escape, line)
    instructions.push(instruction)
    for (const heredoc of heredocs(instruction, joined)) {
      let terminated = false
      while (i < lines.length) {
        const candidate = lines[i++]!
        if ((heredoc.chomp ? candidate.replace(/^\t+/, '') : candidate) === heredoc.name) {
          terminated = true
          break
        }
      }
      if (!terminated) throw new Error(`line ${line}: unterminated heredoc`)
    }
  }
  return { escape, instructions }
}

function continuationPattern(escape: string): RegExp {
  const e = `\\${escape}`
  return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`)
}

function trimContinuation(line: string, pattern: RegExp): [string, boolean] {
  return pattern.test(line) ? [line.replace(pattern, '$1'), false] : [line, true]
}

function splitCommand(line: string, escape: string, lineNumber: number): Instruction {
  const trimmed = line.trim()
  const space = WHITESPACE.exec(trimmed)
  const keyword = (space === null ? trimmed : trimmed.slice(0, space.index)).toUpperCase()
  const rest = space === null ? '' : trimmed.slice(space.index + space[0].length)
  const { flags, args } = extractBuilderFlags(rest, escape)
  return { keyword, flags, args: args.trim(), line: lineNumber }
}

/** split_command.go extractBuilderFlags: leading `--` words, quotes and escapes removed. */
function extractBuilderFlags(line: string, escape: string): { flags: string[]; args: string } {
  const flags: string[] = []
  let word = ''
  let phase: 'spaces' | 'word' | 'quote' = 'spaces'
  let quote = ''
  let blankOk = false
  for (let pos = 0; pos <= line.length; pos++) {
    const ch = line[pos]
    if (phase === 'spaces') {
      if (ch === undefined) break
      if (/\s/.test(ch)) continue
      if (ch !== '-' || line[pos + 1] !== '-') return { flags, args: line.slice(pos) }
      phase = 'word'
    }
    if (ch === undefined) {
      if (word !== '--' && (blankOk || word !== '')) flags.push(word)
      break
    }
    if (phase === 'word') {
      if (/\s/.test(ch)) {
        if (word === '--') return { flags, args: line.slice(pos) }
        if (blankOk || word !== '') flags.push(word)
        phase = 'spaces'
        word = ''
        blankOk = false
        continue
      }
      if (ch === "'" || ch === '"') {
        quote = ch
        blankOk = true
        phase = 'quote'
        continue
      }
      if (ch === escape) {
        if (pos + 1 === line.length) continue
        word += line[++pos]
        continue
      }
      word += ch
      continue
    }
    if (ch === quote) {
      phase = 'word'
      continue
    }
    if (ch === escape) {
      if (pos + 1 === line.length) {
        phase = 'word'
        continue
      }
      word += line[++pos]
      continue
    }
    word += ch
  }
  return { flags, args: '' }
}

/**
 * parser.go heredocsFromLine: words of the whole line (quotes kept, `\`
 * always the escape here) shaped `[n]<<[-]NAME`; NAME loses its quotes.
 */
function heredocs(instruction: Instruction, line: string): { name: string; chomp: boolean }[] {
  let keyword = instruction.keyword
  let args = instruction.args
  if (keyword === 'ONBUILD') {
    const sub = splitCommand(args, '\\', instruction.line)
    keyword = sub.keyword
    args = sub.args
  }
  if (!HEREDOC_KEYWORDS.has(keyword) || !line.includes('<<') || isJsonArray(args)) return []
  const docs: { name: string; chomp: boolean }[] = []
  for (const word of rawWords(line.replace(/<<(-?)[ \t]+/g, '<<$1'))) {
    const match = /^\d*<<(-?)([^<]*)$/.exec(word)
    if (match === null || match[2] === '') continue
    const name = match[2]!.replace(/\\(.)|["']/g, '$1')
    if (name === '' || /\s/.test(name)) continue
    docs.push({ name, chomp: match[1] === '-' })
  }
  return docs
}

function isJsonArray(args: string): boolean {
  if (!args.startsWith('[')) return false
  try {
    const value: unknown = JSON.parse(args)
    return Array.isArray(value) && value.every(v => typeof v === 'string')
  } catch {
    return false
  }
}

/** Whitespace-separated words, quoted parts and escapes kept as written. */
function rawWords(line: string): string[] {
  const words: string[] = []
  let word = ''
  let quote = ''
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!
    if (quote === '' && /\s/.test(ch)) {
      if (word !== '') words.push(word)
      word = ''
      continue
    }
    word += ch
    if (ch === '\\' && quote !== "'" && i + 1 < line.length) word += line[++i]
    else if (quote === '' && (ch === '"' || ch === "'")) quote = ch
    else if (ch === quote) quote = ''
  }
  if (word !== '') words.push(word)
  return words
}

/** line_parsers.go parseWords: whitespace-separated words, quotes and escapes kept for the expander. */
function parseWords(rest: string, escape: string): string[] {
  const words: string[] = []
  let word = ''
  let blankOk = false
  let phase: 'spaces' | 'word' | 'quote' = 'spaces'
  let quote = ''
  const chars = [...rest]
  for (let pos = 0; pos <= chars.length; pos++) {
    let ch = chars[pos]
    if (phase === 'spaces') {
      if (ch === undefined) break
      if (/\s/u.test(ch)) continue
      phase = 'word'
    }
    if (ch === undefined) {
      if (blankOk || word !== '') words.push(word)
      break
    }
    if (phase === 'word') {
      if (/\s/u.test(ch)) {
        phase = 'spaces'
        if (blankOk || word !== '') words.push(word)
        word = ''
        blankOk = false
        continue
      }
      if (ch === "'" || ch === '"') {
        quote = ch
        blankOk = true
        phase = 'quote'
      }
      if (ch === escape) {
        if (pos + 1 === chars.length) continue
        word += ch
        ch = chars[++pos]!
      }
      word += ch
      continue
    }
    if (ch === quote) phase = 'word'
    if (ch === escape && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = 'word'
        continue
      }
      word += ch
      ch = chars[++pos]!
    }
    word += ch
  }
  return words
}

/** ARG words: `NAME` or `NAME=default` (default still to be expanded). */
function argPairs(args: string, escape: string): [string, string | undefined][] {
  return parseWords(args, escape)
    .map((word): [string, string | undefined] => {
      const eq = word.indexOf('=')
      return eq < 0 ? [word, undefined] : [word.slice(0, eq), word.slice(eq + 1)]
    })
    .filter(([key]) => key !== '')
}

/** ENV pairs: `K=V ...`, or the legacy `K value with spaces` (values still to be expanded). */
function envPairs(args: string, escape: string): [string, string][] {
  const words = parseWords(args, escape)
  if (words.length === 0) return []
  if (!words[0]!.includes('=')) {
    const space = WHITESPACE.exec(args)
    return space === null ? [] : [[args.slice(0, space.index), args.slice(space.index + space[0].length)]]
  }
  if (words.some(w => !w.includes('='))) return []
  return words.map(word => {
    const eq = word.indexOf('=')
    return [word.slice(0, eq), word.slice(eq + 1)]
  })
}
