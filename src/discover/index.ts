import { posix } from 'node:path'

import { errorMessage, InputError } from '../errors.js'
import { cleanTarget, formatMode, parseMounts, type MountSpec } from '../mounts/spec.js'
import { mountType, parseMountFlag, type MountOptions } from './mount-flag.js'
import { argPairs, envPairs, parseDockerfile, type ParsedDockerfile } from './parser.js'
import { automaticArgs, parsePlatform, type Platform } from './platform.js'
import { expandWord, UnresolvedVariableError, type Lookup, type Value } from './shell-lex.js'
import { neededStages, stageInfo, stageName } from './stages.js'

/**
 * Dockerfile auto-discovery of `RUN --mount=type=cache` mounts, so users need
 * not repeat their mount options in the workflow. It follows BuildKit's
 * Dockerfile frontend (moby/buildkit frontend/dockerfile: parser/parser.go,
 * parser/split_command.go, shell/lex.go, instructions/commands_runmount.go,
 * dockerfile2llb/convert.go, convert_runmount.go, platform.go) closely enough
 * to compute the same cache ids, and turns everything it cannot follow into a
 * warning: discovery must never fail a build.
 *
 * This module holds the discovery itself: stages, ARG/ENV scoping, one pass
 * per target platform, merging of uses into mounts. The Dockerfile's line
 * structure is parser.ts's, variable expansion shell-lex.ts's, the `--mount`
 * value mount-flag.ts's, and platform normalisation platform.ts's.
 *
 * Every stage is read unless a build target is given: then, as BuildKit
 * runs only the stages the target needs, the cache mounts of the others are
 * left out (stages.ts finds them). Without a target a cache of an unused
 * stage is restored and saved for nothing, which is harmless. The base
 * image's ENV and WORKDIR are not visible either: a variable only it could
 * set is unresolved (the mount is skipped with a warning), and a relative
 * target is placed under the Dockerfile's own WORKDIRs (the target is only
 * descriptive; the id, uid, gid and mode are what select the cache).
 */

// The word expander and --mount parser are part of discovery's public API too.
export { parseMountFlag, type MountOptions } from './mount-flag.js'
export { expandWord, UnresolvedVariableError, type ExpandOptions, type Lookup } from './shell-lex.js'

/** What discovery needs to know of the user's build: the same inputs BuildKit would get. */
export interface DiscoverInput {
  dockerfiles: { path: string; content: string }[]
  /** Values of the build's `--build-arg`s: they override ARG defaults, as in BuildKit. */
  buildArgs: Record<string, string>
  /** Target platforms, e.g. `['linux/amd64', 'linux/arm64']`; never empty. */
  platforms: string[]
  /** The engine's native platform, which BuildKit exposes as BUILDPLATFORM & co. */
  buildPlatform: string
  /** The build's target stage (`--target`); undefined = the last stage, every stage read. */
  target?: string
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
  /** Set when a target is given and no file has a stage of that name: every stage name found. */
  unknownTarget?: string[]
  /** Labels (`file:stage`) of the stages left out because the target does not need them. */
  skippedStages: string[]
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
  const target = input.target?.trim() || undefined
  let targetFound = target === undefined
  let allParsed = true
  const stageNames: string[] = []
  const skipped = new Set<string>()
  input.dockerfiles.forEach((file, fileIndex) => {
    let parsed: ParsedDockerfile
    try {
      parsed = parseDockerfile(file.content)
    } catch (error) {
      warn(`${file.path}: not searched for cache mounts: ${errorMessage(error)}`)
      allParsed = false
      return
    }
    const info = stageInfo(parsed)
    stageNames.push(...info.names)
    const hasTarget = target !== undefined && info.names.includes(target.toLowerCase())
    targetFound ||= hasTarget
    targets.forEach((platformTarget, platformIndex) => {
      const args = automaticArgs(platformTarget.platform, build, lastStageName(parsed))
      const only = hasTarget ? target : undefined
      for (const use of evaluate(parsed, file.path, input.buildArgs, args, warn, only, label => skipped.add(`${file.path}:${label}`))) {
        uses.push({ ...use, fileIndex, platformIndex })
      }
    })
  })
  uses.sort((a, b) => a.fileIndex - b.fileIndex || a.seq - b.seq || a.platformIndex - b.platformIndex)
  const mounts = mergeUses(
    uses,
    targets.map(t => t.name),
    warn
  )
  const result: DiscoverResult = { mounts, warnings: [...warnings], skippedStages: [...skipped] }
  if (!targetFound && allParsed && input.dockerfiles.length > 0) result.unknownTarget = unique(stageNames)
  const namespace = input.buildArgs[CACHE_NAMESPACE_ARG]
  if (Object.hasOwn(input.buildArgs, CACHE_NAMESPACE_ARG) && namespace !== undefined && namespace !== '') {
    result.cacheNamespace = namespace
  }
  return result
}

/** One cache mount of one RUN, for one file and target platform. */
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
  warn: (m: string) => void,
  target?: string,
  skip?: (stageLabel: string) => void
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
  // With a target: the stages it needs, found once the global ARGs are known (at the first FROM).
  let needed: Set<number> | undefined
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
            const value = buildArg(key) ?? (raw === undefined ? globals.get(key) : tryExpand(raw, escape, lookupIn(stage.env), true))
            if (value !== undefined) stage.env.set(key, value)
          }
        }
        break
      case 'FROM': {
        stageIndex++
        if (target !== undefined && needed === undefined) {
          needed = neededStages(parsed, target, word => tryExpand(word, escape, lookupIn(globals), false)) ?? new Set()
        }
        const words = ins.args.split(/[\t\v\f\r ]+/).filter(w => w !== '')
        const name = stageName(ins.args)
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
        if (stage !== undefined && needed !== undefined && !needed.has(stageIndex)) {
          if (ins.flags.some(isCacheMountFlag)) skip?.(stage.label)
          seq += ins.flags.filter(f => f === '--mount' || f.startsWith('--mount=')).length
        } else if (stage !== undefined) {
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

/** A `--mount=` flag whose type (as written, unexpanded) is cache. */
function isCacheMountFlag(flag: string): boolean {
  if (!flag.startsWith('--mount=')) return false
  try {
    return mountType(flag.slice('--mount='.length), word => word) === 'cache'
  } catch {
    return false
  }
}

function lastStageName(parsed: ParsedDockerfile): string {
  const last = parsed.instructions.filter(i => i.keyword === 'FROM').at(-1)
  return (last && stageName(last.args)) ?? 'default'
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
    if (error instanceof InputError) return skip(error.detail)
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
