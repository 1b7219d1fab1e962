import { readFileSync } from 'node:fs'
import { isAbsolute, join } from 'node:path'

import { discoverMounts, type DiscoveredMount } from '../discover/index.js'
import { InputError } from '../errors.js'
import { parseInputList } from '../input-list.js'
import { formatMode, parseMounts, type MountSpec } from './spec.js'

/**
 * Decides which cache mounts the step persists: those found in the
 * Dockerfiles (so options are never repeated, and never repeated wrongly)
 * plus or overridden by the explicit `mounts` input, per id.
 */
export interface MountSources {
  /** The `mounts` input text. */
  mountsText: string
  /** The Dockerfiles to search; empty = no discovery. */
  dockerfiles: DockerfileSource[]
  /** The build's target stage: mounts of stages it does not need are left out. */
  target?: string
  buildArgs: Record<string, string>
  platforms: string[]
  buildPlatform: string
  workspace: string
  /** The step's key-files input: when set, it wins over the discovered Dockerfiles. */
  stepKeyFiles: string[]
}

/** One Dockerfile to search for cache mounts. */
export interface DockerfileSource {
  /** Relative to the workspace (or absolute). */
  path: string
  /** The input that named it, for the error when it cannot be read. */
  input: string
  /** Set for the default `{context}/Dockerfile`: when it is missing, a warning with this hint, not an error. */
  missingHint?: string
}

export interface ResolvedMounts {
  mounts: MountSpec[]
  /** BUILDKIT_CACHE_MOUNT_NS: the generated builds must pass the same build-arg. */
  cacheNamespace?: string
  /** Lines for the log: the table of mounts and discovery warnings. */
  report: string[]
  warnings: string[]
  /** The Dockerfiles that were read. */
  searched: string[]
}

export function resolveMounts(sources: MountSources): ResolvedMounts {
  const explicit = parseMounts(sources.mountsText, 'mounts', { partial: sources.dockerfiles.length > 0 })
  if (sources.dockerfiles.length === 0) {
    return { mounts: explicit, report: [], warnings: [], searched: [], ...namespace(sources.buildArgs) }
  }
  const warnings: string[] = []
  const dockerfiles: { path: string; content: string }[] = []
  for (const source of sources.dockerfiles) {
    const full = isAbsolute(source.path) ? source.path : join(sources.workspace, source.path)
    try {
      dockerfiles.push({ path: source.path, content: readFileSync(full, 'utf8') })
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? String(error)
      if (source.missingHint === undefined) throw new InputError(source.input, `cannot read "${source.path}": ${code}`)
      warnings.push(`${source.missingHint} (${code})`)
    }
  }
  const found = discoverMounts({
    dockerfiles,
    buildArgs: sources.buildArgs,
    platforms: sources.platforms,
    buildPlatform: sources.buildPlatform,
    ...(sources.target !== undefined ? { target: sources.target } : {})
  })
  if (found.unknownTarget !== undefined) {
    const stages = found.unknownTarget.length > 0 ? found.unknownTarget.map(s => JSON.stringify(s)).join(', ') : 'none'
    throw new InputError(
      'target',
      `no stage ${JSON.stringify((sources.target ?? '').slice(0, 80))} in ${dockerfiles.map(d => d.path).join(', ')} (its stages: ${stages})`
    )
  }
  warnings.push(...found.warnings)
  const byId = new Map(explicit.map(m => [m.id, m]))
  const mounts: MountSpec[] = []
  for (const d of found.mounts) {
    const given = byId.get(d.spec.id)
    byId.delete(d.spec.id)
    // Discovered keys default to the Dockerfiles that use the mount (as the seed project keyed its caches).
    const keyFiles = sources.stepKeyFiles.length > 0 ? {} : { keyFiles: [...new Set(d.locations.map(l => l.file))] }
    mounts.push({ ...keyFiles, ...d.spec, ...(given ? definedFields(given) : {}) })
    if (d.platforms.length > 1 && d.spec.sharing !== 'locked') {
      warnings.push(
        `cache "${d.spec.id}" is shared by ${d.platforms.join(', ')}; builds of several platforms write it concurrently: use sharing=locked in the Dockerfile`
      )
    }
  }
  const searched = dockerfiles.map(d => d.path)
  for (const rest of byId.values()) {
    if (rest.target === '') {
      const where = searched.length > 0 ? `in ${searched.join(', ')}` : 'in any Dockerfile (none was read)'
      throw new InputError(
        'mounts',
        `id "${rest.id}" has no target and no cache mount with this id is declared ${where}: give target= (as in the Dockerfile flag), or set file or dockerfile to the Dockerfile that declares it`
      )
    }
    mounts.push(rest)
  }
  const report = table(found.mounts, mounts)
  if (found.skippedStages.length > 0) {
    report.push(
      `(target ${JSON.stringify(sources.target)}: the cache mounts of stages it does not need are left out: ${found.skippedStages.join(', ')})`
    )
  }
  return { mounts, report, warnings, searched, ...namespace(sources.buildArgs, found.cacheNamespace) }
}

function namespace(buildArgs: Record<string, string>, found?: string): { cacheNamespace?: string } {
  const ns = found ?? buildArgs.BUILDKIT_CACHE_MOUNT_NS
  if (ns && !isCacheNamespace(ns)) {
    throw new InputError('build-args', `BUILDKIT_CACHE_MOUNT_NS ${JSON.stringify(ns.slice(0, 80))} must be 1-200 letters, digits, ".", "_" or "-"`)
  }
  return ns ? { cacheNamespace: ns } : {}
}

/** A BUILDKIT_CACHE_MOUNT_NS this action accepts (the same rule where main reads it and where post loads the state). */
export function isCacheNamespace(value: string): boolean {
  return /^[A-Za-z0-9_.-]{1,200}$/.test(value)
}

/** The explicit entry's fields, minus an empty target (a partial entry keeps the discovered one). */
function definedFields(spec: MountSpec): Partial<MountSpec> {
  const out: Partial<MountSpec> = { ...spec }
  if (out.target === '') delete out.target
  return out
}

function table(discovered: DiscoveredMount[], mounts: MountSpec[]): string[] {
  const where = new Map(discovered.map(d => [d.spec.id, d]))
  const rows = mounts.map(m => {
    const d = where.get(m.id)
    return [
      m.id,
      m.target,
      [
        m.uid !== undefined ? `uid=${m.uid}` : '',
        m.gid !== undefined ? `gid=${m.gid}` : '',
        m.mode !== undefined ? `mode=${formatMode(m.mode)}` : '',
        m.sharing ? `sharing=${m.sharing}` : ''
      ]
        .filter(Boolean)
        .join(',') || '-',
      d ? d.platforms.join(' ') : 'all',
      d ? d.locations.map(l => `${l.file}:${l.line}`).join(' ') : 'mounts input'
    ]
  })
  const head = ['id', 'target', 'options', 'platforms', 'used at']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd()
  return [line(head), ...rows.map(line)]
}

/**
 * The build-args input as docker/build-push-action reads it (its input list
 * without comma splitting: one per line, `#` comment lines, CSV quotes), each
 * item as `docker buildx build --build-arg` takes it: `KEY=VALUE`, or a bare
 * `KEY` whose value comes from the environment (left unset when the
 * environment has none).
 */
export function parseBuildArgs(text: string, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out = Object.create(null) as Record<string, string>
  for (const item of parseInputList(text, 'build-args', { ignoreComma: true })) {
    const eq = item.indexOf('=')
    const key = eq < 0 ? item : item.slice(0, eq)
    if (key.trim() === '') {
      throw new InputError(
        'build-args',
        `${JSON.stringify(item.slice(0, 60))} has no name: expected KEY=VALUE, or KEY to take its value from the environment`
      )
    }
    if (eq >= 0) out[key] = item.slice(eq + 1)
    else if (env[key] !== undefined) out[key] = env[key]
  }
  return out
}
