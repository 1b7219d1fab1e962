import { readFileSync } from 'node:fs'
import { isAbsolute, join } from 'node:path'

import { discoverMounts, type DiscoveredMount } from '../discover/index.js'
import { InputError } from '../errors.js'
import { formatMode, parseMounts, type MountSpec } from './spec.js'

/**
 * Decides which cache mounts the step persists: those found in the
 * Dockerfiles (so options are never repeated, and never repeated wrongly)
 * plus or overridden by the explicit `mounts` input, per id.
 */
export interface MountSources {
  /** The `mounts` input text. */
  mountsText: string
  /** Dockerfile paths (relative to the workspace); empty = no discovery. */
  dockerfiles: string[]
  buildArgs: Record<string, string>
  platforms: string[]
  buildPlatform: string
  workspace: string
  /** The step's key-files input: when set, it wins over the discovered Dockerfiles. */
  stepKeyFiles: string[]
}

export interface ResolvedMounts {
  mounts: MountSpec[]
  /** BUILDKIT_CACHE_MOUNT_NS: the generated builds must pass the same build-arg. */
  cacheNamespace?: string
  /** Lines for the log: the table of mounts and discovery warnings. */
  report: string[]
  warnings: string[]
}

export function resolveMounts(sources: MountSources): ResolvedMounts {
  const explicit = parseMounts(sources.mountsText, 'mounts', { partial: sources.dockerfiles.length > 0 })
  if (sources.dockerfiles.length === 0) {
    return { mounts: explicit, report: [], warnings: [], ...namespace(sources.buildArgs) }
  }
  const dockerfiles = sources.dockerfiles.map(path => {
    const full = isAbsolute(path) ? path : join(sources.workspace, path)
    try {
      return { path, content: readFileSync(full, 'utf8') }
    } catch (error) {
      throw new InputError('dockerfile', `cannot read "${path}": ${(error as NodeJS.ErrnoException).code ?? String(error)}`)
    }
  })
  const found = discoverMounts({ dockerfiles, buildArgs: sources.buildArgs, platforms: sources.platforms, buildPlatform: sources.buildPlatform })
  const warnings = [...found.warnings]
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
  for (const rest of byId.values()) {
    if (rest.target === '') throw new InputError('mounts', `id "${rest.id}" has no target and is not used in ${sources.dockerfiles.join(', ')}`)
    mounts.push(rest)
  }
  return { mounts, report: table(found.mounts, mounts), warnings, ...namespace(sources.buildArgs, found.cacheNamespace) }
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

/** build-args input: KEY=VALUE per line, as in docker/build-push-action. */
export function parseBuildArgs(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (line === '') continue
    const eq = line.indexOf('=')
    if (eq <= 0) throw new InputError('build-args', `"${line.slice(0, 60)}" is not KEY=VALUE`)
    out[line.slice(0, eq)] = line.slice(eq + 1)
  }
  return out
}
